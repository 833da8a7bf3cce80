//! The HTTP server under every fake target: hyper on a random port of 127.0.0.1, serving one
//! role (Logic Apps, Salesforce, Lead Management), recording every request and applying the
//! injected faults around the role's own handling.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::faults::{Fault, FaultRule};
use super::ledger::{Applied, Ledger};

/// A request as the fake received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    /// Names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// A query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        form_pairs(&self.query)
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// The body as `application/x-www-form-urlencoded` pairs.
    pub fn form(&self) -> BTreeMap<String, String> {
        form_pairs(&self.body_text()).into_iter().collect()
    }
}

fn form_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

/// A path segment, percent-decoded.
pub(crate) fn decode_path_segment(s: &str) -> String {
    percent_decode(s, false)
}

fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if plus_is_space => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a role answers.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(status: u16, value: serde_json::Value) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: value.to_string().into_bytes(),
        }
    }

    pub fn empty(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
}

/// One downstream system's behaviour: check credentials, apply through the ledger, answer.
pub trait Role: Send + Sync + 'static {
    fn handle(&self, request: &Recorded, ledger: &mut Ledger) -> Reply;
}

struct Shared<R> {
    role: R,
    ledger: Mutex<Ledger>,
    requests: Mutex<Vec<Recorded>>,
    faults: Mutex<Vec<FaultRule>>,
    concurrent: AtomicUsize,
    max_concurrent: AtomicUsize,
}

/// Counts a request as under way until dropped, whichever way the handler ends.
struct Concurrent<'a>(&'a AtomicUsize);

impl<'a> Concurrent<'a> {
    fn enter(counter: &'a AtomicUsize, max: &AtomicUsize) -> Self {
        let now = counter.fetch_add(1, Ordering::SeqCst) + 1;
        max.fetch_max(now, Ordering::SeqCst);
        Self(counter)
    }
}

impl Drop for Concurrent<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A fake target server; stops when dropped.
pub struct Fake<R: Role> {
    base_url: String,
    shared: Arc<Shared<R>>,
    server: tokio::task::JoinHandle<()>,
}

impl<R: Role> Drop for Fake<R> {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The connection is dropped without a response.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for Dropped {}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<R: Role> Fake<R> {
    /// Bind a random port of 127.0.0.1 and serve `role` on the current runtime.
    pub(crate) async fn start(role: R) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("fake target cannot bind 127.0.0.1: {e}"));
        let addr = listener.local_addr().expect("bound address");
        let shared = Arc::new(Shared {
            role,
            ledger: Mutex::default(),
            requests: Mutex::default(),
            faults: Mutex::default(),
            concurrent: AtomicUsize::new(0),
            max_concurrent: AtomicUsize::new(0),
        });
        let server = tokio::spawn(accept(listener, shared.clone()));
        Self {
            base_url: format!("http://{addr}"),
            shared,
            server,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub(crate) fn role(&self) -> &R {
        &self.shared.role
    }

    pub fn inject(&self, rule: FaultRule) {
        lock(&self.shared.faults).push(rule);
    }

    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared.requests).clone()
    }

    pub fn request_count(&self) -> usize {
        lock(&self.shared.requests).len()
    }

    pub fn applied(&self) -> Vec<Applied> {
        lock(&self.shared.ledger).applied().to_vec()
    }

    pub fn applied_count(&self) -> usize {
        lock(&self.shared.ledger).applied().len()
    }

    pub fn times_applied(&self, notification_id: &str) -> usize {
        lock(&self.shared.ledger).times_applied(notification_id)
    }

    pub fn keys_of(&self, notification_id: &str) -> BTreeSet<String> {
        lock(&self.shared.ledger).keys_of(notification_id)
    }

    pub fn duplicates(&self) -> usize {
        lock(&self.shared.ledger).duplicates()
    }

    pub fn versions_by_entity(&self) -> BTreeMap<String, Vec<u64>> {
        lock(&self.shared.ledger).versions_by_entity()
    }

    /// The most requests that were under way at the same time.
    pub fn max_concurrent(&self) -> usize {
        self.shared.max_concurrent.load(Ordering::SeqCst)
    }
}

async fn accept<R: Role>(listener: TcpListener, shared: Arc<Shared<R>>) {
    // Connections live in this set so that dropping the fake ends them too.
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| handle(shared.clone(), request));
            // An error here is a dropped connection, injected or by the client: nothing to do.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle<R: Role>(
    shared: Arc<Shared<R>>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    let _concurrent = Concurrent::enter(&shared.concurrent, &shared.max_concurrent);
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map_err(|_| Dropped)?.to_bytes();
    let recorded = Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    };
    lock(&shared.requests).push(recorded.clone());
    let fault = {
        let mut rules = lock(&shared.faults);
        rules.iter_mut().find(|r| r.matches(&recorded)).map(|r| {
            if let Some(times) = &mut r.times {
                *times -= 1;
            }
            r.fault.clone()
        })
    };
    match &fault {
        Some(Fault::Status {
            status,
            retry_after,
            body,
        }) => {
            let mut reply = Reply {
                status: *status,
                headers: Vec::new(),
                body: body.clone().into_bytes(),
            };
            if let Some(after) = retry_after {
                reply.headers.push(("retry-after".into(), after.clone()));
            }
            return Ok(response(reply));
        }
        Some(Fault::Reset) => return Err(Dropped),
        _ => {}
    }
    let reply = {
        let mut ledger = lock(&shared.ledger);
        shared.role.handle(&recorded, &mut ledger)
    };
    match fault {
        Some(Fault::ResetAfterApply) => Err(Dropped),
        Some(Fault::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            Ok(response(reply))
        }
        Some(Fault::Hold(gate)) => {
            gate.wait().await;
            Ok(response(reply))
        }
        _ => Ok(response(reply)),
    }
}

fn response(reply: Reply) -> Response<Full<Bytes>> {
    let mut builder = Response::builder().status(reply.status);
    for (k, v) in &reply.headers {
        builder = builder.header(k, v);
    }
    builder
        .body(Full::new(Bytes::from(reply.body)))
        .expect("a valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_are_decoded() {
        let r = Recorded {
            method: "POST".into(),
            path: "/".into(),
            query: "a=1&sig=x%2By%3D".into(),
            headers: vec![],
            body: b"grant_type=client_credentials&client_secret=s%26t+u".to_vec(),
        };
        assert_eq!(r.query_param("sig").as_deref(), Some("x+y="));
        assert_eq!(r.form()["client_secret"], "s&t u");
    }
}
