//! API keys: 256 random bits, shown once; only their SHA-256 is stored. A fast hash is enough
//! for a key with that much entropy (nothing to guess, nothing a slow hash would protect), and
//! it keeps the per-request lookup cheap.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use enrollstream_ports::ApiKeyRecord;
use rand::TryRngCore;
use sha2::{Digest, Sha256};

/// Every key starts with this, so a leaked key is recognisable (secret scanners, logs) and a
/// bearer token is told apart from a JWT without parsing it.
pub const PREFIX: &str = "es_";

/// A new key: the prefix and 32 random bytes from the OS generator, URL-safe base64.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .expect("the operating system's random generator works");
    format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The hex SHA-256 the store keeps for `key`.
pub fn hash(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A key's shape: the prefix and 43 base64url characters.
pub fn well_formed(key: &str) -> bool {
    key.strip_prefix(PREFIX).is_some_and(|rest| {
        rest.len() == 43
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// Key names appear in logs, metrics and `api-key list`: short, printable, no spaces.
pub fn valid_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "key name {name:?} must be 1 to 64 characters of letters, digits, '-', '_', '.', '@'"
        ))
    }
}

/// A new key named `name` with `scopes` (sorted, without repeats), and the record the store
/// keeps of it: what `api-key create` and `POST /v1/admin/api-keys` both make.
pub fn new_key(
    name: &str,
    scopes: &[super::Scope],
    now: DateTime<Utc>,
) -> Result<(String, ApiKeyRecord), String> {
    valid_name(name)?;
    if scopes.is_empty() {
        return Err("a key needs at least one scope".into());
    }
    let mut names: Vec<String> = scopes.iter().map(|s| s.as_str().to_string()).collect();
    names.sort();
    names.dedup();
    let key = generate();
    let record = ApiKeyRecord {
        name: name.to_string(),
        hash: hash(&key),
        scopes: names,
        created_at: now,
        last_used_at: None,
        revoked_at: None,
    };
    Ok((key, record))
}

/// What a listing shows of a key: everything but its hash.
pub fn listed(key: &ApiKeyRecord) -> serde_json::Value {
    serde_json::json!({
        "name": key.name,
        "scopes": key.scopes,
        "created_at": key.created_at,
        "last_used_at": key.last_used_at,
        "revoked_at": key.revoked_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_well_formed_and_hashed() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert!(well_formed(&a), "{a}");
        assert!(!well_formed("es_short") && !well_formed(&a.replace("es_", "xx_")));
        assert_eq!(hash(&a).len(), 64);
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
        assert!(valid_name("ci-deploy_1").is_ok());
        assert!(valid_name("").is_err() && valid_name("a b").is_err());
    }
}
