//! The HTTP/1 accept loop.
//!
//! - At most `max_connections` connections are served at once; further clients wait in the
//!   listen backlog instead of exhausting memory or file descriptors.
//! - A client must send each request head within `header_timeout`, and keep-alive
//!   connections waiting for their next request are held to the same bound, so slow or
//!   idle clients cannot pin connections (the body has its own timeout in the handler).
//! - A request head (request line and headers) larger than [`MAX_HEAD_BYTES`] gets 431 and
//!   the connection closes, so a connection's read buffer stays small: hyper's own bound is
//!   about 400 KiB, which at the connection cap is gigabytes. (That 431 is written by the
//!   HTTP layer before any handler runs, so it has no JSON body.)
//! - On shutdown the listener closes at once, in-flight requests finish (their leads are
//!   confirmed or refused, never cut off), idle connections close, and after
//!   `shutdown_grace` whatever is left is dropped.

use crate::infra::prometheus;
use crate::web::respond::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use shared::config::ReceiverSettings;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The largest request head served: room for a lead sent entirely in the query string (the
/// URI itself is capped just under 64 KiB) plus ordinary headers.
pub const MAX_HEAD_BYTES: usize = 72 * 1024;

/// How long to back off when `accept` fails (out of file descriptors, typically).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Serves `listener` until `stop` fires, then drains. `answer` answers each request (with
/// the address of the client that sent it).
pub async fn serve<A, Fut>(
    listener: TcpListener,
    settings: &ReceiverSettings,
    stop: CancellationToken,
    answer: A,
) where
    A: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(settings.max_connections));
    let header_timeout = settings.header_timeout;
    let connections = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "Failed to accept a connection");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let answer = answer.clone();
        let stop = stop.clone();
        connections.spawn(async move {
            let _permit = permit;
            metrics::gauge!(prometheus::OPEN_CONNECTIONS).increment(1.0);
            let service = service_fn(move |req| {
                let answered = answer(req, peer);
                async move { Ok::<_, Infallible>(answered.await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .max_header_size(MAX_HEAD_BYTES)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%error, %peer, "Connection ended with an error");
            }
            metrics::gauge!(prometheus::OPEN_CONNECTIONS).decrement(1.0);
        });
    }
    drop(listener);
    connections.close();
    let grace = settings.shutdown_grace;
    if tokio::time::timeout(grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "Shutdown grace period over; dropping the remaining connections"
        );
    }
}
