//! The reminder's subject, text and HTML from Jinja templates (minijinja): the HTML template
//! is auto-escaped because its name ends in `.html`, so an applicant called `<b>` shows as
//! text. Undefined values are errors, so a typo in an operator's template fails at start-up
//! (every template is rendered once on a sample) instead of sending a half-empty email.

use chrono::{DateTime, Utc};
use enrollstream_domain::events::{Applicant, Broker, Submitter};
use enrollstream_domain::reminder::{self, Reminder, ReminderStatus, Submission};
use enrollstream_ports::mailer::{ReminderComposer, ReminderDraft, ReminderEmail};
use lettre::message::Mailbox;
use minijinja::{context, Environment, UndefinedBehavior};
use std::path::Path;

use crate::config::{ConfigError, MailConfig};

const SUBJECT: &str = "subject.txt";
const TEXT: &str = "reminder.txt";
const HTML: &str = "reminder.html";
const DEFAULT_TEXT: &str = include_str!("../templates/reminder.txt");
const DEFAULT_HTML: &str = include_str!("../templates/reminder.html");

pub struct ReminderTemplates {
    env: Environment<'static>,
    from: String,
}

impl ReminderTemplates {
    pub fn new(config: &MailConfig) -> Result<Self, ConfigError> {
        config
            .from
            .parse::<Mailbox>()
            .map_err(|e| ConfigError(format!("from {:?} is not a mailbox: {e}", config.from)))?;
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        let mut add = |name: &'static str, source: String| {
            env.add_template_owned(name, source)
                .map_err(|e| ConfigError(format!("template {name}: {e:#}")))
        };
        add(SUBJECT, config.subject.clone())?;
        add(
            TEXT,
            body(config.templates_dir.as_deref(), TEXT, DEFAULT_TEXT)?,
        )?;
        add(
            HTML,
            body(config.templates_dir.as_deref(), HTML, DEFAULT_HTML)?,
        )?;
        let templates = Self {
            env,
            from: config.from.clone(),
        };
        let sample = sample();
        templates
            .compose(&ReminderDraft {
                reminder: &sample,
                attempt: 1,
                max_attempts: 5,
                message_id: &reminder::message_id(&sample.application_id, 1),
                date: sample.updated_at,
            })
            .map_err(ConfigError)?;
        Ok(templates)
    }

    fn render(&self, name: &str, ctx: &minijinja::Value) -> Result<String, String> {
        self.env
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .map_err(|e| format!("template {name}: {e:#}"))
    }
}

fn body(dir: Option<&Path>, name: &str, default: &str) -> Result<String, ConfigError> {
    let Some(path) = dir.map(|d| d.join(name)).filter(|p| p.exists()) else {
        return Ok(default.to_string());
    };
    std::fs::read_to_string(&path)
        .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))
}

impl ReminderComposer for ReminderTemplates {
    fn compose(&self, draft: &ReminderDraft<'_>) -> Result<ReminderEmail, String> {
        let r = draft.reminder;
        let broker = r
            .broker()
            .ok_or_else(|| format!("application {} has no broker", r.application_id))?;
        let ctx = context! {
            application_id => &r.application_id,
            attempt => draft.attempt,
            max_attempts => draft.max_attempts,
            last => draft.attempt >= draft.max_attempts,
            broker => broker,
            applicant => &r.applicant,
            product => &r.product,
            submitted_on => r.submission.as_ref().map(|s| date(s.at)),
        };
        let subject = self.render(SUBJECT, &ctx)?;
        Ok(ReminderEmail {
            to: mailbox(&broker.name, &broker.email),
            from: self.from.clone(),
            // A header is one line, whatever the template did.
            subject: subject.split_whitespace().collect::<Vec<_>>().join(" "),
            text: self.render(TEXT, &ctx)?,
            html: self.render(HTML, &ctx)?,
            message_id: draft.message_id.to_string(),
            date: draft.date,
        })
    }
}

fn date(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// `Name <address>`, quoted by lettre so commas or brackets in the name cannot break the header.
fn mailbox(name: &str, address: &str) -> String {
    match address.parse::<lettre::Address>() {
        Ok(address) => Mailbox::new(Some(name.to_string()), address).to_string(),
        // Not an address lettre accepts: passed on bare, the transport refuses it for good.
        Err(_) => address.to_string(),
    }
}

fn sample() -> Reminder {
    let at: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().expect("static time");
    Reminder {
        application_id: "APP-SAMPLE".into(),
        status: ReminderStatus::AwaitingSignature,
        applicant: Some(Applicant {
            name: "Sample Member".into(),
            email: "member@example.com".into(),
        }),
        product: Some("sample-product".into()),
        submission: Some(Submission {
            by: Submitter::Broker {
                broker: Broker {
                    id: "B-SAMPLE".into(),
                    name: "Sample Broker".into(),
                    email: "broker@example.com".into(),
                },
            },
            at,
        }),
        signature_obtained: false,
        closed: None,
        attempts: 0,
        last_sent_at: None,
        next_due_at: Some(at),
        exhausted_at: None,
        failures: 0,
        last_error: None,
        applied_event_ids: Vec::new(),
        updated_at: at,
    }
}
