//! Broker signature reminder policy (pure).
//!
//! An application submitted by a broker needs the member's signature afterwards. Until it
//! arrives the broker is reminded every `interval`, at most `max_attempts` times; when the last
//! reminder's interval passes without a signature the reminder is exhausted (the seeds' PENDING
//! flag) and a `SignatureRemindersExhausted` event announces it. Waiting one more interval after
//! the last email, instead of flagging right after sending it, gives the broker the same time to
//! react to the last reminder as to every other one.
//!
//! The state is a fold over the application's events that tolerates redelivery (every applied
//! event id is remembered) and any order: each event sets a fact (broker submission, signature,
//! withdrawal, decline) and the status is derived from the facts, so a signature seen before the
//! submission leaves the reminder stopped when the submission arrives.

use chrono::{DateTime, Duration, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::events::{Applicant, ApplicationEvent, Broker, Submitter};

/// How often and how many times a broker is reminded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReminderPolicy {
    pub interval: Duration,
    pub max_attempts: u32,
}

impl Default for ReminderPolicy {
    fn default() -> Self {
        Self {
            interval: Duration::hours(24),
            max_attempts: 5,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReminderStatus {
    /// No broker submission (yet): nothing to remind.
    NotRequired,
    /// Submitted by a broker, signature missing: reminders are being sent.
    AwaitingSignature,
    /// The signature arrived; reminders stopped.
    Signed,
    /// The application was withdrawn or declined; reminders stopped.
    Cancelled,
    /// Reminded the maximum number of times without a signature (the seeds' PENDING).
    Exhausted,
}

impl ReminderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotRequired => "NOT_REQUIRED",
            Self::AwaitingSignature => "AWAITING_SIGNATURE",
            Self::Signed => "SIGNED",
            Self::Cancelled => "CANCELLED",
            Self::Exhausted => "EXHAUSTED",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Submission {
    #[serde(flatten)]
    pub by: Submitter,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Closure {
    Withdrawn,
    Declined,
}

/// How many event ids a reminder remembers; older ones are dropped first.
pub const APPLIED_EVENT_IDS: usize = 32;

/// The reminder state of one application.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Reminder {
    pub application_id: String,
    pub status: ReminderStatus,
    /// From `ApplicationStarted`, for the email's text; absent if that event was not seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applicant: Option<Applicant>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submission: Option<Submission>,
    pub signature_obtained: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed: Option<Closure>,
    /// Reminders sent (or refused for good by the mail server): each consumes an attempt.
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sent_at: Option<DateTime<Utc>>,
    /// When the next step (a reminder, or the exhaustion after the last one) is due; set only
    /// while the status is `AWAITING_SIGNATURE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_due_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exhausted_at: Option<DateTime<Utc>>,
    /// Failed sends since the last attempt; they do not consume attempts.
    #[serde(default)]
    pub failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Ids of the latest events folded in (at most [`APPLIED_EVENT_IDS`]): the fence that makes
    /// a redelivery a no-op. Bounded because every event of the application lands here, forged
    /// or repeated ones too; an event older than the list folded in again changes nothing,
    /// since each fact it sets is kept from its first arrival (submission, exhaustion) or only
    /// ever set (signature, closure), and `Started` carries the same applicant again.
    #[serde(default)]
    pub applied_event_ids: Vec<String>,
    pub updated_at: DateTime<Utc>,
}

/// What applying an event did.
#[derive(Clone, Debug, PartialEq)]
pub enum Applied {
    /// The new state to store.
    Updated(Box<Reminder>),
    /// The event id was folded in before; nothing to write.
    AlreadyApplied,
    /// The event does not concern reminders; nothing to write.
    Ignored,
}

/// What a due reminder asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Send reminder number `attempt` (1-based).
    Send { attempt: u32 },
    /// The last reminder's interval passed without a signature: flag and announce.
    Exhaust,
}

/// A write was refused because the reminder moved on (another attempt was recorded, or the
/// reminder stopped); the caller's view is stale.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("reminder {application_id}: {reason}")]
pub struct Stale {
    pub application_id: String,
    pub reason: String,
}

impl Reminder {
    fn empty(application_id: &str, at: DateTime<Utc>) -> Self {
        Self {
            application_id: application_id.to_string(),
            status: ReminderStatus::NotRequired,
            applicant: None,
            product: None,
            submission: None,
            signature_obtained: false,
            closed: None,
            attempts: 0,
            last_sent_at: None,
            next_due_at: None,
            exhausted_at: None,
            failures: 0,
            last_error: None,
            applied_event_ids: Vec::new(),
            updated_at: at,
        }
    }

    /// Whether `apply` cares about this kind of event at all.
    pub fn concerns(event: &ApplicationEvent) -> bool {
        !matches!(event, ApplicationEvent::Approved(_))
    }

    /// Fold one application event (`current` is `None` before the first). `at` is when the
    /// event happened; a broker submission makes the first reminder due one interval later.
    pub fn apply(
        current: Option<&Reminder>,
        event_id: &str,
        event: &ApplicationEvent,
        at: DateTime<Utc>,
        policy: &ReminderPolicy,
    ) -> Applied {
        use ApplicationEvent as E;
        if current.is_some_and(|r| r.applied_event_ids.iter().any(|id| id == event_id)) {
            return Applied::AlreadyApplied;
        }
        let application_id = application_id(event);
        let mut next = current
            .cloned()
            .unwrap_or_else(|| Reminder::empty(application_id, at));
        match event {
            E::Started(e) => {
                next.applicant = Some(e.applicant.clone());
                next.product = Some(e.product.clone());
            }
            E::Submitted(e) => {
                // The first submission wins; the fold of the application refuses a second one.
                if next.submission.is_none() {
                    next.submission = Some(Submission {
                        by: e.submitter.clone(),
                        at,
                    });
                    if matches!(e.submitter, Submitter::Broker { .. }) {
                        next.next_due_at = Some(at + policy.interval);
                    }
                }
            }
            E::SignatureReceived(_) => next.signature_obtained = true,
            E::Withdrawn(_) => next.closed = next.closed.or(Some(Closure::Withdrawn)),
            E::Declined(_) => next.closed = next.closed.or(Some(Closure::Declined)),
            E::RemindersExhausted(_) => {
                // Our own announcement read back: it also heals a scheduler that published it
                // and crashed before recording the exhaustion.
                if next.exhausted_at.is_none() {
                    next.exhausted_at = Some(at);
                }
            }
            // An approval follows a signature (or a member submission): nothing new to learn.
            E::Approved(_) => return Applied::Ignored,
        }
        next.applied_event_ids.push(event_id.to_string());
        let excess = next
            .applied_event_ids
            .len()
            .saturating_sub(APPLIED_EVENT_IDS);
        next.applied_event_ids.drain(..excess);
        next.updated_at = at;
        next.settle();
        Applied::Updated(Box::new(next))
    }

    /// The broker of a broker submission.
    pub fn broker(&self) -> Option<&Broker> {
        match &self.submission {
            Some(Submission {
                by: Submitter::Broker { broker },
                ..
            }) => Some(broker),
            _ => None,
        }
    }

    /// What is due, if anything: the next reminder or, after the last one, the exhaustion.
    pub fn next_step(&self, policy: &ReminderPolicy) -> Option<Step> {
        if self.status != ReminderStatus::AwaitingSignature {
            return None;
        }
        Some(if self.attempts >= policy.max_attempts {
            Step::Exhaust
        } else {
            Step::Send {
                attempt: self.attempts + 1,
            }
        })
    }

    /// Record reminder number `attempt` as done at `at` (sent, or refused for good with
    /// `refused`). Only the next attempt can be recorded, so a late or repeated record is
    /// refused instead of counting twice.
    pub fn record_attempt(
        &self,
        attempt: u32,
        at: DateTime<Utc>,
        refused: Option<&str>,
        policy: &ReminderPolicy,
    ) -> Result<Reminder, Stale> {
        if attempt != self.attempts + 1 {
            return Err(self.stale(format!(
                "attempt {attempt} cannot follow {} recorded attempts",
                self.attempts
            )));
        }
        let mut next = self.clone();
        next.attempts = attempt;
        if refused.is_none() {
            next.last_sent_at = Some(at);
        }
        next.failures = 0;
        next.last_error = refused.map(str::to_string);
        next.next_due_at = Some(at + policy.interval);
        next.updated_at = at;
        next.settle();
        Ok(next)
    }

    /// Record a failed send that may succeed later: no attempt is consumed.
    pub fn record_failure(&self, at: DateTime<Utc>, error: &str) -> Reminder {
        let mut next = self.clone();
        next.failures = next.failures.saturating_add(1);
        next.last_error = Some(error.to_string());
        next.updated_at = at;
        next
    }

    /// Flag the reminder as exhausted. Only the `Exhaust` step may do this; if the signature
    /// (or a withdrawal) won the race, the reminder stays as it is.
    pub fn mark_exhausted(
        &self,
        at: DateTime<Utc>,
        policy: &ReminderPolicy,
    ) -> Result<Reminder, Stale> {
        if self.status == ReminderStatus::Exhausted {
            return Ok(self.clone());
        }
        if self.next_step(policy) != Some(Step::Exhaust) {
            return Err(self.stale(format!(
                "cannot be exhausted in status {} after {} attempts",
                self.status.as_str(),
                self.attempts
            )));
        }
        let mut next = self.clone();
        next.exhausted_at = Some(at);
        next.updated_at = at;
        next.settle();
        Ok(next)
    }

    /// Derive the status from the facts, and keep a due time only while reminding.
    fn settle(&mut self) {
        self.status = if self.closed.is_some() {
            ReminderStatus::Cancelled
        } else if self.broker().is_none() {
            ReminderStatus::NotRequired
        } else if self.signature_obtained {
            ReminderStatus::Signed
        } else if self.exhausted_at.is_some() {
            ReminderStatus::Exhausted
        } else {
            ReminderStatus::AwaitingSignature
        };
        if self.status != ReminderStatus::AwaitingSignature {
            self.next_due_at = None;
        }
    }

    fn stale(&self, reason: String) -> Stale {
        Stale {
            application_id: self.application_id.clone(),
            reason,
        }
    }
}

/// The application an event is about.
pub fn application_id(event: &ApplicationEvent) -> &str {
    use ApplicationEvent as E;
    match event {
        E::Started(e) => &e.application_id,
        E::Submitted(e) => &e.application_id,
        E::SignatureReceived(e) => &e.application_id,
        E::Approved(e) => &e.application_id,
        E::Declined(e) => &e.application_id,
        E::Withdrawn(e) => &e.application_id,
        E::RemindersExhausted(e) => &e.application_id,
    }
}

/// The Message-ID of reminder `attempt`: the same on every resend of that attempt, so a mail
/// system drops the copy a crash between sending and recording may cause. Characters outside
/// the safe set of a Message-ID's left part are written as `=XX` (and `=` itself), which keeps
/// distinct application ids distinct.
pub fn message_id(application_id: &str, attempt: u32) -> String {
    let mut left = String::with_capacity(application_id.len() + 16);
    for b in application_id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_' {
            left.push(b as char);
        } else {
            left.push_str(&format!("={b:02X}"));
        }
    }
    format!("<reminder-{left}-{attempt}@enrollstream>")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::*;

    fn t0() -> DateTime<Utc> {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    fn h(hours: i64) -> DateTime<Utc> {
        t0() + Duration::hours(hours)
    }

    fn policy() -> ReminderPolicy {
        ReminderPolicy::default()
    }

    fn started() -> ApplicationEvent {
        ApplicationEvent::Started(ApplicationStarted {
            application_id: "A".into(),
            applicant: Applicant {
                name: "Jane".into(),
                email: "jane@x.io".into(),
            },
            product: "dental".into(),
            quote_id: None,
        })
    }

    fn by_broker() -> ApplicationEvent {
        ApplicationEvent::Submitted(ApplicationSubmitted {
            application_id: "A".into(),
            submitter: Submitter::Broker {
                broker: Broker {
                    id: "B".into(),
                    name: "Acme".into(),
                    email: "broker@acme.test".into(),
                },
            },
        })
    }

    fn by_member() -> ApplicationEvent {
        ApplicationEvent::Submitted(ApplicationSubmitted {
            application_id: "A".into(),
            submitter: Submitter::Member,
        })
    }

    fn signed() -> ApplicationEvent {
        ApplicationEvent::SignatureReceived(SignatureReceived {
            application_id: "A".into(),
            signed_by: "Jane".into(),
            signed_at: None,
        })
    }

    fn withdrawn() -> ApplicationEvent {
        ApplicationEvent::Withdrawn(ApplicationWithdrawn {
            application_id: "A".into(),
            reason: None,
        })
    }

    fn declined() -> ApplicationEvent {
        ApplicationEvent::Declined(ApplicationDeclined {
            application_id: "A".into(),
            reason: "risk".into(),
        })
    }

    fn exhausted_event() -> ApplicationEvent {
        ApplicationEvent::RemindersExhausted(SignatureRemindersExhausted {
            application_id: "A".into(),
            attempts: 5,
            broker_email: "broker@acme.test".into(),
        })
    }

    /// Fold `(event id, event, hour)` triples.
    fn fold(events: &[(&str, ApplicationEvent, i64)]) -> Option<Reminder> {
        let mut state: Option<Reminder> = None;
        for (id, event, hour) in events {
            if let Applied::Updated(next) =
                Reminder::apply(state.as_ref(), id, event, h(*hour), &policy())
            {
                state = Some(*next);
            }
        }
        state
    }

    #[test]
    fn broker_submission_makes_the_first_reminder_due_one_interval_later() {
        let r = fold(&[("e1", started(), 0), ("e2", by_broker(), 1)]).unwrap();
        assert_eq!(r.status, ReminderStatus::AwaitingSignature);
        assert_eq!(r.next_due_at, Some(h(25)));
        assert_eq!(r.broker().unwrap().email, "broker@acme.test");
        assert_eq!(r.applicant.as_ref().unwrap().name, "Jane");
        assert_eq!(r.product.as_deref(), Some("dental"));
        assert_eq!(r.next_step(&policy()), Some(Step::Send { attempt: 1 }));
    }

    #[test]
    fn member_submission_needs_no_reminder() {
        let r = fold(&[("e1", started(), 0), ("e2", by_member(), 1)]).unwrap();
        assert_eq!(r.status, ReminderStatus::NotRequired);
        assert_eq!(r.next_due_at, None);
        assert_eq!(r.next_step(&policy()), None);
    }

    #[test]
    fn signature_withdrawal_and_decline_stop_reminders() {
        for (stop, status) in [
            (signed(), ReminderStatus::Signed),
            (withdrawn(), ReminderStatus::Cancelled),
            (declined(), ReminderStatus::Cancelled),
        ] {
            let r = fold(&[("e1", by_broker(), 0), ("e2", stop, 3)]).unwrap();
            assert_eq!(r.status, status);
            assert_eq!(r.next_due_at, None);
            assert_eq!(r.next_step(&policy()), None);
        }
    }

    #[test]
    fn stop_seen_before_the_submission_keeps_the_reminder_stopped() {
        for (stop, status) in [
            (signed(), ReminderStatus::Signed),
            (withdrawn(), ReminderStatus::Cancelled),
            (declined(), ReminderStatus::Cancelled),
        ] {
            let r = fold(&[("e2", stop, 3), ("e1", by_broker(), 0)]).unwrap();
            assert_eq!(r.status, status);
            assert_eq!(r.next_due_at, None);
            assert_eq!(
                r.broker().unwrap().id,
                "B",
                "the submission is still recorded"
            );
        }
    }

    #[test]
    fn redelivered_event_is_already_applied() {
        let r = fold(&[("e1", by_broker(), 0)]).unwrap();
        assert_eq!(
            Reminder::apply(Some(&r), "e1", &by_broker(), h(5), &policy()),
            Applied::AlreadyApplied
        );
        // A signature redelivered after the scheduler moved on changes nothing either.
        let signed = fold(&[("e1", by_broker(), 0), ("e2", signed(), 1)]).unwrap();
        assert_eq!(
            Reminder::apply(Some(&signed), "e2", &self::signed(), h(9), &policy()),
            Applied::AlreadyApplied
        );
    }

    #[test]
    fn a_second_submission_does_not_restart_the_schedule() {
        let r = fold(&[("e1", by_broker(), 0)]).unwrap();
        let r = r.record_attempt(1, h(24), None, &policy()).unwrap();
        let Applied::Updated(again) =
            Reminder::apply(Some(&r), "e9", &by_broker(), h(30), &policy())
        else {
            panic!("a new event id is folded in");
        };
        assert_eq!(again.attempts, 1);
        assert_eq!(again.next_due_at, Some(h(48)));
    }

    #[test]
    fn approval_and_unknown_records_are_ignored() {
        let approved = ApplicationEvent::Approved(ApplicationApproved {
            application_id: "A".into(),
            approved_by: None,
        });
        assert_eq!(
            Reminder::apply(None, "e1", &approved, h(0), &policy()),
            Applied::Ignored
        );
    }

    #[test]
    fn five_attempts_then_exhaustion_one_interval_after_the_last() {
        let p = policy();
        let mut r = fold(&[("e1", by_broker(), 0)]).unwrap();
        for attempt in 1..=5 {
            let due = r.next_due_at.unwrap();
            assert_eq!(due, h(24 * attempt as i64));
            assert_eq!(r.next_step(&p), Some(Step::Send { attempt }));
            r = r.record_attempt(attempt, due, None, &p).unwrap();
            assert_eq!(r.attempts, attempt);
            assert_eq!(r.last_sent_at, Some(due));
        }
        assert_eq!(r.next_step(&p), Some(Step::Exhaust));
        assert_eq!(r.next_due_at, Some(h(24 * 6)));
        let r = r.mark_exhausted(h(24 * 6), &p).unwrap();
        assert_eq!(r.status, ReminderStatus::Exhausted);
        assert_eq!(r.next_due_at, None);
        assert_eq!(r.next_step(&p), None);
        // Exhausting again is harmless (a crashed scheduler's retry).
        assert_eq!(r.mark_exhausted(h(24 * 7), &p).unwrap(), r);
    }

    #[test]
    fn attempts_are_fenced_on_their_number() {
        let p = policy();
        let r = fold(&[("e1", by_broker(), 0)]).unwrap();
        assert!(r.record_attempt(2, h(24), None, &p).is_err());
        let r1 = r.record_attempt(1, h(24), None, &p).unwrap();
        assert!(
            r1.record_attempt(1, h(25), None, &p).is_err(),
            "recorded twice"
        );
        assert!(r.mark_exhausted(h(24), &p).is_err(), "not yet exhausted");
    }

    #[test]
    fn failures_do_not_consume_attempts() {
        let p = policy();
        let r = fold(&[("e1", by_broker(), 0)]).unwrap();
        let failed = r.record_failure(h(24), "connection refused");
        assert_eq!(failed.attempts, 0);
        assert_eq!(failed.failures, 1);
        assert_eq!(failed.next_due_at, r.next_due_at);
        assert_eq!(failed.next_step(&p), Some(Step::Send { attempt: 1 }));
        let sent = failed.record_attempt(1, h(25), None, &p).unwrap();
        assert_eq!((sent.failures, sent.last_error.as_deref()), (0, None));
    }

    #[test]
    fn a_refused_reminder_consumes_its_attempt() {
        let p = policy();
        let r = fold(&[("e1", by_broker(), 0)]).unwrap();
        let r = r
            .record_attempt(1, h(24), Some("550 no such mailbox"), &p)
            .unwrap();
        assert_eq!(r.attempts, 1);
        assert_eq!(r.last_sent_at, None);
        assert_eq!(r.last_error.as_deref(), Some("550 no such mailbox"));
        assert_eq!(r.next_due_at, Some(h(48)));
    }

    #[test]
    fn signature_during_a_send_stops_after_recording_it() {
        let p = policy();
        let r = fold(&[("e1", by_broker(), 0)]).unwrap();
        let Applied::Updated(r) = Reminder::apply(Some(&r), "e2", &signed(), h(24), &p) else {
            panic!("signature folds in");
        };
        let r = r.record_attempt(1, h(24), None, &p).unwrap();
        assert_eq!(
            (r.attempts, r.status, r.next_due_at),
            (1, ReminderStatus::Signed, None)
        );
        assert!(r.mark_exhausted(h(48), &p).is_err());
    }

    #[test]
    fn signature_after_exhaustion_clears_the_flag() {
        let r = fold(&[("e1", by_broker(), 0), ("x", exhausted_event(), 200)]).unwrap();
        assert_eq!(r.status, ReminderStatus::Exhausted);
        let r = fold(&[
            ("e1", by_broker(), 0),
            ("x", exhausted_event(), 200),
            ("e2", signed(), 201),
        ])
        .unwrap();
        assert_eq!(r.status, ReminderStatus::Signed);
    }

    #[test]
    fn the_exhaustion_event_read_back_marks_the_reminder() {
        let r = fold(&[("e1", by_broker(), 0), ("x", exhausted_event(), 144)]).unwrap();
        assert_eq!(r.status, ReminderStatus::Exhausted);
        assert_eq!(r.exhausted_at, Some(h(144)));
        assert_eq!(r.next_due_at, None);
    }

    #[test]
    fn any_order_of_the_events_ends_in_the_same_status() {
        let events = [
            ("e1", started(), 0),
            ("e2", by_broker(), 1),
            ("e3", signed(), 2),
            ("e4", withdrawn(), 3),
        ];
        let expected = fold(&events).unwrap().status;
        let mut order = [0usize, 1, 2, 3];
        // All 24 permutations (Heap's algorithm, iterative).
        let mut c = [0usize; 4];
        let mut i = 0;
        let mut seen = 1;
        let check = |order: &[usize; 4]| {
            let permuted: Vec<_> = order.iter().map(|&k| events[k].clone()).collect();
            assert_eq!(fold(&permuted).unwrap().status, expected, "{order:?}");
        };
        check(&order);
        while i < 4 {
            if c[i] < i {
                if i % 2 == 0 {
                    order.swap(0, i);
                } else {
                    order.swap(c[i], i);
                }
                check(&order);
                seen += 1;
                c[i] += 1;
                i = 0;
            } else {
                c[i] = 0;
                i += 1;
            }
        }
        assert_eq!(seen, 24);
        assert_eq!(expected, ReminderStatus::Cancelled);
    }

    #[test]
    fn state_round_trips_through_json() {
        let r = fold(&[("e1", started(), 0), ("e2", by_broker(), 1)]).unwrap();
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["status"], "AWAITING_SIGNATURE");
        assert_eq!(json["submission"]["submitted_by"], "broker");
        let back: Reminder = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn message_ids_are_deterministic_and_safe() {
        assert_eq!(message_id("A-1", 3), "<reminder-A-1-3@enrollstream>");
        assert_eq!(message_id("A-1", 3), message_id("A-1", 3));
        assert_ne!(message_id("A-1", 3), message_id("A-1", 4));
        assert_eq!(
            message_id("a b@c", 1),
            "<reminder-a=20b=40c-1@enrollstream>"
        );
        assert_ne!(message_id("a=20", 1), message_id("a ", 1));
    }

    #[test]
    fn applied_event_ids_keep_the_latest() {
        let mut r = match Reminder::apply(None, "e-0", &started(), h(0), &policy()) {
            Applied::Updated(r) => *r,
            other => panic!("{other:?}"),
        };
        for i in 1..=APPLIED_EVENT_IDS + 5 {
            r = match Reminder::apply(Some(&r), &format!("e-{i}"), &started(), h(0), &policy()) {
                Applied::Updated(r) => *r,
                other => panic!("{other:?}"),
            };
        }
        assert_eq!(r.applied_event_ids.len(), APPLIED_EVENT_IDS);
        assert_eq!(r.applied_event_ids.first().unwrap(), "e-6");
        let last = format!("e-{}", APPLIED_EVENT_IDS + 5);
        assert_eq!(
            Reminder::apply(Some(&r), &last, &started(), h(1), &policy()),
            Applied::AlreadyApplied
        );
    }
}
