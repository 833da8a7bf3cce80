//! The Lead Management REST API: each lead message (`com.enrollstream.lead.v1`, made by the lead
//! producer) is POSTed as JSON to the configured endpoint, with an `Idempotency-Key` derived from
//! the lead message id, which is itself derived from the notification id.

use async_trait::async_trait;
use enrollstream_domain::routing::LEAD_MANAGEMENT;
use enrollstream_ports::target::{Delivered, Delivery, DeliveryError, Target};
use enrollstream_ports::Clock;
use reqwest::header::CONTENT_TYPE;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::http::{classify_status, error_body, transport_error, HttpSettings, Limiter, RateLimit};
use crate::secret::Secret;
use crate::{cloudevent_headers, idempotency_key, ConfigError, IDEMPOTENCY_KEY};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeadManagementConfig {
    /// Where lead messages are POSTed, e.g. `https://leads.example.com/api/v1/lead-events`.
    pub endpoint: String,
    #[serde(default)]
    pub api_key: Option<Secret>,
    #[serde(default = "default_api_key_header")]
    pub api_key_header: String,
    #[serde(default)]
    pub http: HttpSettings,
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
}

fn default_api_key_header() -> String {
    "X-Api-Key".to_string()
}

impl LeadManagementConfig {
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            api_key: None,
            api_key_header: default_api_key_header(),
            http: HttpSettings::default(),
            rate_limit: None,
        }
    }
}

pub struct LeadManagementTarget {
    endpoint: reqwest::Url,
    api_key: Option<(reqwest::header::HeaderName, Secret)>,
    client: reqwest::Client,
    limiter: Limiter,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for LeadManagementTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeadManagementTarget")
            .field("endpoint", &self.endpoint.as_str())
            .field("api_key", &self.api_key.as_ref().map(|(h, _)| h))
            .finish()
    }
}

impl LeadManagementTarget {
    pub fn new(config: &LeadManagementConfig, clock: Arc<dyn Clock>) -> Result<Self, ConfigError> {
        let endpoint = reqwest::Url::parse(&config.endpoint).map_err(|e| {
            ConfigError(format!(
                "lead_management.endpoint {:?}: {e}",
                config.endpoint
            ))
        })?;
        let api_key = match config.api_key.clone().filter(|k| !k.is_empty()) {
            Some(key) => {
                let header = config.api_key_header.parse().map_err(|e| {
                    ConfigError(format!(
                        "lead_management.api_key_header {:?}: {e}",
                        config.api_key_header
                    ))
                })?;
                Some((header, key))
            }
            None => None,
        };
        Ok(Self {
            endpoint,
            api_key,
            client: config.http.client()?,
            limiter: Limiter::new(config.rate_limit.as_ref())?,
            clock,
        })
    }
}

#[async_trait]
impl Target for LeadManagementTarget {
    fn name(&self) -> &str {
        LEAD_MANAGEMENT
    }

    async fn deliver(&self, delivery: &Delivery) -> Result<Delivered, DeliveryError> {
        let event = &delivery.event;
        if !event.data.get("lead_id").is_some_and(|v| v.is_string()) {
            return Err(DeliveryError::Permanent {
                status: None,
                error: format!(
                    "{} {} is not a lead message (no lead_id)",
                    event.ty, event.id
                ),
            });
        }
        let mut request = self
            .client
            .post(self.endpoint.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(IDEMPOTENCY_KEY, idempotency_key(LEAD_MANAGEMENT, &event.id));
        if let Some((header, key)) = &self.api_key {
            request = request.header(header.clone(), key.expose());
        }
        let request = cloudevent_headers(request, event)
            .body(serde_json::to_vec(&event.data).expect("JSON value serialises"));
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
