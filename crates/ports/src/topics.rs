//! Topic names, configurable, with the defaults of the design notes.

use enrollstream_domain::EntityKind;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicNames {
    pub enrollment_events: String,
    pub quote_events: String,
    pub enrollment_notifications: String,
    pub quote_notifications: String,
    pub lead_integration_events: String,
    pub entity_updates: String,
    /// Suffix of dead-letter topics: `<topic><suffix>`.
    pub dlq_suffix: String,
}

impl Default for TopicNames {
    fn default() -> Self {
        Self {
            enrollment_events: "enrollment-events".into(),
            quote_events: "quote-events".into(),
            enrollment_notifications: "enrollment-notifications".into(),
            quote_notifications: "quote-notifications".into(),
            lead_integration_events: "lead-integration-events".into(),
            entity_updates: "entity-updates".into(),
            dlq_suffix: ".dlq".into(),
        }
    }
}

impl TopicNames {
    /// The topic business events of `kind` are published to.
    pub fn events_for(&self, kind: EntityKind) -> &str {
        match kind {
            EntityKind::Quote => &self.quote_events,
            EntityKind::Application => &self.enrollment_events,
        }
    }

    pub fn dlq(&self, topic: &str) -> String {
        format!("{topic}{}", self.dlq_suffix)
    }

    /// Every topic the system uses, dead-letter topics included.
    pub fn all(&self) -> Vec<String> {
        let base = [
            &self.enrollment_events,
            &self.quote_events,
            &self.enrollment_notifications,
            &self.quote_notifications,
            &self.lead_integration_events,
            &self.entity_updates,
        ];
        let mut out: Vec<String> = base.iter().map(|t| t.to_string()).collect();
        out.extend(base.iter().map(|t| self.dlq(t)));
        out
    }
}
