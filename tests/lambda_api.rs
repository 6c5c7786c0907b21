//! A mock Lambda Runtime API (2018-06-01) for driving a `bootstrap` as Lambda would: it hands out
//! queued events on `/runtime/invocation/next` and records what comes back on
//! `/invocation/{id}/response`, `/invocation/{id}/error` and `/init/error`.
//!
//! ```ignore
//! let api = LambdaApi::start(vec![json!({"id": "e1", "detail-type": "Scheduled Event"})]);
//! let mut cmd = Command::new(bootstrap);
//! api.configure(&mut cmd);               // AWS_LAMBDA_RUNTIME_API and the function variables
//! let mut child = cmd.spawn().unwrap();
//! assert!(api.wait_for_results(1, Duration::from_secs(30)));
//! child.kill().unwrap();
//! let response = &api.responses()[0].body;
//! ```
//!
//! Like Lambda, `/next` blocks while no event is queued (`push` adds one), so a healthy runtime
//! never exits by itself: kill it once the results are in. A runtime that fails its init posts to
//! `/init/error` and exits, so `Command::output` is enough there.
//!
//! The small HTTP/1.1 reader and writer here are also used by the scale tests' ECS proxy.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

pub const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:qp-scale";

/// What the runtime sent back for one invocation.
#[derive(Clone, Debug)]
pub struct Posted {
    pub request_id: String,
    /// The JSON body (`{"errorType", "errorMessage"}` for errors); Null if not JSON.
    pub body: Value,
    /// The `Lambda-Runtime-Function-Error-Type` header, if any.
    pub error_type: Option<String>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<(String, Value)>,
    issued: usize,
    next_calls: usize,
    responses: Vec<Posted>,
    errors: Vec<Posted>,
    init_errors: Vec<Posted>,
    closed: bool,
}

pub struct LambdaApi {
    addr: SocketAddr,
    shared: Arc<(Mutex<State>, Condvar)>,
}

impl LambdaApi {
    /// Serves on a free port; `events` are delivered in order with request ids `req-1`, `req-2`...
    pub fn start(events: Vec<Value>) -> LambdaApi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let api = LambdaApi { addr, shared };
        for e in events {
            api.push(e);
        }
        let shared = api.shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &shared);
                });
            }
        });
        api
    }

    /// The value of `AWS_LAMBDA_RUNTIME_API`: `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Sets the variables Lambda gives a custom runtime.
    pub fn configure(&self, cmd: &mut Command) {
        cmd.env("AWS_LAMBDA_RUNTIME_API", self.addr())
            .env("AWS_LAMBDA_FUNCTION_NAME", "qp-scale")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/qp-scale")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "test");
    }

    /// Queues one more event.
    pub fn push(&self, event: Value) {
        let (lock, cv) = &*self.shared;
        let mut s = lock.lock().unwrap();
        let id = format!("req-{}", s.queue.len() + s.issued + 1);
        s.queue.push_back((id, event));
        cv.notify_all();
    }

    pub fn responses(&self) -> Vec<Posted> {
        self.shared.0.lock().unwrap().responses.clone()
    }

    pub fn errors(&self) -> Vec<Posted> {
        self.shared.0.lock().unwrap().errors.clone()
    }

    pub fn init_errors(&self) -> Vec<Posted> {
        self.shared.0.lock().unwrap().init_errors.clone()
    }

    /// How many times the runtime asked for an event.
    pub fn next_calls(&self) -> usize {
        self.shared.0.lock().unwrap().next_calls
    }

    /// Waits until `n` invocations have a response or an error; false on timeout.
    pub fn wait_for_results(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.shared;
        let mut s = lock.lock().unwrap();
        while s.responses.len() + s.errors.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            s = cv.wait_timeout(s, left).unwrap().0;
        }
        true
    }
}

impl Drop for LambdaApi {
    fn drop(&mut self) {
        let (lock, cv) = &*self.shared;
        lock.lock().unwrap().closed = true;
        cv.notify_all();
    }
}

fn serve(stream: TcpStream, shared: &(Mutex<State>, Condvar)) -> io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    while let Some(req) = read_request(&mut reader)? {
        let (lock, cv) = shared;
        let path = req.path.as_str();
        if req.method == "GET" && path == "/2018-06-01/runtime/invocation/next" {
            let mut s = lock.lock().unwrap();
            s.next_calls += 1;
            let (id, event) = loop {
                if s.closed {
                    return Ok(());
                }
                if let Some(e) = s.queue.pop_front() {
                    s.issued += 1;
                    break e;
                }
                s = cv.wait(s).unwrap();
            };
            drop(s);
            let deadline =
                SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + Duration::from_secs(300);
            let deadline = deadline.as_millis().to_string();
            let body = event.to_string();
            write_response(
                &mut writer,
                200,
                &[
                    ("Content-Type", "application/json"),
                    ("Lambda-Runtime-Aws-Request-Id", &id),
                    ("Lambda-Runtime-Deadline-Ms", &deadline),
                    ("Lambda-Runtime-Invoked-Function-Arn", FUNCTION_ARN),
                    (
                        "Lambda-Runtime-Trace-Id",
                        "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1",
                    ),
                ],
                body.as_bytes(),
            )?;
            continue;
        }
        let posted = |request_id: &str| Posted {
            request_id: request_id.to_owned(),
            body: serde_json::from_slice(&req.body).unwrap_or(Value::Null),
            error_type: req
                .header("lambda-runtime-function-error-type")
                .map(str::to_owned),
        };
        let rest = path.strip_prefix("/2018-06-01/runtime/");
        let recorded = match (req.method.as_str(), rest) {
            ("POST", Some("init/error")) => {
                lock.lock().unwrap().init_errors.push(posted(""));
                true
            }
            ("POST", Some(rest)) => match rest
                .strip_prefix("invocation/")
                .and_then(|r| r.split_once('/'))
            {
                Some((id, "response")) => {
                    lock.lock().unwrap().responses.push(posted(id));
                    true
                }
                Some((id, "error")) => {
                    lock.lock().unwrap().errors.push(posted(id));
                    true
                }
                _ => false,
            },
            _ => false,
        };
        cv.notify_all();
        if recorded {
            write_response(
                &mut writer,
                202,
                &[("Content-Type", "application/json")],
                b"{\"status\":\"OK\"}",
            )?;
        } else {
            write_response(&mut writer, 404, &[], b"")?;
        }
        if req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            return Ok(());
        }
    }
    Ok(())
}

/// One HTTP/1.1 request.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one request (Content-Length or chunked body); None at the end of the connection.
pub fn read_request<R: BufRead>(r: &mut R) -> io::Result<Option<Request>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 || line.trim().is_empty() {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let (headers, body) = read_headers_and_body(r)?;
    Ok(Some(Request {
        method,
        path,
        headers,
        body,
    }))
}

/// One HTTP/1.1 response.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    /// Names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Reads one response. Without a length the body runs to the end of the connection.
pub fn read_response<R: BufRead>(r: &mut R) -> io::Result<Response> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line {line:?}")))?;
    let (headers, body) = read_headers_and_body(r)?;
    Ok(Response {
        status,
        headers,
        body,
    })
}

type Headers = Vec<(String, String)>;

fn read_headers_and_body<R: BufRead>(r: &mut R) -> io::Result<(Headers, Vec<u8>)> {
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(io::Error::other)?;
            let mut chunk = vec![0; size + 2];
            r.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(len) = get("content-length") {
        let len: usize = len.parse().map_err(io::Error::other)?;
        body.resize(len, 0);
        r.read_exact(&mut body)?;
    } else if get("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) {
        r.read_to_end(&mut body)?;
    }
    Ok((headers, body))
}

/// Writes a response with a Content-Length (the connection stays open).
pub fn write_response<W: Write>(
    w: &mut W,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    w.write_all(head.as_bytes())?;
    w.write_all(body)?;
    w.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        404 => "Not Found",
        _ => "Status",
    }
}
