//! The accounting at the end of a run: every accepted event in the read model exactly once,
//! printed as a table of checks; any failed check fails the run.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use serde_json::Value;

use crate::load::{Accepted, Kind};

/// One line of the table.
pub struct Check {
    pub what: String,
    pub expected: String,
    pub found: String,
    pub ok: bool,
}

impl Check {
    pub fn new(what: &str, expected: impl ToString, found: impl ToString, ok: bool) -> Self {
        Self {
            what: what.into(),
            expected: expected.to_string(),
            found: found.to_string(),
            ok,
        }
    }

    pub fn equal(what: &str, expected: u64, found: u64) -> Self {
        Self::new(what, expected, found, expected == found)
    }
}

pub fn print(checks: &[Check]) {
    println!(
        "\n{:<58} {:>12} {:>12}  result",
        "check", "expected", "found"
    );
    for c in checks {
        let result = if c.ok { "ok" } else { "FAILED" };
        println!(
            "{:<58} {:>12} {:>12}  {result}",
            c.what, c.expected, c.found
        );
    }
}

/// One event of an entity's log, as `/v1/{kind}/{id}/events` shows it.
pub struct Logged {
    pub entity: String,
    pub event_id: String,
    pub ty: String,
    pub data: Value,
}

/// The event type the reminder scheduler publishes, not the load.
pub const REMINDERS_EXHAUSTED: &str =
    "com.enrollstream.application.signature_reminders_exhausted.v1";

/// Reads under way at once: FerretDB takes about a second per read on the loaded two cores, so
/// one at a time would take minutes for a few hundred entities.
pub const READERS: usize = 8;

/// What the read model holds of the accepted events.
pub struct ReadModel {
    pub entities: u64,
    pub accepted_in_log: u64,
    pub duplicates_in_log: u64,
    /// Events in a log the load never saw acknowledged, reminder exhaustions excepted.
    pub unacknowledged_in_log: u64,
    pub version_mismatches: u64,
    pub missing: Vec<String>,
    /// Every logged event of the entities the load touched.
    pub logged: Vec<Logged>,
    /// The read-model state of each application (with its `reminder`), by id.
    pub applications: BTreeMap<String, Value>,
}

/// Reads every entity's event log and state through the API, each once its last accepted event
/// is projected (`?after=`), or until `deadline`.
pub async fn read_model(
    client: &reqwest::Client,
    base: &str,
    accepted: &[Accepted],
    deadline: Duration,
) -> anyhow::Result<ReadModel> {
    let mut by_entity: BTreeMap<(Kind, String), Vec<String>> = BTreeMap::new();
    for a in accepted {
        by_entity
            .entry((a.kind, a.entity.clone()))
            .or_default()
            .push(a.event_id.clone());
    }
    let until = Instant::now() + deadline;
    let mut model = ReadModel {
        entities: by_entity.len() as u64,
        accepted_in_log: 0,
        duplicates_in_log: 0,
        unacknowledged_in_log: 0,
        version_mismatches: 0,
        missing: Vec::new(),
        logged: Vec::new(),
        applications: BTreeMap::new(),
    };
    let reads = futures::stream::iter(by_entity.iter().map(|((kind, id), events)| async move {
        let base_path = format!("{base}/v1/{}/{id}", kind.path());
        let log = log_once_projected(client, &base_path, events, until).await?;
        let state = match log {
            Some(_) => Some(get(client, &base_path).await?),
            None => None,
        };
        anyhow::Ok((*kind, id, events, log, state))
    }))
    .buffer_unordered(READERS)
    .collect::<Vec<_>>()
    .await;
    for read in reads {
        let (kind, id, events, log, state) = read?;
        let (Some(log), Some(state)) = (log, state) else {
            model.missing.extend(events.iter().cloned());
            continue;
        };
        let mut seen: HashMap<&str, u64> = HashMap::new();
        for entry in &log {
            *seen.entry(entry.event_id.as_str()).or_default() += 1;
        }
        model.duplicates_in_log += seen.values().map(|n| n - 1).sum::<u64>();
        let wanted: HashSet<&str> = events.iter().map(String::as_str).collect();
        let ours: HashSet<&str> = log
            .iter()
            .filter(|e| e.ty == REMINDERS_EXHAUSTED)
            .map(|e| e.event_id.as_str())
            .collect();
        model.unacknowledged_in_log += seen
            .keys()
            .filter(|e| !wanted.contains(*e) && !ours.contains(*e))
            .count() as u64;
        for event in events {
            match seen.get(event.as_str()) {
                Some(_) => model.accepted_in_log += 1,
                None => model.missing.push(event.clone()),
            }
        }
        if state["version"].as_u64() != Some(seen.len() as u64) {
            model.version_mismatches += 1;
        }
        if kind == Kind::Application {
            model.applications.insert(id.clone(), state);
        }
        model.logged.extend(log);
    }
    Ok(model)
}

/// The entity's log once every one of `events` is projected; None if that did not happen
/// before `until`.
async fn log_once_projected(
    client: &reqwest::Client,
    base_path: &str,
    events: &[String],
    until: Instant,
) -> anyhow::Result<Option<Vec<Logged>>> {
    let entity = base_path.rsplit('/').next().unwrap_or_default().to_string();
    loop {
        let log = get(client, &format!("{base_path}/events")).await?;
        let entries: Vec<Logged> = log["events"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| {
                        Some(Logged {
                            entity: entity.clone(),
                            event_id: e["event_id"].as_str()?.to_string(),
                            ty: e["type"].as_str()?.to_string(),
                            data: e["data"].clone(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        if events
            .iter()
            .all(|e| entries.iter().any(|l| &l.event_id == e))
        {
            return Ok(Some(entries));
        }
        if Instant::now() > until {
            return Ok(if entries.is_empty() {
                None
            } else {
                Some(entries)
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn get(client: &reqwest::Client, url: &str) -> anyhow::Result<Value> {
    let response = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    Ok(response.json().await.unwrap_or(Value::Null))
}
