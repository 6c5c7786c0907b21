//! A fault-injecting TCP proxy in front of moto: while "failing", every new connection gets
//! either an HTTP 503 or is dropped without an answer, and the connections open when the failure
//! starts are cut mid-stream. Outside the failure, bytes pass through untouched.
//!
//! [`FaultProxy::start_only`] fails one operation instead (by its `X-Amz-Target`, e.g.
//! `AmazonSQS.DeleteMessageBatch`): every such request gets a 503 while failing, the others pass.
//! moto closes each connection after one answer, so each request arrives on its own connection.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Default, Debug)]
pub struct FaultStats {
    pub passed: AtomicUsize,
    pub answered_503: AtomicUsize,
    pub dropped: AtomicUsize,
    pub cut: AtomicUsize,
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    failing: watch::Sender<bool>,
    pub stats: Arc<FaultStats>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    /// Starts on a free loopback port on the current tokio runtime.
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        Self::start_with(upstream, None).await
    }

    /// Fails only the requests whose head names `target` (an `X-Amz-Target` value).
    pub async fn start_only(upstream: SocketAddr, target: &'static str) -> FaultProxy {
        Self::start_with(upstream, Some(target)).await
    }

    async fn start_with(upstream: SocketAddr, only: Option<&'static str>) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (failing, watcher) = watch::channel(false);
        let stats = Arc::new(FaultStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (stats.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0usize;
            while !st.load(Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                n += 1;
                let failing = *watcher.borrow();
                let (s, w) = (s.clone(), watcher.clone());
                tokio::spawn(async move {
                    if let Some(target) = only {
                        filtered(client, upstream, target, failing, &s).await;
                    } else if failing {
                        fail(client, n, &s).await;
                    } else {
                        pass(client, upstream, w, &s).await;
                    }
                });
            }
        });
        FaultProxy {
            addr,
            failing,
            stats,
            stop,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Starts or ends the failure. Starting it cuts every open connection.
    pub fn set_failing(&self, on: bool) {
        let _ = self.failing.send(on);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Odd connections get a 503 after their request head arrives, even ones are dropped unanswered.
async fn fail(mut client: TcpStream, n: usize, stats: &FaultStats) {
    if n % 2 == 1 {
        let mut buf = [0u8; 4096];
        let _ = client.read(&mut buf).await;
        let body =
            "<Error><Code>ServiceUnavailable</Code><Message>injected fault</Message></Error>";
        let response = format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = client.write_all(response.as_bytes()).await;
        stats.answered_503.fetch_add(1, Ordering::Relaxed);
    } else {
        stats.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

async fn pass(
    client: TcpStream,
    upstream: SocketAddr,
    mut failing: watch::Receiver<bool>,
    stats: &FaultStats,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    stats.passed.fetch_add(1, Ordering::Relaxed);
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let copy = async {
        tokio::select! {
            _ = tokio::io::copy(&mut cr, &mut sw) => {}
            _ = tokio::io::copy(&mut sr, &mut cw) => {}
        }
    };
    let cut = async {
        while failing.changed().await.is_ok() {
            if *failing.borrow() {
                return;
            }
        }
        std::future::pending::<()>().await
    };
    tokio::select! {
        _ = copy => {}
        _ = cut => { stats.cut.fetch_add(1, Ordering::Relaxed); }
    }
}

/// Reads the request head; a request for `target` while failing gets a 503, anything else is
/// forwarded (head included) and piped.
async fn filtered(
    mut client: TcpStream,
    upstream: SocketAddr,
    target: &str,
    failing: bool,
    stats: &FaultStats,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match client.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    if failing && text.contains(&format!("x-amz-target: {}", target.to_ascii_lowercase())) {
        let body = "{\"__type\":\"ServiceUnavailable\",\"message\":\"injected fault\"}";
        let response = format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/x-amz-json-1.0\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = client.write_all(response.as_bytes()).await;
        stats.answered_503.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    if server.write_all(&head).await.is_err() {
        return;
    }
    stats.passed.fetch_add(1, Ordering::Relaxed);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}
