//! deploy/prometheus/alerts.yaml and deploy/grafana/enrollstream.json: valid PromQL on metrics
//! and labels the code records, each alert with a severity and a runbook entry in
//! docs/operations.md.

use serde_json::Value;
use std::collections::BTreeSet;

use super::promql::{without_grafana_variables, Checker};
use super::{source, str_of, yaml_document};

const ALERTS: &str = "deploy/prometheus/alerts.yaml";
const DASHBOARD: &str = "deploy/grafana/enrollstream.json";
const OPERATIONS: &str = "docs/operations.md";

fn report(checker: Checker) -> BTreeSet<String> {
    assert!(
        checker.problems.is_empty(),
        "{} problem(s):\n  {}",
        checker.problems.len(),
        checker.problems.join("\n  ")
    );
    checker.used
}

#[test]
fn the_alert_rules_use_only_metrics_and_labels_the_code_records() {
    let mut checker = Checker::for_workspace();
    let operations = source::read(OPERATIONS);
    let headings: BTreeSet<&str> = operations
        .lines()
        .filter_map(|l| l.strip_prefix("### "))
        .map(str::trim)
        .collect();
    let rules = yaml_document(ALERTS);
    let mut names = BTreeSet::new();
    for group in rules["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let alert = str_of(&rule["alert"], "every rule is an alert").to_string();
            assert!(names.insert(alert.clone()), "{ALERTS}: {alert} twice");
            checker.check(&alert, str_of(&rule["expr"], "expr"));
            let severity = str_of(&rule["labels"]["severity"], "severity");
            assert!(
                ["warning", "critical"].contains(&severity),
                "{alert}: severity {severity}"
            );
            for annotation in ["summary", "description"] {
                assert!(
                    rule["annotations"][annotation].is_string(),
                    "{alert}: annotation {annotation}"
                );
            }
            let runbook = str_of(&rule["annotations"]["runbook_url"], "runbook_url");
            assert_eq!(
                runbook,
                format!("{OPERATIONS}#{}", alert.to_lowercase()),
                "{alert}: runbook_url"
            );
            assert!(
                headings.contains(alert.as_str()),
                "{OPERATIONS} has no `### {alert}` runbook entry"
            );
        }
    }
    let documented: BTreeSet<&str> = headings
        .iter()
        .copied()
        .filter(|h| h.starts_with("Enrollstream"))
        .collect();
    let alerts: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(
        documented, alerts,
        "{OPERATIONS} documents exactly the alerts of {ALERTS}"
    );
    let used = report(checker);
    for must in [
        "enrollstream_dead_letters_total",
        "enrollstream_delivery_paused",
        "enrollstream_delivery_target_state",
        "enrollstream_delivery_latency_seconds",
        "enrollstream_projection_lag_seconds",
        "enrollstream_reminders_due_backlog",
        "enrollstream_reminder_next_due_seconds",
    ] {
        assert!(used.contains(must), "{ALERTS}: no alert on {must}");
    }
}

fn panels(value: &Value, out: &mut Vec<Value>) {
    for panel in value["panels"].as_array().into_iter().flatten() {
        out.push(panel.clone());
        panels(panel, out);
    }
}

#[test]
fn the_dashboard_uses_only_metrics_and_labels_the_code_records() {
    let mut checker = Checker::for_workspace();
    let dashboard: Value =
        serde_json::from_str(&source::read(DASHBOARD)).expect("the dashboard is JSON");
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating");
    assert!(
        variables
            .iter()
            .any(|v| v["name"] == "datasource" && v["type"] == "datasource"),
        "a data source variable"
    );
    let mut all = Vec::new();
    panels(&dashboard, &mut all);
    let mut ids = BTreeSet::new();
    for panel in &all {
        let title = str_of(&panel["title"], "panel title");
        assert!(
            ids.insert(panel["id"].as_u64().expect("panel id")),
            "panel id of {title} twice"
        );
        assert!(panel["gridPos"].is_object(), "{title}: gridPos");
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{title}: uses the data source variable"
        );
        let targets = panel["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("{title}: targets"));
        assert!(!targets.is_empty(), "{title}: no query");
        for target in targets {
            checker.check(
                title,
                &without_grafana_variables(str_of(&target["expr"], "expr")),
            );
        }
    }
    let exported: Vec<String> = checker.metrics.keys().cloned().collect();
    let used = report(checker);
    let unused: Vec<&String> = exported.iter().filter(|m| !used.contains(*m)).collect();
    assert!(
        unused.is_empty(),
        "{DASHBOARD} shows no panel for {unused:?}"
    );
}
