//! Which events notify which downstream targets, on which topic, with what priority.
//! Rules come from configuration; `RoutingRules::default()` is the documented default.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::events;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    Normal,
    High,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
        }
    }
}

/// The routing metadata carried by a notification, in its payload and in bus headers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Route {
    pub targets: Vec<String>,
    pub priority: Priority,
    pub trigger_type: String,
}

/// One rule: events whose type matches one of `event_types` (exact, or a prefix ending in `*`)
/// notify `targets` on `topic`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingRule {
    pub event_types: Vec<String>,
    pub topic: String,
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default)]
    pub priority: Option<Priority>,
    #[serde(default)]
    pub trigger_type: Option<String>,
}

impl RoutingRule {
    fn matches(&self, event_type: &str) -> bool {
        self.event_types.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => event_type.starts_with(prefix),
            None => p == event_type,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingRules {
    pub rules: Vec<RoutingRule>,
    /// Topic of the EntityUpdated events published after every read-model change; `None` turns
    /// them off.
    #[serde(default)]
    pub entity_updates_topic: Option<String>,
}

pub const LOGIC_APPS: &str = "logic_apps";
pub const SALESFORCE: &str = "salesforce";
pub const LEAD_MANAGEMENT: &str = "lead_management";

impl Default for RoutingRules {
    fn default() -> Self {
        let rule = |types: &[&str],
                    topic: &str,
                    targets: &[&str],
                    priority: Option<Priority>,
                    trigger: Option<&str>| RoutingRule {
            event_types: types.iter().map(|s| s.to_string()).collect(),
            topic: topic.to_string(),
            targets: targets.iter().map(|s| s.to_string()).collect(),
            priority,
            trigger_type: trigger.map(str::to_string),
        };
        Self {
            rules: vec![
                rule(
                    &["com.enrollstream.quote.*"],
                    "quote-notifications",
                    &[LOGIC_APPS, SALESFORCE],
                    Some(Priority::Normal),
                    Some("quote_lifecycle"),
                ),
                rule(
                    &[events::QUOTE_CREATED],
                    "quote-notifications",
                    &[],
                    Some(Priority::High),
                    None,
                ),
                rule(
                    &["com.enrollstream.application.*"],
                    "enrollment-notifications",
                    &[LOGIC_APPS, SALESFORCE],
                    Some(Priority::Normal),
                    Some("enrollment_lifecycle"),
                ),
                rule(
                    &[
                        events::APPLICATION_STARTED,
                        events::APPLICATION_SUBMITTED,
                        events::SIGNATURE_RECEIVED,
                    ],
                    "enrollment-notifications",
                    &[LEAD_MANAGEMENT],
                    None,
                    None,
                ),
                rule(
                    &[
                        events::SIGNATURE_RECEIVED,
                        events::APPLICATION_APPROVED,
                        events::SIGNATURE_REMINDERS_EXHAUSTED,
                    ],
                    "enrollment-notifications",
                    &[],
                    Some(Priority::High),
                    None,
                ),
            ],
            entity_updates_topic: Some("entity-updates".to_string()),
        }
    }
}

impl RoutingRules {
    /// The routes an event of `event_type` takes, one per topic, in rule order. Rules that match
    /// the same topic merge: targets are united, the highest priority and the first trigger type win.
    pub fn routes(&self, event_type: &str) -> Vec<(String, Route)> {
        let mut out: Vec<(String, Route)> = Vec::new();
        for rule in self.rules.iter().filter(|r| r.matches(event_type)) {
            let idx = match out.iter().position(|(t, _)| *t == rule.topic) {
                Some(i) => i,
                None => {
                    out.push((
                        rule.topic.clone(),
                        Route {
                            targets: Vec::new(),
                            priority: Priority::Normal,
                            trigger_type: String::new(),
                        },
                    ));
                    out.len() - 1
                }
            };
            let route = &mut out[idx].1;
            for t in &rule.targets {
                if !route.targets.contains(t) {
                    route.targets.push(t.clone());
                }
            }
            if let Some(p) = rule.priority {
                route.priority = route.priority.max(p);
            }
            if route.trigger_type.is_empty() {
                if let Some(t) = &rule.trigger_type {
                    route.trigger_type = t.clone();
                }
            }
        }
        for (_, route) in &mut out {
            if route.trigger_type.is_empty() {
                route.trigger_type = "lifecycle".to_string();
            }
        }
        out.retain(|(_, r)| !r.targets.is_empty());
        out
    }

    /// Every topic a rule can publish to (for provisioning).
    pub fn topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = Vec::new();
        for t in self
            .rules
            .iter()
            .map(|r| &r.topic)
            .chain(self.entity_updates_topic.iter())
        {
            if !topics.contains(t) {
                topics.push(t.clone());
            }
        }
        topics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_route_quotes_and_applications() {
        let r = RoutingRules::default();
        let q = r.routes(events::QUOTE_CREATED);
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].0, "quote-notifications");
        assert_eq!(q[0].1.targets, vec![LOGIC_APPS, SALESFORCE]);
        assert_eq!(q[0].1.priority, Priority::High);
        assert_eq!(q[0].1.trigger_type, "quote_lifecycle");

        let s = r.routes(events::APPLICATION_SUBMITTED);
        assert_eq!(
            s[0].1.targets,
            vec![LOGIC_APPS, SALESFORCE, LEAD_MANAGEMENT]
        );
        assert_eq!(s[0].1.priority, Priority::Normal);
        let sig = r.routes(events::SIGNATURE_RECEIVED);
        assert_eq!(sig[0].1.priority, Priority::High);
        assert!(r.routes("com.other.thing").is_empty());
    }

    #[test]
    fn topics_include_entity_updates() {
        let t = RoutingRules::default().topics();
        assert!(t.contains(&"entity-updates".to_string()));
        assert!(t.contains(&"quote-notifications".to_string()));
    }
}
