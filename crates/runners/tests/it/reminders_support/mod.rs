//! Shared set-up of the reminder tests: a data directory with the embedded bus and the SQLite
//! reminder store, a real SMTP server (aiosmtpd), a manual clock the test moves, and the
//! reminder consumer running. Waits poll a condition against a deadline; none is a timed
//! assertion.

use chrono::{DateTime, Duration as Hours, Utc};
use enrollstream_domain::events::{
    Applicant, ApplicationStarted, ApplicationSubmitted, Broker, SignatureReceived, Submitter,
    SIGNATURE_REMINDERS_EXHAUSTED,
};
use enrollstream_domain::reminder::Reminder;
use enrollstream_domain::{ApplicationEvent, CloudEvent, DomainEvent};
use enrollstream_mail::{MailConfig, SmtpConfig, SmtpMailer, SmtpTls};
use enrollstream_ports::mailer::{Mailer, ReminderComposer};
use enrollstream_ports::reminders::ReminderStore;
use enrollstream_ports::{
    codec, Clock, EventBus, HealthRegistry, InboundMessage, ManualClock, StartFrom,
    SubscriptionSpec, TopicNames, TopicSpec,
};
use enrollstream_runners::reminders::{
    run_consumer, Progress, ReminderConfig, ReminderConsumer, Scheduler,
};
use enrollstream_sqlite::bus::EmbeddedBus;
use enrollstream_sqlite::reminders::SqliteReminderStore;
use enrollstream_testkit::testbed::Smtp;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Upper bound of every wait; reached only when something is broken.
pub const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(20);

pub fn start_time() -> DateTime<Utc> {
    "2026-05-04T08:00:00Z".parse().unwrap()
}

pub fn config() -> ReminderConfig {
    ReminderConfig {
        // Real-time cap of an idle wait; the manual clock wakes the scheduler on every advance.
        tick: Duration::from_secs(1),
        lease: Duration::from_secs(120),
        batch: 4,
        ..ReminderConfig::default()
    }
}

pub fn interval() -> Hours {
    config().policy().interval
}

pub struct Harness {
    pub dir: TempDir,
    pub bus: Arc<EmbeddedBus>,
    pub store: Arc<SqliteReminderStore>,
    pub clock: ManualClock,
    pub smtp: Smtp,
    pub topics: TopicNames,
    pub health: HealthRegistry,
    pub shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Harness {
    pub async fn start() -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let bus = Arc::new(EmbeddedBus::open(dir.path(), 3).expect("open the embedded bus"));
        let topics = TopicNames::default();
        let specs: Vec<TopicSpec> = [
            topics.enrollment_events.clone(),
            topics.dlq(&topics.enrollment_events),
        ]
        .into_iter()
        .map(|name| TopicSpec {
            name,
            partitions: 3,
            replication: 1,
            retention: None,
        })
        .collect();
        bus.ensure_topics(&specs).await.expect("topics");
        let store =
            Arc::new(SqliteReminderStore::open(dir.path()).expect("open the reminder store"));
        let smtp = Smtp::start().expect("start the SMTP server (aiosmtpd)");
        let mut harness = Harness {
            dir,
            bus,
            store,
            clock: ManualClock::new(start_time()),
            smtp,
            topics,
            health: HealthRegistry::default(),
            shutdown: CancellationToken::new(),
            tasks: Vec::new(),
        };
        let consumer = run_consumer(
            harness.bus.clone(),
            // No projector here: these tests are about the timers; the binary's tests cover
            // the projector's verdicts.
            ReminderConsumer::new(
                harness.store.clone(),
                &config(),
                Arc::new(harness.clock.clone()),
                None,
            ),
            harness.topics.clone(),
            harness.health.clone(),
            harness.shutdown.clone(),
        );
        harness.tasks.push(tokio::spawn(consumer));
        harness
    }

    pub fn smtp_mailer(&self) -> Arc<dyn Mailer> {
        Arc::new(
            SmtpMailer::new(&SmtpConfig {
                host: "127.0.0.1".into(),
                port: self.smtp.port(),
                tls: SmtpTls::None,
                timeout: Duration::from_secs(5),
                ..SmtpConfig::default()
            })
            .expect("SMTP mailer"),
        )
    }

    pub fn composer(&self) -> Arc<dyn ReminderComposer> {
        MailConfig::default().composer().expect("templates")
    }

    /// A scheduler on `store` (a second handle on the same file acts as another process).
    pub fn scheduler(&self, store: Arc<dyn ReminderStore>, mailer: Arc<dyn Mailer>) -> Scheduler {
        Scheduler::new(
            store,
            mailer,
            self.composer(),
            self.bus.clone(),
            &self.topics,
            Arc::new(self.clock.clone()),
            config(),
        )
    }

    /// Start `scheduler`; its progress and its task (abort it to simulate a crash).
    pub fn spawn(&self, scheduler: Scheduler) -> (watch::Receiver<Progress>, JoinHandle<()>) {
        let progress = scheduler.progress();
        let task = tokio::spawn(scheduler.run(self.health.clone(), self.shutdown.clone()));
        (progress, task)
    }

    pub async fn publish(&self, event: ApplicationEvent) -> CloudEvent {
        let envelope = CloudEvent::new(
            &DomainEvent::Application(event),
            "/test",
            self.clock.now(),
            None,
        );
        self.bus
            .publish_to(&self.topics.enrollment_events, &envelope)
            .await;
        envelope
    }

    /// Publish `envelope` as it is (again): what a producer retry or a redelivery looks like.
    pub async fn republish(&self, envelope: &CloudEvent) {
        self.bus
            .publish_to(&self.topics.enrollment_events, envelope)
            .await;
    }

    /// Waits until `count` messages are in the events' dead-letter topic; returns them.
    pub async fn wait_for_dead_letters(&self, count: usize) -> Vec<InboundMessage> {
        let mut sub = self
            .bus
            .subscribe(SubscriptionSpec {
                group: format!("observer-{}", enrollstream_domain::ids::new_id()),
                topics: vec![self.topics.dlq(&self.topics.enrollment_events)],
                start: StartFrom::Earliest,
                client_id: "observer".into(),
            })
            .await
            .expect("observer subscription");
        let started = tokio::time::Instant::now();
        let mut found = Vec::new();
        while found.len() < count {
            assert!(
                started.elapsed() < DEADLINE,
                "{} of {count} dead letters arrived",
                found.len()
            );
            found.extend(sub.poll(100, POLL).await.expect("poll"));
        }
        sub.close().await.expect("close");
        found
    }

    /// Start and submit `app` by a broker (or the member); waits until the consumer saw it.
    pub async fn submit(&self, app: &str, by_broker: bool) {
        self.publish(started(app)).await;
        self.publish(submitted(app, by_broker)).await;
        self.wait_for_reminder(app, "the submission", |r| r.submission.is_some())
            .await;
    }

    pub async fn wait_for_reminder(
        &self,
        app: &str,
        what: &str,
        done: impl Fn(&Reminder) -> bool,
    ) -> Reminder {
        let started = tokio::time::Instant::now();
        loop {
            let current = self.store.get(app).await.expect("read the reminder");
            if let Some(r) = current.as_ref().filter(|r| done(r)) {
                return r.clone();
            }
            assert!(
                started.elapsed() < DEADLINE,
                "reminder of {app} never reached {what}: {current:#?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Move the clock by `by` and wait until every scheduler handled the new moment.
    pub async fn advance(&self, by: Hours, schedulers: &mut [&mut watch::Receiver<Progress>]) {
        self.clock.advance(by);
        let now = self.clock.now();
        for progress in schedulers.iter_mut() {
            settled(progress, now).await;
        }
    }

    /// Message-IDs of every mail received, with how often each came.
    pub fn mail_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for mail in self.smtp.messages() {
            let id = mail
                .message_id()
                .expect("every reminder has a Message-ID")
                .to_string();
            *counts.entry(id).or_insert(0) += 1;
        }
        counts
    }

    /// Every `SignatureRemindersExhausted` on the events topic, as (application id, event id).
    pub async fn exhaustion_events(&self) -> Vec<(String, String)> {
        let mut sub = self
            .bus
            .subscribe(SubscriptionSpec {
                group: format!("observer-{}", enrollstream_domain::ids::new_id()),
                topics: vec![self.topics.enrollment_events.clone()],
                start: StartFrom::Earliest,
                client_id: "observer".into(),
            })
            .await
            .expect("observer subscription");
        let mut found = Vec::new();
        // Everything was published before the schedulers reported the tick: read to the end.
        loop {
            let batch = sub
                .poll(500, Duration::from_millis(500))
                .await
                .expect("poll");
            if batch.is_empty() {
                break;
            }
            for message in batch {
                let event = codec::decode(&message).expect("decodable");
                if event.ty == SIGNATURE_REMINDERS_EXHAUSTED {
                    found.push((event.entity_id().to_string(), event.id.clone()));
                }
            }
        }
        sub.close().await.expect("close");
        found
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            task.await.expect("consumer task");
        }
    }
}

/// Waits until a scheduler handled everything due at `now`.
pub async fn settled(progress: &mut watch::Receiver<Progress>, now: DateTime<Utc>) -> Progress {
    tokio::time::timeout(
        DEADLINE,
        progress.wait_for(|p| p.handled_until.is_some_and(|t| t >= now)),
    )
    .await
    .unwrap_or_else(|_| panic!("the scheduler did not handle {now}"))
    .expect("scheduler alive")
    .clone()
}

trait PublishTo {
    async fn publish_to(&self, topic: &str, envelope: &CloudEvent);
}

impl PublishTo for EmbeddedBus {
    async fn publish_to(&self, topic: &str, envelope: &CloudEvent) {
        use enrollstream_ports::Publisher;
        self.publish(topic, vec![codec::encode(envelope)])
            .await
            .expect("publish");
    }
}

pub fn started(app: &str) -> ApplicationEvent {
    ApplicationEvent::Started(ApplicationStarted {
        application_id: app.into(),
        applicant: Applicant {
            name: "Jane Doe".into(),
            email: "jane@example.com".into(),
        },
        product: "dental-basic".into(),
        quote_id: None,
    })
}

pub fn submitted(app: &str, by_broker: bool) -> ApplicationEvent {
    ApplicationEvent::Submitted(ApplicationSubmitted {
        application_id: app.into(),
        submitter: if by_broker {
            Submitter::Broker {
                broker: Broker {
                    id: "B-1".into(),
                    name: "Acme Brokers".into(),
                    email: "broker@acme.test".into(),
                },
            }
        } else {
            Submitter::Member
        },
    })
}

pub fn signed(app: &str) -> ApplicationEvent {
    ApplicationEvent::SignatureReceived(SignatureReceived {
        application_id: app.into(),
        signed_by: "Jane Doe".into(),
        signed_at: None,
    })
}

/// The Message-ID of reminder `attempt` of `app`.
pub fn mid(app: &str, attempt: u32) -> String {
    enrollstream_domain::reminder::message_id(app, attempt)
}
