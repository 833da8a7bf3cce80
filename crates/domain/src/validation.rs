//! Errors that name the field and the reason, so that the API can answer with problem+json and the
//! projector can put the same reason on a dead letter.

use serde::Serialize;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// JSON path of the offending field, e.g. `data.applicant.email`.
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// The event or request does not have the shape its schema demands.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("invalid: {}", .errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
pub struct ValidationError {
    pub errors: Vec<FieldError>,
}

impl ValidationError {
    pub fn single(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            errors: vec![FieldError::new(field, reason)],
        }
    }

    /// `Ok(())` when nothing was collected.
    pub fn check(errors: Vec<FieldError>) -> Result<(), Self> {
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Self { errors })
        }
    }

    /// Decode `value` into `T`, naming the field path of the first error.
    pub fn decode<T: serde::de::DeserializeOwned>(
        prefix: &str,
        value: &serde_json::Value,
    ) -> Result<T, Self> {
        serde_path_to_error::deserialize(value).map_err(|err| {
            let mut path = err.path().to_string();
            let message = err.inner().to_string();
            // serde reports a missing field at its parent's path; name the field itself.
            if let Some(missing) = message
                .strip_prefix("missing field `")
                .and_then(|m| m.split('`').next())
            {
                path = if path == "." {
                    missing.to_string()
                } else {
                    format!("{path}.{missing}")
                };
            }
            let field = match (prefix.is_empty(), path.as_str()) {
                (true, ".") => String::new(),
                (true, p) => p.to_string(),
                (false, ".") => prefix.to_string(),
                (false, p) => format!("{prefix}.{p}"),
            };
            Self::single(
                if field.is_empty() {
                    "$".to_string()
                } else {
                    field
                },
                message,
            )
        })
    }
}

/// The event is well-formed but cannot follow the entity's current state.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("{event_type} is not allowed when the {entity} is {from}: {reason}")]
pub struct TransitionError {
    pub entity: &'static str,
    pub from: String,
    pub event_type: String,
    pub reason: String,
}

pub(crate) fn require_non_empty(value: &str, field: &str, errors: &mut Vec<FieldError>) {
    if value.trim().is_empty() {
        errors.push(FieldError::new(field, "must not be empty"));
    }
}

pub(crate) fn require_email(value: &str, field: &str, errors: &mut Vec<FieldError>) {
    // Deliberately loose: one '@' with something on both sides and a dot in the domain. The mail
    // server is the real judge; we only refuse what can never be delivered.
    let ok = match value.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !value.contains(char::is_whitespace)
        }
        None => false,
    };
    if !ok {
        errors.push(FieldError::new(field, "must be an email address"));
    }
}
