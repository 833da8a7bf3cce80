//! Azure Logic Apps: a POST of the notification to a workflow's HTTP-trigger URL.
//!
//! The URL carries a Shared Access Signature (`sig=`) in its query string, so it is a secret:
//! it is only ever shown redacted. The body is the notification (`NotificationData`) as JSON;
//! the `Idempotency-Key` header lets the workflow drop repeats; an optional HMAC-SHA256 header
//! proves the body came from us (see docs/integrations.md).

use async_trait::async_trait;
use enrollstream_domain::routing::LOGIC_APPS;
use enrollstream_ports::target::{Delivered, Delivery, DeliveryError, Target};
use enrollstream_ports::Clock;
use reqwest::header::CONTENT_TYPE;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::http::{classify_status, error_body, transport_error, HttpSettings, Limiter, RateLimit};
use crate::secret::{Secret, SecretUrl};
use crate::{
    cloudevent_headers, idempotency_key, notification, sign, ConfigError, IDEMPOTENCY_KEY,
};

pub const DEFAULT_SIGNATURE_HEADER: &str = "X-Enrollstream-Signature";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogicAppsConfig {
    /// The workflow's HTTP-trigger URL, signature included.
    pub url: SecretUrl,
    /// Key of the HMAC-SHA256 body signature; no signature header without it.
    #[serde(default)]
    pub signing_key: Option<Secret>,
    #[serde(default = "default_signature_header")]
    pub signature_header: String,
    #[serde(default)]
    pub http: HttpSettings,
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
}

fn default_signature_header() -> String {
    DEFAULT_SIGNATURE_HEADER.to_string()
}

impl LogicAppsConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: SecretUrl::new(url),
            signing_key: None,
            signature_header: default_signature_header(),
            http: HttpSettings::default(),
            rate_limit: None,
        }
    }
}

pub struct LogicAppsTarget {
    url: reqwest::Url,
    shown_url: String,
    signing_key: Option<Secret>,
    signature_header: reqwest::header::HeaderName,
    client: reqwest::Client,
    limiter: Limiter,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for LogicAppsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogicAppsTarget")
            .field("url", &self.shown_url)
            .field("signed", &self.signing_key.is_some())
            .finish()
    }
}

impl LogicAppsTarget {
    pub fn new(config: &LogicAppsConfig, clock: Arc<dyn Clock>) -> Result<Self, ConfigError> {
        let url = reqwest::Url::parse(config.url.expose())
            .map_err(|e| ConfigError(format!("logic_apps.url {}: {e}", config.url)))?;
        let signature_header = config.signature_header.parse().map_err(|e| {
            ConfigError(format!(
                "logic_apps.signature_header {:?}: {e}",
                config.signature_header
            ))
        })?;
        Ok(Self {
            url,
            shown_url: config.url.redacted(),
            signing_key: config.signing_key.clone().filter(|k| !k.is_empty()),
            signature_header,
            client: config.http.client()?,
            limiter: Limiter::new(config.rate_limit.as_ref())?,
            clock,
        })
    }
}

#[async_trait]
impl Target for LogicAppsTarget {
    fn name(&self) -> &str {
        LOGIC_APPS
    }

    async fn deliver(&self, delivery: &Delivery) -> Result<Delivered, DeliveryError> {
        let event = &delivery.event;
        let data = notification(event)?;
        let body = serde_json::to_vec(&data).expect("a notification serialises");
        let mut request = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(IDEMPOTENCY_KEY, idempotency_key(LOGIC_APPS, &event.id));
        if let Some(key) = &self.signing_key {
            request = request.header(
                self.signature_header.clone(),
                sign(key.expose().as_bytes(), &body),
            );
        }
        let request = cloudevent_headers(request, event).body(body);
        self.limiter.until_ready().await;
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        if status.is_success() {
            return Ok(Delivered {
                status: status.as_u16(),
                detail: "accepted".into(),
            });
        }
        let headers = response.headers().clone();
        let body = error_body(response).await;
        Err(classify_status(
            status,
            &headers,
            &body,
            self.clock.as_ref(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_signature() {
        let mut config =
            LogicAppsConfig::new("https://example.test/invoke?api-version=1&sig=TOPSECRET");
        config.signing_key = Some(Secret::new("KEY"));
        let target =
            LogicAppsTarget::new(&config, Arc::new(enrollstream_ports::SystemClock)).unwrap();
        let shown = format!("{config:?} {target:?}");
        assert!(!shown.contains("TOPSECRET"), "{shown}");
        assert!(!shown.contains("KEY\""), "{shown}");
    }

    #[test]
    fn a_malformed_url_is_refused_without_showing_the_signature() {
        let err = LogicAppsTarget::new(
            &LogicAppsConfig::new("not a url?sig=TOPSECRET"),
            Arc::new(enrollstream_ports::SystemClock),
        )
        .unwrap_err();
        assert!(!err.to_string().contains("TOPSECRET"), "{err}");
    }
}
