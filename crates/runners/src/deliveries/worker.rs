//! One message through its lane: attempts until the target accepts it, retries transient
//! failures with backoff (honouring Retry-After) inside the lane so only this key waits, waits
//! out pauses and an open circuit, and dead-letters what can never be delivered.

use chrono::{DateTime, Utc};
use enrollstream_domain::envelope::{continue_trace, trace_id};
use enrollstream_domain::CloudEvent;
use enrollstream_ports::codec;
use enrollstream_ports::target::{Delivered, Delivery, DeliveryError, Target};
use enrollstream_ports::{Clock, InboundMessage, Publisher};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tracing::Instrument;

use super::guard::{Guard, Role};
use super::journal::Journal;
use super::lanes::LaneKey;
use super::settings::DeliverySettings;
use crate::backoff::Backoff;
use crate::dead_letter::{dead_letter_message, publish_dead_letters, DeadLetter, ATTEMPTS};

/// Header naming the target a dead letter was meant for.
pub const DLQ_TARGET: &str = "dlq_target";
/// Header with the HTTP status of the last attempt, when a response came back.
pub const DLQ_LAST_STATUS: &str = "dlq_last_status";

/// What every lane of a runner shares.
pub struct Context {
    pub target: Arc<dyn Target>,
    pub target_name: String,
    pub group: String,
    pub guard: Arc<Guard>,
    /// Calls under way at once, across lanes.
    pub permits: Arc<Semaphore>,
    pub publisher: Arc<dyn Publisher>,
    pub clock: Arc<dyn Clock>,
    pub settings: DeliverySettings,
    /// Where outcomes are journaled, off the delivery path (see `journal`).
    pub journal: Option<Journal>,
}

#[derive(Debug)]
pub struct Finished {
    pub lane: LaneKey,
    pub offset: i64,
    /// Which spawn of the lane this was, to tell a stale result after a partition reset.
    pub ticket: u64,
}

/// Resolves once `now() >= deadline` on the clock port.
pub async fn wait_until(clock: &dyn Clock, deadline: DateTime<Utc>) {
    while clock.now() < deadline {
        clock.sleep_until(deadline, Duration::from_secs(1)).await;
    }
}

pub async fn deliver(ctx: Arc<Context>, message: InboundMessage, ticket: u64) -> Finished {
    let lane = LaneKey::of(&message);
    let offset = message.offset;
    match codec::decode(&message) {
        Ok(event) => {
            let span = delivery_span(&ctx.target_name, &event);
            attempt_until_done(&ctx, &message, Delivery { event, attempt: 0 })
                .instrument(span)
                .await
        }
        Err(e) => {
            let why = DeadLetter::new("undecodable", &e);
            dead_letter(&ctx, &message, None, why, None, 0).await;
        }
    }
    Finished {
        lane,
        offset,
        ticket,
    }
}

async fn attempt_until_done(ctx: &Context, message: &InboundMessage, mut delivery: Delivery) {
    let target = ctx.target_name.as_str();
    let policy = &ctx.settings.retry;
    let mut backoff = Backoff::new(policy.initial_backoff, policy.max_backoff);
    let mut counted = 0u32;
    let notification_trace = delivery.event.traceparent.clone();
    // Held from the first transient failure until the message is done, for the state gauge.
    let mut retrying = None;
    loop {
        let admission = ctx.guard.admit().await;
        delivery.attempt += 1;
        let result = attempt(ctx, &mut delivery, notification_trace.as_deref()).await;
        let id = delivery.event.id.as_str();
        match result {
            Ok(done) => {
                admission.answered();
                count(target, "delivered");
                record_latency(ctx, &delivery);
                if let Some(journal) = &ctx.journal {
                    let now = ctx.clock.now();
                    journal.delivered(target, &delivery.event, delivery.attempt, done.status, now);
                }
                tracing::debug!(target_name = target, notification_id = id, status = done.status, detail = %done.detail, attempt = delivery.attempt, "delivered");
                return;
            }
            Err(DeliveryError::Permanent { status, error }) => {
                // Only an answer says something about the target; a message refused before any
                // call (not decodable as what the target needs) leaves its state as it was.
                if status.is_some() {
                    admission.answered();
                }
                let why = DeadLetter::new("rejected", &error);
                let event = Some(&delivery.event);
                dead_letter(ctx, message, event, why, status, delivery.attempt).await;
                return;
            }
            Err(e @ DeliveryError::Unauthorized { .. }) => {
                // Never the message's fault: it waits with the whole target, uncounted.
                count(target, "unauthorized");
                admission.unauthorized(e.to_string());
            }
            Err(DeliveryError::Transient {
                status,
                retry_after,
                error,
            }) => {
                let asked = retry_after.map(|d| d.min(policy.max_retry_after));
                let probe = admission.role() != Role::Normal;
                if admission.failed(status == Some(429), asked) {
                    counted += 1;
                }
                if counted >= policy.max_attempts {
                    let why = DeadLetter::new(
                        "retries_exhausted",
                        format!("{counted} failed attempts, the last: {error}"),
                    );
                    let event = Some(&delivery.event);
                    dead_letter(ctx, message, event, why, status, delivery.attempt).await;
                    return;
                }
                count(target, "retried");
                retrying.get_or_insert_with(|| ctx.guard.retrying());
                let delay = backoff.next_delay().max(asked.unwrap_or_default());
                tracing::info!(target_name = target, notification_id = id, attempt = delivery.attempt, probe, ?status, %error, ?delay, "delivery failed, retrying");
                let deadline =
                    ctx.clock.now() + chrono::Duration::from_std(delay).unwrap_or_default();
                wait_until(ctx.clock.as_ref(), deadline).await;
            }
        }
    }
}

/// One call to the target, in a span of its own under the notification's; the target is sent
/// that span as the `traceparent`, so its own trace continues from this attempt.
async fn attempt(
    ctx: &Context,
    delivery: &mut Delivery,
    notification_trace: Option<&str>,
) -> Result<Delivered, DeliveryError> {
    let target = ctx.target_name.as_str();
    let _permit = ctx
        .permits
        .acquire()
        .await
        .expect("permits are never closed");
    delivery.event.traceparent = notification_trace.map(|p| continue_trace(Some(p)));
    let span = tracing::info_span!(
        "delivery.attempt",
        trace_parent = notification_trace,
        trace_span = delivery.event.traceparent.as_deref(),
        target_name = target,
        attempt = delivery.attempt,
        outcome = tracing::field::Empty,
    );
    let started = Instant::now();
    let result = ctx.target.deliver(delivery).instrument(span.clone()).await;
    metrics::histogram!("enrollstream_delivery_seconds", "target" => target.to_string())
        .record(started.elapsed().as_secs_f64());
    let outcome = match &result {
        Ok(_) => "delivered",
        Err(DeliveryError::Permanent { .. }) => "rejected",
        Err(DeliveryError::Unauthorized { .. }) => "unauthorized",
        Err(DeliveryError::Transient { .. }) => "failed",
    };
    span.record("outcome", outcome);
    result
}

/// What every log line of one message's delivery carries: the notification, the event and
/// entity it is about, and its trace.
fn delivery_span(target: &str, event: &CloudEvent) -> tracing::Span {
    tracing::info_span!(
        "delivery",
        target_name = target,
        notification_id = %event.id,
        event_id = event.data.get("event_id").and_then(|v| v.as_str()),
        entity_id = event.subject.as_deref(),
        trace_id = event.traceparent.as_deref().map(trace_id),
    )
}

/// Accept to delivered: from the notification's `time`, which is its causing event's (the
/// moment the API accepted a command; a partner's own event time for `/v1/events`), to now.
fn record_latency(ctx: &Context, delivery: &Delivery) {
    // A notification of an event without a time carries the epoch: no latency to speak of.
    let Some(time) = delivery.event.time.filter(|t| *t > DateTime::UNIX_EPOCH) else {
        return;
    };
    if let Ok(latency) = (ctx.clock.now() - time).to_std() {
        metrics::histogram!("enrollstream_delivery_latency_seconds", "target" => ctx.target_name.clone())
            .record(latency.as_secs_f64());
    }
}

fn count(target: &str, outcome: &'static str) {
    metrics::counter!("enrollstream_deliveries_total", "target" => target.to_string(), "outcome" => outcome)
        .increment(1);
}

/// Park `message` in the target's DLQ, retrying the publish until it is durable: only then may
/// the lane report it finished and the watermark pass it.
async fn dead_letter(
    ctx: &Context,
    message: &InboundMessage,
    event: Option<&CloudEvent>,
    mut why: DeadLetter,
    status: Option<u16>,
    attempts: u32,
) {
    let target = ctx.target_name.as_str();
    why.extra.push((DLQ_TARGET.into(), target.to_string()));
    why.extra.push((ATTEMPTS.into(), attempts.to_string()));
    if let Some(status) = status {
        why.extra.push((DLQ_LAST_STATUS.into(), status.to_string()));
    }
    let topic = ctx.settings.dlq_topic(&message.topic, target);
    tracing::warn!(target_name = target, %topic, source_topic = %message.topic, partition = message.partition, offset = message.offset, reason = %why.reason, error = %why.error, attempts, "dead-lettering delivery");
    let dead = dead_letter_message(message, &ctx.group, &why);
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        match publish_dead_letters(ctx.publisher.as_ref(), &topic, vec![dead.clone()]).await {
            Ok(_) => break,
            Err(e) => {
                // The bus, not the target, is away: real time, like every other bus retry.
                tracing::warn!(%topic, error = %e, "dead-letter publish failed, retrying");
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
    count(target, "dead_lettered");
    if let Some(journal) = &ctx.journal {
        let now = ctx.clock.now();
        journal.dead_lettered(
            target, message, event, attempts, status, &why.error, &topic, now,
        );
    }
    metrics::counter!("enrollstream_dead_letters_total", "group" => ctx.group.clone(), "reason" => why.reason.clone())
        .increment(1);
}
