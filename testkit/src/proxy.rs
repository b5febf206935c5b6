//! A TCP proxy a test controls, to make one process's database, Redis or broker go away
//! (or stop answering) and come back without touching the real server other tests use.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub struct Proxy {
    pub addr: SocketAddr,
    /// `Some` while forwarding; cancelling it cuts every open connection.
    forwarding: Arc<Mutex<Option<CancellationToken>>>,
    /// `true` while the service's replies are held back (connections stay open).
    stalled: watch::Sender<bool>,
    /// `true` while nothing passes either way and new connections get no further than the
    /// proxy: a network partition that drops packets silently.
    partitioned: watch::Sender<bool>,
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
        let (stalled, gate) = watch::channel(false);
        let (partitioned, wall) = watch::channel(false);
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
                let gate = gate.clone();
                let mut wall = wall.clone();
                tokio::spawn(async move {
                    let connected = async {
                        // During a partition the service is never reached.
                        wall.wait_for(|up| !*up).await.ok()?;
                        TcpStream::connect(target).await.ok()
                    };
                    let upstream = tokio::select! {
                        _ = cut.cancelled() => return,
                        upstream = connected => match upstream {
                            Some(u) => u,
                            None => return,
                        },
                    };
                    let (from_client, to_client) = client.into_split();
                    let (from_upstream, to_upstream) = upstream.into_split();
                    tokio::select! {
                        _ = cut.cancelled() => {}
                        _ = pump(from_client, to_upstream, vec![wall.clone()]) => {}
                        _ = pump(from_upstream, to_client, vec![gate, wall]) => {}
                    }
                });
            }
        });
        Self {
            addr,
            forwarding,
            stalled,
            partitioned,
            stop,
        }
    }

    /// Holds back everything the service sends while still passing on what clients send:
    /// a service that is connected but never answers.
    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }

    /// Passes the service's replies on again (the held-back ones first).
    pub fn unstall(&self) {
        self.stalled.send_replace(false);
    }

    /// Nothing passes either way any more, and new connections never reach the service,
    /// while every connection stays open: packets dropped silently, as in a network
    /// partition (no reset, no close; clients see only silence).
    pub fn partition(&self) {
        self.partitioned.send_replace(true);
    }

    /// Ends the partition: what was held back passes on, as TCP retransmissions would.
    pub fn heal(&self) {
        self.partitioned.send_replace(false);
    }

    /// Cuts every connection and refuses new ones.
    pub fn down(&self) {
        if let Some(cut) = self.forwarding.lock().expect("lock").take() {
            cut.cancel();
        }
    }

    /// Cuts every open connection; new ones are forwarded again.
    pub fn cut(&self) {
        self.down();
        self.up();
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

/// Copies `from` to `to` until either ends; nothing is written while one of `gates` says
/// closed.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut gates: Vec<watch::Receiver<bool>>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        for gate in &mut gates {
            if gate.wait_for(|closed| !*closed).await.is_err() {
                return;
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_proxy_forwards_both_ways_and_stalls_replies() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = echo.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let proxy = Proxy::start(target).await;
        let mut c = TcpStream::connect(proxy.addr).await.unwrap();
        c.write_all(b"hi").await.unwrap();
        let mut buf = [0u8; 2];
        tokio::time::timeout(std::time::Duration::from_secs(2), c.read_exact(&mut buf))
            .await
            .expect("echoed in time")
            .unwrap();
        assert_eq!(&buf, b"hi");
        proxy.stall();
        c.write_all(b"yo").await.unwrap();
        let held = tokio::time::timeout(
            std::time::Duration::from_millis(300),
            c.read_exact(&mut buf),
        )
        .await;
        assert!(held.is_err(), "nothing comes back while stalled");
        proxy.unstall();
        tokio::time::timeout(std::time::Duration::from_secs(2), c.read_exact(&mut buf))
            .await
            .expect("released")
            .unwrap();
        assert_eq!(&buf, b"yo");
    }

    #[tokio::test]
    async fn a_partition_passes_nothing_either_way_until_healed() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = echo.local_addr().unwrap();
        let (received, accepted) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (r, a) = (received.clone(), accepted.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let r = r.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf).await {
                        r.fetch_add(n, Ordering::SeqCst);
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let proxy = Proxy::start(target).await;
        let mut open = TcpStream::connect(proxy.addr).await.unwrap();
        open.write_all(b"a").await.unwrap();
        let mut one = [0u8; 1];
        open.read_exact(&mut one).await.unwrap();
        proxy.partition();
        open.write_all(b"b").await.unwrap();
        let mut fresh = TcpStream::connect(proxy.addr).await.unwrap();
        fresh.write_all(b"c").await.unwrap();
        let wait = std::time::Duration::from_millis(300);
        assert!(
            tokio::time::timeout(wait, open.read_exact(&mut one))
                .await
                .is_err()
        );
        assert!(
            tokio::time::timeout(wait, fresh.read_exact(&mut one))
                .await
                .is_err()
        );
        assert_eq!(
            received.load(Ordering::SeqCst),
            1,
            "nothing reached the service"
        );
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "no new connection reached it"
        );
        proxy.heal();
        let wait = std::time::Duration::from_secs(2);
        tokio::time::timeout(wait, open.read_exact(&mut one))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&one, b"b");
        tokio::time::timeout(wait, fresh.read_exact(&mut one))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&one, b"c");
    }
}
