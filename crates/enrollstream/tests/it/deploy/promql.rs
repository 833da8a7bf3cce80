//! PromQL of the alert rules and the dashboard, parsed (promql-parser) and checked against the
//! metrics the code records: every metric exists, every label matched or grouped on is one the
//! metric carries (or the scrape adds), every label value matched is one the code writes.

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{self, Expr, VectorSelector};
use std::collections::{BTreeMap, BTreeSet};

use super::source::{self, Metric};

/// Labels every scraped series carries: the scrape job and target, and the role the scrape
/// configurations of deploy/ attach.
pub const TARGET_LABELS: [&str; 3] = ["job", "instance", "role"];
/// Metrics that come from Prometheus itself, not from enrollstream.
const PROMETHEUS_METRICS: [&str; 1] = ["up"];

pub struct Checker {
    pub metrics: BTreeMap<String, Metric>,
    /// The source of the API's routes, for `route="…"` matchers.
    routes_source: String,
    /// Every Rust source of the workspace, for the label values the code writes.
    sources: String,
    pub problems: Vec<String>,
    pub used: BTreeSet<String>,
}

impl Checker {
    /// A checker of expressions against the metrics, routes and label values of the workspace.
    pub fn for_workspace() -> Self {
        Self {
            metrics: source::exported_metrics(),
            routes_source: source::read("crates/api/src/lib.rs"),
            sources: source::all_sources(),
            problems: Vec::new(),
            used: BTreeSet::new(),
        }
    }
}

impl Checker {
    pub fn check(&mut self, what: &str, expr: &str) {
        match parser::parse(expr) {
            Ok(ast) => {
                self.labels_of(what, &ast);
            }
            Err(e) => self
                .problems
                .push(format!("{what}: not PromQL ({e}): {expr}")),
        }
    }

    /// The labels the series of `expr` may carry; checks its selectors and groupings on the way.
    fn labels_of(&mut self, what: &str, expr: &Expr) -> BTreeSet<String> {
        match expr {
            Expr::VectorSelector(vs) => self.selector(what, vs),
            Expr::MatrixSelector(ms) => self.selector(what, &ms.vs),
            Expr::Aggregate(agg) => {
                let inner = self.labels_of(what, &agg.expr);
                if let Some(param) = &agg.param {
                    self.labels_of(what, param);
                }
                match &agg.modifier {
                    Some(modifier) => {
                        let labels: BTreeSet<String> =
                            modifier.labels().labels.iter().cloned().collect();
                        self.known(what, "grouped by", &labels, &inner);
                        if modifier.is_include() {
                            labels
                        } else {
                            inner.difference(&labels).cloned().collect()
                        }
                    }
                    None => BTreeSet::new(),
                }
            }
            Expr::Binary(b) => {
                let mut labels = self.labels_of(what, &b.lhs);
                labels.extend(self.labels_of(what, &b.rhs));
                if let Some(matching) = b.modifier.as_ref().and_then(|m| m.matching.as_ref()) {
                    let on: BTreeSet<String> = matching.labels().labels.iter().cloned().collect();
                    self.known(what, "matched on", &on, &labels);
                }
                labels
            }
            Expr::Paren(p) => self.labels_of(what, &p.expr),
            Expr::Unary(u) => self.labels_of(what, &u.expr),
            Expr::Subquery(s) => self.labels_of(what, &s.expr),
            Expr::Call(call) => {
                let mut labels = BTreeSet::new();
                for arg in &call.args.args {
                    labels.extend(self.labels_of(what, arg));
                }
                labels
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => BTreeSet::new(),
        }
    }

    fn known(
        &mut self,
        what: &str,
        how: &str,
        labels: &BTreeSet<String>,
        available: &BTreeSet<String>,
    ) {
        for label in labels.difference(available) {
            self.problems.push(format!(
                "{what}: {how} `{label}`, which none of its series carries (they have {available:?})"
            ));
        }
    }

    fn selector(&mut self, what: &str, vs: &VectorSelector) -> BTreeSet<String> {
        let Some(name) = vs.name.clone() else {
            self.problems
                .push(format!("{what}: a selector without a metric name"));
            return BTreeSet::new();
        };
        let mut labels: BTreeSet<String> = TARGET_LABELS.iter().map(|s| s.to_string()).collect();
        if PROMETHEUS_METRICS.contains(&name.as_str()) {
            self.check_matchers(what, &name, &vs.matchers.matchers, &labels);
            return labels;
        }
        let (base, is_bucket) = match self.metrics.get(&name) {
            Some(_) => (name.clone(), false),
            None => match histogram_base(&name) {
                Some((base, suffix)) if self.metrics.get(base).is_some_and(|m| m.histogram) => {
                    (base.to_string(), suffix == "_bucket")
                }
                _ => {
                    self.problems.push(format!(
                        "{what}: `{name}` is not a metric the code records (counter!/gauge!/histogram! in crates/*/src)"
                    ));
                    return labels;
                }
            },
        };
        if self.metrics[&base].histogram && base == name {
            self.problems.push(format!(
                "{what}: `{name}` is a histogram: select `{name}_bucket`, `_sum` or `_count`"
            ));
        }
        self.used.insert(base.clone());
        labels.extend(self.metrics[&base].labels.iter().cloned());
        if is_bucket {
            labels.insert("le".into());
        }
        self.check_matchers(what, &name, &vs.matchers.matchers, &labels);
        labels
    }

    fn check_matchers(
        &mut self,
        what: &str,
        metric: &str,
        matchers: &[Matcher],
        labels: &BTreeSet<String>,
    ) {
        for m in matchers.iter().filter(|m| m.name != "__name__") {
            if !labels.contains(&m.name) {
                self.problems.push(format!(
                    "{what}: `{metric}` has no label `{}` (it has {labels:?})",
                    m.name
                ));
                continue;
            }
            let literal_values: Vec<&str> = match &m.op {
                MatchOp::Equal | MatchOp::NotEqual => vec![m.value.as_str()],
                MatchOp::Re(_) | MatchOp::NotRe(_)
                    if m.value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_-|/".contains(c)) =>
                {
                    m.value.split('|').collect()
                }
                _ => continue,
            };
            for value in literal_values {
                let known = match m.name.as_str() {
                    "route" => self.routes_source.contains(&format!("\"{value}\"")),
                    // Written by the scrape or computed (status codes), not literals in the code.
                    "job" | "instance" | "role" | "status" | "le" => true,
                    _ => self.sources.contains(&format!("\"{value}\"")),
                };
                if !known {
                    self.problems.push(format!(
                        "{what}: `{metric}{{{}=…\"{value}\"}}`: the code never writes that value",
                        m.name
                    ));
                }
            }
        }
    }
}

fn histogram_base(name: &str) -> Option<(&str, &'static str)> {
    ["_bucket", "_sum", "_count"]
        .into_iter()
        .find_map(|suffix| name.strip_suffix(suffix).map(|base| (base, suffix)))
}

/// Grafana's interval variables, replaced by a duration so that the query parses.
pub fn without_grafana_variables(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
}
