//! Readers for the deployment files of deploy/ and for what the code says they must match.

pub mod compose;
pub mod dockerfile;
pub mod image;
pub mod kubernetes;
pub mod monitoring;
pub mod promql;
pub mod source;

use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// Every document of a YAML file (merge keys `<<` resolved), as JSON values.
pub fn yaml_documents(relative: &str) -> Vec<Value> {
    let text = source::read(relative);
    yaml_serde::Deserializer::from_str(&text)
        .map(|doc| {
            let mut value = yaml_serde::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{relative}: not YAML: {e}"));
            value
                .apply_merge()
                .unwrap_or_else(|e| panic!("{relative}: bad merge key: {e}"));
            serde_json::to_value(value).unwrap_or_else(|e| panic!("{relative}: {e}"))
        })
        .filter(|doc| !doc.is_null())
        .collect()
}

pub fn yaml_document(relative: &str) -> Value {
    let mut docs = yaml_documents(relative);
    assert_eq!(docs.len(), 1, "{relative}: one document expected");
    docs.remove(0)
}

pub fn str_of<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what}: a string expected, found {value}"))
}

/// A scalar as the text Kubernetes or Compose would see (`8080` and `"8080"` alike).
pub fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Does a string carry credentials in a URL (`scheme://user:password@host`)?
pub fn has_userinfo_password(text: &str) -> bool {
    text.match_indices("://").any(|(at, _)| {
        let rest = &text[at + 3..];
        let authority = rest
            .split(['/', '?', '#', ' ', '"', '\''])
            .next()
            .unwrap_or("");
        authority
            .split_once('@')
            .is_some_and(|(userinfo, _)| userinfo.contains(':'))
    })
}

/// Every string inside a JSON value, with its path.
pub fn strings<'a>(value: &'a Value, path: String, out: &mut Vec<(String, &'a str)>) {
    match value {
        Value::String(s) => out.push((path, s)),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                strings(item, format!("{path}[{i}]"), out);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                strings(v, format!("{path}.{k}"), out);
            }
        }
        _ => {}
    }
}

/// The settings path an `ENROLLSTREAM_*` variable sets (`ENROLLSTREAM_MAIL__SMTP__PASSWORD` →
/// `mail.smtp.password`), as `Config::load` reads it.
pub fn env_setting(name: &str) -> Option<String> {
    name.strip_prefix("ENROLLSTREAM_").map(|rest| {
        rest.split("__")
            .map(str::to_ascii_lowercase)
            .collect::<Vec<_>>()
            .join(".")
    })
}

/// Is this variable, or this TOML key, one that holds a credential?
pub fn is_secret_setting(
    setting: &str,
    secret_fields: &std::collections::BTreeSet<String>,
) -> bool {
    // The flag variable of the MongoDB URI (`--mongodb-uri`) is `mongodb_uri` at the top level.
    let last = setting.rsplit('.').next().unwrap_or(setting);
    secret_fields.contains(last) || setting == "mongodb_uri"
}

/// Walk a TOML table and report keys that hold credentials with a value.
pub fn toml_secrets(
    table: &toml::Table,
    path: &str,
    secret_fields: &std::collections::BTreeSet<String>,
    out: &mut Vec<String>,
) {
    for (k, v) in table {
        let here = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        match v {
            toml::Value::Table(t) => toml_secrets(t, &here, secret_fields, out),
            toml::Value::String(s) if is_secret_setting(&here, secret_fields) && !s.is_empty() => {
                out.push(here)
            }
            toml::Value::String(s) if has_userinfo_password(s) => out.push(here),
            _ => {}
        }
    }
}

/// Write a configuration text to a file of its own for `enrollstream config`.
pub fn temp_file(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("the temporary file is written");
    path
}

pub type Env = BTreeMap<String, String>;
