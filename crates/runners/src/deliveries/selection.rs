//! Which messages a runner delivers, decided from headers alone: a message routed to other
//! targets is skipped without decoding its payload.

use enrollstream_domain::notification::{parse_targets, EXT_TARGETS};
use enrollstream_ports::InboundMessage;

use super::settings::DeliverySettings;

pub struct Selection {
    event_types: Vec<String>,
    type_header: String,
    targets_header: String,
    routing_target: String,
}

impl Selection {
    pub fn new(settings: &DeliverySettings, target: &str) -> Self {
        Self {
            event_types: settings.event_types.clone(),
            type_header: "ce_type".to_string(),
            targets_header: format!("ce_{EXT_TARGETS}"),
            routing_target: settings
                .routing_target
                .clone()
                .unwrap_or_else(|| target.to_string()),
        }
    }

    pub fn selects(&self, message: &InboundMessage) -> bool {
        let typed = message
            .header(&self.type_header)
            .is_some_and(|t| self.event_types.iter().any(|e| e == t));
        typed
            && message
                .header(&self.targets_header)
                .is_some_and(|v| parse_targets(v).any(|t| t == self.routing_target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(headers: &[(&str, &str)]) -> InboundMessage {
        InboundMessage {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            key: None,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            // Not JSON: selection must not look at it.
            payload: b"\xff not json".to_vec(),
            timestamp_ms: None,
        }
    }

    #[test]
    fn selects_by_routing_header_and_type() {
        let s = Selection::new(&DeliverySettings::default(), "salesforce");
        let n = "com.enrollstream.notification.v1";
        assert!(s.selects(&message(&[
            ("ce_type", n),
            ("ce_routingtargets", "logic_apps, salesforce")
        ])));
        assert!(!s.selects(&message(&[
            ("ce_type", n),
            ("ce_routingtargets", "logic_apps,lead_management")
        ])));
        assert!(!s.selects(&message(&[("ce_type", n)])));
        assert!(!s.selects(&message(&[
            ("ce_type", "com.enrollstream.entity.updated.v1"),
            ("ce_routingtargets", "salesforce")
        ])));
    }
}
