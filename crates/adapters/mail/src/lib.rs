//! Mail adapters for broker signature reminders:
//!
//! - [`SmtpMailer`]: SMTP through lettre (STARTTLS, implicit TLS, or plain for local servers;
//!   optional AUTH), with a timeout on every step of the conversation.
//! - [`DirectoryMailer`]: writes each email as an `.eml` file named after its Message-ID, the
//!   embedded default, so a newcomer sees the reminders without an SMTP server.
//! - [`ReminderTemplates`]: the reminder's subject, text and HTML from Jinja templates.
//!
//! [`MailConfig`] picks and builds them.

mod config;
mod directory;
mod message;
mod smtp;
mod templates;

pub use config::{MailConfig, MailSink, Secret, SmtpConfig, SmtpTls};
pub use directory::DirectoryMailer;
pub use smtp::SmtpMailer;
pub use templates::ReminderTemplates;
