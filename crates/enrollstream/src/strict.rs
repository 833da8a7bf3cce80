//! Strict configuration: which environment variables are ours, and configuration errors as an
//! operator needs them (the key's whole path, where it came from, and a did-you-mean).

/// Every top-level key of the configuration: `ENROLLSTREAM_<KEY>[__…]` variables naming one of
/// these are configuration, others with the prefix belong to someone else.
pub(crate) const TOP_LEVEL_KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "topics",
    "partitions",
    "replication",
    "event_retention",
    "routing",
    "limits",
    "api",
    "projector",
    "relay",
    "log",
    "telemetry",
    "dlq",
    "reminders",
    "mail",
    "deliveries",
    "kafka",
    "mongodb",
    "auth",
];

/// A configuration error as an operator needs it: the key's whole path, where it came from,
/// and for an unknown key the known key it most likely meant.
pub(crate) fn explain(error: figment::Error) -> anyhow::Error {
    let lines: Vec<String> = error.into_iter().map(|e| describe(&e)).collect();
    anyhow::anyhow!("invalid configuration:\n  {}", lines.join("\n  "))
}

fn describe(e: &figment::Error) -> String {
    let origin = e
        .metadata
        .as_ref()
        .map(|m| match &m.source {
            Some(source) => format!(" (in {source})"),
            None => format!(" (from {})", m.name),
        })
        .unwrap_or_default();
    match &e.kind {
        figment::error::Kind::UnknownField(field, expected) => {
            // figment's path ends with the unknown key itself.
            let mut path = e.path.clone();
            if path.last() != Some(field) {
                path.push(field.clone());
            }
            let key = path.join(".");
            let hint = did_you_mean(field, expected)
                .map(|known| {
                    let mut path = path.clone();
                    path.pop();
                    path.push(known.to_string());
                    format!("; did you mean `{}`?", path.join("."))
                })
                .unwrap_or_else(|| format!("; known keys here: {}", expected.join(", ")));
            format!("unknown key `{key}`{origin}{hint}")
        }
        _ if !e.path.is_empty() => format!("`{}`{origin}: {}", e.path.join("."), e.kind),
        _ => format!("{}{origin}", e.kind),
    }
}

/// The known key closest to `typed`, if it is close enough to be a typo of it.
fn did_you_mean<'a>(typed: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(typed, k), *k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}
