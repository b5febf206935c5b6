//! The lead-intake HTTP receiver: settings → telemetry → application → serve until
//! SIGTERM/SIGINT.

use anyhow::Context;
use shared::config::Settings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load().context("Failed to load settings")?;
    shared::telemetry::init(settings.log_format);
    let app = receiver::Application::build(settings).await?;
    tracing::info!(addr = %app.local_addr()?, "Receiver listening");
    app.run_until_stopped(receiver::app::shutdown_signal())
        .await
}
