//! What a credential may do. `admin` may do everything; the others are one kind of write each,
//! or reading.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scope {
    /// `POST /v1/quotes`, `PATCH /v1/quotes/{id}`, the quote mutations.
    #[serde(rename = "quotes:write")]
    QuotesWrite,
    /// The application commands and mutations.
    #[serde(rename = "applications:write")]
    ApplicationsWrite,
    /// `POST /v1/events`: CloudEvents from upstream producers.
    #[serde(rename = "events:write")]
    EventsWrite,
    /// Reads of quotes and applications (REST and GraphQL queries).
    #[serde(rename = "read")]
    Read,
    /// Everything, and what only operators do: metrics, key management.
    #[serde(rename = "admin")]
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 5] = [
        Scope::QuotesWrite,
        Scope::ApplicationsWrite,
        Scope::EventsWrite,
        Scope::Read,
        Scope::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::QuotesWrite => "quotes:write",
            Scope::ApplicationsWrite => "applications:write",
            Scope::EventsWrite => "events:write",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown scope {s:?}; known: {}", known.join(", "))
            })
    }
}

/// Who is calling, as the guard established it; handlers and resolvers read it from the
/// request's extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The key's name or the token's subject: what logs name, never the secret.
    pub name: String,
    pub scopes: Vec<Scope>,
}

impl Principal {
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&Scope::Admin) || self.scopes.contains(&scope)
    }

    /// The caller when `[api] auth = "off"`: everything is allowed.
    pub fn anonymous() -> Self {
        Self {
            name: "anonymous (auth off)".into(),
            scopes: vec![Scope::Admin],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_admin_allows_everything() {
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>().unwrap(), scope);
            assert_eq!(
                serde_json::to_value(scope).unwrap(),
                serde_json::json!(scope.as_str())
            );
        }
        assert!("write"
            .parse::<Scope>()
            .unwrap_err()
            .contains("quotes:write"));
        let reader = Principal {
            name: "r".into(),
            scopes: vec![Scope::Read],
        };
        assert!(reader.allows(Scope::Read) && !reader.allows(Scope::QuotesWrite));
        assert!(Principal::anonymous().allows(Scope::EventsWrite));
    }
}
