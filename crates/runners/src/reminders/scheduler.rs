//! The reminder scheduler: sleeps on the clock port until the next reminder is due (at most
//! `tick` of real time, to notice reminders other processes created), leases what is due,
//! sends, records.
//!
//! Effectively once per attempt: the lease makes one scheduler the sender of an attempt; the
//! record is fenced on that lease and on the attempt number; the Message-ID is derived from
//! application id and attempt. A crash after the send and before the record leaves the lease
//! to run out, then the attempt is sent once more with the same Message-ID (one extra email
//! per crash, which mail systems drop as a duplicate), and the record follows.
//!
//! Exhaustion publishes the `SignatureRemindersExhausted` event with an id derived from the
//! application id before it marks the reminder, so a crash in between publishes the same id
//! again (the projector drops it) instead of losing the announcement.

use chrono::{DateTime, Utc};
use enrollstream_domain::events::SignatureRemindersExhausted;
use enrollstream_domain::ids::{derived_id, new_id};
use enrollstream_domain::reminder::{self, ReminderPolicy, Step};
use enrollstream_domain::{ApplicationEvent, CloudEvent, DomainEvent};
use enrollstream_ports::mailer::{MailError, Mailer, ReminderComposer, ReminderDraft};
use enrollstream_ports::reminders::{ClaimedReminder, Fenced, ReminderStore};
use enrollstream_ports::{codec, Clock, HealthRegistry, Publisher, StoreError, TopicNames};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::ReminderConfig;
use crate::backoff::Backoff;

pub const COMPONENT: &str = "reminder-scheduler";

/// What the scheduler has done so far, published after every tick.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub ticks: u64,
    /// Clock time at the start of the last completed tick: every reminder due by then was
    /// handled (sent, failed and rescheduled, or exhausted).
    pub handled_until: Option<DateTime<Utc>>,
    pub sent: u64,
    pub failed: u64,
    pub exhausted: u64,
}

/// What one tick did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Tally {
    sent: u64,
    failed: u64,
    exhausted: u64,
    last_failure: Option<String>,
}

pub struct Scheduler {
    store: Arc<dyn ReminderStore>,
    mailer: Arc<dyn Mailer>,
    composer: Arc<dyn ReminderComposer>,
    publisher: Arc<dyn Publisher>,
    topic: String,
    clock: Arc<dyn Clock>,
    config: ReminderConfig,
    policy: ReminderPolicy,
    owner: String,
    progress: watch::Sender<Progress>,
}

impl Scheduler {
    /// `publisher` carries the exhaustion events to `topics.enrollment_events`.
    pub fn new(
        store: Arc<dyn ReminderStore>,
        mailer: Arc<dyn Mailer>,
        composer: Arc<dyn ReminderComposer>,
        publisher: Arc<dyn Publisher>,
        topics: &TopicNames,
        clock: Arc<dyn Clock>,
        config: ReminderConfig,
    ) -> Self {
        let (progress, _) = watch::channel(Progress::default());
        Self {
            store,
            mailer,
            composer,
            publisher,
            topic: topics.enrollment_events.clone(),
            clock,
            policy: config.policy(),
            config,
            owner: format!("scheduler-{}", new_id()),
            progress,
        }
    }

    /// The name this scheduler's leases carry (unique per instance by default).
    pub fn with_owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Progress after every tick: for `/readyz` details and for tests that wait for the
    /// scheduler to have handled a moment of the clock.
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// Run until `shutdown`. A store failure pauses with backoff and marks the component not
    /// ready; failed sends do not (the API must not go unready because a mail server is away).
    pub async fn run(self, health: HealthRegistry, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        health.ready(COMPONENT);
        while !shutdown.is_cancelled() {
            let started = self.clock.now();
            match self.tick(started, &shutdown).await {
                Ok(tally) => {
                    backoff.reset();
                    match &tally.last_failure {
                        Some(why) => {
                            health.set(COMPONENT, true, format!("last send failed: {why}"))
                        }
                        None => health.ready(COMPONENT),
                    }
                    self.progress.send_modify(|p| {
                        p.ticks += 1;
                        p.handled_until = Some(started);
                        p.sent += tally.sent;
                        p.failed += tally.failed;
                        p.exhausted += tally.exhausted;
                    });
                }
                Err(e) => {
                    health.set(COMPONENT, false, format!("reminder store: {e}"));
                    tracing::warn!(error = %e, "reminder tick failed, retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff.next_delay()) => continue,
                    }
                }
            }
            let wake = self.next_wake().await;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.clock.sleep_until(wake, self.config.tick) => {}
            }
        }
    }

    /// When to look again: the next due time or lease end, refreshing the backlog gauge.
    async fn next_wake(&self) -> DateTime<Utc> {
        let now = self.clock.now();
        if let Ok(backlog) = self.store.due_backlog(now).await {
            metrics::gauge!("enrollstream_reminders_due_backlog").set(backlog as f64);
        }
        let idle = now + chrono::Duration::from_std(self.config.tick).unwrap_or_default();
        match self.store.next_wake().await {
            Ok(Some(at)) => at.min(idle),
            _ => idle,
        }
    }

    /// Handle everything due at `started`: claim a batch, handle it, until a claim comes back
    /// short.
    async fn tick(
        &self,
        started: DateTime<Utc>,
        shutdown: &CancellationToken,
    ) -> Result<Tally, StoreError> {
        let mut tally = Tally::default();
        let lease = chrono::Duration::from_std(self.config.lease)
            .map_err(|e| StoreError::Fatal(format!("reminders.lease: {e}")))?;
        loop {
            let now = self.clock.now().max(started);
            let claimed = self
                .store
                .claim_due(now, now + lease, &self.owner, self.config.batch)
                .await?;
            let full = claimed.len() >= self.config.batch;
            let mut claimed = claimed.into_iter();
            for claim in claimed.by_ref() {
                if shutdown.is_cancelled() {
                    self.store.release(&claim, now, None, now).await?;
                    break;
                }
                self.handle(&claim, &mut tally).await?;
            }
            // Claims left over by a shutdown go back at once, for another scheduler.
            for claim in claimed {
                self.store.release(&claim, now, None, now).await?;
            }
            if !full || shutdown.is_cancelled() {
                return Ok(tally);
            }
        }
    }

    async fn handle(&self, claim: &ClaimedReminder, tally: &mut Tally) -> Result<(), StoreError> {
        match claim.reminder.next_step(&self.policy) {
            Some(Step::Send { attempt }) => self.send(claim, attempt, tally).await,
            Some(Step::Exhaust) => self.exhaust(claim, tally).await,
            // Stopped between the claim's read and now: nothing to do, let it go.
            None => {
                let now = self.clock.now();
                self.store.release(claim, now, None, now).await.map(drop)
            }
        }
    }

    fn retry_at(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + chrono::Duration::from_std(self.config.tick).unwrap_or_default()
    }

    async fn send(
        &self,
        claim: &ClaimedReminder,
        attempt: u32,
        tally: &mut Tally,
    ) -> Result<(), StoreError> {
        let application_id = &claim.reminder.application_id;
        let now = self.clock.now();
        let deadline = self.config.send_deadline();
        let deadline_chrono = chrono::Duration::from_std(deadline).unwrap_or_default();
        if now + deadline_chrono > claim.lease_until {
            // Too little lease left to finish the send before another scheduler may take it.
            self.store.release(claim, now, None, now).await?;
            return Ok(());
        }
        let message_id = reminder::message_id(application_id, attempt);
        let draft = ReminderDraft {
            reminder: &claim.reminder,
            attempt,
            max_attempts: self.policy.max_attempts,
            message_id: &message_id,
            date: now,
        };
        let email = match self.composer.compose(&draft) {
            Ok(email) => email,
            Err(why) => {
                tracing::error!(%application_id, attempt, error = %why, "cannot compose the reminder");
                return self.failed(claim, "compose", why, tally).await;
            }
        };
        let result = match tokio::time::timeout(deadline, self.mailer.send(&email)).await {
            Ok(result) => result,
            Err(_) => Err(MailError::Transient(format!(
                "no result within {deadline:?}; the email may or may not have gone out"
            ))),
        };
        let at = self.clock.now();
        match result {
            Ok(()) => {
                tally.sent += 1;
                metrics::counter!("enrollstream_reminders_sent_total").increment(1);
                tracing::info!(%application_id, attempt, %message_id, "reminder sent");
                self.record(claim, attempt, at, None).await
            }
            Err(MailError::Transient(why)) => {
                tracing::warn!(%application_id, attempt, error = %why, "reminder not sent, retrying next tick");
                self.failed(claim, "transient", why, tally).await
            }
            Err(MailError::Permanent(why)) => {
                tally.failed += 1;
                tally.last_failure = Some(why.clone());
                metrics::counter!("enrollstream_reminders_failed_total", "kind" => "permanent")
                    .increment(1);
                tracing::warn!(%application_id, attempt, error = %why, "reminder refused for good; the attempt is consumed");
                self.record(claim, attempt, at, Some(&why)).await
            }
        }
    }

    /// Give the claim back without consuming the attempt; it is retried next tick.
    async fn failed(
        &self,
        claim: &ClaimedReminder,
        kind: &'static str,
        why: String,
        tally: &mut Tally,
    ) -> Result<(), StoreError> {
        tally.failed += 1;
        metrics::counter!("enrollstream_reminders_failed_total", "kind" => kind).increment(1);
        let now = self.clock.now();
        let outcome = self
            .store
            .release(claim, self.retry_at(now), Some(&why), now)
            .await?;
        tally.last_failure = Some(why);
        if let Fenced::Stale(stale) = outcome {
            tracing::warn!(reason = %stale, "could not give back a reminder claim");
        }
        Ok(())
    }

    async fn record(
        &self,
        claim: &ClaimedReminder,
        attempt: u32,
        at: DateTime<Utc>,
        refused: Option<&str>,
    ) -> Result<(), StoreError> {
        let outcome = self
            .store
            .record_attempt(claim, attempt, at, refused, &self.policy)
            .await?;
        if let Fenced::Stale(why) = outcome {
            // The lease ran out during the send and another scheduler took the attempt: it
            // sends the same Message-ID, which mail systems drop.
            tracing::warn!(application_id = %claim.reminder.application_id, attempt, reason = %why, "attempt sent but not recorded");
        }
        Ok(())
    }

    async fn exhaust(&self, claim: &ClaimedReminder, tally: &mut Tally) -> Result<(), StoreError> {
        let r = &claim.reminder;
        let Some(broker) = r.broker() else {
            let now = self.clock.now();
            return self.store.release(claim, now, None, now).await.map(drop);
        };
        let event = DomainEvent::Application(ApplicationEvent::RemindersExhausted(
            SignatureRemindersExhausted {
                application_id: r.application_id.clone(),
                attempts: r.attempts,
                broker_email: broker.email.clone(),
            },
        ));
        let now = self.clock.now();
        let envelope = CloudEvent::with_id(
            derived_id(&["reminders-exhausted", &r.application_id]),
            &event,
            &self.config.source,
            now,
            None,
        );
        if let Err(e) = self
            .publisher
            .publish(&self.topic, vec![codec::encode(&envelope)])
            .await
        {
            tracing::warn!(application_id = %r.application_id, error = %e, "exhaustion not announced, retrying next tick");
            return self
                .failed(
                    claim,
                    "publish",
                    format!("announcing the exhaustion: {e}"),
                    tally,
                )
                .await;
        }
        match self.store.mark_exhausted(claim, now, &self.policy).await? {
            Fenced::Applied => {
                tally.exhausted += 1;
                metrics::counter!("enrollstream_reminders_exhausted_total").increment(1);
                tracing::info!(application_id = %r.application_id, attempts = r.attempts, "signature reminders exhausted; application flagged");
            }
            Fenced::Stale(why) => {
                tracing::info!(application_id = %r.application_id, reason = %why, "exhaustion announced but not recorded");
            }
        }
        Ok(())
    }
}

/// Run `scheduler` until `shutdown`.
pub async fn run_scheduler(
    scheduler: Scheduler,
    health: HealthRegistry,
    shutdown: CancellationToken,
) {
    scheduler.run(health, shutdown).await
}
