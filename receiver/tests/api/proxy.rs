//! A TCP proxy a test controls, to make one receiver's Redis or broker go away and come back
//! without touching the real server other tests use.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub struct Proxy {
    pub addr: SocketAddr,
    /// `Some` while forwarding; cancelling it cuts every open connection.
    forwarding: Arc<Mutex<Option<CancellationToken>>>,
    stop: CancellationToken,
}

impl Proxy {
    /// Starts forwarding `127.0.0.1:<random>` to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let forwarding = Arc::new(Mutex::new(Some(CancellationToken::new())));
        let stop = CancellationToken::new();
        let state = forwarding.clone();
        let stopped = stop.clone();
        tokio::spawn(async move {
            loop {
                let (client, _) = tokio::select! {
                    _ = stopped.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(a) => a,
                        Err(_) => continue,
                    },
                };
                let Some(cut) = state.lock().expect("lock").clone() else {
                    // "Down": the connection is closed at once, like a dead service.
                    drop(client);
                    continue;
                };
                tokio::spawn(async move {
                    let Ok(mut upstream) = TcpStream::connect(target).await else {
                        return;
                    };
                    let mut client = client;
                    tokio::select! {
                        _ = cut.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                    }
                });
            }
        });
        Self {
            addr,
            forwarding,
            stop,
        }
    }

    /// Cuts every connection and refuses new ones.
    pub fn down(&self) {
        if let Some(cut) = self.forwarding.lock().expect("lock").take() {
            cut.cancel();
        }
    }

    /// Forwards again.
    pub fn up(&self) {
        let mut state = self.forwarding.lock().expect("lock");
        if state.is_none() {
            *state = Some(CancellationToken::new());
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.down();
        self.stop.cancel();
    }
}

/// A proxy in front of the service of `url` (`redis://…`, `amqp://user:pw@host:port/…`),
/// and the same URL pointing at the proxy.
pub async fn proxied(url: &str) -> (Proxy, String) {
    let authority = service_authority(url);
    let target = tokio::net::lookup_host(authority)
        .await
        .expect("resolve")
        .next()
        .expect("an address");
    let proxy = Proxy::start(target).await;
    let via = url.replacen(authority, &proxy.addr.to_string(), 1);
    (proxy, via)
}

/// `host:port` of a service URL.
fn service_authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    authority.rsplit_once('@').map_or(authority, |(_, a)| a)
}
