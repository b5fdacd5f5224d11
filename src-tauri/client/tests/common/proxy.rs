//! A hostile network between the clients and a real relay process: an HTTP proxy on 127.0.0.1
//! (hyper server, reqwest forwarding) that records every exchange and applies programmable
//! rules: answer with a recorded or forged response, rewrite the relay's answer, drop the
//! request or the answer (connection closed), answer 5xx, send the request to the relay twice,
//! or delay it.
//!
//! The relay is started with `--origin <proxy URL>`, since owner writes are signed over the
//! origin the client uses. Included by `tests/proxy.rs` with `#[path]`, so the other test
//! binaries (and the CLI's, which shares `common/mod.rs`) do not compile it.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use crate::common::{RelayProcess, start_relay_with_origin};

/// One request as the client sent it and the answer the client got (after the rules).
#[derive(Debug, Clone)]
pub struct Exchange {
    /// Position in the log.
    pub id: usize,
    /// HTTP method.
    pub method: String,
    /// Path with query, as sent.
    pub path: String,
    /// Request headers.
    pub req_headers: Vec<(String, String)>,
    /// Request body.
    pub req_body: Vec<u8>,
    /// Status the client got; 0 when the connection was closed without an answer.
    pub status: u16,
    /// Response headers the client got.
    pub headers: Vec<(String, String)>,
    /// Response body the client got.
    pub body: Vec<u8>,
    /// The rule that fired on it, if any.
    pub rule: Option<&'static str>,
    /// A second copy the proxy sent to the relay on its own (rule [`Action::Duplicate`]);
    /// `status` and `body` are then the relay's answer to the copy, which nobody received.
    pub duplicate: bool,
}

impl Exchange {
    /// A response header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A rewrite of a relay answer's body.
pub type BodyEdit = Arc<dyn Fn(&[u8]) -> Vec<u8> + Send + Sync>;

/// What a rule does with a matching request.
#[derive(Clone)]
pub enum Action {
    /// Answer with this response; the relay never sees the request.
    Respond {
        /// Status.
        status: u16,
        /// Headers (e.g. `carekey-manifest-version`).
        headers: Vec<(String, String)>,
        /// Body.
        body: Vec<u8>,
    },
    /// Forward, then replace the relay's (2xx) body by `f(body)`.
    Rewrite(BodyEdit),
    /// Close the connection without forwarding or answering.
    Drop,
    /// Forward (the relay acts on it), then close the connection without answering.
    DropResponse,
    /// Answer with this 5xx status without forwarding.
    Fail(u16),
    /// Forward, answer with the relay's answer, and send the same request (same headers, same
    /// body) to the relay once more after `delay` (synchronously, before answering, when the
    /// delay is zero).
    Duplicate(Duration),
    /// Wait, then forward.
    Delay(Duration),
    /// First send the same request (same headers: the same capability) with this body to the
    /// relay, then forward the original: an injection ahead of a genuine write.
    InjectBefore(Vec<u8>),
}

impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Action::Respond { .. } => "Respond",
            Action::Rewrite(_) => "Rewrite",
            Action::Drop => "Drop",
            Action::DropResponse => "DropResponse",
            Action::Fail(_) => "Fail",
            Action::Duplicate(_) => "Duplicate",
            Action::Delay(_) => "Delay",
            Action::InjectBefore(_) => "InjectBefore",
        };
        f.write_str(s)
    }
}

/// Matches requests by method and path (exactly, or by a fragment of path-and-query) and
/// applies its action to the next `times` of them.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Name (asserted on with [`Proxy::fired`]).
    pub name: &'static str,
    method: &'static str,
    path: String,
    exact: bool,
    action: Action,
    times: usize,
}

impl Rule {
    /// A rule for requests whose path-and-query contains `fragment`, applied every time.
    pub fn new(name: &'static str, method: &'static str, fragment: &str, action: Action) -> Self {
        Self {
            name,
            method,
            path: fragment.to_owned(),
            exact: false,
            action,
            times: usize::MAX,
        }
    }
    /// A rule for requests whose path-and-query is exactly `path`.
    pub fn exact(name: &'static str, method: &'static str, path: &str, action: Action) -> Self {
        Self {
            exact: true,
            ..Self::new(name, method, path, action)
        }
    }
    /// Applies to the next `n` matching requests only.
    pub fn times(mut self, n: usize) -> Self {
        self.times = n;
        self
    }
    fn matches(&self, method: &str, path: &str) -> bool {
        self.times > 0
            && self.method == method
            && if self.exact {
                path == self.path
            } else {
                path.contains(&self.path)
            }
    }
}

/// Answer the proxy replays verbatim: status, headers and body of a recorded exchange.
pub fn replay_of(e: &Exchange) -> Action {
    Action::Respond {
        status: e.status,
        headers: e.headers.clone(),
        body: e.body.clone(),
    }
}

/// A 200 answer with `body` (and no headers of note).
pub fn ok_body(body: Vec<u8>) -> Action {
    Action::Respond {
        status: 200,
        headers: Vec::new(),
        body,
    }
}

struct Shared {
    upstream: String,
    http: reqwest::Client,
    rules: Mutex<Vec<Rule>>,
    log: Mutex<Vec<Exchange>>,
}

/// The proxy; stops when dropped.
pub struct Proxy {
    /// Base URL the clients use (also the relay's origin).
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").field("url", &self.url).finish()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A relay process behind a fresh proxy (the relay's origin is the proxy's URL).
pub async fn start() -> (RelayProcess, Proxy) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("proxy binds");
    let url = format!("http://{}", listener.local_addr().expect("proxy address"));
    let relay = tokio::task::block_in_place(|| start_relay_with_origin(&url));
    let shared = Arc::new(Shared {
        upstream: relay.url.clone(),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(90))
            .build()
            .expect("HTTP client"),
        rules: Mutex::new(Vec::new()),
        log: Mutex::new(Vec::new()),
    });
    let s = shared.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let s = s.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| handle(s.clone(), req));
                // An error here is a connection the proxy closed on purpose (Drop rules).
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (relay, Proxy { url, shared, task })
}

impl Proxy {
    /// Adds a rule (rules are tried in the order they were added; the first match applies).
    pub fn add(&self, rule: Rule) {
        self.shared.rules.lock().expect("rules").push(rule);
    }
    /// Removes every rule: the proxy forwards honestly again.
    pub fn clear(&self) {
        self.shared.rules.lock().expect("rules").clear();
    }
    /// Every exchange so far.
    pub fn log(&self) -> Vec<Exchange> {
        self.shared.log.lock().expect("log").clone()
    }
    /// Length of the log: pass to [`Proxy::since`] to see what one call sent.
    pub fn mark(&self) -> usize {
        self.shared.log.lock().expect("log").len()
    }
    /// Exchanges from log position `mark` on.
    pub fn since(&self, mark: usize) -> Vec<Exchange> {
        self.log().into_iter().skip(mark).collect()
    }
    /// Exchanges the client made (no duplicates) with `method` whose path contains `fragment`
    /// and that the relay answered with 2xx.
    pub fn find(&self, method: &str, fragment: &str) -> Vec<Exchange> {
        self.log()
            .into_iter()
            .filter(|e| {
                !e.duplicate
                    && e.method == method
                    && e.path.contains(fragment)
                    && (200..300).contains(&e.status)
            })
            .collect()
    }
    /// How many times the rule `name` fired (duplicates the proxy sent not counted).
    pub fn fired(&self, name: &str) -> usize {
        self.log()
            .iter()
            .filter(|e| !e.duplicate && e.rule == Some(name))
            .count()
    }
    /// The relay's answers to the copies rule `name` sent on its own.
    pub fn duplicates(&self, name: &str) -> Vec<Exchange> {
        self.log()
            .into_iter()
            .filter(|e| e.duplicate && e.rule == Some(name))
            .collect()
    }
}

type Answer = Result<Response<Full<Bytes>>, std::io::Error>;

struct Upstream {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

const HOP: [&str; 5] = [
    "host",
    "content-length",
    "connection",
    "transfer-encoding",
    "keep-alive",
];

async fn forward(
    s: &Shared,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Upstream {
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut rb = s.http.request(m, format!("{}{}", s.upstream, path));
    for (k, v) in headers {
        if !HOP.contains(&k.as_str()) {
            rb = rb.header(k, v);
        }
    }
    match rb.body(body.to_vec()).send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let headers = r
                .headers()
                .iter()
                .filter(|(k, _)| !HOP.contains(&k.as_str()))
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
                .collect();
            let body = r.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
            Upstream {
                status,
                headers,
                body,
            }
        }
        Err(_) => Upstream {
            status: 502,
            headers: Vec::new(),
            body: Vec::new(),
        },
    }
}

fn respond(status: u16, headers: &[(String, String)], body: &[u8]) -> Answer {
    let mut b = Response::builder().status(status);
    for (k, v) in headers {
        if !HOP.contains(&k.to_ascii_lowercase().as_str()) {
            b = b.header(k, v);
        }
    }
    b.body(Full::new(Bytes::from(body.to_vec())))
        .map_err(std::io::Error::other)
}

fn dropped() -> Answer {
    Err(std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "dropped by a proxy rule",
    ))
}

async fn handle(s: Arc<Shared>, req: Request<Incoming>) -> Answer {
    let method = req.method().as_str().to_owned();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let req_headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
        .collect();
    let req_body = req
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes()
        .to_vec();
    let rule = {
        let mut rules = s.rules.lock().expect("rules");
        rules
            .iter_mut()
            .find(|r| r.matches(&method, &path))
            .map(|r| {
                r.times -= 1;
                (r.name, r.action.clone())
            })
    };
    let mut ex = Exchange {
        id: 0,
        method: method.clone(),
        path: path.clone(),
        req_headers: req_headers.clone(),
        req_body: req_body.clone(),
        status: 0,
        headers: Vec::new(),
        body: Vec::new(),
        rule: rule.as_ref().map(|(n, _)| *n),
        duplicate: false,
    };
    let mut close = false;
    let mut dup_later = None;
    let up = match rule.map(|(_, a)| a) {
        None => Some(forward(&s, &method, &path, &req_headers, &req_body).await),
        Some(Action::Respond {
            status,
            headers,
            body,
        }) => Some(Upstream {
            status,
            headers,
            body,
        }),
        Some(Action::Rewrite(f)) => {
            let mut u = forward(&s, &method, &path, &req_headers, &req_body).await;
            if (200..300).contains(&u.status) {
                u.body = f(&u.body);
            }
            Some(u)
        }
        Some(Action::Drop) => None,
        Some(Action::DropResponse) => {
            let u = forward(&s, &method, &path, &req_headers, &req_body).await;
            // Logged as the relay answered; the client never sees it.
            ex.headers = u.headers;
            ex.body = u.body;
            ex.status = 0;
            close = true;
            None
        }
        Some(Action::Fail(code)) => Some(Upstream {
            status: code,
            headers: vec![("content-type".into(), "application/json".into())],
            body: br#"{"error":"internal","message":"internal error"}"#.to_vec(),
        }),
        Some(Action::Duplicate(delay)) => {
            let u = forward(&s, &method, &path, &req_headers, &req_body).await;
            if delay.is_zero() {
                let d = forward(&s, &method, &path, &req_headers, &req_body).await;
                record_duplicate(&s, &ex, d);
            } else {
                dup_later = Some(delay);
            }
            Some(u)
        }
        Some(Action::Delay(d)) => {
            tokio::time::sleep(d).await;
            Some(forward(&s, &method, &path, &req_headers, &req_body).await)
        }
        Some(Action::InjectBefore(body)) => {
            let i = forward(&s, &method, &path, &req_headers, &body).await;
            let mut injected = ex.clone();
            injected.req_body = body;
            record_duplicate(&s, &injected, i);
            Some(forward(&s, &method, &path, &req_headers, &req_body).await)
        }
    };
    if let Some(u) = &up {
        ex.status = u.status;
        ex.headers = u.headers.clone();
        ex.body = u.body.clone();
    }
    if let Some(delay) = dup_later {
        let (s2, ex2) = (s.clone(), ex.clone());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let d = forward(&s2, &ex2.method, &ex2.path, &ex2.req_headers, &ex2.req_body).await;
            record_duplicate(&s2, &ex2, d);
        });
    }
    {
        let mut log = s.log.lock().expect("log");
        ex.id = log.len();
        log.push(ex);
    }
    match up {
        Some(u) if !close => respond(u.status, &u.headers, &u.body),
        _ => dropped(),
    }
}

fn record_duplicate(s: &Shared, original: &Exchange, d: Upstream) {
    let mut log = s.log.lock().expect("log");
    let mut e = original.clone();
    e.id = log.len();
    e.status = d.status;
    e.headers = d.headers;
    e.body = d.body;
    e.duplicate = true;
    log.push(e);
}
