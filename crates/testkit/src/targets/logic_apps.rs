//! Azure Logic Apps' HTTP trigger: a POST to the workflow URL, authorised by the Shared Access
//! Signature in its query string (`sig`), optionally signed with HMAC-SHA256 over the body.
//! The workflow dedupes by the `Idempotency-Key` header.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;
use std::sync::Mutex;

use super::fake::{Fake, Recorded, Reply, Role};
use super::ledger::{Applied, Ledger};

pub const WORKFLOW_PATH: &str = "/workflows/enrollstream/triggers/manual/paths/invoke";
pub const SIGNATURE_HEADER: &str = "x-enrollstream-signature";

pub struct LogicApps {
    sig: Mutex<String>,
    signing_key: Option<String>,
}

impl Fake<LogicApps> {
    /// A workflow whose trigger URL carries `sig`; with `signing_key`, every request must carry
    /// a valid `X-Enrollstream-Signature`.
    pub async fn logic_apps(sig: &str, signing_key: Option<&str>) -> Self {
        Fake::start(LogicApps {
            sig: Mutex::new(sig.to_string()),
            signing_key: signing_key.map(str::to_string),
        })
        .await
    }

    /// The trigger URL, as the Azure portal shows it.
    pub fn trigger_url(&self) -> String {
        let sig = self.role().sig.lock().expect("sig lock").clone();
        format!(
            "{}{WORKFLOW_PATH}?api-version=2016-10-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={sig}",
            self.base_url()
        )
    }

    /// Regenerate the access key: URLs with the old signature are refused from now on.
    pub fn rotate_signature(&self, sig: &str) {
        *self.role().sig.lock().expect("sig lock") = sig.to_string();
    }
}

impl Role for LogicApps {
    fn handle(&self, request: &Recorded, ledger: &mut Ledger) -> Reply {
        if request.path != WORKFLOW_PATH || request.method != "POST" {
            return Reply::empty(404);
        }
        let expected = self.sig.lock().expect("sig lock").clone();
        if request.query_param("sig").as_deref() != Some(expected.as_str()) {
            return Reply::json(
                401,
                json!({"error": {"code": "DirectApiInvalidAuthorizationSignature",
                    "message": "The provided callback URL signature is invalid."}}),
            );
        }
        if let Some(key) = &self.signing_key {
            let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
            mac.update(&request.body);
            let valid = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
            if request.header(SIGNATURE_HEADER) != Some(valid.as_str()) {
                return Reply::json(401, json!({"error": {"code": "InvalidBodySignature"}}));
            }
        }
        let Some(key) = request.header("idempotency-key") else {
            return Reply::json(
                400,
                json!({"error": {"message": "Idempotency-Key is required"}}),
            );
        };
        let Some(body) = request.json() else {
            return Reply::json(400, json!({"error": {"message": "body is not JSON"}}));
        };
        let (Some(notification_id), Some(entity_id), Some(version)) = (
            body["notification_id"].as_str(),
            body["entity_id"].as_str(),
            body["entity_version"].as_u64(),
        ) else {
            return Reply::json(400, json!({"error": {"message": "not a notification"}}));
        };
        ledger.apply(
            key,
            Applied {
                notification_id: notification_id.to_string(),
                key: key.to_string(),
                entity_id: entity_id.to_string(),
                entity_version: version,
            },
        );
        Reply::empty(202)
    }
}
