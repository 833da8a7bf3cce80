//! HTTP delivery targets: Azure Logic Apps, Salesforce and the Lead Management API, each an
//! implementation of the `Target` port. A target makes one attempt per call and classifies the
//! outcome; the delivery runner owns retries, the circuit breaker, pausing and the DLQ.
//!
//! Every request carries a key derived from the message id, the same on every retry and every
//! redelivery, so the target applies a message once however often it is sent.

pub mod http;
pub mod lead_management;
pub mod logic_apps;
pub mod salesforce;
pub mod secret;
mod signature;

pub use http::{HttpSettings, RateLimit};
pub use lead_management::{LeadManagementConfig, LeadManagementTarget};
pub use logic_apps::{LogicAppsConfig, LogicAppsTarget};
pub use salesforce::{SObjectMapping, SalesforceConfig, SalesforceMode, SalesforceTarget};
pub use secret::{Secret, SecretUrl};
pub use signature::{sign, SIGNATURE_PREFIX};

use enrollstream_domain::ids::derived_id;
use enrollstream_domain::notification::NotificationData;
use enrollstream_domain::CloudEvent;
use enrollstream_ports::target::DeliveryError;

/// A target's configuration cannot work (bad URL, zero rate limit).
#[derive(Debug, thiserror::Error)]
#[error("invalid target configuration: {0}")]
pub struct ConfigError(pub String);

pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// The idempotency key a target sees for a message: derived from the message id and the target
/// name, so it is stable across retries and redeliveries, and two targets behind one gateway
/// never share keys.
pub fn idempotency_key(target: &str, message_id: &str) -> String {
    derived_id(&["delivery", target, message_id])
}

/// The notification in a CloudEvent's data; a message that is not one can never be delivered.
pub fn notification(event: &CloudEvent) -> Result<NotificationData, DeliveryError> {
    serde_json::from_value(event.data.clone()).map_err(|e| DeliveryError::Permanent {
        status: None,
        error: format!("data is not a notification: {e}"),
    })
}

/// CloudEvents HTTP binary-mode headers, so the receiving side can read the envelope without
/// parsing the body, and a trace continues across the call.
fn cloudevent_headers(
    mut request: reqwest::RequestBuilder,
    event: &CloudEvent,
) -> reqwest::RequestBuilder {
    request = request
        .header("ce-specversion", &event.specversion)
        .header("ce-id", &event.id)
        .header("ce-source", &event.source)
        .header("ce-type", &event.ty);
    if let Some(subject) = &event.subject {
        request = request.header("ce-subject", subject);
    }
    if let Some(time) = event.time_rfc3339() {
        request = request.header("ce-time", time);
    }
    if let Some(tp) = &event.traceparent {
        request = request.header("traceparent", tp);
    }
    request
}
