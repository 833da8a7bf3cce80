//! A stream of requests from a few concurrent API clients, recording what the API accepted:
//! quotes, and applications taken through start, submit (by a broker) and signature. A request
//! that is refused or fails (a peer restarting under the API) is counted and its journey given
//! up; the next journey starts after a short pause. A request whose answer was lost may still
//! have been accepted, so checks hold the read model to "every accepted event once", not to
//! "only the accepted ones".

use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

use super::eventually;

/// An event the API answered 202 for: the entity's path and the event's id.
#[derive(Clone, Debug)]
pub struct Accepted {
    pub path: String,
    pub event_id: String,
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    accepted: Mutex<Vec<Accepted>>,
    failed: AtomicUsize,
}

pub struct Load {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl Load {
    /// `workers` clients against the API at `base_url`, each sending `key`, until [`Load::stop`].
    pub fn start(base_url: &str, key: &str, workers: usize) -> Self {
        let shared = Arc::new(Shared::default());
        let workers = (0..workers)
            .map(|w| {
                tokio::spawn(work(
                    base_url.to_string(),
                    key.to_string(),
                    shared.clone(),
                    w,
                ))
            })
            .collect();
        Self { shared, workers }
    }

    pub fn accepted(&self) -> usize {
        self.shared.accepted.lock().unwrap().len()
    }

    /// Requests refused or failed so far.
    pub fn failed(&self) -> usize {
        self.shared.failed.load(Ordering::Relaxed)
    }

    /// Wait until `more` further events have been accepted.
    pub async fn accept_more(&self, more: usize) {
        let target = self.accepted() + more;
        eventually(
            &format!("{target} events accepted"),
            Duration::from_secs(120),
            || async move { (self.accepted() >= target).then_some(()) },
        )
        .await;
    }

    /// Stop every client and return what was accepted, in order.
    pub async fn stop(self) -> Vec<Accepted> {
        self.shared.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            w.await.expect("a load worker ends cleanly");
        }
        self.shared.accepted.lock().unwrap().clone()
    }
}

async fn work(url: String, key: String, shared: Arc<Shared>, worker: usize) {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {key}")
            .parse()
            .expect("a key is a header value"),
    );
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let post = |path: String, body: serde_json::Value| {
        let (client, shared) = (client.clone(), shared.clone());
        let url = format!("{url}{path}");
        async move {
            let answer = match client.post(url).json(&body).send().await {
                Ok(r) if r.status() == 202 => r.json::<serde_json::Value>().await.ok(),
                _ => None,
            };
            if answer.is_none() {
                shared.failed.fetch_add(1, Ordering::Relaxed);
            }
            answer
        }
    };
    let accept = |path: String, answer: &serde_json::Value| {
        shared.accepted.lock().unwrap().push(Accepted {
            path,
            event_id: answer["event_id"].as_str().unwrap().to_string(),
        });
    };
    for i in 0.. {
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        if (i + worker).is_multiple_of(3) {
            let body = json!({"customer_id": format!("C-{worker}-{i}"), "product": "dental-basic", "amount_minor": 1000 + i, "currency": "USD"});
            match post("/v1/quotes".into(), body).await {
                Some(v) => accept(
                    format!("/v1/quotes/{}", v["quote_id"].as_str().unwrap()),
                    &v,
                ),
                None => pause().await,
            }
            continue;
        }
        let body = json!({"applicant": {"name": "Jane Doe", "email": "jane@example.com"}, "product": "dental-basic"});
        let Some(v) = post("/v1/applications".into(), body).await else {
            pause().await;
            continue;
        };
        let id = v["application_id"].as_str().unwrap().to_string();
        let path = format!("/v1/applications/{id}");
        accept(path.clone(), &v);
        let steps = [
            (
                "submit",
                json!({"submitted_by": "broker", "broker": {"id": "B-1", "name": "Acme", "email": "agent@acme.test"}}),
            ),
            ("signature", json!({"signed_by": "Jane Doe"})),
        ];
        for (step, body) in steps {
            match post(format!("{path}/{step}"), body).await {
                Some(v) => accept(path.clone(), &v),
                None => {
                    pause().await;
                    break;
                }
            }
        }
    }
}

/// After a failure: a peer is restarting, and retrying at once would only add noise.
async fn pause() {
    tokio::time::sleep(Duration::from_millis(200)).await;
}
