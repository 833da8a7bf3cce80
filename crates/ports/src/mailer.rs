//! The mailer port: deliver one reminder email, and say whether a failure is worth retrying.
//! Composing the email (templates) is a separate seam, so transports stay content-agnostic.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use enrollstream_domain::reminder::Reminder;

/// One rendered reminder email.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReminderEmail {
    pub to: String,
    /// A mailbox, e.g. `Enrollstream <reminders@example.com>`.
    pub from: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// With angle brackets, e.g. `<reminder-A-1-2@enrollstream>`: the same for every resend of
    /// one attempt, so mail systems drop the duplicate a crash may cause.
    pub message_id: String,
    pub date: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MailError {
    /// The server is away, slow or temporarily refusing (4xx): try again later.
    #[error("mail failed, will retry: {0}")]
    Transient(String),
    /// Refused for good (5xx, an invalid address): retrying the same email cannot succeed.
    #[error("mail refused: {0}")]
    Permanent(String),
}

#[async_trait]
pub trait Mailer: Send + Sync {
    /// Deliver `email`. `Ok` means the server (or the sink) accepted it durably.
    async fn send(&self, email: &ReminderEmail) -> Result<(), MailError>;

    /// Which transport this is ("smtp", "directory").
    fn name(&self) -> &'static str;
}

/// What the composer needs to write reminder number `attempt`.
#[derive(Clone, Copy, Debug)]
pub struct ReminderDraft<'a> {
    pub reminder: &'a Reminder,
    pub attempt: u32,
    pub max_attempts: u32,
    pub message_id: &'a str,
    pub date: DateTime<Utc>,
}

/// Turns a reminder into the email its broker receives.
pub trait ReminderComposer: Send + Sync {
    /// `Err` is a configuration problem (a broken template, no broker address), not the
    /// broker's: the scheduler retries without consuming an attempt.
    fn compose(&self, draft: &ReminderDraft<'_>) -> Result<ReminderEmail, String>;
}
