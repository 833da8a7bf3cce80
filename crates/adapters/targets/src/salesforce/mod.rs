//! Salesforce: the REST API with an OAuth 2.0 client-credentials token.
//!
//! Two modes, chosen by configuration:
//! - `upsert`: `PATCH /services/data/vXX.X/sobjects/{Object}/{ExternalIdField}/{entity id}`. The
//!   record of the entity is created or updated by its external id, so a retried call never
//!   creates a duplicate, and the same notification twice writes the same values.
//! - `platform_event`: `POST /services/data/vXX.X/sobjects/{Event__e}`, the notification id in a
//!   field for subscribers to dedupe.
//!
//! A 401 drops the cached token and the call is made once more with a new one; a second 401
//! means the credentials are wrong, and the runner pauses the target.

mod errors;
mod records;
mod token;

use async_trait::async_trait;
use enrollstream_domain::notification::NotificationData;
use enrollstream_domain::routing::SALESFORCE;
use enrollstream_domain::EntityKind;
use enrollstream_ports::target::{Delivered, Delivery, DeliveryError, Target};
use enrollstream_ports::Clock;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

use crate::http::{error_body, transport_error, HttpSettings, Limiter, RateLimit};
use crate::secret::Secret;
use crate::{cloudevent_headers, notification, ConfigError};
pub use records::{event_fields, record_fields};
use token::{Token, TokenSource};

pub const TOKEN_PATH: &str = "/services/oauth2/token";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SalesforceConfig {
    /// The authorization server: `https://login.salesforce.com`, `https://test.salesforce.com`
    /// or the org's My Domain URL. The token endpoint is `{login_url}/services/oauth2/token`.
    pub login_url: String,
    /// The REST API base; by default the `instance_url` of the token response.
    #[serde(default)]
    pub instance_url: Option<String>,
    pub client_id: String,
    pub client_secret: Secret,
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// How long a token is reused when the token response does not say (Salesforce does not for
    /// this flow); a 401 before that refreshes it anyway.
    #[serde(default = "default_token_ttl", with = "humantime_serde")]
    pub token_ttl: Duration,
    #[serde(default)]
    pub mode: SalesforceMode,
    #[serde(default)]
    pub http: HttpSettings,
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
}

fn default_api_version() -> String {
    "v62.0".to_string()
}

fn default_token_ttl() -> Duration {
    Duration::from_secs(3600)
}

impl SalesforceConfig {
    pub fn new(login_url: impl Into<String>, client_id: &str, client_secret: &str) -> Self {
        Self {
            login_url: login_url.into(),
            instance_url: None,
            client_id: client_id.to_string(),
            client_secret: Secret::new(client_secret),
            api_version: default_api_version(),
            token_ttl: default_token_ttl(),
            mode: SalesforceMode::default(),
            http: HttpSettings::default(),
            rate_limit: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SalesforceMode {
    /// Upsert the entity's record by an external id field.
    Upsert {
        #[serde(default = "SObjectMapping::application")]
        application: SObjectMapping,
        #[serde(default = "SObjectMapping::quote")]
        quote: SObjectMapping,
    },
    /// Publish a Platform Event per notification.
    PlatformEvent {
        #[serde(default = "default_event")]
        event: String,
    },
}

fn default_event() -> String {
    "Enrollstream_Notification__e".to_string()
}

impl Default for SalesforceMode {
    fn default() -> Self {
        SalesforceMode::Upsert {
            application: SObjectMapping::application(),
            quote: SObjectMapping::quote(),
        }
    }
}

/// Which sObject holds an entity kind, and which of its fields is our entity id (an External ID
/// field, unique).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SObjectMapping {
    pub object: String,
    pub external_id_field: String,
}

impl SObjectMapping {
    pub fn application() -> Self {
        Self {
            object: "Enrollment__c".into(),
            external_id_field: "Enrollment_Id__c".into(),
        }
    }

    pub fn quote() -> Self {
        Self {
            object: "Quote__c".into(),
            external_id_field: "Quote_Id__c".into(),
        }
    }
}

pub struct SalesforceTarget {
    instance_url: Option<reqwest::Url>,
    api_version: String,
    mode: SalesforceMode,
    client: reqwest::Client,
    tokens: TokenSource,
    limiter: Limiter,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for SalesforceTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SalesforceTarget")
            .field("token_url", &self.tokens.token_url.as_str())
            .field("client_id", &self.tokens.client_id)
            .field("mode", &self.mode)
            .finish()
    }
}

impl SalesforceTarget {
    pub fn new(config: &SalesforceConfig, clock: Arc<dyn Clock>) -> Result<Self, ConfigError> {
        let parse = |what: &str, s: &str| {
            reqwest::Url::parse(s).map_err(|e| ConfigError(format!("salesforce.{what} {s:?}: {e}")))
        };
        let login = config.login_url.trim_end_matches('/');
        let token_url = parse("login_url", &format!("{login}{TOKEN_PATH}"))?;
        let instance_url = config
            .instance_url
            .as_deref()
            .map(|u| parse("instance_url", u))
            .transpose()?;
        let client = config.http.client()?;
        Ok(Self {
            instance_url,
            api_version: config.api_version.clone(),
            mode: config.mode.clone(),
            tokens: TokenSource {
                client: client.clone(),
                token_url,
                client_id: config.client_id.clone(),
                client_secret: config.client_secret.clone(),
                ttl: config.token_ttl,
                clock: clock.clone(),
                cached: Default::default(),
            },
            client,
            limiter: Limiter::new(config.rate_limit.as_ref())?,
            clock,
        })
    }

    /// Method, URL and body of the call for `n`.
    fn request_for(
        &self,
        n: &NotificationData,
        token: &Token,
    ) -> Result<(Method, reqwest::Url, serde_json::Value), DeliveryError> {
        let mut url = match &self.instance_url {
            Some(u) => u.clone(),
            None => reqwest::Url::parse(&token.instance_url).map_err(|_| {
                DeliveryError::Unauthorized {
                    status: 200,
                    error:
                        "the token response has no usable instance_url; set salesforce.instance_url"
                            .into(),
                }
            })?,
        };
        let (method, tail, body): (Method, Vec<&str>, _) = match &self.mode {
            SalesforceMode::Upsert { application, quote } => {
                let mapping = match n.entity_kind {
                    EntityKind::Application => application,
                    EntityKind::Quote => quote,
                };
                (
                    Method::PATCH,
                    vec![
                        mapping.object.as_str(),
                        mapping.external_id_field.as_str(),
                        n.entity_id.as_str(),
                    ],
                    record_fields(n),
                )
            }
            SalesforceMode::PlatformEvent { event } => {
                (Method::POST, vec![event.as_str()], event_fields(n))
            }
        };
        url.path_segments_mut()
            .map_err(|_| DeliveryError::Unauthorized {
                status: 200,
                error: "salesforce.instance_url cannot be a base URL".into(),
            })?
            .pop_if_empty()
            .extend(["services", "data", &self.api_version, "sobjects"])
            .extend(tail);
        Ok((method, url, body))
    }
}

#[async_trait]
impl Target for SalesforceTarget {
    fn name(&self) -> &str {
        SALESFORCE
    }

    async fn deliver(&self, delivery: &Delivery) -> Result<Delivered, DeliveryError> {
        let n = notification(&delivery.event)?;
        let mut refreshed = false;
        loop {
            let token = self.tokens.get().await?;
            let (method, url, body) = self.request_for(&n, &token)?;
            self.limiter.until_ready().await;
            let request = self
                .client
                .request(method, url)
                .bearer_auth(token.access_token.expose())
                .json(&body);
            let response = cloudevent_headers(request, &delivery.event)
                .send()
                .await
                .map_err(transport_error)?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && !refreshed {
                // The session expired or was revoked: one new token, one more try.
                tracing::info!(
                    target_name = SALESFORCE,
                    "access token refused, fetching a new one"
                );
                self.tokens.invalidate(&token).await;
                refreshed = true;
                continue;
            }
            if status.is_success() {
                let detail = match (&self.mode, status) {
                    (SalesforceMode::Upsert { .. }, StatusCode::CREATED) => "created",
                    (SalesforceMode::Upsert { .. }, _) => "updated",
                    (SalesforceMode::PlatformEvent { .. }, _) => "published",
                };
                return Ok(Delivered {
                    status: status.as_u16(),
                    detail: detail.into(),
                });
            }
            let headers = response.headers().clone();
            let body = error_body(response).await;
            return Err(errors::classify(
                status,
                &headers,
                &body,
                self.clock.as_ref(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn config_reads_both_modes_with_defaults() {
        let c: SalesforceConfig = serde_json::from_value(json!({
            "login_url": "https://login.salesforce.com",
            "client_id": "id",
            "client_secret": "s3cret",
            "token_ttl": "30m",
        }))
        .unwrap();
        assert_eq!(c.mode, SalesforceMode::default());
        assert_eq!(c.token_ttl, Duration::from_secs(1800));
        assert!(!format!("{c:?}").contains("s3cret"));
        let c: SalesforceConfig = serde_json::from_value(json!({
            "login_url": "https://login.salesforce.com",
            "client_id": "id",
            "client_secret": "s",
            "mode": {"kind": "platform_event"},
        }))
        .unwrap();
        assert_eq!(
            c.mode,
            SalesforceMode::PlatformEvent {
                event: "Enrollstream_Notification__e".into()
            }
        );
    }
}
