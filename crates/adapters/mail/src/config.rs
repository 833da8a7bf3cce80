//! Mail settings: which sink, the SMTP server, the sender, the subject and the templates.
//! Durations are written the human way ("10s").

use enrollstream_ports::mailer::{Mailer, ReminderComposer};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::{DirectoryMailer, ReminderTemplates, SmtpMailer};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailConfig {
    pub sink: MailSink,
    /// Where the directory sink writes; `<data_dir>/outbox-mail` when unset.
    pub directory: Option<PathBuf>,
    pub smtp: SmtpConfig,
    /// The sender mailbox, e.g. `Enrollstream <reminders@example.com>`.
    pub from: String,
    /// A Jinja template over the same values as the bodies.
    pub subject: String,
    /// A directory with `reminder.txt` and/or `reminder.html` replacing the built-in bodies.
    pub templates_dir: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailSink {
    /// `.eml` files in a directory: the embedded default, no server needed.
    Directory,
    Smtp,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Bounds every step of the conversation (connect and greeting, STARTTLS, AUTH, the
    /// message, QUIT), not just the connect.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// The name sent in EHLO; this machine's host name when unset.
    pub hello_name: Option<String>,
    /// PEM file of an extra root certificate (a private CA); the web PKI roots are always used.
    pub ca_file: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which is required (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// No encryption: only for a local relay or a test server.
    None,
}

/// A secret that never shows in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"[redacted]\"")
    }
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("timeout", &self.timeout)
            .field("hello_name", &self.hello_name)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl Default for MailConfig {
    fn default() -> Self {
        Self {
            sink: MailSink::Directory,
            directory: None,
            smtp: SmtpConfig::default(),
            from: "Enrollstream <reminders@enrollstream.localhost>".into(),
            subject: "Signature needed: application {{ application_id }} (reminder {{ attempt }} of {{ max_attempts }})".into(),
            templates_dir: None,
        }
    }
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            host: "localhost".into(),
            port: 587,
            tls: SmtpTls::Starttls,
            username: None,
            password: None,
            timeout: Duration::from_secs(10),
            hello_name: None,
            ca_file: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("mail configuration: {0}")]
pub struct ConfigError(pub String);

impl MailConfig {
    /// The configured transport. `data_dir` places the directory sink by default.
    pub fn mailer(&self, data_dir: &Path) -> Result<Arc<dyn Mailer>, ConfigError> {
        Ok(match self.sink {
            MailSink::Directory => {
                let dir = self
                    .directory
                    .clone()
                    .unwrap_or_else(|| data_dir.join("outbox-mail"));
                let mailer = DirectoryMailer::open(&dir)
                    .map_err(|e| ConfigError(format!("cannot create {}: {e}", dir.display())))?;
                Arc::new(mailer)
            }
            MailSink::Smtp => Arc::new(SmtpMailer::new(&self.smtp)?),
        })
    }

    /// The templates, checked now so that a broken one fails at start-up, not at 3 a.m.
    pub fn composer(&self) -> Result<Arc<dyn ReminderComposer>, ConfigError> {
        Ok(Arc::new(ReminderTemplates::new(self)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_gaps_and_durations_are_human() {
        let c: MailConfig = serde_json::from_str(
            r#"{"sink":"smtp","smtp":{"host":"mail.test","timeout":"2s","tls":"implicit","password":"hunter2"}}"#,
        )
        .unwrap();
        assert_eq!(c.sink, MailSink::Smtp);
        assert_eq!(c.smtp.timeout, Duration::from_secs(2));
        assert_eq!(c.smtp.tls, SmtpTls::Implicit);
        assert_eq!(c.smtp.port, 587);
        assert_eq!(c.smtp.password.as_ref().unwrap().expose(), "hunter2");
        assert!(c.from.contains("reminders@"));
    }

    #[test]
    fn the_password_is_redacted_in_debug_output() {
        let c = SmtpConfig {
            password: Some(Secret::new("hunter2")),
            ..SmtpConfig::default()
        };
        let shown = format!("{c:?} {:?}", MailConfig::default());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("[redacted]"));
    }
}
