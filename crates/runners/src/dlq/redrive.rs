//! One redrive: checked first (an invalid request leaves no trace), recorded in the audit
//! before anything moves (a redrive that cannot be recorded does not start), then the moves,
//! then the record of what came of it.

use enrollstream_ports::{
    DeadLetterError, DeadLetterFilter, RedriveAudit, RedriveOutcome, RedriveReport, RedriveRequest,
    RedriveSelection, RedriveStatus,
};
use std::collections::BTreeMap;

use super::DlqService;
use crate::redrive_plan::{self, DeadLetterId, Decision, Entry};

/// What to pick on one DLQ topic.
enum Pick {
    Ids(Vec<DeadLetterId>),
    Filter(DeadLetterFilter, Option<usize>),
}

pub(super) struct Redrive<'a> {
    request: &'a RedriveRequest,
    /// By DLQ topic, in name order.
    picks: BTreeMap<String, Pick>,
}

impl<'a> Redrive<'a> {
    pub(super) fn plan(
        service: &DlqService,
        request: &'a RedriveRequest,
    ) -> Result<Self, DeadLetterError> {
        let mut picks = BTreeMap::new();
        match &request.selection {
            RedriveSelection::Ids(ids) => {
                if ids.is_empty() {
                    return Err(DeadLetterError::Invalid("no dead letter named".into()));
                }
                for id in ids {
                    let id = service.topics.id(id)?;
                    let entry = picks
                        .entry(id.topic.clone())
                        .or_insert_with(|| Pick::Ids(Vec::new()));
                    // A repeated id would move twice: the markers are read once per scan.
                    if let Pick::Ids(of_topic) = entry {
                        if !of_topic.contains(&id) {
                            of_topic.push(id);
                        }
                    }
                }
            }
            RedriveSelection::Filter { dlq, filter, limit } => {
                picks.insert(
                    service.topics.name(dlq)?,
                    Pick::Filter(filter.clone(), *limit),
                );
            }
        }
        Ok(Self { request, picks })
    }

    pub(super) async fn run(self, service: &DlqService) -> Result<RedriveReport, DeadLetterError> {
        let mut record = RedriveAudit {
            id: enrollstream_domain::ids::new_id(),
            at: service.clock.now(),
            by: self.request.by.clone(),
            dry_run: self.request.dry_run,
            selection: serde_json::to_value(&self.request.selection)
                .unwrap_or(serde_json::Value::Null),
            status: RedriveStatus::Started,
            moved: 0,
            skipped: 0,
            finished_at: None,
            error: None,
        };
        service.audit.record_redrive(&record).await?;
        let mut report = RedriveReport {
            audit_id: record.id.clone(),
            dry_run: self.request.dry_run,
            topics: self.picks.keys().cloned().collect(),
            moved: 0,
            skipped: 0,
            outcomes: Vec::new(),
        };
        let result = self.moves(service, &mut report).await;
        record.moved = report.moved;
        record.skipped = report.skipped;
        record.finished_at = Some(service.clock.now());
        record.status = match &result {
            Ok(()) => RedriveStatus::Completed,
            Err(e) => {
                tracing::warn!(error = %e, audit_id = %record.id, moved = report.moved, "redrive stopped");
                record.error = Some(match e {
                    DeadLetterError::Bus(_) => "the bus failed; see the log".into(),
                    DeadLetterError::Store(_) => "the store failed; see the log".into(),
                    DeadLetterError::Invalid(reason) => reason.clone(),
                });
                RedriveStatus::Failed
            }
        };
        service.audit.record_redrive(&record).await?;
        tracing::info!(audit_id = %record.id, by = %record.by, dry_run = record.dry_run,
            moved = record.moved, skipped = record.skipped, "redrive {}", record.status.as_str());
        result.map(|()| report)
    }

    async fn moves(
        &self,
        service: &DlqService,
        report: &mut RedriveReport,
    ) -> Result<(), DeadLetterError> {
        for (topic, pick) in &self.picks {
            let all = service.entries(topic).await?;
            let picked: Vec<&Entry> = match pick {
                Pick::Ids(ids) => {
                    for id in ids.iter().filter(|id| all.iter().all(|e| e.id != **id)) {
                        report.skipped += 1;
                        report.outcomes.push(RedriveOutcome {
                            id: id.to_string(),
                            action: "skipped",
                            to: None,
                            reason: Some("no such dead letter".into()),
                        });
                    }
                    all.iter().filter(|e| ids.contains(&e.id)).collect()
                }
                Pick::Filter(filter, limit) => all
                    .iter()
                    .filter(|e| redrive_plan::matches(filter, &e.message))
                    .take(limit.unwrap_or(usize::MAX))
                    .collect(),
            };
            for entry in picked {
                self.one(service, topic, entry, report).await?;
            }
        }
        Ok(())
    }

    /// The marker is written after the message: a crash between the two moves it again on the
    /// next run (at least once, like every other path), never loses it.
    async fn one(
        &self,
        service: &DlqService,
        topic: &str,
        entry: &Entry,
        report: &mut RedriveReport,
    ) -> Result<(), DeadLetterError> {
        let id = entry.id.to_string();
        let outcome = match redrive_plan::decide(entry, service.max_redrives) {
            Decision::Move { topic: to, message } => {
                if !self.request.dry_run {
                    let publisher = service.bus.publisher();
                    publisher.publish(&to, vec![message]).await?;
                    publisher
                        .publish(topic, vec![redrive_plan::marker(entry)])
                        .await?;
                }
                report.moved += 1;
                let action = if self.request.dry_run {
                    "would_move"
                } else {
                    "moved"
                };
                RedriveOutcome {
                    id,
                    action,
                    to: Some(to),
                    reason: None,
                }
            }
            Decision::Skip(reason) => {
                report.skipped += 1;
                RedriveOutcome {
                    id,
                    action: "skipped",
                    to: None,
                    reason: Some(reason),
                }
            }
        };
        report.outcomes.push(outcome);
        Ok(())
    }
}
