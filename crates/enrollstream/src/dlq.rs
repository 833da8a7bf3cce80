//! Operations on what was parked: dead letters (`dlq list | inspect | redrive | audit`, the
//! service of `enrollstream_runners::dlq`, which the admin API calls too) and outbox messages
//! the relay kept in the store (`outbox parked`).

use anyhow::Context;
use enrollstream_domain::routing::{LEAD_MANAGEMENT, LOGIC_APPS, SALESFORCE};
use enrollstream_ports::{
    AuditLog, DeadLetterFilter, DeadLetters, DlqName, RedriveRequest, RedriveSelection, SystemClock,
};
use enrollstream_runners::dlq::view::payload_json;
use enrollstream_runners::dlq::{DlqService, DlqTopics};
use std::sync::Arc;

use crate::adapters::{open_adapters, Adapters};
use crate::cli::{DlqCommand, DlqSelect};
use crate::config::Config;

/// The DLQ topics of this configuration: every topic's, and every delivery target's.
fn dlq_topics(config: &Config) -> DlqTopics {
    let suffix = config.topics.dlq_suffix.clone();
    let mut topics: Vec<String> = config
        .topics
        .all()
        .into_iter()
        .filter(|t| !t.ends_with(&suffix))
        .collect();
    for t in config.routing.topics() {
        if !topics.contains(&t) {
            topics.push(t);
        }
    }
    DlqTopics {
        suffix,
        topics,
        targets: [LOGIC_APPS, SALESFORCE, LEAD_MANAGEMENT]
            .map(str::to_string)
            .to_vec(),
    }
}

/// The audit of redrives, beside the read model in the same engine (on SQLite in `audit.db`,
/// which `dlq audit` reads beside a serving process).
pub(crate) async fn open_audit(
    config: &Config,
    adapters: Option<&Adapters>,
) -> anyhow::Result<Arc<dyn AuditLog>> {
    if let Some(store) = adapters.and_then(|a| a.mongodb.as_ref()) {
        return Ok(Arc::new(
            store
                .audit_log()
                .await
                .context("cannot open the audit in MongoDB")?,
        ));
    }
    Ok(match &config.mongodb {
        Some(m) => Arc::new(
            enrollstream_mongodb::MongoAuditLog::connect_with(
                &m.uri,
                &m.database,
                crate::adapters::mongo_settings(m),
            )
            .await
            .with_context(|| {
                format!(
                    "cannot open the audit in MongoDB at {}",
                    crate::config::redact_uri(&m.uri)
                )
            })?,
        ),
        None => Arc::new(
            enrollstream_sqlite::audit::SqliteAuditLog::open(&config.data_dir).with_context(
                || format!("cannot open the audit in {}", config.data_dir.display()),
            )?,
        ),
    })
}

/// The dead-letter service on these adapters: the CLI's, and the admin API's.
pub(crate) async fn service(config: &Config, adapters: &Adapters) -> anyhow::Result<DlqService> {
    Ok(DlqService {
        bus: adapters.bus.clone(),
        audit: open_audit(config, Some(adapters)).await?,
        clock: Arc::new(SystemClock),
        max_redrives: config.dlq.max_redrives,
        topics: dlq_topics(config),
    })
}

pub async fn dlq(config: Config, command: DlqCommand) -> anyhow::Result<()> {
    if let DlqCommand::Audit { limit } = command {
        // Only the audit: no bus, no lock on the data directory.
        for record in open_audit(&config, None).await?.redrives(limit).await? {
            println!("{}", serde_json::to_string(&record)?);
        }
        return Ok(());
    }
    let adapters = open_adapters(&config).await?;
    let dlq = service(&config, &adapters).await?;
    match command {
        DlqCommand::List { select, limit } => {
            let name = dlq_name(&select)?;
            let listed = dlq.list(&name, &filter(&select), limit).await?;
            for line in &listed {
                println!("{line}");
            }
            eprintln!(
                "listed {} dead letter(s) of {}",
                listed.len(),
                dlq.resolve(&name)?
            );
        }
        DlqCommand::Inspect { id } => {
            let entry = dlq
                .inspect(&id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no dead letter {id}"))?;
            println!("{entry:#}");
        }
        DlqCommand::Redrive {
            select,
            ids,
            dry_run,
        } => {
            let selection = if ids.is_empty() {
                RedriveSelection::Filter {
                    dlq: dlq_name(&select)?,
                    filter: filter(&select),
                    limit: None,
                }
            } else {
                RedriveSelection::Ids(ids)
            };
            let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
            let report = dlq
                .redrive(&RedriveRequest {
                    selection,
                    dry_run,
                    by: format!("cli:{user}"),
                })
                .await?;
            for outcome in &report.outcomes {
                println!("{}", serde_json::to_string(outcome)?);
            }
            let (moved, skipped, of) = (report.moved, report.skipped, report.topics.join(", "));
            if dry_run {
                eprintln!("dry run: would redrive {moved} dead letter(s) of {of}, skip {skipped}");
            } else {
                eprintln!("redrove {moved} dead letter(s) of {of}, skipped {skipped}");
            }
            eprintln!("recorded in the audit as {}", report.audit_id);
        }
        DlqCommand::Audit { .. } => unreachable!("answered above"),
    }
    Ok(())
}

fn dlq_name(select: &DlqSelect) -> anyhow::Result<DlqName> {
    let topic = select
        .topic
        .clone()
        .ok_or_else(|| anyhow::anyhow!("--topic is required (or --id, for a redrive)"))?;
    Ok(DlqName {
        topic,
        target: select.target.clone(),
    })
}

fn filter(select: &DlqSelect) -> DeadLetterFilter {
    DeadLetterFilter {
        reason: select.reason.clone(),
        entity_id: select.entity_id.clone(),
        failed_since: select.since,
        failed_until: select.until,
    }
}

/// `enrollstream outbox parked`: what the relay could not publish, as JSON lines.
pub async fn parked(config: Config, limit: usize) -> anyhow::Result<()> {
    let adapters = open_adapters(&config).await?;
    let parked = adapters.store.parked_outbox(limit).await?;
    for (m, reason) in &parked {
        let payload = payload_json(&m.message.payload);
        let line = serde_json::json!({
            "id": m.id,
            "topic": m.topic,
            "key": m.message.key,
            "event_id": m.event_id,
            "created_at": m.created_at,
            "reason": reason,
            "bytes": enrollstream_runners::relay::message_size(&m.message),
            "headers": m.message.headers,
            "payload": payload,
        });
        println!("{line}");
    }
    eprintln!("{} parked outbox message(s)", parked.len());
    Ok(())
}
