//! The Lead Management REST API: lead messages POSTed as JSON with an API key header, deduped
//! by `Idempotency-Key`.

use serde_json::json;
use std::sync::Mutex;

use super::fake::{Fake, Recorded, Reply, Role};
use super::ledger::{Applied, Ledger};

pub const LEAD_EVENTS_PATH: &str = "/api/v1/lead-events";
pub const API_KEY_HEADER: &str = "x-api-key";

pub struct LeadManagement {
    api_key: Mutex<String>,
}

impl Fake<LeadManagement> {
    pub async fn lead_management(api_key: &str) -> Self {
        Fake::start(LeadManagement {
            api_key: Mutex::new(api_key.to_string()),
        })
        .await
    }

    /// Where lead messages are POSTed.
    pub fn endpoint(&self) -> String {
        format!("{}{LEAD_EVENTS_PATH}", self.base_url())
    }

    /// Revoke the current key: requests with it are refused from now on.
    pub fn rotate_api_key(&self, key: &str) {
        *self.role().api_key.lock().expect("key lock") = key.to_string();
    }
}

impl Role for LeadManagement {
    fn handle(&self, request: &Recorded, ledger: &mut Ledger) -> Reply {
        if request.path != LEAD_EVENTS_PATH || request.method != "POST" {
            return Reply::empty(404);
        }
        let expected = self.api_key.lock().expect("key lock").clone();
        if request.header(API_KEY_HEADER) != Some(expected.as_str()) {
            return Reply::json(401, json!({"error": "invalid api key"}));
        }
        let Some(key) = request.header("idempotency-key") else {
            return Reply::json(400, json!({"error": "Idempotency-Key is required"}));
        };
        let body = request.json().unwrap_or_default();
        let (Some(notification_id), Some(application_id), Some(version), Some(_lead)) = (
            body["notification_id"].as_str(),
            body["application_id"].as_str(),
            body["entity_version"].as_u64(),
            body["lead_id"].as_str(),
        ) else {
            return Reply::json(422, json!({"error": "not a lead message"}));
        };
        let fresh = ledger.apply(
            key,
            Applied {
                notification_id: notification_id.to_string(),
                key: key.to_string(),
                entity_id: application_id.to_string(),
                entity_version: version,
            },
        );
        Reply::json(
            if fresh { 201 } else { 200 },
            json!({"accepted": true, "replayed": !fresh}),
        )
    }
}
