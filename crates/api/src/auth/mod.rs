//! Who may call what. A caller sends an API key (`Authorization: Bearer KEY` or `X-Api-Key`)
//! or, where configured, a JWT bearer token; the guard (`guard`) finds the route's access rule
//! (`access`), checks the credential and its scopes, applies the caller's request rate, and
//! hands the caller (`Principal`) to the handler. Logs name the key, never the key itself.

pub mod access;
pub(crate) mod admin;
pub mod config;
pub(crate) mod guard;
pub mod jwt;
pub mod keys;
pub mod problems;
pub mod scope;

use axum::http::HeaderMap;
use enrollstream_ports::{Clock, CredentialStore, StoreError};
use lru::LruCache;
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use config::{AuthConfig, AuthMode, JwtConfig};
pub use scope::{Principal, Scope};

/// Verified keys kept in memory; more distinct keys than this in one TTL only cost lookups.
const CACHE_CAPACITY: usize = 10_000;

/// How often at most one process records that a key was used.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// Why a request carries no usable credential (the text of the 401, never the secret).
#[derive(Debug)]
pub enum Refusal {
    Unauthenticated(String),
    /// The credential store could not answer: 503, not 401 (the key may well be valid).
    Unavailable(StoreError),
    /// The key would need a store lookup, and the caller's address may not have one now
    /// (too many refused credentials from it).
    Throttled,
}

pub struct Authenticator {
    mode: AuthMode,
    keys: Arc<dyn CredentialStore>,
    jwt: Option<jwt::Verifier>,
    ttl: Duration,
    public_metrics: bool,
    clock: Arc<dyn Clock>,
    cache: Mutex<LruCache<String, (Principal, Instant)>>,
    touched: Mutex<HashMap<String, Instant>>,
}

impl Authenticator {
    pub async fn new(
        mode: AuthMode,
        config: &AuthConfig,
        keys: Arc<dyn CredentialStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, String> {
        let jwt = match &config.jwt {
            Some(jwt) if mode == AuthMode::On => Some(jwt::Verifier::new(jwt.clone()).await?),
            _ => None,
        };
        Ok(Self {
            mode,
            keys,
            jwt,
            ttl: config.key_cache_ttl,
            public_metrics: config.public_metrics,
            clock,
            cache: Mutex::new(LruCache::new(
                NonZeroUsize::new(CACHE_CAPACITY).expect("non-zero"),
            )),
            touched: Mutex::new(HashMap::new()),
        })
    }

    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// The credential store (key management over HTTP).
    pub fn keys(&self) -> &Arc<dyn CredentialStore> {
        &self.keys
    }

    pub fn public_metrics(&self) -> bool {
        self.public_metrics
    }

    /// The credential of a request: the caller it names, or why there is none.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, Refusal> {
        self.authenticate_with(headers, true).await
    }

    /// The same; without `lookups`, only keys verified recently (in the cache) and JWTs pass.
    pub async fn authenticate_with(
        &self,
        headers: &HeaderMap,
        lookups: bool,
    ) -> Result<Principal, Refusal> {
        if self.mode == AuthMode::Off {
            return Ok(Principal::anonymous());
        }
        let token = credential(headers).map_err(Refusal::Unauthenticated)?;
        if token.starts_with(keys::PREFIX) {
            return self.api_key(token, lookups).await;
        }
        match &self.jwt {
            Some(verifier) if token.contains('.') => verifier
                .verify(token)
                .await
                .map_err(Refusal::Unauthenticated),
            _ => Err(Refusal::Unauthenticated(
                "the credential is not an API key of this system".into(),
            )),
        }
    }

    async fn api_key(&self, key: &str, lookups: bool) -> Result<Principal, Refusal> {
        if !keys::well_formed(key) {
            return Err(Refusal::Unauthenticated("the API key is malformed".into()));
        }
        let hash = keys::hash(key);
        if let Some(principal) = self.cached(&hash) {
            return Ok(principal);
        }
        if !lookups {
            return Err(Refusal::Throttled);
        }
        let record = self
            .keys
            .api_key_by_hash(&hash)
            .await
            .map_err(Refusal::Unavailable)?
            .ok_or_else(|| Refusal::Unauthenticated("unknown API key".into()))?;
        if record.revoked_at.is_some() {
            return Err(Refusal::Unauthenticated(format!(
                "the API key {:?} is revoked",
                record.name
            )));
        }
        let principal = Principal {
            name: record.name.clone(),
            // A scope this build does not know (written by a newer one) grants nothing.
            scopes: record
                .scopes
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect(),
        };
        self.lock_cache()
            .put(hash, (principal.clone(), Instant::now()));
        self.touch(&record.name);
        Ok(principal)
    }

    fn cached(&self, hash: &str) -> Option<Principal> {
        let mut cache = self.lock_cache();
        match cache.get(hash) {
            Some((principal, at)) if at.elapsed() < self.ttl => Some(principal.clone()),
            Some(_) => {
                cache.pop(hash);
                None
            }
            None => None,
        }
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, LruCache<String, (Principal, Instant)>> {
        // A panic while holding the lock cannot leave the cache inconsistent for our use.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record the use in the store now and then, off the request's path: an audit hint, not
    /// worth a write per request or a failed request.
    fn touch(&self, name: &str) {
        {
            let mut touched = self.touched.lock().unwrap_or_else(|p| p.into_inner());
            if touched
                .get(name)
                .is_some_and(|at| at.elapsed() < TOUCH_EVERY)
            {
                return;
            }
            touched.insert(name.to_string(), Instant::now());
        }
        let (keys, name, at) = (self.keys.clone(), name.to_string(), self.clock.now());
        tokio::spawn(async move {
            if let Err(e) = keys.touch_api_key(&name, at).await {
                tracing::debug!(error = %e, credential = %name, "could not record the key's last use");
            }
        });
    }
}

/// The credential of a request: `X-Api-Key`, or the token of `Authorization: Bearer`.
fn credential(headers: &HeaderMap) -> Result<&str, String> {
    let api_key = headers.get("x-api-key");
    let authorization = headers.get(axum::http::header::AUTHORIZATION);
    fn text<'a>(v: &'a axum::http::HeaderValue, name: &str) -> Result<&'a str, String> {
        v.to_str()
            .map(str::trim)
            .map_err(|_| format!("{name} must be visible ASCII"))
    }
    match (api_key, authorization) {
        (Some(_), Some(_)) => {
            Err("send one credential: X-Api-Key or Authorization, not both".into())
        }
        (Some(v), None) => text(v, "X-Api-Key"),
        (None, Some(v)) => {
            let value = text(v, "Authorization")?;
            match value.split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Ok(token.trim()),
                _ => Err("Authorization must use the Bearer scheme".into()),
            }
        }
        (None, None) => Err("no credential".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn credentials_come_from_either_header() {
        let mut h = HeaderMap::new();
        assert_eq!(credential(&h).unwrap_err(), "no credential");
        h.insert("x-api-key", HeaderValue::from_static("es_k"));
        assert_eq!(credential(&h).unwrap(), "es_k");
        h.insert("authorization", HeaderValue::from_static("Bearer es_k"));
        assert!(credential(&h).unwrap_err().contains("not both"));
        h.remove("x-api-key");
        assert_eq!(credential(&h).unwrap(), "es_k");
        h.insert("authorization", HeaderValue::from_static("Basic dTpw"));
        assert!(credential(&h).unwrap_err().contains("Bearer"));
    }
}
