//! Salesforce: the OAuth 2.0 token endpoint (client-credentials flow), sObject upsert by
//! external id (`PATCH /services/data/vXX.X/sobjects/{Object}/{Field}/{value}`) and Platform
//! Event publishing (`POST /services/data/vXX.X/sobjects/{Event__e}`), with bearer tokens that
//! can be revoked (an expired session) and REST error bodies shaped like Salesforce's.

use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Mutex, OnceLock};

use super::fake::{Fake, Recorded, Reply, Role};
use super::ledger::{Applied, Ledger};

pub const TOKEN_PATH: &str = "/services/oauth2/token";

pub struct Salesforce {
    client_id: String,
    instance_url: OnceLock<String>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    client_secret: String,
    valid_tokens: HashSet<String>,
    issued: u64,
    token_requests: u64,
    records: BTreeMap<String, Map<String, Value>>,
}

impl Fake<Salesforce> {
    pub async fn salesforce(client_id: &str, client_secret: &str) -> Self {
        let fake = Fake::start(Salesforce {
            client_id: client_id.to_string(),
            instance_url: OnceLock::new(),
            state: Mutex::new(State {
                client_secret: client_secret.to_string(),
                ..State::default()
            }),
        })
        .await;
        let _ = fake.role().instance_url.set(fake.base_url().to_string());
        fake
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.role().state.lock().expect("salesforce state")
    }

    /// Every issued token stops working (the session expired or was revoked).
    pub fn expire_tokens(&self) {
        self.state().valid_tokens.clear();
    }

    /// The connected app's secret changes: our configured secret is wrong from now on, and
    /// existing sessions end.
    pub fn rotate_client_secret(&self, secret: &str) {
        let mut state = self.state();
        state.client_secret = secret.to_string();
        state.valid_tokens.clear();
    }

    pub fn token_requests(&self) -> u64 {
        self.state().token_requests
    }

    /// The fields of a record by `{Object}/{Field}/{value}`.
    pub fn record(&self, object: &str, field: &str, value: &str) -> Option<Map<String, Value>> {
        self.state()
            .records
            .get(&format!("{object}/{field}/{value}"))
            .cloned()
    }

    pub fn record_count(&self) -> usize {
        self.state().records.len()
    }
}

fn sf_error(status: u16, code: &str, message: &str) -> Reply {
    Reply::json(status, json!([{"message": message, "errorCode": code}]))
}

impl Salesforce {
    fn token(&self, request: &Recorded) -> Reply {
        let form = request.form();
        let mut state = self.state.lock().expect("salesforce state");
        state.token_requests += 1;
        if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
            return Reply::json(
                400,
                json!({"error": "unsupported_grant_type", "error_description": "grant type not supported"}),
            );
        }
        if form.get("client_id") != Some(&self.client_id)
            || form.get("client_secret") != Some(&state.client_secret)
        {
            return Reply::json(
                400,
                json!({"error": "invalid_client", "error_description": "invalid client credentials"}),
            );
        }
        state.issued += 1;
        let token = format!("00Dfake!tok{}", state.issued);
        state.valid_tokens.insert(token.clone());
        Reply::json(
            200,
            json!({
                "access_token": token,
                "instance_url": self.instance_url.get().cloned().unwrap_or_default(),
                "id": format!("{}/id/00Dfake/005fake", self.instance_url.get().cloned().unwrap_or_default()),
                "token_type": "Bearer",
                "issued_at": "1767225600000",
                "signature": "fake",
            }),
        )
    }

    fn api(&self, request: &Recorded, ledger: &mut Ledger) -> Reply {
        let mut state = self.state.lock().expect("salesforce state");
        let bearer = request
            .header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "));
        if !bearer.is_some_and(|t| state.valid_tokens.contains(t)) {
            return sf_error(401, "INVALID_SESSION_ID", "Session expired or invalid");
        }
        // /services/data/vXX.X/sobjects/<rest>
        let segments: Vec<String> = request
            .path
            .split('/')
            .skip(5)
            .map(super::fake::decode_path_segment)
            .collect();
        let Some(Value::Object(fields)) = request.json() else {
            return sf_error(400, "JSON_PARSER_ERROR", "body is not a JSON object");
        };
        match (request.method.as_str(), segments.as_slice()) {
            ("PATCH", [object, field, value]) => {
                let (Some(notification_id), Some(version)) = (
                    fields
                        .get("Last_Notification_Id__c")
                        .and_then(Value::as_str),
                    fields.get("Entity_Version__c").and_then(Value::as_u64),
                ) else {
                    return sf_error(
                        400,
                        "REQUIRED_FIELD_MISSING",
                        "Required fields are missing: [Last_Notification_Id__c, Entity_Version__c]",
                    );
                };
                let path = format!("{object}/{field}/{value}");
                ledger.apply(
                    &format!("{path}#{notification_id}"),
                    Applied {
                        notification_id: notification_id.to_string(),
                        key: path.clone(),
                        entity_id: value.clone(),
                        entity_version: version,
                    },
                );
                let created = !state.records.contains_key(&path);
                let record = state.records.entry(path).or_default();
                record.insert(field.clone(), Value::String(value.clone()));
                record.extend(fields);
                let id = format!("a00fake{:011}", value.len());
                Reply::json(
                    if created { 201 } else { 200 },
                    json!({"id": id, "success": true, "errors": [], "created": created}),
                )
            }
            ("POST", [event]) if event.ends_with("__e") => {
                let (Some(notification_id), Some(entity_id), Some(version)) = (
                    fields.get("Notification_Id__c").and_then(Value::as_str),
                    fields.get("Entity_Id__c").and_then(Value::as_str),
                    fields.get("Entity_Version__c").and_then(Value::as_u64),
                ) else {
                    return sf_error(400, "REQUIRED_FIELD_MISSING", "Required fields are missing");
                };
                // Subscribers dedupe Platform Events by the notification id they carry.
                ledger.apply(
                    notification_id,
                    Applied {
                        notification_id: notification_id.to_string(),
                        key: notification_id.to_string(),
                        entity_id: entity_id.to_string(),
                        entity_version: version,
                    },
                );
                Reply::json(201, json!({"id": "e00fake", "success": true, "errors": []}))
            }
            _ => sf_error(404, "NOT_FOUND", "The requested resource does not exist"),
        }
    }
}

impl Role for Salesforce {
    fn handle(&self, request: &Recorded, ledger: &mut Ledger) -> Reply {
        if request.path == TOKEN_PATH && request.method == "POST" {
            return self.token(request);
        }
        if request.path.starts_with("/services/data/") {
            return self.api(request, ledger);
        }
        Reply::empty(404)
    }
}
