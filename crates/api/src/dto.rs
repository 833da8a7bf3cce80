//! Request and response bodies of the commands. Requests refuse unknown fields so that a typo
//! (`ammount_minor`) is a 422 naming the field instead of a silently dropped value.

use chrono::{DateTime, Utc};
use enrollstream_domain::events::{
    Applicant, ApplicationApproved, ApplicationDeclined, ApplicationStarted, ApplicationSubmitted,
    ApplicationWithdrawn, Broker, QuoteCreated, QuoteRequested, QuoteUpdated, SignatureReceived,
    Submitter,
};
use enrollstream_domain::{
    ApplicationEvent, DomainEvent, FieldError, Money, QuoteEvent, ValidationError,
};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::problem::Problem;

/// A command's body: it decodes from JSON and becomes one domain event on the entity. Each body
/// declares only this; `commands::execute` does everything else every command does.
pub trait CommandBody: DeserializeOwned {
    /// Where a domain field of the event (`data.applicant.email`) sits in this body.
    fn body_field(domain_field: &str) -> String {
        body_field(domain_field)
    }

    fn into_event(self, entity_id: String) -> Result<DomainEvent, Problem>;
}

/// Decode a command body, naming the field path of the first error as the client wrote it.
pub fn decode<T: DeserializeOwned>(value: &Value) -> Result<T, Problem> {
    ValidationError::decode("", value).map_err(Problem::validation)
}

/// Body of `POST /v1/quotes`. With `amount_minor` and `currency` the quote is priced
/// (`QuoteCreated`); without both it is a request for a price (`QuoteRequested`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateQuote {
    pub customer_id: String,
    pub product: String,
    /// Premium in the currency's minor unit (cents for USD); never negative.
    #[serde(default)]
    pub amount_minor: Option<i64>,
    /// ISO 4217 code, three upper-case letters.
    #[serde(default)]
    pub currency: Option<String>,
}

impl CommandBody for CreateQuote {
    fn body_field(domain_field: &str) -> String {
        quote_body_field(domain_field)
    }

    fn into_event(self, quote_id: String) -> Result<DomainEvent, Problem> {
        let event = match premium(self.amount_minor, self.currency)? {
            Some(premium) => QuoteEvent::Created(QuoteCreated {
                quote_id,
                customer_id: self.customer_id,
                product: self.product,
                premium,
            }),
            None => QuoteEvent::Requested(QuoteRequested {
                quote_id,
                customer_id: self.customer_id,
                product: self.product,
            }),
        };
        Ok(DomainEvent::Quote(event))
    }
}

/// Body of `PATCH /v1/quotes/{id}`: a new premium (both money fields), a new product, or both.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateQuote {
    #[serde(default)]
    pub amount_minor: Option<i64>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub product: Option<String>,
}

impl CommandBody for UpdateQuote {
    fn body_field(domain_field: &str) -> String {
        quote_body_field(domain_field)
    }

    fn into_event(self, quote_id: String) -> Result<DomainEvent, Problem> {
        Ok(DomainEvent::Quote(QuoteEvent::Updated(QuoteUpdated {
            quote_id,
            premium: premium(self.amount_minor, self.currency)?,
            product: self.product,
        })))
    }
}

fn premium(amount_minor: Option<i64>, currency: Option<String>) -> Result<Option<Money>, Problem> {
    match (amount_minor, currency) {
        (Some(amount), Some(currency)) => Ok(Some(Money::new(amount, currency))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(Problem::invalid(vec![FieldError::new(
            "currency",
            "is required when amount_minor is given",
        )])),
        (None, Some(_)) => Err(Problem::invalid(vec![FieldError::new(
            "amount_minor",
            "is required when currency is given",
        )])),
    }
}

/// Where a domain field (`data.premium.currency`) sits in a quote command body (`currency`).
pub fn quote_body_field(domain_field: &str) -> String {
    let field = body_field(domain_field);
    field
        .strip_prefix("premium.")
        .map(str::to_string)
        .unwrap_or(field)
}

/// Where a domain field (`data.applicant.email`) sits in a command body (`applicant.email`).
pub fn body_field(domain_field: &str) -> String {
    match domain_field.strip_prefix("data.") {
        Some(rest) => rest.to_string(),
        None if domain_field == "data" => "$".to_string(),
        None => domain_field.to_string(),
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplicantInput {
    pub name: String,
    pub email: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BrokerInput {
    pub id: String,
    pub name: String,
    pub email: String,
}

/// Body of `POST /v1/applications`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartApplication {
    pub applicant: ApplicantInput,
    pub product: String,
    /// The quote the application follows, if any.
    #[serde(default)]
    pub quote_id: Option<String>,
}

impl CommandBody for StartApplication {
    fn into_event(self, application_id: String) -> Result<DomainEvent, Problem> {
        Ok(DomainEvent::Application(ApplicationEvent::Started(
            ApplicationStarted {
                application_id,
                applicant: Applicant {
                    name: self.applicant.name,
                    email: self.applicant.email,
                },
                product: self.product,
                quote_id: self.quote_id,
            },
        )))
    }
}

#[derive(Clone, Copy, Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubmittedBy {
    /// A broker submitted: the member's signature is collected afterwards (with reminders).
    Broker,
    /// The member submitted and signed in one step.
    Member,
}

/// Body of `POST /v1/applications/{id}/submit`.
// A flat shape rather than a tagged enum: serde buffers a tagged enum's content and loses the
// path, so an error inside `broker` would not be named `broker.email`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitApplication {
    pub submitted_by: SubmittedBy,
    /// Required when `submitted_by` is `broker`, refused otherwise.
    #[serde(default)]
    pub broker: Option<BrokerInput>,
}

impl CommandBody for SubmitApplication {
    fn into_event(self, application_id: String) -> Result<DomainEvent, Problem> {
        let submitter = match (self.submitted_by, self.broker) {
            (SubmittedBy::Broker, Some(b)) => Submitter::Broker {
                broker: Broker {
                    id: b.id,
                    name: b.name,
                    email: b.email,
                },
            },
            (SubmittedBy::Broker, None) => {
                return Err(Problem::invalid(vec![FieldError::new(
                    "broker",
                    "is required when submitted_by is \"broker\"",
                )]))
            }
            (SubmittedBy::Member, None) => Submitter::Member,
            (SubmittedBy::Member, Some(_)) => {
                return Err(Problem::invalid(vec![FieldError::new(
                    "broker",
                    "only a broker submission names a broker",
                )]))
            }
        };
        Ok(DomainEvent::Application(ApplicationEvent::Submitted(
            ApplicationSubmitted {
                application_id,
                submitter,
            },
        )))
    }
}

/// Body of `POST /v1/applications/{id}/signature`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignApplication {
    pub signed_by: String,
    /// When the member signed; the time of the request if absent.
    #[serde(default)]
    pub signed_at: Option<DateTime<Utc>>,
}

impl CommandBody for SignApplication {
    fn into_event(self, application_id: String) -> Result<DomainEvent, Problem> {
        Ok(DomainEvent::Application(
            ApplicationEvent::SignatureReceived(SignatureReceived {
                application_id,
                signed_by: self.signed_by,
                signed_at: self.signed_at,
            }),
        ))
    }
}

/// Body of `POST /v1/applications/{id}/approve` (may be empty).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveApplication {
    #[serde(default)]
    pub approved_by: Option<String>,
}

impl CommandBody for ApproveApplication {
    fn into_event(self, application_id: String) -> Result<DomainEvent, Problem> {
        Ok(DomainEvent::Application(ApplicationEvent::Approved(
            ApplicationApproved {
                application_id,
                approved_by: self.approved_by,
            },
        )))
    }
}

/// Body of `POST /v1/applications/{id}/decline`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeclineApplication {
    pub reason: String,
}

impl CommandBody for DeclineApplication {
    fn into_event(self, application_id: String) -> Result<DomainEvent, Problem> {
        Ok(DomainEvent::Application(ApplicationEvent::Declined(
            ApplicationDeclined {
                application_id,
                reason: self.reason,
            },
        )))
    }
}

/// Body of `POST /v1/applications/{id}/withdraw` (may be empty).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WithdrawApplication {
    #[serde(default)]
    pub reason: Option<String>,
}

impl CommandBody for WithdrawApplication {
    fn into_event(self, application_id: String) -> Result<DomainEvent, Problem> {
        Ok(DomainEvent::Application(ApplicationEvent::Withdrawn(
            ApplicationWithdrawn {
                application_id,
                reason: self.reason,
            },
        )))
    }
}

/// 202 answer of a quote command: the event is durably on the bus, not yet in the read model.
#[derive(Debug, Serialize, JsonSchema)]
pub struct QuoteAccepted {
    pub quote_id: String,
    /// Pass it as `?after=` (or `X-Enrollstream-After`) to read your write.
    pub event_id: String,
}

/// 202 answer of an application command.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ApplicationAccepted {
    pub application_id: String,
    /// Pass it as `?after=` (or `X-Enrollstream-After`) to read your write.
    pub event_id: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct AcceptedEvent {
    /// The producer's id, as sent.
    pub id: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub subject: String,
    /// The event's key in the read model, derived from `source` and `id` (ids are unique per
    /// source only). Pass it as `?after=` (or `X-Enrollstream-After`) to read your write.
    pub event_key: String,
}

/// 202 answer of `POST /v1/events`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct EventsAccepted {
    pub accepted: Vec<AcceptedEvent>,
}

/// Read-model fields added to an entity's state in `GET /v1/{quotes,applications}/{id}`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ReadModelFields {
    /// Number of events applied to the entity.
    pub version: u64,
    pub status: String,
    pub last_event_id: String,
    /// When the read model was last written (wall clock of the projector). The entity's own
    /// `updated_at` is the time of its last event, which a rebuild reproduces exactly.
    pub projected_at: DateTime<Utc>,
}

/// One entry of `GET /v1/{quotes,applications}/{id}/events`, oldest first.
#[derive(Debug, Serialize, JsonSchema)]
pub struct EventLogEntry {
    pub event_id: String,
    #[serde(rename = "type")]
    pub ty: String,
    /// The entity's version after this event.
    pub version: u64,
    /// The event's CloudEvents `time`.
    pub time: DateTime<Utc>,
    pub data: Value,
    /// CloudEvents `source`: who produced the event.
    pub source: String,
    /// Where the projector read it from ("topic/partition/offset"), where known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    pub recorded_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct EventLog {
    pub events: Vec<EventLogEntry>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_and_missing_fields_are_named() {
        let err = decode::<StartApplication>(
            &json!({"applicant":{"name":"J","email":"j@x.io","age":3},"product":"p"}),
        )
        .unwrap_err();
        assert_eq!(err.details().errors[0].field, "applicant.age");
        let err = decode::<StartApplication>(&json!({"applicant":{"name":"J"},"product":"p"}))
            .unwrap_err();
        assert_eq!(err.details().errors[0].field, "applicant.email");
        let err =
            decode::<CreateQuote>(&json!({"customer_id":"C","product":"p","ammount_minor":1}))
                .unwrap_err();
        assert_eq!(err.details().errors[0].field, "ammount_minor");
        let err = decode::<SubmitApplication>(&json!({"submitted_by":"robot"})).unwrap_err();
        assert_eq!(err.details().errors[0].field, "submitted_by");
    }

    #[test]
    fn half_a_premium_names_the_missing_half() {
        let q = CreateQuote {
            customer_id: "C".into(),
            product: "p".into(),
            amount_minor: Some(1),
            currency: None,
        };
        assert_eq!(
            q.into_event("Q".into()).unwrap_err().details().errors[0].field,
            "currency"
        );
        let q = CreateQuote {
            customer_id: "C".into(),
            product: "p".into(),
            amount_minor: None,
            currency: None,
        };
        assert!(matches!(
            q.into_event("Q".into()).unwrap(),
            DomainEvent::Quote(QuoteEvent::Requested(_))
        ));
    }

    #[test]
    fn domain_fields_map_to_body_fields() {
        assert_eq!(body_field("data.applicant.email"), "applicant.email");
        assert_eq!(body_field("data"), "$");
        assert_eq!(quote_body_field("data.premium.currency"), "currency");
        assert_eq!(quote_body_field("data.product"), "product");
    }
}
