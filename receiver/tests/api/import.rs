//! `leadctl import` (leadctl::import) against a real receiver: a spreadsheet's CSV through
//! the bulk endpoint, rejected rows beside the file, a dry run, and an import interrupted
//! and resumed without a lead queued twice.

use crate::helpers::{TestApp, eventually, spawn_app, spawn_app_with_limit};
use leadctl::import::{self, ImportArgs};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("import-{}", testkit::random_id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn args(app: &TestApp, file: &Path, maps: &[&str]) -> ImportArgs {
    ImportArgs {
        file: file.to_owned(),
        token: app.token.clone(),
        maps: maps.iter().map(|m| m.to_string()).collect(),
        dry_run: false,
        resume_from: 1,
        url: format!("http://{}", app.addr),
    }
}

/// Messages now queued, by their lead's number.
async fn queued_numbers(app: &TestApp) -> Vec<String> {
    let mut numbers: Vec<String> = app
        .drain_queue()
        .await
        .iter()
        .map(|m| {
            let body: Value = serde_json::from_slice(&m.delivery.data).unwrap();
            body["lead"]["phone_number"].as_str().unwrap().to_owned()
        })
        .collect();
    numbers.sort();
    numbers
}

#[tokio::test]
async fn a_spreadsheet_csv_imports_and_its_rejected_rows_are_written_beside_it() {
    let app = spawn_app().await;
    let dir = TempDir::new();
    // As spreadsheets export: a BOM, CRLF, quoted commas and line breaks, blank lines, a
    // row without a phone and one with a bad email.
    let csv = "\u{feff}Phone,Full Name,Email,Company\r\n\
               \"(818) 123-4567\",\"Lovelace, Ada\",ada@example.com,\"Analytical Engines, Ltd\"\r\n\
               \r\n\
               ,No Phone,nophone@example.com,\r\n\
               212-555-0100,Grace Hopper,not-an-email,\"Navy\nReserve\"\r\n\
               415.555.0134,Alan Turing,,\r\n\
               \r\n";
    let file = dir.file("campaign.csv", csv);

    // A dry run checks every row and queues nothing.
    let mut dry = args(
        &app,
        &file,
        &[
            "Phone=phone_number",
            "Full Name=name",
            "Email=email",
            "Company=company_name",
        ],
    );
    dry.dry_run = true;
    let summary = import::run(&dry, CancellationToken::new(), false)
        .await
        .unwrap();
    assert_eq!(
        (summary.rows, summary.accepted, summary.rejected),
        (4, 2, 2)
    );
    assert!(summary.dry_run);
    assert_eq!(app.queue_len().await, 0);

    let run = args(
        &app,
        &file,
        &[
            "Phone=phone_number",
            "Full Name=name",
            "Email=email",
            "Company=company_name",
        ],
    );
    let summary = import::run(&run, CancellationToken::new(), false)
        .await
        .unwrap();
    assert_eq!(
        (summary.rows, summary.accepted, summary.rejected),
        (4, 2, 2)
    );
    assert_eq!(summary.resume_from, None);
    let numbers = queued_numbers(&app).await;
    assert_eq!(numbers, ["+14155550134", "+18181234567"]);

    let rejected_path = summary.rejected_file.expect("a rejected file");
    assert_eq!(
        Path::new(&rejected_path),
        dir.0.join("campaign.rejected.csv")
    );
    let mut reader = csv::Reader::from_path(&rejected_path).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        header,
        ["Phone", "Full Name", "Email", "Company", "line", "errors"]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(&rows[0][1], "No Phone");
    assert!(rows[0][5].contains("phone_number: The phone number field is required."));
    assert_eq!(&rows[1][3], "Navy\nReserve", "the row as it was");
    assert!(rows[1][5].starts_with("email:"));
}

#[tokio::test]
async fn an_import_interrupted_and_resumed_queues_every_row_exactly_once() {
    // The limit stops the import after 1,500 rows: it waits for the window, and is
    // interrupted there.
    let app = spawn_app_with_limit(1500, |_| {}).await;
    let dir = TempDir::new();
    let mut csv = String::from("phone_number,first_name\n");
    for i in 0..2500 {
        csv.push_str(&format!("(818) 555-{i:04},Lead {i}\n"));
    }
    let file = dir.file("big.csv", &csv);
    let run = args(&app, &file, &[]);

    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let (run, stop) = (run.clone(), stop.clone());
        async move { import::run(&run, stop, false).await }
    });
    eventually(
        "the first 1,500 rows are queued",
        Duration::from_secs(30),
        || async { (app.queue_len().await >= 1500).then_some(()) },
    )
    .await;
    stop.cancel();
    let summary = task.await.unwrap().unwrap();
    // The requests after the first waited for the window: resume from the oldest one not
    // answered (the first too, when its answer had not arrived yet).
    let resume_from = summary.resume_from.expect("interrupted");
    assert!(
        resume_from == 1001 || resume_from == 1,
        "resume from a request's first row: {resume_from}"
    );
    assert_eq!(summary.accepted, resume_from - 1);

    // The window passes (the test clears it rather than waiting a minute).
    let mut redis = app.redis().await;
    let _: () = redis::cmd("DEL")
        .arg(format!(
            "{}rl:intake:{}",
            app.settings.redis_prefix, app.token_id
        ))
        .query_async(&mut redis)
        .await
        .unwrap();
    let mut resumed = run.clone();
    resumed.resume_from = resume_from;
    let summary = import::run(&resumed, CancellationToken::new(), false)
        .await
        .unwrap();
    assert_eq!(summary.resume_from, None);
    let rest = 2500 - (resume_from - 1);
    assert_eq!(
        (summary.rows, summary.accepted, summary.rejected),
        (rest, rest, 0)
    );

    // Running the whole file again queues nothing new either: each request is answered
    // from the first time.
    let again = import::run(&run, CancellationToken::new(), false)
        .await
        .unwrap();
    assert_eq!(again.accepted, 2500);

    let numbers = queued_numbers(&app).await;
    assert_eq!(numbers.len(), 2500, "every row once");
    let mut distinct = numbers.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), 2500, "no row twice");
}

#[tokio::test]
async fn an_import_with_a_wrong_token_or_a_missing_file_fails_clearly() {
    let app = spawn_app().await;
    let dir = TempDir::new();
    let file = dir.file("x.csv", "phone_number\n8181234567\n");
    let mut bad = args(&app, &file, &[]);
    bad.token = "lit_nope".into();
    let error = import::run(&bad, CancellationToken::new(), false)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("401"), "{error}");
    let missing = args(&app, &dir.0.join("missing.csv"), &[]);
    let error = import::run(&missing, CancellationToken::new(), false)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("Failed to open"), "{error}");
    let bad_map = args(&app, &file, &["phone=telephone"]);
    assert!(
        import::run(&bad_map, CancellationToken::new(), false)
            .await
            .is_err()
    );
}
