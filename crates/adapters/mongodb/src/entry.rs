//! The documents of the read model and their translation to and from the port's types.
//!
//! - **Log entry** (`event_log`, `_id` = event id): the event, the entity it moved (kind, id and
//!   the version it reached), the entity's status and state after it, and, while some are
//!   unpublished, the outbox messages it announced: `outbox` maps message id to message,
//!   `outbox_ids` lists the unpublished ids (what the relay's marks look up), `outbox_seq`
//!   orders entries for the relay, and `outbox_pending: true` is what the relay's read matches
//!   (an equality, which every server serves from an index; FerretDB reads the whole collection
//!   for a range). Published messages leave the entry; an entry with none left has none of the
//!   four fields. The entry is the change: inserting it is the one atomic
//!   write of an apply (see `apply`).
//! - **Head** (`entities`, `_id` = `"kind:id"`): the entity's latest version, status and state,
//!   written after the entries it sums up. A cache for reads (see `read`), never a fence.
//! - **Idempotency record** (`idempotency`, `_id` = the API's key).

use enrollstream_domain::notification::OutboxMessage;
use enrollstream_domain::CloudEvent;
use enrollstream_ports::{
    Change, EntityRecord, IdempotencyRecord, StoreError, StoredEvent, StoredOutboxMessage,
};
use mongodb::bson::{doc, Bson, Document};

use crate::codec::{date, entity_key, int, to_bson, writable, Fields, Unwritable};
use crate::error::corrupt;

pub(crate) const OUTBOX: &str = "outbox";
pub(crate) const OUTBOX_IDS: &str = "outbox_ids";
pub(crate) const OUTBOX_SEQ: &str = "outbox_seq";
pub(crate) const OUTBOX_PENDING: &str = "outbox_pending";

/// Fields of a log entry that describe the event alone: what `event_log` reads.
pub(crate) fn event_projection() -> Document {
    doc! { "status": 0, "state": 0, OUTBOX: 0, OUTBOX_IDS: 0, OUTBOX_SEQ: 0, OUTBOX_PENDING: 0 }
}

/// Fields of a log entry that describe the entity after it: what entity reads need.
pub(crate) fn entity_projection() -> Document {
    doc! {
        "entity_kind": 1, "entity_id": 1, "version": 1, "status": 1, "state": 1,
        "recorded_at": 1,
    }
}

/// The log entry of `change`. `seq` orders its outbox messages among all others (a
/// time-ordered id taken at the write); a replayed change, or one that does not `announce`
/// (another generation holds its messages), records none pending.
pub(crate) fn entry_doc(
    change: &Change,
    seq: &str,
    announce: bool,
) -> Result<Result<Document, Unwritable>, StoreError> {
    let e = &change.event;
    let version = int(e.version)?;
    let encoded = (|| {
        let mut d = doc! {
            "_id": &e.event_id,
            "entity_kind": e.entity_kind.as_str(),
            "entity_id": &e.entity_id,
            "version": version,
            "event_type": &e.event_type,
            "occurred_at": date(e.occurred_at),
            "envelope": to_bson(&e.envelope)?,
            "source": e.source.clone(),
            "recorded_at": date(e.recorded_at),
            "status": &change.status,
            "state": to_bson(&change.state)?,
        };
        if announce && !change.replay && !change.outbox.is_empty() {
            let mut messages = Document::new();
            let mut ids = Vec::new();
            for (position, m) in change.outbox.iter().enumerate() {
                if !is_plain_key(&m.id) {
                    return Err(Unwritable(format!(
                        "outbox message id {:?} cannot be a field name",
                        m.id
                    )));
                }
                // The same id twice in one change is one message.
                if messages.contains_key(&m.id) {
                    continue;
                }
                messages.insert(&m.id, message_doc(m, position)?);
                ids.push(Bson::from(&m.id));
            }
            d.insert(OUTBOX, messages);
            d.insert(OUTBOX_IDS, ids);
            d.insert(OUTBOX_SEQ, seq);
            d.insert(OUTBOX_PENDING, true);
        }
        writable(&d)?;
        Ok(d)
    })();
    Ok(encoded)
}

/// The log entry the store inserts for `change`, for benchmarks that write the store's own
/// documents through the driver alone: a raw bulk-write rate of the same shape and size.
pub fn entry_document(change: &Change) -> Result<Document, StoreError> {
    entry_doc(change, &enrollstream_domain::ids::new_id(), true)?
        .map_err(|Unwritable(why)| StoreError::Fatal(why))
}

/// Message ids are UUIDs; anything else must at least be usable as a field name.
fn is_plain_key(id: &str) -> bool {
    !id.is_empty() && !id.contains('.') && !id.starts_with('$') && !id.contains('\0')
}

fn message_doc(m: &OutboxMessage, position: usize) -> Result<Document, Unwritable> {
    Ok(doc! {
        "topic": &m.topic,
        "key": &m.key,
        "event": to_bson(&m.event)?,
        "position": position as i64,
    })
}

pub(crate) fn event_from(doc: &Document) -> Result<StoredEvent, StoreError> {
    let f = Fields::new(doc, "event_log entry");
    Ok(StoredEvent {
        event_id: f.str("_id")?.to_string(),
        entity_kind: f.kind("entity_kind")?,
        entity_id: f.str("entity_id")?.to_string(),
        version: f.u64("version")?,
        event_type: f.str("event_type")?.to_string(),
        occurred_at: f.date("occurred_at")?,
        envelope: f.json::<CloudEvent>("envelope")?,
        source: f.opt_str("source")?,
        recorded_at: f.date("recorded_at")?,
    })
}

/// The entity as a log entry left it.
pub(crate) fn entity_from_entry(doc: &Document) -> Result<EntityRecord, StoreError> {
    let f = Fields::new(doc, "event_log entry");
    Ok(EntityRecord {
        kind: f.kind("entity_kind")?,
        id: f.str("entity_id")?.to_string(),
        version: f.u64("version")?,
        status: f.str("status")?.to_string(),
        state: f.json("state")?,
        last_event_id: f.str("_id")?.to_string(),
        updated_at: f.date("recorded_at")?,
    })
}

/// The head of an entity summing up its entries up to `record.version`.
pub(crate) fn head_doc(record: &EntityRecord) -> Result<Document, Unwritable> {
    let d = doc! {
        "_id": entity_key(record.kind, &record.id),
        "kind": record.kind.as_str(),
        "entity_id": &record.id,
        "version": record.version as i64,
        "status": &record.status,
        "state": to_bson(&record.state)?,
        "last_event_id": &record.last_event_id,
        "updated_at": date(record.updated_at),
    };
    writable(&d)?;
    Ok(d)
}

pub(crate) fn entity_from_head(doc: &Document) -> Result<EntityRecord, StoreError> {
    let f = Fields::new(doc, "entity");
    Ok(EntityRecord {
        kind: f.kind("kind")?,
        id: f.str("entity_id")?.to_string(),
        version: f.u64("version")?,
        status: f.str("status")?.to_string(),
        state: f.json("state")?,
        last_event_id: f.str("last_event_id")?.to_string(),
        updated_at: f.date("updated_at")?,
    })
}

/// An entry's unpublished messages, in their change's order, with what orders them among
/// other entries' (its `outbox_seq`).
pub(crate) fn pending_of(entry: &Document) -> Result<Vec<Pending>, StoreError> {
    let f = Fields::new(entry, "event_log entry");
    let event_id = f.str("_id")?;
    let created_at = f.date("recorded_at")?;
    let seq = f.opt_str(OUTBOX_SEQ)?.unwrap_or_default();
    let messages = f.doc(OUTBOX)?;
    let mut out = Vec::new();
    for id in f.strings(OUTBOX_IDS)? {
        let m = messages
            .and_then(|m| m.get_document(id).ok())
            .ok_or_else(|| {
                corrupt(
                    "event_log entry",
                    format!("{event_id}: message {id} is listed but absent"),
                )
            })?;
        let mf = Fields::new(m, "outbox message");
        let message = OutboxMessage {
            id: id.to_string(),
            topic: mf.str("topic")?.to_string(),
            key: mf.str("key")?.to_string(),
            event: mf.json("event")?,
        };
        out.push(Pending {
            seq: seq.clone(),
            position: mf.u64("position")?,
            stored: StoredOutboxMessage::encode(&message, event_id, created_at),
        });
    }
    out.sort_by_key(|p| p.position);
    Ok(out)
}

/// An unpublished message and where it stands in the outbox's order.
pub(crate) struct Pending {
    pub(crate) seq: String,
    pub(crate) position: u64,
    pub(crate) stored: StoredOutboxMessage,
}

// ---- idempotency ---------------------------------------------------------------------------

pub(crate) fn idempotency_doc(r: &IdempotencyRecord) -> Result<Document, StoreError> {
    Ok(doc! {
        "_id": &r.key,
        "fingerprint": &r.fingerprint,
        "topic": &r.topic,
        "event": api_bson(&r.event)?,
        "status": i32::from(r.status),
        "response": api_bson(&r.response)?,
        "published": r.published,
        "created_at": date(r.created_at),
    })
}

/// The API's own values: failing to encode them is a bug, not input to refuse.
fn api_bson(value: &impl serde::Serialize) -> Result<Bson, StoreError> {
    to_bson(value).map_err(|e| StoreError::Fatal(e.0))
}

pub(crate) fn idempotency_from(doc: &Document) -> Result<IdempotencyRecord, StoreError> {
    let f = Fields::new(doc, "idempotency record");
    let status = f.i64("status")?;
    Ok(IdempotencyRecord {
        key: f.str("_id")?.to_string(),
        fingerprint: f.str("fingerprint")?.to_string(),
        topic: f.str("topic")?.to_string(),
        event: f.json("event")?,
        status: u16::try_from(status)
            .map_err(|_| corrupt("idempotency record", format!("status {status}")))?,
        response: f.json("response")?,
        published: f.bool("published")?,
        created_at: f.date("created_at")?,
    })
}
