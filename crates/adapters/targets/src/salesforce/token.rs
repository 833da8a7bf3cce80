//! OAuth 2.0 client-credentials tokens for the Salesforce REST API, cached until they expire or
//! Salesforce refuses them. One fetch at a time: lanes that need a token while it is being
//! fetched wait for that fetch instead of starting their own.

use chrono::{DateTime, Utc};
use enrollstream_ports::target::DeliveryError;
use enrollstream_ports::Clock;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

use crate::http::{describe, error_body, retry_after, transport_error};
use crate::secret::Secret;

#[derive(Clone, Debug)]
pub struct Token {
    pub access_token: Secret,
    /// Where the org's REST API lives, as the token response says.
    pub instance_url: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    instance_url: Option<String>,
    /// Not sent by Salesforce for this flow (the session timeout of the connected app decides),
    /// but honoured when a proxy or another authorization server sends it.
    #[serde(default)]
    expires_in: Option<u64>,
}

pub struct TokenSource {
    pub(crate) client: reqwest::Client,
    pub(crate) token_url: reqwest::Url,
    pub(crate) client_id: String,
    pub(crate) client_secret: Secret,
    /// How long a token is trusted when the response does not say.
    pub(crate) ttl: Duration,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) cached: Mutex<Option<Token>>,
}

impl TokenSource {
    /// A valid cached token, or a new one.
    pub async fn get(&self) -> Result<Token, DeliveryError> {
        let mut slot = self.cached.lock().await;
        if let Some(token) = slot.as_ref() {
            if token.expires_at > self.clock.now() {
                return Ok(token.clone());
            }
        }
        let token = self.fetch().await?;
        *slot = Some(token.clone());
        Ok(token)
    }

    /// Forget `refused` unless another lane already replaced it.
    pub async fn invalidate(&self, refused: &Token) {
        let mut slot = self.cached.lock().await;
        if slot
            .as_ref()
            .is_some_and(|t| t.access_token == refused.access_token)
        {
            *slot = None;
        }
    }

    async fn fetch(&self) -> Result<Token, DeliveryError> {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose()),
        ];
        let response = self
            .client
            .post(self.token_url.clone())
            .form(&form)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        if !status.is_success() {
            let headers = response.headers().clone();
            let body = error_body(response).await;
            let error = format!("token request refused: {}", describe(status, &body));
            let code = status.as_u16();
            // Any other refusal of the token endpoint is a misconfiguration (wrong client id or
            // secret, flow not enabled, no run-as user): pause, do not dead-letter.
            return Err(if status.is_server_error() || matches!(code, 408 | 429) {
                DeliveryError::Transient {
                    status: Some(code),
                    retry_after: retry_after(&headers, self.clock.now()),
                    error,
                }
            } else {
                DeliveryError::Unauthorized {
                    status: code,
                    error,
                }
            });
        }
        let parsed: TokenResponse =
            response
                .json()
                .await
                .map_err(|e| DeliveryError::Transient {
                    status: Some(status.as_u16()),
                    retry_after: None,
                    error: format!("unreadable token response: {}", e.without_url()),
                })?;
        let ttl = parsed
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(self.ttl);
        Ok(Token {
            access_token: Secret::new(parsed.access_token),
            instance_url: parsed.instance_url.unwrap_or_default(),
            expires_at: self.clock.now()
                + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(1)),
        })
    }
}
