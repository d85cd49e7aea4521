//! A local OpenAI-compatible server that misbehaves on purpose, for tests of the remote backend:
//! it drops connections, answers 429 with `Retry-After`, 500, 400, replies too slowly, sends
//! malformed JSON or a body cut short — as a [`FaultPlan`] decides per request — and otherwise
//! answers `<answer>expansion of: {user text}</answer>`. It counts what it answered, so a test can
//! check that every item was generated exactly once.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

/// One way to fail a request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Close the connection without a reply.
    Drop,
    /// 429 with `Retry-After: secs`.
    TooManyRequests { retry_after_s: f32 },
    /// An error status (500, 503; 400 refuses the request itself; 401 the credentials).
    Status(u16),
    /// Wait this long, then reply normally (longer than the client's timeout: a timeout; such a
    /// late reply is not counted as answered).
    Slow(Duration),
    /// 200 with a body that is not JSON.
    MalformedJson,
    /// 200 announcing more bytes than it sends, then closing.
    TruncatedBody,
}

/// The request a plan decides on: the user turn and how many times it was asked so far (1 the
/// first time).
pub struct Asked<'a> {
    pub user_text: &'a str,
    pub attempt: usize,
}

/// Decides each request's fate: `None` answers normally.
pub type FaultPlan = Box<dyn Fn(&Asked<'_>) -> Option<Fault> + Send + Sync>;

/// The reply the server writes for a user turn when it answers.
pub fn expansion_of(user_text: &str) -> String {
    format!("expansion of: {user_text}")
}

#[derive(Default)]
struct Counts {
    /// Per user text: requests received.
    asked: HashMap<String, usize>,
    /// Per user text: normal 200 replies sent.
    answered: HashMap<String, usize>,
}

/// A running fault-injecting server on 127.0.0.1; stops when dropped.
pub struct FaultServer {
    port: u16,
    counts: Arc<Mutex<Counts>>,
    stop: Arc<AtomicBool>,
}

impl FaultServer {
    /// Starts on an ephemeral port (or `port`), one thread per connection.
    pub fn start(plan: FaultPlan) -> std::io::Result<Self> {
        Self::start_on(0, plan)
    }

    pub fn start_on(port: u16, plan: FaultPlan) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let port = listener.local_addr()?.port();
        let counts = Arc::new(Mutex::new(Counts::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let plan = Arc::new(plan);
        {
            let (counts, stop) = (counts.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (counts, plan) = (counts.clone(), plan.clone());
                    std::thread::spawn(move || {
                        let _ = serve_connection(stream, &plan, &counts);
                    });
                }
            });
        }
        Ok(Self { port, counts, stop })
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// Normal replies sent for this user text.
    pub fn answered(&self, user_text: &str) -> usize {
        self.counts.lock().unwrap().answered.get(user_text).copied().unwrap_or(0)
    }

    /// Requests received for this user text.
    pub fn asked(&self, user_text: &str) -> usize {
        self.counts.lock().unwrap().asked.get(user_text).copied().unwrap_or(0)
    }

    /// Normal replies sent in all.
    pub fn total_answered(&self) -> usize {
        self.counts.lock().unwrap().answered.values().sum()
    }

    /// Requests received in all.
    pub fn total_asked(&self) -> usize {
        self.counts.lock().unwrap().asked.values().sum()
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Reads one request per connection (replies close it), answers or fails it.
fn serve_connection(stream: TcpStream, plan: &FaultPlan, counts: &Mutex<Counts>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut content_length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                content_length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; content_length];
    reader.read_exact(&mut body)?;
    let mut out = stream;
    let path = request_line.split_whitespace().nth(1).unwrap_or("");
    if request_line.starts_with("GET") && path.ends_with("/models") {
        return reply(&mut out, 200, &json!({"object": "list", "data": [{"id": "fault-model", "object": "model"}]}).to_string(), None);
    }
    if path.ends_with("/stats") {
        let c = counts.lock().unwrap();
        let stats = json!({
            "asked": c.asked.values().sum::<usize>(),
            "answered": c.answered.values().sum::<usize>(),
            "answered_distinct": c.answered.len(),
            "answered_more_than_once": c.answered.values().filter(|&&n| n > 1).count(),
        });
        return reply(&mut out, 200, &stats.to_string(), None);
    }
    if !path.ends_with("/chat/completions") {
        return reply(&mut out, 404, r#"{"error":"not found"}"#, None);
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return reply(&mut out, 400, r#"{"error":"body is not JSON"}"#, None);
    };
    let user_text = request.pointer("/messages/1/content").and_then(Value::as_str).unwrap_or("").to_string();
    let attempt = {
        let mut c = counts.lock().unwrap();
        let n = c.asked.entry(user_text.clone()).or_default();
        *n += 1;
        *n
    };
    match plan(&Asked { user_text: &user_text, attempt }) {
        Some(Fault::Drop) => Ok(()),
        Some(Fault::TooManyRequests { retry_after_s }) => reply(&mut out, 429, r#"{"error":"slow down"}"#, Some(retry_after_s)),
        Some(Fault::Status(code)) => reply(&mut out, code, &json!({"error": format!("injected status {code}")}).to_string(), None),
        Some(Fault::MalformedJson) => reply(&mut out, 200, r#"{"choices": [{"message": oops"#, None),
        Some(Fault::TruncatedBody) => {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 500\r\nconnection: close\r\n\r\n";
            out.write_all(head.as_bytes())?;
            out.write_all(br#"{"choices": [{"message": {"content": "<answer>half"#)?;
            out.flush()
        }
        Some(Fault::Slow(wait)) => {
            std::thread::sleep(wait);
            reply(&mut out, 200, &completion(&user_text), None)
        }
        None => answer(&mut out, &user_text, counts),
    }
}

fn completion(user_text: &str) -> String {
    json!({
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("<answer>{}</answer>", expansion_of(user_text))}, "finish_reason": "stop"}],
        "usage": {"completion_tokens": 7},
    })
    .to_string()
}

fn answer(out: &mut TcpStream, user_text: &str, counts: &Mutex<Counts>) -> std::io::Result<()> {
    reply(out, 200, &completion(user_text), None)?;
    *counts.lock().unwrap().answered.entry(user_text.to_string()).or_default() += 1;
    Ok(())
}

fn reply(out: &mut TcpStream, status: u16, body: &str, retry_after_s: Option<f32>) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        _ => "Internal Server Error",
    };
    let mut head =
        format!("HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n", body.len());
    if let Some(secs) = retry_after_s {
        head.push_str(&format!("retry-after: {secs}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    out.write_all(body.as_bytes())?;
    out.flush()
}
