//! Secrets in configuration: readable by the code that needs them, never by `Debug`, logs or
//! error messages.

use serde::{Deserialize, Serialize};
use std::fmt;

const REDACTED: &str = "***";

/// A credential (client secret, API key, signing key).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_string())
    }
}

/// Query parameters that carry a credential: the Shared Access Signature of a Logic Apps HTTP
/// trigger (`sig`) and the function key of an Azure Functions URL (`code`).
const SECRET_QUERY_PARAMS: &[&str] = &["sig", "code"];

/// A URL whose query string may hold a credential: the whole URL is needed to call it, but only
/// its redacted form is ever shown.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with every secret query value replaced by `***`.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Replace the values of secret query parameters; works on text that is not a valid URL too, so
/// a malformed configured URL is still shown without its signature.
pub fn redact_url(url: &str) -> String {
    let Some((base, rest)) = url.split_once('?') else {
        return url.to_string();
    };
    let (query, fragment) = match rest.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (rest, None),
    };
    let query = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _))
                if SECRET_QUERY_PARAMS.contains(&name.to_ascii_lowercase().as_str()) =>
            {
                format!("{name}={REDACTED}")
            }
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&");
    match fragment {
        Some(f) => format!("{base}?{query}#{f}"),
        None => format!("{base}?{query}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn sas_signature_is_redacted() {
        let u = SecretUrl::new(
            "https://prod-01.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?api-version=2016-10-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=S3cr3t",
        );
        let shown = format!("{u:?} {u}");
        assert!(!shown.contains("S3cr3t"), "{shown}");
        assert!(shown.contains("sig=***"));
        assert!(shown.contains("api-version=2016-10-01"));
        assert_eq!(redact_url("http://h/p?SIG=x#f"), "http://h/p?SIG=***#f");
        assert_eq!(redact_url("http://h/p"), "http://h/p");
    }
}
