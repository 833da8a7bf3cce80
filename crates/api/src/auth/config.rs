//! Settings of authentication: `[api] auth = "on" | "off"` and the `[auth]` section (key cache,
//! metrics, JWT).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// `[api] auth`: on unless the operator turns it off for the embedded try-it mode, which is
/// logged as a warning at every start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    #[default]
    On,
    Off,
}

/// `[auth]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// How long a verified API key is trusted without asking the store again: a revocation
    /// takes effect within this time on every API process. Unknown keys are never cached.
    #[serde(with = "humantime_serde")]
    pub key_cache_ttl: Duration,
    /// Serve `/metrics` without a credential (for scrapers that cannot send one); otherwise it
    /// needs the `admin` scope.
    pub public_metrics: bool,
    /// Accept JWT bearer tokens too (`[auth.jwt]`).
    pub jwt: Option<JwtConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            key_cache_ttl: Duration::from_secs(5),
            public_metrics: false,
            jwt: None,
        }
    }
}

/// `[auth.jwt]`: tokens signed by the keys of a JWKS (a file, or a URL fetched and refreshed),
/// with this issuer and audience. Only asymmetric algorithms: a shared secret would have to be
/// configured here, and `none` is never accepted.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    pub issuer: String,
    pub audience: String,
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Printed without its query and user info, which may carry a token.
    #[serde(default, serialize_with = "serialize_redacted_url")]
    pub jwks_url: Option<String>,
    /// The claim that holds the scopes: a space-separated string (OAuth 2 `scope`) or an array.
    #[serde(default = "default_scopes_claim")]
    pub scopes_claim: String,
    /// The claim that names the caller in logs and rate limits.
    #[serde(default = "default_name_claim")]
    pub name_claim: String,
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
    /// How often a JWKS URL is fetched again (and at most how often an unknown `kid` makes it
    /// fetch early, divided by ten).
    #[serde(default = "default_refresh", with = "humantime_serde")]
    pub jwks_refresh: Duration,
}

fn default_scopes_claim() -> String {
    "scope".into()
}
fn default_name_claim() -> String {
    "sub".into()
}
fn default_algorithms() -> Vec<String> {
    vec!["RS256".into(), "ES256".into(), "EdDSA".into()]
}
fn default_leeway() -> Duration {
    Duration::from_secs(30)
}
fn default_refresh() -> Duration {
    Duration::from_secs(600)
}

/// `https://user:pw@host/jwks?token=x` → `https://***@host/jwks?***`.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, _)) => (base, "?***"),
        None => (url, ""),
    };
    let base = match (base.find("://"), base.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &base[..scheme + 3], &base[at..])
        }
        _ => base.to_string(),
    };
    format!("{base}{query}")
}

fn serialize_redacted_url<S: serde::Serializer>(
    url: &Option<String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => s.serialize_some(&redact_url(url)),
        None => s.serialize_none(),
    }
}

impl std::fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtConfig")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("jwks_file", &self.jwks_file)
            .field("jwks_url", &self.jwks_url.as_deref().map(redact_url))
            .field("scopes_claim", &self.scopes_claim)
            .field("name_claim", &self.name_claim)
            .field("algorithms", &self.algorithms)
            .field("leeway", &self.leeway)
            .field("jwks_refresh", &self.jwks_refresh)
            .finish()
    }
}

impl JwtConfig {
    pub fn validate(&self) -> Result<(), String> {
        match (&self.jwks_file, &self.jwks_url) {
            (Some(_), Some(_)) => {
                return Err("auth.jwt: set jwks_file or jwks_url, not both".into())
            }
            (None, None) => return Err("auth.jwt: set jwks_file or jwks_url".into()),
            _ => {}
        }
        if self.issuer.is_empty() || self.audience.is_empty() {
            return Err("auth.jwt: issuer and audience must not be empty".into());
        }
        for alg in &self.algorithms {
            super::jwt::algorithm(alg)?;
        }
        if self.algorithms.is_empty() {
            return Err("auth.jwt.algorithms must name at least one algorithm".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_print_without_secrets() {
        assert_eq!(
            redact_url("https://u:pw@idp.test/jwks?token=abc"),
            "https://***@idp.test/jwks?***"
        );
        assert_eq!(redact_url("https://idp.test/jwks"), "https://idp.test/jwks");
        let jwt: JwtConfig =
            toml_like(r#"{"issuer":"i","audience":"a","jwks_url":"https://idp.test/k?secret=s3"}"#);
        assert!(!format!("{jwt:?}").contains("s3"));
        assert!(!serde_json::to_string(&jwt).unwrap().contains("s3"));
        assert_eq!(jwt.scopes_claim, "scope");
        assert!(jwt.validate().is_ok());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = serde_json::from_str::<AuthConfig>(r#"{"key_cache_tl":"1s"}"#).unwrap_err();
        assert!(err.to_string().contains("key_cache_tl"), "{err}");
        let err = serde_json::from_str::<JwtConfig>(
            r#"{"issuer":"i","audience":"a","jwks_file":"f","secret":"x"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("secret"), "{err}");
    }

    fn toml_like(json: &str) -> JwtConfig {
        serde_json::from_str(json).unwrap()
    }
}
