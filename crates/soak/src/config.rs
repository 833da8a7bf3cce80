//! The configuration file every process of the run reads: the engines, the HTTP targets with
//! short timeouts and retries (so a stalled or failed call is retried within the run), reminders
//! on a seconds interval mailed to the test bed's SMTP server.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// Reminders: every `REMINDER_INTERVAL` seconds, at most `MAX_REMINDERS` times.
pub const REMINDER_INTERVAL_SECS: u64 = 2;
pub const MAX_REMINDERS: u32 = 3;
/// A delivery call answered later than this is a timeout (the stalls last longer).
pub const HTTP_TIMEOUT_SECS: u64 = 2;

/// Where the targets and the mail server listen.
pub struct Peers {
    pub kafka: String,
    pub logic_apps_url: String,
    pub salesforce_url: String,
    pub leads_url: String,
    pub smtp_port: u16,
    /// The store's `[mongodb] lookups` for the test bed's server (`Mongo::lookups`).
    pub mongodb_lookups: &'static str,
}

/// Writes the file: no rate limit (the soak drives load through one caller), no authentication
/// (127.0.0.1 only; the auth has tests of its own), Kafka sessions of 6 s so that a SIGKILLed
/// member's partitions move on within the run.
pub fn write(dir: &Path, peers: &Peers) -> anyhow::Result<PathBuf> {
    let mut text = format!(
        r#"[api]
auth = "off"

[api.limits]
rate_per_second = 0

[kafka]
brokers = "{kafka}"
session_timeout_ms = 6000

[mongodb]
lookups = "{lookups}"

[reminders]
interval = "{REMINDER_INTERVAL_SECS}s"
max_attempts = {MAX_REMINDERS}
tick = "100ms"
# A SIGKILLed scheduler's claims come back after this (120 s by default).
lease = "10s"

[mail]
sink = "smtp"
smtp = {{ host = "127.0.0.1", port = {smtp_port}, tls = "none", timeout = "4s" }}
"#,
        kafka = peers.kafka,
        lookups = peers.mongodb_lookups,
        smtp_port = peers.smtp_port,
    );
    let targets = [
        ("logic_apps", format!(r#"url = "{}""#, peers.logic_apps_url)),
        (
            "salesforce",
            format!(
                "login_url = \"{}\"\nclient_id = \"soak-client\"\nclient_secret = \"soak-secret\"",
                peers.salesforce_url
            ),
        ),
        (
            "lead_management",
            format!(
                "endpoint = \"{}\"\napi_key = \"soak-lead-key\"",
                peers.leads_url
            ),
        ),
    ];
    for (name, target) in targets {
        text.push_str(&delivery_section(name, &target));
    }
    let path = dir.join("soak.toml");
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// One `[deliveries.NAME]` section: the target with short timeouts, retries within seconds and
/// a breaker that reopens fast. A 20 % failure rate must be absorbed by retries, never exhaust
/// them (10 attempts: 0.2^10 per notification).
fn delivery_section(name: &str, target: &str) -> String {
    format!(
        r#"
[deliveries.{name}.target]
{target}
http = {{ timeout = "{HTTP_TIMEOUT_SECS}s", connect_timeout = "1s" }}

[deliveries.{name}.delivery]
poll_wait = "100ms"
retry = {{ max_attempts = 10, initial_backoff = "200ms", max_backoff = "3s" }}
breaker = {{ failure_threshold = 8, open_for = "1s", max_open_for = "5s" }}
"#
    )
}
