//! What the code says, read from the workspace's sources and from the real binary: the metrics
//! it records (names, kinds, label keys), the configuration fields that hold secrets, the roles
//! it knows, and the configuration it ends up with for a file and an environment.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root exists")
}

pub fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every `.rs` file under a `src/` directory of the workspace's crates, with its text.
pub fn rust_sources() -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    collect_rs(&root().join("crates"), false, &mut files);
    assert!(!files.is_empty(), "no Rust sources found under crates/");
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("a source file is readable");
            (p, text)
        })
        .collect()
}

fn collect_rs(dir: &Path, in_src: bool, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries.map(|e| e.expect("a directory entry")) {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "target" {
                collect_rs(&path, in_src || name == "src", out);
            }
        } else if in_src && name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Debug, Default)]
pub struct Metric {
    pub kinds: BTreeSet<&'static str>,
    pub labels: BTreeSet<String>,
    pub histogram: bool,
}

/// The metrics the binary records: the first argument of every `counter!`, `gauge!` and
/// `histogram!` call (a literal, or a `const` naming one), with the label keys of its calls.
pub fn exported_metrics() -> BTreeMap<String, Metric> {
    let sources = rust_sources();
    let everywhere: BTreeMap<String, String> = sources
        .iter()
        .flat_map(|(_, text)| string_consts(text))
        .collect();
    let mut metrics: BTreeMap<String, Metric> = BTreeMap::new();
    for (path, text) in &sources {
        // A metric's `const` is looked up in the file that records it first: two crates may
        // give the same short name to different strings.
        let mut consts = everywhere.clone();
        consts.extend(string_consts(text));
        for (kind, macro_name) in [
            (Kind::Counter, "counter!("),
            (Kind::Gauge, "gauge!("),
            (Kind::Histogram, "histogram!("),
        ] {
            for (at, _) in text.match_indices(macro_name) {
                let before = text[..at].chars().next_back();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue; // describe_counter!(…) and the like only document a metric
                }
                let args = macro_args(&text[at + macro_name.len()..]);
                let line = text[..at].lines().count();
                let name = first_argument(args, &consts).unwrap_or_else(|| {
                    panic!(
                        "{}:{line}: cannot read the metric name of this {macro_name}…): use a string literal or a `const NAME: &str`",
                        path.display()
                    )
                });
                let metric = metrics.entry(name).or_default();
                metric.kinds.insert(match kind {
                    Kind::Counter => "counter",
                    Kind::Gauge => "gauge",
                    Kind::Histogram => "histogram",
                });
                metric.histogram |= kind == Kind::Histogram;
                metric.labels.extend(label_keys(args));
            }
        }
    }
    assert!(
        metrics.len() >= 10,
        "the metric scan found only {metrics:?}: the scan is broken, not the code"
    );
    metrics
}

/// The text between a macro's opening parenthesis (already consumed) and its closing one.
fn macro_args(rest: &str) -> &str {
    let mut depth = 1;
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in rest.char_indices() {
        match (in_string, c) {
            (true, _) if escaped => escaped = false,
            (true, '\\') => escaped = true,
            (true, '"') => in_string = false,
            (true, _) => {}
            (false, '"') => in_string = true,
            (false, '(') => depth += 1,
            (false, ')') => {
                depth -= 1;
                if depth == 0 {
                    return &rest[..i];
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced macro call: {}", &rest[..rest.len().min(80)])
}

fn first_argument(args: &str, consts: &BTreeMap<String, String>) -> Option<String> {
    let first = args.split(',').next()?.trim();
    if let Some(literal) = first.strip_prefix('"') {
        return literal.strip_suffix('"').map(str::to_string);
    }
    let ident = first.rsplit("::").next()?;
    consts.get(ident).cloned()
}

/// `"key" => value` pairs of a metrics macro call.
fn label_keys(args: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut rest = args;
    while let Some(start) = rest.find('"') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('"') else { break };
        let literal = &after[..end];
        rest = &after[end + 1..];
        if rest.trim_start().starts_with("=>") {
            keys.push(literal.to_string());
        }
    }
    keys
}

/// `const NAME: &str = "value";` anywhere in the sources.
fn string_consts(text: &str) -> BTreeMap<String, String> {
    let mut consts = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim_start().trim_start_matches("pub ").trim_start();
        let Some(rest) = line.strip_prefix("const ") else {
            continue;
        };
        let Some((name, value)) = rest.split_once(": &str = \"") else {
            continue;
        };
        if let Some(value) = value.strip_suffix("\";") {
            consts.insert(name.trim().to_string(), value.to_string());
        }
    }
    consts
}

/// Every Rust source of the workspace in one text, to look literals up in.
pub fn all_sources() -> String {
    rust_sources()
        .into_iter()
        .map(|(_, text)| text)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Configuration fields that hold credentials: every field of type `Secret` or `SecretUrl`
/// (optional or not), the Kafka fields its `Debug` redacts, and the MongoDB URI.
pub fn secret_fields() -> BTreeSet<String> {
    let mut fields = BTreeSet::new();
    for (_, text) in rust_sources() {
        for line in text.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("pub ") {
                if let Some((name, ty)) = rest.split_once(':') {
                    let ty = ty.trim().trim_end_matches(',');
                    let ty = ty
                        .strip_prefix("Option<")
                        .and_then(|t| t.strip_suffix('>'))
                        .unwrap_or(ty);
                    if ty == "Secret" || ty == "SecretUrl" {
                        fields.insert(name.trim().to_string());
                    }
                }
            }
            for (at, _) in line.match_indices("secret(&self.") {
                let rest = &line[at + "secret(&self.".len()..];
                if let Some(end) = rest.find(')') {
                    fields.insert(rest[..end].to_string());
                }
            }
        }
    }
    for expected in [
        "sasl_password",
        "client_secret",
        "password",
        "url",
        "api_key",
    ] {
        assert!(
            fields.contains(expected),
            "the secret scan missed {expected:?} (found {fields:?}): the scan is broken"
        );
    }
    fields.insert("uri".into());
    fields
}

/// The roles `enrollstream serve --role` accepts, as the binary's own help lists them.
pub fn binary_roles() -> BTreeSet<String> {
    let output = Command::new(env!("CARGO_BIN_EXE_enrollstream"))
        .args(["serve", "--help"])
        .output()
        .expect("the binary runs");
    assert!(output.status.success(), "serve --help failed");
    let help = String::from_utf8(output.stdout).expect("utf-8 help");
    let values = help
        .split_once("Possible values:")
        .unwrap_or_else(|| panic!("`serve --help` lists no possible roles:\n{help}"))
        .1;
    let roles: BTreeSet<String> = values
        .lines()
        .skip(1)
        .map_while(|line| line.trim().strip_prefix("- "))
        .map(|entry| {
            entry
                .split(':')
                .next()
                .expect("a role name")
                .trim()
                .to_string()
        })
        .collect();
    assert!(
        roles.len() >= 6,
        "roles read from the help: {roles:?}\n{help}"
    );
    roles
}

/// What `enrollstream config` prints for a configuration file and an environment (and nothing
/// else of this machine's environment).
pub struct Effective {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// The `# bus:` line: `embedded` or the Kafka settings.
    pub bus: String,
    /// The `# store:` line: `sqlite` or the MongoDB settings.
    pub store: String,
}

pub fn effective_config(what: &str, file: &Path, env: &BTreeMap<String, String>) -> Effective {
    let output = Command::new(env!("CARGO_BIN_EXE_enrollstream"))
        .arg("config")
        .env_clear()
        .envs(env)
        .env("ENROLLSTREAM_CONFIG", file)
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{what}: `enrollstream config` refuses the configuration ({} with {env:?}):\n{}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let table: toml::Table = stdout
        .parse()
        .unwrap_or_else(|e| panic!("{what}: {e}\n{stdout}"));
    let line = |prefix: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("{what}: no `{prefix}` line in\n{stdout}"))
            .to_string()
    };
    Effective {
        listen: table["listen"]
            .as_str()
            .expect("listen")
            .parse()
            .expect("an address"),
        data_dir: PathBuf::from(table["data_dir"].as_str().expect("data_dir")),
        bus: line("# bus: "),
        store: line("# store: "),
    }
}

/// The fields of `pub struct NAME { … }` with their types, when exactly one such struct exists.
fn struct_fields(sources: &str, name: &str) -> Option<Vec<(String, String)>> {
    let header = format!("pub struct {name} {{");
    let mut found = sources.match_indices(&header);
    let (at, _) = found.next()?;
    if found.next().is_some() {
        return None; // two structs of that name: cannot tell which one the file fills
    }
    let body = &sources[at + header.len()..];
    let body = &body[..body.find("\n}").unwrap_or(body.len())];
    Some(
        body.lines()
            .filter_map(|l| l.trim().strip_prefix("pub "))
            .filter_map(|l| l.split_once(':'))
            .map(|(n, t)| {
                (
                    n.trim().to_string(),
                    t.trim().trim_end_matches(',').to_string(),
                )
            })
            .collect(),
    )
}

/// Keys of a configuration file that no field of the configuration structs (from `Config`
/// down) takes. Sections whose struct is not found here (generic ones) are left to the binary,
/// which refuses unknown keys where the struct says `deny_unknown_fields`.
pub fn unknown_config_keys(file: &toml::Table) -> Vec<String> {
    let sources = all_sources();
    let mut unknown = Vec::new();
    walk_config(&sources, file, "Config", "", &mut unknown);
    unknown
}

fn walk_config(sources: &str, table: &toml::Table, ty: &str, path: &str, out: &mut Vec<String>) {
    let Some(fields) = struct_fields(sources, ty) else {
        return;
    };
    for (key, value) in table {
        let here = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        match fields.iter().find(|(name, _)| name == key) {
            None => out.push(here),
            Some((_, field_ty)) => {
                if let toml::Value::Table(inner) = value {
                    let inner_ty = field_ty
                        .strip_prefix("Option<")
                        .and_then(|t| t.strip_suffix('>'))
                        .unwrap_or(field_ty);
                    walk_config(sources, inner, inner_ty, &here, out);
                }
            }
        }
    }
}
