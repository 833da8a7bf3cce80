//! Settling after the load: waits until the pipeline is idle, i.e. the outbox is empty and every
//! consumer group has committed every message of its topics (lag zero), twice in a row (a
//! projector that moved between two reads may have filled the outbox again).

use std::time::{Duration, Instant};

use enrollstream_kafka::KafkaBus;
use enrollstream_testkit::testbed::{Kafka, Mongo, Smtp};

use crate::accounting::{self, Check};
use crate::bus;
use crate::fleet::Fleet;
use crate::rss;

const EVENTS: [&str; 2] = ["enrollment-events", "quote-events"];
const NOTIFICATIONS: [&str; 2] = ["enrollment-notifications", "quote-notifications"];

/// Every consumer group of the run and the topics it reads.
fn groups() -> Vec<(&'static str, Vec<String>)> {
    let names = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        ("read-model-service", names(&EVENTS)),
        ("broker-email-service", names(&EVENTS[..1])),
        ("delivery-logic-apps", names(&NOTIFICATIONS)),
        ("delivery-salesforce", names(&NOTIFICATIONS)),
        ("lead-producer-service", names(&NOTIFICATIONS[..1])),
        (
            "lead-integration-service",
            names(&["lead-integration-events"]),
        ),
    ]
}

/// The last reading: the outbox backlog and each group's lag (None when it could not be read).
pub struct Drained {
    pub backlog: Option<u64>,
    pub lags: Vec<(&'static str, Option<i64>)>,
    pub took: Duration,
}

impl Drained {
    fn idle(&self) -> bool {
        self.backlog == Some(0) && self.lags.iter().all(|(_, lag)| *lag == Some(0))
    }

    pub fn checks(&self) -> Vec<Check> {
        let mut checks = vec![Check::equal(
            "outbox backlog after settling",
            0,
            self.backlog.unwrap_or(u64::MAX),
        )];
        for (group, lag) in &self.lags {
            checks.push(Check::new(
                &format!("consumer lag of {group}"),
                0,
                lag.map_or("unread".to_string(), |l| l.to_string()),
                *lag == Some(0),
            ));
        }
        checks
    }
}

pub async fn until_idle(
    client: &reqwest::Client,
    base: &str,
    bus: &KafkaBus,
    sampler: &mut rss::Sampler,
    fleet: &Fleet,
    peers: (&Kafka, &Mongo, &Smtp),
    until: Instant,
) -> Drained {
    let started = Instant::now();
    let mut idle_in_a_row = 0;
    loop {
        fleet.sample(sampler, peers);
        let ready = accounting::get(client, &format!("{base}/readyz"))
            .await
            .ok();
        let backlog = ready.and_then(|r| r["outbox_backlog"].as_u64());
        let mut lags = Vec::new();
        for (group, topics) in groups() {
            lags.push((group, bus::lag(bus, group, &topics).await.ok()));
        }
        let drained = Drained {
            backlog,
            lags,
            took: started.elapsed(),
        };
        idle_in_a_row = if drained.idle() { idle_in_a_row + 1 } else { 0 };
        if idle_in_a_row == 2 || Instant::now() > until {
            return drained;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
