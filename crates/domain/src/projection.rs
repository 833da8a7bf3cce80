//! The read model's pure step: one validated event plus the entity's current state gives the new
//! state and the outbox messages the change announces.

use serde::Deserialize;
use serde_json::Value;

use crate::application::Application;
use crate::envelope::CloudEvent;
use crate::events::{DomainEvent, EntityKind};
use crate::notification::{outbox_for, OutboxMessage};
use crate::quote::Quote;
use crate::routing::RoutingRules;
use crate::validation::{TransitionError, ValidationError};

#[derive(Clone, Debug, PartialEq)]
pub struct Projection {
    pub kind: EntityKind,
    pub entity_id: String,
    /// Version after this event: the number of events applied to the entity.
    pub version: u64,
    pub status: String,
    pub state: Value,
    pub outbox: Vec<OutboxMessage>,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// The stored state cannot be read back: a bug or a hand edit, never the event's fault.
    #[error("stored state of {0} cannot be decoded: {1}")]
    CorruptState(String, String),
}

impl ProjectionError {
    /// A short machine-readable reason, used in DLQ headers and metrics labels.
    pub fn code(&self) -> &'static str {
        match self {
            ProjectionError::Invalid(_) => "invalid_event",
            ProjectionError::Transition(_) => "invalid_transition",
            ProjectionError::CorruptState(..) => "corrupt_state",
        }
    }
}

/// Apply `event` to the entity whose current `(version, state)` is given (`None` if unknown).
pub fn project(
    event: &CloudEvent,
    current: Option<(u64, &Value)>,
    rules: &RoutingRules,
) -> Result<Projection, ProjectionError> {
    let decoded = DomainEvent::from_cloud_event(event)?;
    let at = event
        .time
        .ok_or_else(|| ValidationError::single("time", "must be set"))?;
    let version = current.map(|(v, _)| v).unwrap_or(0) + 1;
    let id = decoded.entity_id().to_string();
    let corrupt = |e: serde_json::Error| ProjectionError::CorruptState(id.clone(), e.to_string());
    let (status, state) = match &decoded {
        DomainEvent::Application(e) => {
            let prev: Option<Application> = current
                .map(|(_, s)| Application::deserialize(s))
                .transpose()
                .map_err(corrupt)?;
            let next = Application::apply(prev.as_ref(), e, at)?;
            (
                next.status.as_str().to_string(),
                serde_json::to_value(&next).map_err(corrupt)?,
            )
        }
        DomainEvent::Quote(e) => {
            let prev: Option<Quote> = current
                .map(|(_, s)| Quote::deserialize(s))
                .transpose()
                .map_err(corrupt)?;
            let next = Quote::apply(prev.as_ref(), e, at)?;
            (
                next.status.as_str().to_string(),
                serde_json::to_value(&next).map_err(corrupt)?,
            )
        }
    };
    let kind = decoded.kind();
    let outbox = outbox_for(rules, event, kind, version, &state);
    Ok(Projection {
        kind,
        entity_id: id,
        version,
        status,
        state,
        outbox,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::*;
    use crate::notification::{EXT_TARGETS, NOTIFICATION};
    use chrono::Utc;

    fn ev(e: DomainEvent) -> CloudEvent {
        CloudEvent::new(
            &e,
            "/t",
            Utc::now(),
            Some(crate::envelope::new_traceparent()),
        )
    }

    #[test]
    fn projection_is_deterministic_and_routes() {
        let started = ev(DomainEvent::Application(ApplicationEvent::Started(
            ApplicationStarted {
                application_id: "A".into(),
                applicant: Applicant {
                    name: "J".into(),
                    email: "j@x.io".into(),
                },
                product: "p".into(),
                quote_id: None,
            },
        )));
        let rules = RoutingRules::default();
        let a = project(&started, None, &rules).unwrap();
        let b = project(&started, None, &rules).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.version, 1);
        assert_eq!(a.status, "STARTED");
        let n = a
            .outbox
            .iter()
            .find(|m| m.event.ty == NOTIFICATION)
            .unwrap();
        assert_eq!(n.topic, "enrollment-notifications");
        assert_eq!(n.key, "A");
        assert_eq!(
            n.event.extensions[EXT_TARGETS],
            "logic_apps,salesforce,lead_management"
        );
        assert!(a.outbox.iter().any(|m| m.topic == "entity-updates"));
    }

    #[test]
    fn transition_errors_surface() {
        let signed = ev(DomainEvent::Application(
            ApplicationEvent::SignatureReceived(SignatureReceived {
                application_id: "A".into(),
                signed_by: "J".into(),
                signed_at: None,
            }),
        ));
        let err = project(&signed, None, &RoutingRules::default()).unwrap_err();
        assert_eq!(err.code(), "invalid_transition");
    }
}
