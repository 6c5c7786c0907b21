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
        Self::start_with(upstream, Some((target, Failure::Answer503))).await
    }

    /// As [`FaultProxy::start_only`], but the failing requests get no answer at all: the
    /// connection stays open and silent (counted in `dropped`).
    pub async fn start_silent_on(upstream: SocketAddr, target: &'static str) -> FaultProxy {
        Self::start_with(upstream, Some((target, Failure::Silence))).await
    }

    async fn start_with(upstream: SocketAddr, only: Option<(&'static str, Failure)>) -> FaultProxy {
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
                    if let Some((target, how)) = only {
                        filtered(client, upstream, target, failing.then_some(how), &s).await;
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

/// How [`FaultProxy::start_only`]'s requests fail.
#[derive(Clone, Copy)]
enum Failure {
    Answer503,
    Silence,
}

/// Reads the request head; a request for `target` while failing gets a 503 (or nothing),
/// anything else is forwarded (head included) and piped.
async fn filtered(
    mut client: TcpStream,
    upstream: SocketAddr,
    target: &str,
    failing: Option<Failure>,
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
    let named = text.contains(&format!("x-amz-target: {}", target.to_ascii_lowercase()));
    if named && matches!(failing, Some(Failure::Silence)) {
        stats.dropped.fetch_add(1, Ordering::Relaxed);
        // Holds the connection open, unanswered, until the client gives up on it.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(600), async {
            while let Ok(n) = client.read(&mut buf).await {
                if n == 0 {
                    return;
                }
            }
        })
        .await;
        return;
    }
    if named && failing.is_some() {
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

/// An SQS-aware proxy in front of moto that makes chosen entries of SendMessageBatch fail the way
/// SQS reports a partial failure: the call succeeds, the entry is listed under `Failed` (and was
/// never given to moto). `refusals(body)` says how many more times an entry with that body is
/// refused. Every other request passes through untouched.
pub struct EntryFaultProxy {
    pub addr: SocketAddr,
    /// Entries refused so far.
    pub refused: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

type Refusals = Arc<std::sync::Mutex<Box<dyn FnMut(&str) -> bool + Send>>>;

impl EntryFaultProxy {
    /// `refuse(body)` is asked once per entry sent; true refuses it this time.
    pub async fn start(
        upstream: SocketAddr,
        refuse: impl FnMut(&str) -> bool + Send + 'static,
    ) -> EntryFaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let refused = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let refuse: Refusals = Arc::new(std::sync::Mutex::new(Box::new(refuse)));
        let (r, st) = (refused.clone(), stop.clone());
        tokio::spawn(async move {
            while !st.load(Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let (r, refuse) = (r.clone(), refuse.clone());
                tokio::spawn(async move {
                    let _ = rewrite(client, upstream, refuse, r).await;
                });
            }
        });
        EntryFaultProxy {
            addr,
            refused,
            stop,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for EntryFaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Reads one HTTP/1.1 message (head and a Content-Length body).
pub(crate) async fn read_message(
    s: &mut TcpStream,
    until_eof: bool,
) -> std::io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length = header(&head, "content-length").and_then(|v| v.parse::<usize>().ok());
    let mut body = buf[head_end..].to_vec();
    loop {
        match length {
            Some(len) if body.len() >= len => break,
            None if !until_eof => break,
            _ => {}
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok((head, body))
}

pub(crate) fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn with_length(head: &str, len: usize) -> String {
    let mut out = String::new();
    for line in head.trim_end().lines() {
        if line
            .split_once(':')
            .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(&format!("Content-Length: {len}\r\n\r\n"));
    out
}

async fn rewrite(
    mut client: TcpStream,
    upstream: SocketAddr,
    refuse: Refusals,
    refused: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    let (head, mut body) = read_message(&mut client, false).await?;
    let batch = header(&head, "x-amz-target").is_some_and(|t| t.ends_with(".SendMessageBatch"));
    let mut failed = Vec::new();
    if batch {
        let mut req: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let entries = req["Entries"].as_array().cloned().unwrap_or_default();
        let mut kept = Vec::new();
        for e in entries {
            let msg = e["MessageBody"].as_str().unwrap_or_default();
            if (refuse.lock().unwrap())(msg) {
                refused.fetch_add(1, Ordering::Relaxed);
                failed.push(serde_json::json!({
                    "Id": e["Id"], "SenderFault": false, "Code": "InternalError",
                    "Message": "injected by EntryFaultProxy"
                }));
            } else {
                kept.push(e);
            }
        }
        if kept.is_empty() {
            // Nothing left to forward (SQS refuses an empty batch): answer alone.
            let out = serde_json::to_vec(&serde_json::json!({"Successful": [], "Failed": failed}))
                .unwrap();
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\n\
                        Connection: close\r\n";
            client
                .write_all(with_length(head, out.len()).as_bytes())
                .await?;
            client.write_all(&out).await?;
            return client.shutdown().await;
        }
        req["Entries"] = serde_json::Value::Array(kept);
        body = serde_json::to_vec(&req).unwrap();
    }
    let mut server = TcpStream::connect(upstream).await?;
    server
        .write_all(with_length(&head, body.len()).as_bytes())
        .await?;
    server.write_all(&body).await?;
    // moto answers with `Connection: close`: the response ends at EOF if not before.
    let (rhead, mut rbody) = read_message(&mut server, true).await?;
    if batch && !failed.is_empty() {
        let mut resp: serde_json::Value = serde_json::from_slice(&rbody).unwrap();
        let list = resp
            .as_object_mut()
            .unwrap()
            .entry("Failed")
            .or_insert(serde_json::Value::Array(Vec::new()));
        list.as_array_mut().unwrap().extend(failed);
        rbody = serde_json::to_vec(&resp).unwrap();
    }
    client
        .write_all(with_length(&rhead, rbody.len()).as_bytes())
        .await?;
    client.write_all(&rbody).await?;
    client.shutdown().await
}
