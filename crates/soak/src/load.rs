//! The load: quotes (created, then repriced) and applications (started, submitted by a broker
//! or a member, some signed), each request recorded when the API accepted it (2xx).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rand::Rng;
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Quote,
    Application,
}

impl Kind {
    pub fn path(self) -> &'static str {
        match self {
            Kind::Quote => "quotes",
            Kind::Application => "applications",
        }
    }
}

/// One event the API accepted.
#[derive(Clone, Debug)]
pub struct Accepted {
    pub kind: Kind,
    pub entity: String,
    pub event_id: String,
}

/// What the load saw, shared by its workers.
#[derive(Default)]
pub struct Tally {
    pub accepted: Mutex<Vec<Accepted>>,
    /// Requests answered with an error status or not answered (the API kept up: these are
    /// commands refused, e.g. while the read model lagged behind a killed projector).
    pub refused: AtomicU64,
    /// Invalid transitions sent on purpose (signing an application never submitted); each must
    /// be refused.
    pub invalid_sent: AtomicU64,
    pub invalid_accepted: AtomicU64,
    budget: AtomicU64,
}

impl Tally {
    pub fn with_budget(events: u64) -> Arc<Self> {
        Arc::new(Self {
            budget: AtomicU64::new(events),
            ..Self::default()
        })
    }

    pub fn accepted_count(&self) -> usize {
        self.accepted.lock().expect("tally").len()
    }

    /// Takes `n` events from the budget; false once it is spent.
    fn take(&self, n: u64) -> bool {
        self.budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(n)
            })
            .is_ok()
    }
}

/// One worker: entity journeys until the budget is spent.
pub async fn worker(client: reqwest::Client, base: String, tally: Arc<Tally>) {
    loop {
        let (quote, poison) = {
            let mut rng = rand::rng();
            (rng.random_bool(0.4), rng.random_bool(0.01))
        };
        if poison {
            invalid_transition(&client, &base, &tally).await;
        }
        let more = if quote {
            quote_journey(&client, &base, &tally).await
        } else {
            application_journey(&client, &base, &tally).await
        };
        if !more {
            return;
        }
    }
}

async fn quote_journey(client: &reqwest::Client, base: &str, tally: &Tally) -> bool {
    if !tally.take(2) {
        return false;
    }
    let body = json!({"customer_id": "C-soak", "product": "dental-basic", "amount_minor": 10_000, "currency": "USD"});
    let Some(id) = send(
        client,
        tally,
        Kind::Quote,
        &format!("{base}/v1/quotes"),
        None,
        body,
    )
    .await
    else {
        return true;
    };
    let url = format!("{base}/v1/quotes/{id}");
    send_patch(client, tally, &id, &url, json!({"amount_minor": 12_000})).await;
    true
}

async fn application_journey(client: &reqwest::Client, base: &str, tally: &Tally) -> bool {
    if !tally.take(3) {
        return false;
    }
    let body = json!({"applicant": {"name": "Jane Doe", "email": "jane@example.com"}, "product": "dental-basic"});
    let url = format!("{base}/v1/applications");
    let Some(id) = send(client, tally, Kind::Application, &url, None, body).await else {
        return true;
    };
    let (broker, sign) = {
        let mut rng = rand::rng();
        (rng.random_bool(0.7), rng.random_bool(0.5))
    };
    let submit = if broker {
        json!({"submitted_by": "broker", "broker": {"id": "B-7", "name": "Acme Brokers", "email": "agent@acme.test"}})
    } else {
        json!({"submitted_by": "member"})
    };
    let url = format!("{base}/v1/applications/{id}/submit");
    if send(client, tally, Kind::Application, &url, Some(&id), submit)
        .await
        .is_none()
        || !sign
    {
        return true;
    }
    let url = format!("{base}/v1/applications/{id}/signature");
    send(
        client,
        tally,
        Kind::Application,
        &url,
        Some(&id),
        json!({"signed_by": "Jane Doe"}),
    )
    .await;
    true
}

/// Signs an application that was never submitted: the API must refuse it.
async fn invalid_transition(client: &reqwest::Client, base: &str, tally: &Tally) {
    let body = json!({"applicant": {"name": "Poison Test", "email": "p@example.com"}, "product": "dental-basic"});
    if !tally.take(1) {
        return;
    }
    let url = format!("{base}/v1/applications");
    let Some(id) = send(client, tally, Kind::Application, &url, None, body).await else {
        return;
    };
    tally.invalid_sent.fetch_add(1, Ordering::SeqCst);
    let url = format!("{base}/v1/applications/{id}/signature");
    let accepted = client
        .post(url)
        .json(&json!({"signed_by": "Poison Test"}))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    if accepted {
        tally.invalid_accepted.fetch_add(1, Ordering::SeqCst);
    }
}

/// Posts `body`; on 2xx records the event and returns the entity id.
async fn send(
    client: &reqwest::Client,
    tally: &Tally,
    kind: Kind,
    url: &str,
    entity: Option<&str>,
    body: Value,
) -> Option<String> {
    let response = client.post(url).json(&body).send().await;
    record(tally, kind, entity, response).await
}

async fn send_patch(client: &reqwest::Client, tally: &Tally, id: &str, url: &str, body: Value) {
    let response = client.patch(url).json(&body).send().await;
    record(tally, Kind::Quote, Some(id), response).await;
}

async fn record(
    tally: &Tally,
    kind: Kind,
    entity: Option<&str>,
    response: reqwest::Result<reqwest::Response>,
) -> Option<String> {
    let answer = match response {
        Ok(r) if r.status().is_success() => r.json::<Value>().await.ok(),
        _ => None,
    };
    let id_field = match kind {
        Kind::Quote => "quote_id",
        Kind::Application => "application_id",
    };
    let parsed = answer.and_then(|v| {
        let event = v["event_id"].as_str()?.to_string();
        let id = entity
            .map(str::to_string)
            .or_else(|| v[id_field].as_str().map(str::to_string))?;
        Some((id, event))
    });
    let Some((id, event_id)) = parsed else {
        tally.refused.fetch_add(1, Ordering::SeqCst);
        return None;
    };
    tally.accepted.lock().expect("tally").push(Accepted {
        kind,
        entity: id.clone(),
        event_id,
    });
    Some(id)
}
