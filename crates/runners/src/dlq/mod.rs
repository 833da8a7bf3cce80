//! Dead letters as an operation: list, inspect and redrive them, each redrive recorded in the
//! audit. The CLI and the admin API (through the `DeadLetters` port) call this one service.

mod redrive;
pub mod scan;
pub mod view;

use async_trait::async_trait;
use enrollstream_ports::{
    AuditLog, Clock, DeadLetterError, DeadLetterFilter, DeadLetters, DlqName, EventBus,
    RedriveAudit, RedriveReport, RedriveRequest,
};
use std::sync::Arc;

use crate::redrive_plan::{self, DeadLetterId};

/// The DLQ topics an operator may name: `<topic><suffix>` for each known topic, and
/// `<topic>.<target><suffix>` for each delivery target. Anything else is refused before the
/// bus is asked (on Kafka, a topic that does not exist would cost a minute's group join).
#[derive(Clone, Debug)]
pub struct DlqTopics {
    pub suffix: String,
    pub topics: Vec<String>,
    /// Target names as configured (`logic_apps`) or as in topics (`logic-apps`).
    pub targets: Vec<String>,
}

/// Target names use `_`, topic names `-` (as the deliveries name their DLQs).
fn topic_safe(target: &str) -> String {
    target.replace('_', "-")
}

impl DlqTopics {
    pub fn name(&self, dlq: &DlqName) -> Result<String, DeadLetterError> {
        if !self.topics.contains(&dlq.topic) {
            return Err(DeadLetterError::Invalid(format!(
                "unknown topic {:?}; known: {}",
                dlq.topic,
                self.topics.join(", ")
            )));
        }
        match &dlq.target {
            None => Ok(format!("{}{}", dlq.topic, self.suffix)),
            Some(target) => {
                let target = topic_safe(target);
                if !self.targets.iter().any(|t| topic_safe(t) == target) {
                    return Err(DeadLetterError::Invalid(format!(
                        "unknown target {target:?}; known: {}",
                        self.targets.join(", ")
                    )));
                }
                Ok(format!("{}.{target}{}", dlq.topic, self.suffix))
            }
        }
    }

    fn knows(&self, dlq_topic: &str) -> bool {
        self.topics.iter().any(|topic| {
            let name = |target: Option<&String>| DlqName {
                topic: topic.clone(),
                target: target.cloned(),
            };
            std::iter::once(None)
                .chain(self.targets.iter().map(Some))
                .any(|t| self.name(&name(t)).is_ok_and(|n| n == dlq_topic))
        })
    }

    /// A dead letter's id, on a known DLQ topic.
    pub fn id(&self, id: &str) -> Result<DeadLetterId, DeadLetterError> {
        let id: DeadLetterId = id.parse().map_err(DeadLetterError::Invalid)?;
        if !self.knows(&id.topic) {
            return Err(DeadLetterError::Invalid(format!(
                "{:?} is not a known dead-letter topic",
                id.topic
            )));
        }
        Ok(id)
    }
}

pub struct DlqService {
    pub bus: Arc<dyn EventBus>,
    pub audit: Arc<dyn AuditLog>,
    pub clock: Arc<dyn Clock>,
    /// `[dlq] max_redrives`: a message redriven this often stays parked.
    pub max_redrives: u32,
    pub topics: DlqTopics,
}

impl DlqService {
    async fn entries(&self, topic: &str) -> Result<Vec<redrive_plan::Entry>, DeadLetterError> {
        Ok(redrive_plan::entries(
            scan::scan(self.bus.as_ref(), topic).await?,
        ))
    }
}

#[async_trait]
impl DeadLetters for DlqService {
    fn resolve(&self, name: &DlqName) -> Result<String, DeadLetterError> {
        self.topics.name(name)
    }

    async fn list(
        &self,
        dlq: &DlqName,
        filter: &DeadLetterFilter,
        limit: usize,
    ) -> Result<Vec<serde_json::Value>, DeadLetterError> {
        let topic = self.topics.name(dlq)?;
        Ok(self
            .entries(&topic)
            .await?
            .iter()
            .filter(|e| redrive_plan::matches(filter, &e.message))
            .take(limit)
            .map(|e| view::view(e, false))
            .collect())
    }

    async fn inspect(&self, id: &str) -> Result<Option<serde_json::Value>, DeadLetterError> {
        let id = self.topics.id(id)?;
        Ok(self
            .entries(&id.topic)
            .await?
            .iter()
            .find(|e| e.id == id)
            .map(|e| view::view(e, true)))
    }

    async fn redrive(&self, request: &RedriveRequest) -> Result<RedriveReport, DeadLetterError> {
        redrive::Redrive::plan(self, request)?.run(self).await
    }

    async fn audit(&self, limit: usize) -> Result<Vec<RedriveAudit>, DeadLetterError> {
        Ok(self.audit.redrives(limit).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics() -> DlqTopics {
        DlqTopics {
            suffix: ".dlq".into(),
            topics: vec![
                "enrollment-events".into(),
                "enrollment-notifications".into(),
            ],
            targets: vec!["logic_apps".into(), "salesforce".into()],
        }
    }

    #[test]
    fn only_known_topics_and_targets_are_named() {
        let t = topics();
        let name = |topic: &str, target: Option<&str>| {
            t.name(&DlqName {
                topic: topic.into(),
                target: target.map(str::to_string),
            })
        };
        assert_eq!(
            name("enrollment-events", None).unwrap(),
            "enrollment-events.dlq"
        );
        assert_eq!(
            name("enrollment-notifications", Some("logic_apps")).unwrap(),
            "enrollment-notifications.logic-apps.dlq"
        );
        assert!(name("enrollment-notifications", Some("logic-apps")).is_ok());
        assert!(name("nope", None).is_err());
        assert!(name("enrollment-events", Some("nope")).is_err());
        assert!(t.id("enrollment-notifications.salesforce.dlq:1:4").is_ok());
        assert!(t.id("other.dlq:1:4").is_err());
        assert!(t.id("enrollment-events.dlq:x:4").is_err());
    }
}
