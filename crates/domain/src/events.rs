//! The business events of quotes and enrollment applications.
//!
//! Each event has a versioned CloudEvents `type`; its `data` is one of the structs below. Field
//! names may grow but never change meaning: a new meaning gets a new `.vN` type.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::envelope::CloudEvent;
use crate::money::Money;
use crate::validation::{require_email, require_non_empty, FieldError, ValidationError};

pub const QUOTE_REQUESTED: &str = "com.enrollstream.quote.requested.v1";
pub const QUOTE_CREATED: &str = "com.enrollstream.quote.created.v1";
pub const QUOTE_UPDATED: &str = "com.enrollstream.quote.updated.v1";
pub const APPLICATION_STARTED: &str = "com.enrollstream.application.started.v1";
pub const APPLICATION_SUBMITTED: &str = "com.enrollstream.application.submitted.v1";
pub const SIGNATURE_RECEIVED: &str = "com.enrollstream.application.signature_received.v1";
pub const APPLICATION_APPROVED: &str = "com.enrollstream.application.approved.v1";
pub const APPLICATION_DECLINED: &str = "com.enrollstream.application.declined.v1";
pub const APPLICATION_WITHDRAWN: &str = "com.enrollstream.application.withdrawn.v1";
pub const SIGNATURE_REMINDERS_EXHAUSTED: &str =
    "com.enrollstream.application.signature_reminders_exhausted.v1";

/// Every event type this version understands, in a stable order.
pub const ALL_TYPES: &[&str] = &[
    QUOTE_REQUESTED,
    QUOTE_CREATED,
    QUOTE_UPDATED,
    APPLICATION_STARTED,
    APPLICATION_SUBMITTED,
    SIGNATURE_RECEIVED,
    APPLICATION_APPROVED,
    APPLICATION_DECLINED,
    APPLICATION_WITHDRAWN,
    SIGNATURE_REMINDERS_EXHAUSTED,
];

/// Types only enrollstream itself produces: `POST /v1/events` refuses them, so a caller can
/// never announce, say, that the reminders of an application ran out.
pub const INTERNAL_TYPES: &[&str] = &[SIGNATURE_REMINDERS_EXHAUSTED];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    Quote,
    Application,
}

impl EntityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Quote => "quote",
            EntityKind::Application => "application",
        }
    }

    pub fn of_type(event_type: &str) -> Option<Self> {
        if event_type.starts_with("com.enrollstream.quote.") {
            Some(EntityKind::Quote)
        } else if event_type.starts_with("com.enrollstream.application.") {
            Some(EntityKind::Application)
        } else {
            None
        }
    }
}

impl std::fmt::Display for EntityKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---- quote events -------------------------------------------------------------------------

/// A customer asked for a quote; no price yet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct QuoteRequested {
    pub quote_id: String,
    pub customer_id: String,
    pub product: String,
}

/// A priced quote exists (directly, or after a request).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct QuoteCreated {
    pub quote_id: String,
    pub customer_id: String,
    pub product: String,
    pub premium: Money,
}

/// The price or product of a quote changed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct QuoteUpdated {
    pub quote_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub premium: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum QuoteEvent {
    Requested(QuoteRequested),
    Created(QuoteCreated),
    Updated(QuoteUpdated),
}

// ---- application events -------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Applicant {
    pub name: String,
    pub email: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Broker {
    pub id: String,
    pub name: String,
    pub email: String,
}

/// Who submitted the application. A broker submission needs the member's signature afterwards.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "submitted_by", rename_all = "snake_case")]
pub enum Submitter {
    Broker { broker: Broker },
    Member,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApplicationStarted {
    pub application_id: String,
    pub applicant: Applicant,
    pub product: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quote_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApplicationSubmitted {
    pub application_id: String,
    #[serde(flatten)]
    pub submitter: Submitter,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SignatureReceived {
    pub application_id: String,
    pub signed_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApplicationApproved {
    pub application_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApplicationDeclined {
    pub application_id: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApplicationWithdrawn {
    pub application_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The broker was reminded the maximum number of times and the signature is still missing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SignatureRemindersExhausted {
    pub application_id: String,
    pub attempts: u32,
    pub broker_email: String,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ApplicationEvent {
    Started(ApplicationStarted),
    Submitted(ApplicationSubmitted),
    SignatureReceived(SignatureReceived),
    Approved(ApplicationApproved),
    Declined(ApplicationDeclined),
    Withdrawn(ApplicationWithdrawn),
    RemindersExhausted(SignatureRemindersExhausted),
}

#[derive(Clone, Debug, PartialEq)]
pub enum DomainEvent {
    Quote(QuoteEvent),
    Application(ApplicationEvent),
}

impl DomainEvent {
    /// Decode and validate the `data` of a CloudEvent by its `type`. This is the schema check
    /// run by the API before publishing and by the projector before persisting.
    pub fn from_cloud_event(event: &CloudEvent) -> Result<Self, ValidationError> {
        event.validate_envelope()?;
        let data = &event.data;
        let decoded = match event.ty.as_str() {
            QUOTE_REQUESTED => DomainEvent::Quote(QuoteEvent::Requested(decode(data)?)),
            QUOTE_CREATED => DomainEvent::Quote(QuoteEvent::Created(decode(data)?)),
            QUOTE_UPDATED => DomainEvent::Quote(QuoteEvent::Updated(decode(data)?)),
            APPLICATION_STARTED => {
                DomainEvent::Application(ApplicationEvent::Started(decode(data)?))
            }
            APPLICATION_SUBMITTED => {
                DomainEvent::Application(ApplicationEvent::Submitted(decode(data)?))
            }
            SIGNATURE_RECEIVED => {
                DomainEvent::Application(ApplicationEvent::SignatureReceived(decode(data)?))
            }
            APPLICATION_APPROVED => {
                DomainEvent::Application(ApplicationEvent::Approved(decode(data)?))
            }
            APPLICATION_DECLINED => {
                DomainEvent::Application(ApplicationEvent::Declined(decode(data)?))
            }
            APPLICATION_WITHDRAWN => {
                DomainEvent::Application(ApplicationEvent::Withdrawn(decode(data)?))
            }
            SIGNATURE_REMINDERS_EXHAUSTED => {
                DomainEvent::Application(ApplicationEvent::RemindersExhausted(decode(data)?))
            }
            other => {
                return Err(ValidationError::single(
                    "type",
                    format!("unknown event type {other:?}"),
                ))
            }
        };
        let mut errors = Vec::new();
        decoded.validate(&mut errors);
        if decoded.entity_id() != event.subject.as_deref().unwrap_or_default() {
            errors.push(FieldError::new(
                "subject",
                format!(
                    "must equal the entity id in data ({:?})",
                    decoded.entity_id()
                ),
            ));
        }
        ValidationError::check(errors)?;
        Ok(decoded)
    }

    pub fn kind(&self) -> EntityKind {
        match self {
            DomainEvent::Quote(_) => EntityKind::Quote,
            DomainEvent::Application(_) => EntityKind::Application,
        }
    }

    pub fn entity_id(&self) -> &str {
        match self {
            DomainEvent::Quote(q) => match q {
                QuoteEvent::Requested(e) => &e.quote_id,
                QuoteEvent::Created(e) => &e.quote_id,
                QuoteEvent::Updated(e) => &e.quote_id,
            },
            DomainEvent::Application(a) => match a {
                ApplicationEvent::Started(e) => &e.application_id,
                ApplicationEvent::Submitted(e) => &e.application_id,
                ApplicationEvent::SignatureReceived(e) => &e.application_id,
                ApplicationEvent::Approved(e) => &e.application_id,
                ApplicationEvent::Declined(e) => &e.application_id,
                ApplicationEvent::Withdrawn(e) => &e.application_id,
                ApplicationEvent::RemindersExhausted(e) => &e.application_id,
            },
        }
    }

    pub fn event_type(&self) -> &'static str {
        match self {
            DomainEvent::Quote(q) => match q {
                QuoteEvent::Requested(_) => QUOTE_REQUESTED,
                QuoteEvent::Created(_) => QUOTE_CREATED,
                QuoteEvent::Updated(_) => QUOTE_UPDATED,
            },
            DomainEvent::Application(a) => match a {
                ApplicationEvent::Started(_) => APPLICATION_STARTED,
                ApplicationEvent::Submitted(_) => APPLICATION_SUBMITTED,
                ApplicationEvent::SignatureReceived(_) => SIGNATURE_RECEIVED,
                ApplicationEvent::Approved(_) => APPLICATION_APPROVED,
                ApplicationEvent::Declined(_) => APPLICATION_DECLINED,
                ApplicationEvent::Withdrawn(_) => APPLICATION_WITHDRAWN,
                ApplicationEvent::RemindersExhausted(_) => SIGNATURE_REMINDERS_EXHAUSTED,
            },
        }
    }

    /// The event's `data` as JSON, exactly as it goes on the bus.
    pub fn data(&self) -> serde_json::Value {
        let v = match self {
            DomainEvent::Quote(q) => match q {
                QuoteEvent::Requested(e) => serde_json::to_value(e),
                QuoteEvent::Created(e) => serde_json::to_value(e),
                QuoteEvent::Updated(e) => serde_json::to_value(e),
            },
            DomainEvent::Application(a) => match a {
                ApplicationEvent::Started(e) => serde_json::to_value(e),
                ApplicationEvent::Submitted(e) => serde_json::to_value(e),
                ApplicationEvent::SignatureReceived(e) => serde_json::to_value(e),
                ApplicationEvent::Approved(e) => serde_json::to_value(e),
                ApplicationEvent::Declined(e) => serde_json::to_value(e),
                ApplicationEvent::Withdrawn(e) => serde_json::to_value(e),
                ApplicationEvent::RemindersExhausted(e) => serde_json::to_value(e),
            },
        };
        v.expect("event data always serialises")
    }

    /// Semantic checks beyond the JSON shape (non-empty ids, email shape, money).
    pub fn validate(&self, errors: &mut Vec<FieldError>) {
        let id_field = match self.kind() {
            EntityKind::Quote => "data.quote_id",
            EntityKind::Application => "data.application_id",
        };
        require_non_empty(self.entity_id(), id_field, errors);
        match self {
            DomainEvent::Quote(QuoteEvent::Requested(e)) => {
                require_non_empty(&e.customer_id, "data.customer_id", errors);
                require_non_empty(&e.product, "data.product", errors);
            }
            DomainEvent::Quote(QuoteEvent::Created(e)) => {
                require_non_empty(&e.customer_id, "data.customer_id", errors);
                require_non_empty(&e.product, "data.product", errors);
                e.premium.validate("data.premium.", errors);
            }
            DomainEvent::Quote(QuoteEvent::Updated(e)) => {
                if let Some(p) = &e.premium {
                    p.validate("data.premium.", errors);
                }
                if let Some(p) = &e.product {
                    require_non_empty(p, "data.product", errors);
                }
                if e.premium.is_none() && e.product.is_none() {
                    errors.push(FieldError::new(
                        "data",
                        "an update must change premium or product",
                    ));
                }
            }
            DomainEvent::Application(ApplicationEvent::Started(e)) => {
                require_non_empty(&e.applicant.name, "data.applicant.name", errors);
                require_email(&e.applicant.email, "data.applicant.email", errors);
                require_non_empty(&e.product, "data.product", errors);
            }
            DomainEvent::Application(ApplicationEvent::Submitted(e)) => {
                if let Submitter::Broker { broker } = &e.submitter {
                    require_non_empty(&broker.id, "data.broker.id", errors);
                    require_non_empty(&broker.name, "data.broker.name", errors);
                    require_email(&broker.email, "data.broker.email", errors);
                }
            }
            DomainEvent::Application(ApplicationEvent::SignatureReceived(e)) => {
                require_non_empty(&e.signed_by, "data.signed_by", errors);
            }
            DomainEvent::Application(ApplicationEvent::Declined(e)) => {
                require_non_empty(&e.reason, "data.reason", errors);
            }
            DomainEvent::Application(ApplicationEvent::RemindersExhausted(e)) => {
                require_email(&e.broker_email, "data.broker_email", errors);
            }
            DomainEvent::Application(
                ApplicationEvent::Approved(_) | ApplicationEvent::Withdrawn(_),
            ) => {}
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(data: &serde_json::Value) -> Result<T, ValidationError> {
    ValidationError::decode("data", data)
}
