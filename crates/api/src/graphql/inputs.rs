//! The mutations' inputs. Each serialises to exactly the JSON body of its REST command, which
//! then goes through the same decoding and validation (`dto`); a test checks the fields match
//! the REST bodies' schemas, so the two transports cannot drift apart.

use async_graphql::{Enum, InputObject};
use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Debug, InputObject, Serialize)]
pub struct CreateQuoteInput {
    pub customer_id: String,
    pub product: String,
    /// Premium in the currency's minor unit (cents for USD); with `currency`, the quote is priced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount_minor: Option<i64>,
    /// ISO 4217 code, three upper-case letters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

#[derive(Debug, Default, InputObject, Serialize)]
pub struct UpdateQuoteInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount_minor: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
}

#[derive(Debug, InputObject, Serialize)]
pub struct ApplicantInput {
    pub name: String,
    pub email: String,
}

#[derive(Debug, InputObject, Serialize)]
pub struct BrokerInput {
    pub id: String,
    pub name: String,
    pub email: String,
}

#[derive(Debug, InputObject, Serialize)]
pub struct StartApplicationInput {
    pub applicant: ApplicantInput,
    pub product: String,
    /// The quote the application follows, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quote_id: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubmittedBy {
    /// A broker submitted: the member's signature is collected afterwards (with reminders).
    Broker,
    /// The member submitted and signed in one step.
    Member,
}

#[derive(Debug, InputObject, Serialize)]
pub struct SubmitApplicationInput {
    pub submitted_by: SubmittedBy,
    /// Required when `submittedBy` is `BROKER`, refused otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker: Option<BrokerInput>,
}

#[derive(Debug, InputObject, Serialize)]
pub struct RecordSignatureInput {
    pub signed_by: String,
    /// When the member signed; the time of the request if absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Default, InputObject, Serialize)]
pub struct ApproveApplicationInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
}

#[derive(Debug, InputObject, Serialize)]
pub struct DeclineApplicationInput {
    pub reason: String,
}

#[derive(Debug, Default, InputObject, Serialize)]
pub struct WithdrawApplicationInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
