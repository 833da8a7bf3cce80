//! The reminder accounting: an application a broker submitted and nobody signed gets exactly the
//! maximum of reminders (then its exhaustion event); a signed one no reminder past the record's
//! attempts (the record stops at the signature), but for the one mail a SIGKILL between a send
//! and its record may cost; any other application none. Mails are counted by Message-ID (one per
//! application and attempt), as they arrived at the SMTP server.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use enrollstream_domain::reminder::message_id;
use enrollstream_testkit::testbed::ReceivedMail;
use futures::StreamExt;
use serde_json::Value;

use crate::accounting::{self, Check, Logged, REMINDERS_EXHAUSTED};
use crate::config::MAX_REMINDERS;

const SUBMITTED: &str = "com.enrollstream.application.submitted.v1";
const SIGNED: &str = "com.enrollstream.application.signature_received.v1";

/// Waits until no application of `ids` is still awaiting a signature with reminders due, or
/// until `until`; how many still were.
pub async fn settle(
    client: &reqwest::Client,
    base: &str,
    ids: &[String],
    until: Instant,
) -> anyhow::Result<usize> {
    let mut pending: Vec<&String> = ids.iter().collect();
    loop {
        let states = futures::stream::iter(pending.iter().map(|id| async move {
            let url = format!("{base}/v1/applications/{id}");
            accounting::get(client, &url)
                .await
                .map(|state| (*id, state))
        }))
        .buffer_unordered(accounting::READERS)
        .collect::<Vec<_>>()
        .await;
        let mut still = Vec::new();
        for read in states {
            let (id, state) = read?;
            if state["reminder"]["status"].as_str() == Some("AWAITING_SIGNATURE") {
                still.push(id);
            }
        }
        if still.is_empty() || Instant::now() > until {
            return Ok(still.len());
        }
        pending = still;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What one application's log says about reminders.
#[derive(Default)]
struct Journey {
    by_broker: bool,
    signed: bool,
    exhausted: bool,
}

pub struct Figures {
    pub mails: usize,
    pub resent: usize,
    /// Signed applications with one mail more than their record counts.
    pub unrecorded: usize,
}

pub fn checks(
    logged: &[Logged],
    applications: &BTreeMap<String, Value>,
    mails: &[ReceivedMail],
) -> (Vec<Check>, Figures) {
    let mut journeys: BTreeMap<&str, Journey> = BTreeMap::new();
    for e in logged
        .iter()
        .filter(|e| applications.contains_key(&e.entity))
    {
        let j = journeys.entry(e.entity.as_str()).or_default();
        match e.ty.as_str() {
            SUBMITTED => j.by_broker = e.data["submitted_by"] == "broker",
            SIGNED => j.signed = true,
            REMINDERS_EXHAUSTED => j.exhausted = true,
            _ => {}
        }
    }
    let mut received: HashMap<String, usize> = HashMap::new();
    for mail in mails {
        let id = mail.message_id().unwrap_or_default().trim().to_string();
        *received.entry(id).or_default() += 1;
    }
    let sent_to = |app: &str| -> u32 {
        (1..=MAX_REMINDERS + 1)
            .filter(|n| received.contains_key(&message_id(app, *n)))
            .count() as u32
    };
    let mut accounted = 0;
    let (mut unsigned, mut unsigned_ok, mut unsigned_exhausted) = (0, 0, 0);
    let (mut signed, mut signed_after) = (0, Vec::new());
    let mut unreminded = 0;
    let mut unrecorded = 0;
    for (app, j) in &journeys {
        let mails = sent_to(app);
        accounted += mails as usize;
        let reminder = &applications[*app]["reminder"];
        let status = reminder["status"].as_str().unwrap_or("none");
        let attempts = reminder["attempts"].as_u64().unwrap_or(0) as u32;
        match (j.by_broker, j.signed) {
            (true, false) => {
                unsigned += 1;
                if mails == MAX_REMINDERS && status == "EXHAUSTED" {
                    unsigned_ok += 1;
                }
                if j.exhausted {
                    unsigned_exhausted += 1;
                }
            }
            (true, true) => {
                signed += 1;
                // One mail the record does not count is the documented cost of a SIGKILL
                // between a send and its record; the signature then stops the record first.
                if mails == attempts + 1 {
                    unrecorded += 1;
                }
                if status != "SIGNED" || mails > attempts + 1 {
                    signed_after.push(format!(
                        "{app}: {mails} mail(s), record {status} after {attempts}"
                    ));
                }
            }
            (false, _) => unreminded += mails,
        }
    }
    if !signed_after.is_empty() {
        let shown: Vec<_> = signed_after.iter().take(10).collect();
        println!("signed applications reminded past their record (first 10): {shown:?}");
    }
    let distinct = received.len();
    let strays = distinct - accounted;
    let resent = received.values().map(|n| n - 1).sum();
    let checks = vec![
        Check::new(
            "broker applications left unsigned",
            "> 0",
            unsigned,
            unsigned > 0,
        ),
        Check::new(
            &format!("  reminded exactly {MAX_REMINDERS} times, record EXHAUSTED"),
            unsigned,
            unsigned_ok,
            unsigned_ok == unsigned,
        ),
        Check::equal(
            "  with their exhaustion event in the log",
            unsigned,
            unsigned_exhausted,
        ),
        Check::new("broker applications signed", "> 0", signed, signed > 0),
        Check::equal(
            "  reminded after the signature (record + 1 unrecorded)",
            0,
            signed_after.len() as u64,
        ),
        Check::equal(
            "reminders to applications no broker submitted",
            0,
            unreminded.into(),
        ),
        Check::equal(
            "reminder mails of no application of the run",
            0,
            strays as u64,
        ),
    ];
    (
        checks,
        Figures {
            mails: distinct,
            resent,
            unrecorded,
        },
    )
}
