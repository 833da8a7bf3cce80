//! The notification path on Apache Kafka, every role a real `enrollstream` process: a front
//! process (api, projector, relay on the SQLite store in its data directory), delivery processes
//! (`--role deliveries`: Logic Apps and Salesforce) and a leads process (`--role leads`), all on
//! one broker, with the targets played by HTTP servers on 127.0.0.1 that apply each
//! notification once per idempotency key. The delivery and leads roles need nothing but the bus:
//! their data directories hold an unused embedded store.
//!
//! Shown here: consumer groups shared by two delivery processes (rebalances as members crash,
//! leave and join), per-key lanes (a held call stalls only its entity), commits that never pass
//! unfinished work (a SIGKILLed process loses nothing), per-target dead letters, and a broker
//! restart in the middle of a run.

use crate::support;

use enrollstream_domain::routing::{RoutingRules, LEAD_MANAGEMENT, LOGIC_APPS, SALESFORCE};
use enrollstream_kafka::{KafkaBus, KafkaConfig};
use enrollstream_ports::EventBus;
use enrollstream_testkit::targets::{
    Fake, Fault, FaultRule, Gate, LeadManagement, LogicApps, Role, Salesforce,
};
use enrollstream_testkit::testbed::Kafka;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::load::{Accepted, Load};
use support::{eventually, read_until, TestApp};

const ENROLLMENT_NOTIFICATIONS: &str = "enrollment-notifications";
const QUOTE_NOTIFICATIONS: &str = "quote-notifications";
const NOTIFICATION_TOPICS: [&str; 2] = [ENROLLMENT_NOTIFICATIONS, QUOTE_NOTIFICATIONS];
const LEAD_EVENTS: &str = "lead-integration-events";
/// Applications of this applicant are refused by Logic Apps (400): dead-lettered for Logic Apps
/// only, delivered to the other targets.
const REFUSED_APPLICANT: &str = "Refused By Logic Apps";

struct Targets {
    logic_apps: Fake<LogicApps>,
    salesforce: Fake<Salesforce>,
    leads: Fake<LeadManagement>,
}

impl Targets {
    async fn start() -> Self {
        Self {
            logic_apps: Fake::logic_apps("trigger-sig", None).await,
            salesforce: Fake::salesforce("client-id", "client-secret").await,
            leads: Fake::lead_management("lead-api-key").await,
        }
    }

    /// Each target applied what `expected` routes to it, once each and in order; Logic Apps
    /// what `logic_apps` says (the expected less what it refused).
    async fn each_applied_once(
        &self,
        expected: &BTreeMap<String, BTreeSet<String>>,
        logic_apps: &BTreeSet<String>,
    ) {
        applied_once(&self.logic_apps, logic_apps, "Logic Apps").await;
        applied_once(&self.salesforce, &expected[SALESFORCE], "Salesforce").await;
        applied_once(&self.leads, &expected[LEAD_MANAGEMENT], "Lead Management").await;
    }
}

/// One process's configuration file. Sessions of 6 s (Kafka's default is 45 s, ours 10 s) keep
/// the wait for a SIGKILLed member short; `instance` makes the process a static member.
fn config_file(dir: &Path, kafka: &Kafka, targets: &Targets, instance: Option<&str>) -> PathBuf {
    let instance = instance
        .map(|i| format!("instance_id = \"{i}\"\n"))
        .unwrap_or_default();
    let text = format!(
        r#"[kafka]
brokers = "{brokers}"
session_timeout_ms = 6000
{instance}
[deliveries.logic_apps.target]
url = "{logic_apps}"
# Held calls stay open until the process holding them is killed.
http = {{ timeout = "120s" }}

[deliveries.salesforce.target]
login_url = "{salesforce}"
client_id = "client-id"
client_secret = "client-secret"

[deliveries.lead_management.target]
endpoint = "{leads}"
api_key = "lead-api-key"
"#,
        brokers = kafka.bootstrap(),
        logic_apps = targets.logic_apps.trigger_url(),
        salesforce = targets.salesforce.base_url(),
        leads = targets.leads.endpoint(),
    );
    let path = dir.join("enrollstream.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A process running `roles` with its own data directory and configuration file.
struct Proc {
    dir: tempfile::TempDir,
    config: PathBuf,
    roles: Vec<&'static str>,
    app: TestApp,
}

impl Proc {
    fn start(
        kafka: &Kafka,
        targets: &Targets,
        roles: &[&'static str],
        instance: Option<&str>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = config_file(dir.path(), kafka, targets, instance);
        let app = Self::spawn(dir.path(), &config, roles);
        Self {
            dir,
            config,
            roles: roles.to_vec(),
            app,
        }
    }

    fn spawn(dir: &Path, config: &Path, roles: &[&str]) -> TestApp {
        let mut args = vec!["--config", config.to_str().unwrap()];
        args.extend(roles.iter().flat_map(|r| ["--role", r]));
        TestApp::spawn(&dir.join("data"), &args)
    }

    /// SIGKILL, then the same process again (same data directory and configuration).
    fn crash_and_restart(&mut self) {
        self.app.kill9();
        self.app = Self::spawn(self.dir.path(), &self.config, &self.roles);
    }

    /// SIGTERM (the process leaves its groups), then the same process again.
    fn stop_and_restart(&mut self) {
        self.app.stop();
        self.app = Self::spawn(self.dir.path(), &self.config, &self.roles);
    }
}

fn bus(kafka: &Kafka) -> KafkaBus {
    KafkaBus::new(KafkaConfig {
        brokers: kafka.bootstrap(),
        ..KafkaConfig::default()
    })
    .unwrap()
}

/// Every accepted event is in its entity's log exactly once, and no log holds an event twice.
/// Returns every logged event: what the notifications were made of.
async fn projected_once(front: &TestApp, accepted: &[Accepted]) -> Vec<Logged> {
    for a in accepted {
        eventually(
            &format!("event {} of {} in the read model", a.event_id, a.path),
            Duration::from_secs(120),
            || async {
                let (status, _) = front
                    .get_json(&format!("{}?after={}&wait_ms=10000", a.path, a.event_id))
                    .await;
                (status == 200).then_some(())
            },
        )
        .await;
    }
    let entities: BTreeSet<&str> = accepted.iter().map(|a| a.path.as_str()).collect();
    let mut logged = Vec::new();
    for path in entities {
        let (status, log) = front.get_json(&format!("{path}/events")).await;
        assert_eq!(status, 200, "{path}/events: {log}");
        let events: Vec<Logged> = log["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let field = |name: &str| e[name].as_str().unwrap().to_string();
                Logged {
                    path: path.to_string(),
                    event_id: field("event_id"),
                    ty: field("type"),
                }
            })
            .collect();
        let ids: HashSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids.len(), events.len(), "an event twice in {path}: {log}");
        for a in accepted.iter().filter(|a| a.path == path) {
            assert!(
                ids.contains(a.event_id.as_str()),
                "{} missing from {path}",
                a.event_id
            );
        }
        logged.extend(events);
    }
    logged
}

/// An event in the read model.
struct Logged {
    path: String,
    event_id: String,
    ty: String,
}

/// The notification ids each target must receive, per the default routing rules.
fn notifications_per_target<'a>(
    events: impl IntoIterator<Item = &'a Logged>,
) -> BTreeMap<String, BTreeSet<String>> {
    let rules = RoutingRules::default();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in events {
        for (topic, route) in rules.routes(&e.ty) {
            let id = enrollstream_domain::ids::derived_id(&["notification", &e.event_id, &topic]);
            for target in route.targets {
                out.entry(target).or_default().insert(id.clone());
            }
        }
    }
    out
}

/// Wait until `fake` applied every one of `expected`, then check: each exactly once, nothing
/// else, and each entity's notifications in version order.
async fn applied_once<R: Role>(fake: &Fake<R>, expected: &BTreeSet<String>, what: &str) {
    eventually(
        &format!("{} notification(s) applied at {what}", expected.len()),
        Duration::from_secs(120),
        || async {
            expected
                .iter()
                .all(|id| fake.times_applied(id) > 0)
                .then_some(())
        },
    )
    .await;
    for id in expected {
        assert_eq!(
            fake.times_applied(id),
            1,
            "{what}: {id} applied more than once"
        );
        assert_eq!(
            fake.keys_of(id).len(),
            1,
            "{what}: {id} sent under two keys"
        );
    }
    assert_eq!(
        fake.applied_count(),
        expected.len(),
        "{what}: applied something else"
    );
    for (entity, versions) in fake.versions_by_entity() {
        assert!(
            versions.windows(2).all(|w| w[0] < w[1]),
            "{what}: {entity} applied out of order: {versions:?}"
        );
    }
}

/// How many messages `topics` hold, summed (every topic must exist).
fn messages_on(kafka: &Kafka, topics: &[&str]) -> i64 {
    let config = KafkaConfig {
        brokers: kafka.bootstrap(),
        ..KafkaConfig::default()
    };
    let counts = enrollstream_kafka::throughput::messages_on(&config, Some(topics)).unwrap();
    assert_eq!(counts.len(), topics.len(), "every topic exists: {counts:?}");
    counts.iter().map(|(_, n)| n).sum()
}

/// Every delivery and lead group has committed all it read: commits never stay behind finished
/// work for good.
async fn every_group_committed(kafka: &Kafka, bus: &KafkaBus) {
    for group in [
        "delivery-logic-apps",
        "delivery-salesforce",
        "lead-producer-service",
    ] {
        all_committed(kafka, bus, group, &NOTIFICATION_TOPICS).await;
    }
    all_committed(kafka, bus, "lead-integration-service", &[LEAD_EVENTS]).await;
}

/// The group has committed everything on `topics`: its positions add up to the topics' sizes.
async fn all_committed(kafka: &Kafka, bus: &KafkaBus, group: &str, topics: &[&str]) {
    let size = messages_on(kafka, topics);
    let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
    eventually(
        &format!("{group} to commit all {size} message(s) of {topics:?}"),
        Duration::from_secs(60),
        || async {
            let committed = bus.committed(group, &topics).await.unwrap();
            (committed.iter().map(|c| c.next_offset).sum::<i64>() == size).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delivery_processes_crash_leave_and_join_and_each_target_applies_everything_once() {
    let kafka = Kafka::start().expect("the Kafka broker starts (bash scripts/testbed/install.sh)");
    let targets = Targets::start().await;
    // The first call to Logic Apps for the load's applicants is applied and then held
    // unanswered: its entity's lane waits, its partition cannot commit past it, and the process
    // holding it is killed.
    let gate = Gate::new();
    targets.logic_apps.inject(FaultRule::next_for(
        "Jane Doe",
        1,
        Fault::Hold(gate.clone()),
    ));
    targets
        .logic_apps
        .inject(FaultRule::always_for(REFUSED_APPLICANT, Fault::status(400)));

    let front = Proc::start(&kafka, &targets, &["api", "projector", "relay"], None);
    // `a` is a static member: restarted after its crash it takes its place in the groups back
    // at once. `b` (started later) is dynamic and leaves its groups when stopped.
    let mut a = Proc::start(&kafka, &targets, &["deliveries"], Some("delivery-a"));
    let mut leads = Proc::start(&kafka, &targets, &["leads"], None);

    // The refused application: three notifications, each dead-lettered for Logic Apps alone.
    let refused = refused_application(&front.app).await;
    let mut accepted = refused.clone();

    let load = Load::start(&front.app.base_url, &front.app.key, 3);
    eventually(
        "the held call applied while other entities' lanes go on",
        Duration::from_secs(120),
        || async { (targets.logic_apps.applied_count() >= 10).then_some(()) },
    )
    .await;
    a.crash_and_restart();
    leads.crash_and_restart();
    gate.open();
    load.accept_more(30).await;
    // A second delivery process joins both delivery groups: the partitions are split.
    let mut b = Proc::start(&kafka, &targets, &["deliveries"], None);
    load.accept_more(30).await;
    // b leaves gracefully and comes back; a crashes again while b is away.
    b.stop_and_restart();
    load.accept_more(20).await;
    a.crash_and_restart();
    load.accept_more(20).await;
    accepted.extend(load.stop().await);

    let events = projected_once(&front.app, &accepted).await;
    let expected = notifications_per_target(&events);
    let refused_path = &refused[0].path;
    let dead_lettered = notifications_per_target(events.iter().filter(|e| e.path == *refused_path))
        .remove(LOGIC_APPS)
        .unwrap();
    assert_eq!(dead_lettered.len(), 3);
    let for_logic_apps: BTreeSet<String> = expected[LOGIC_APPS]
        .difference(&dead_lettered)
        .cloned()
        .collect();

    targets.each_applied_once(&expected, &for_logic_apps).await;
    assert!(
        targets.logic_apps.duplicates() >= 1,
        "the call held at the crash was sent again (with its key) and recognised"
    );

    // Dead letters per target: Logic Apps' refusals in its own topic, nothing in the others'.
    let bus = bus(&kafka);
    let logic_apps_dlq = format!("{ENROLLMENT_NOTIFICATIONS}.logic-apps.dlq");
    // At least once there too: a dead letter written just before a crash is written again.
    let on_topic = messages_on(&kafka, &[&logic_apps_dlq]) as usize;
    let read = read_until(&bus, &[&logic_apps_dlq], Duration::from_secs(60), |read| {
        read.len() >= on_topic
    })
    .await;
    let ids: BTreeSet<String> = read
        .iter()
        .map(|m| {
            m.header("ce_id")
                .expect("a dead letter keeps its ce_id")
                .to_string()
        })
        .collect();
    assert_eq!(ids, dead_lettered, "exactly the refused notifications");
    let clean = [
        format!("{ENROLLMENT_NOTIFICATIONS}.salesforce.dlq"),
        format!("{QUOTE_NOTIFICATIONS}.salesforce.dlq"),
        format!("{QUOTE_NOTIFICATIONS}.logic-apps.dlq"),
        format!("{LEAD_EVENTS}.lead-management.dlq"),
    ];
    let clean: Vec<&str> = clean.iter().map(String::as_str).collect();
    assert_eq!(messages_on(&kafka, &clean), 0, "no other dead letters");

    every_group_committed(&kafka, &bus).await;

    for mut p in [a, b, leads, front] {
        p.app.stop();
    }
}

/// An application of the applicant Logic Apps refuses, taken through submit and signature.
async fn refused_application(front: &TestApp) -> Vec<Accepted> {
    let started = front
        .post(
            "/v1/applications",
            serde_json::json!({"applicant": {"name": REFUSED_APPLICANT, "email": "refused@example.com"}, "product": "dental-basic"}),
        )
        .await;
    assert_eq!(started.status(), 202);
    let started: serde_json::Value = started.json().await.unwrap();
    let path = format!(
        "/v1/applications/{}",
        started["application_id"].as_str().unwrap()
    );
    let mut accepted = vec![Accepted {
        path: path.clone(),
        event_id: started["event_id"].as_str().unwrap().to_string(),
    }];
    let steps = [
        ("submit", serde_json::json!({"submitted_by": "member"})),
        (
            "signature",
            serde_json::json!({"signed_by": REFUSED_APPLICANT}),
        ),
    ];
    for (step, body) in steps {
        let r = front.post(&format!("{path}/{step}"), body).await;
        assert_eq!(r.status(), 202, "{step}");
        let v: serde_json::Value = r.json().await.unwrap();
        accepted.push(Accepted {
            path: path.clone(),
            event_id: v["event_id"].as_str().unwrap().to_string(),
        });
    }
    accepted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_restart_mid_run_loses_no_event_and_no_notification() {
    let mut kafka =
        Kafka::start().expect("the Kafka broker starts (bash scripts/testbed/install.sh)");
    let targets = Targets::start().await;
    let front = Proc::start(&kafka, &targets, &["api", "projector", "relay"], None);
    let deliveries = Proc::start(&kafka, &targets, &["deliveries"], None);
    let leads = Proc::start(&kafka, &targets, &["leads"], None);

    let load = Load::start(&front.app.base_url, &front.app.key, 3);
    load.accept_more(40).await;
    // SIGKILL and start again on the same port and log directory, while requests come in and
    // every role is consuming and producing.
    tokio::task::block_in_place(|| kafka.restart()).expect("the broker starts again");
    load.accept_more(40).await;
    let failed = load.failed();
    let accepted = load.stop().await;
    eprintln!(
        "{} event(s) accepted, {failed} request(s) refused or failed around the restart",
        accepted.len()
    );

    let events = projected_once(&front.app, &accepted).await;
    eventually("the outbox to drain", Duration::from_secs(60), || async {
        let (_, ready) = front.app.get_json("/readyz").await;
        (ready["outbox_backlog"] == 0).then_some(())
    })
    .await;
    let expected = notifications_per_target(&events);
    targets
        .each_applied_once(&expected, &expected[LOGIC_APPS])
        .await;

    let bus = bus(&kafka);
    every_group_committed(&kafka, &bus).await;
    for mut p in [deliveries, leads, front] {
        p.app.stop();
    }
}
