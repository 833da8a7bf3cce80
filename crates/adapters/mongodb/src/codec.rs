//! The documents this adapter keeps, and their translation to and from the port's types.
//!
//! Ids are strings, integers are Int64 on the way in and read back tolerantly (some servers hand
//! small Int64 back as Int32), times are BSON dates (millisecond precision), JSON values become
//! plain BSON documents so operators can query them. No ObjectId, Decimal128 or Binary anywhere.

use chrono::{DateTime, Utc};
use enrollstream_domain::notification::OutboxMessage;
use enrollstream_domain::{CloudEvent, EntityKind};
use enrollstream_ports::{
    EntityRecord, IdempotencyRecord, StoreError, StoredEvent, StoredOutboxMessage,
};
use mongodb::bson::{self, doc, Bson, DateTime as BsonDate, Document};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::corrupt;

/// `_id` of an entity document: one collection holds both kinds.
pub(crate) fn entity_key(kind: EntityKind, id: &str) -> String {
    format!("{}:{id}", kind.as_str())
}

pub(crate) fn date(t: DateTime<Utc>) -> Bson {
    Bson::DateTime(BsonDate::from_millis(t.timestamp_millis()))
}

pub(crate) fn int(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::Fatal(format!("{n} does not fit a BSON Int64")))
}

pub(crate) fn to_bson(value: &impl Serialize) -> Result<Bson, StoreError> {
    bson::to_bson(value).map_err(|e| StoreError::Fatal(format!("cannot encode as BSON: {e}")))
}

/// Typed reads of one stored document, naming the document and field when it is not as written.
pub(crate) struct Fields<'a> {
    doc: &'a Document,
    what: &'static str,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(doc: &'a Document, what: &'static str) -> Self {
        Self { doc, what }
    }

    fn bad(&self, field: &str, detail: impl std::fmt::Display) -> StoreError {
        let id = self
            .doc
            .get("_id")
            .map(ToString::to_string)
            .unwrap_or_default();
        corrupt(self.what, format!("{id} field {field}: {detail}"))
    }

    fn get(&self, field: &str) -> Result<&'a Bson, StoreError> {
        self.doc
            .get(field)
            .ok_or_else(|| self.bad(field, "missing"))
    }

    pub(crate) fn str(&self, field: &str) -> Result<&'a str, StoreError> {
        self.get(field)?
            .as_str()
            .ok_or_else(|| self.bad(field, "not a string"))
    }

    pub(crate) fn opt_str(&self, field: &str) -> Result<Option<String>, StoreError> {
        match self.doc.get(field) {
            None | Some(Bson::Null) => Ok(None),
            Some(Bson::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.bad(field, format!("not a string: {other}"))),
        }
    }

    pub(crate) fn i64(&self, field: &str) -> Result<i64, StoreError> {
        let value = self.get(field)?;
        value
            .as_i64()
            .or_else(|| value.as_i32().map(i64::from))
            .ok_or_else(|| self.bad(field, format!("not an integer: {value}")))
    }

    pub(crate) fn u64(&self, field: &str) -> Result<u64, StoreError> {
        let n = self.i64(field)?;
        u64::try_from(n).map_err(|_| self.bad(field, format!("negative: {n}")))
    }

    /// Also 0 and 1: nx-27017 turns booleans written by `$set` into integers.
    pub(crate) fn bool(&self, field: &str) -> Result<bool, StoreError> {
        match self.get(field)? {
            Bson::Boolean(b) => Ok(*b),
            Bson::Int32(n @ (0 | 1)) => Ok(*n == 1),
            Bson::Int64(n @ (0 | 1)) => Ok(*n == 1),
            other => Err(self.bad(field, format!("not a boolean: {other}"))),
        }
    }

    /// Also "YYYY-MM-DD HH:MM:SS.ffffff" (UTC): nx-27017 turns dates written by `$set` into
    /// such strings.
    pub(crate) fn date(&self, field: &str) -> Result<DateTime<Utc>, StoreError> {
        match self.get(field)? {
            Bson::DateTime(d) => DateTime::from_timestamp_millis(d.timestamp_millis())
                .ok_or_else(|| self.bad(field, "date out of range")),
            Bson::String(s) => chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
                .map(|t| t.and_utc())
                .map_err(|e| self.bad(field, format!("not a date: {s:?}: {e}"))),
            other => Err(self.bad(field, format!("not a date: {other}"))),
        }
    }

    pub(crate) fn kind(&self, field: &str) -> Result<EntityKind, StoreError> {
        match self.str(field)? {
            "quote" => Ok(EntityKind::Quote),
            "application" => Ok(EntityKind::Application),
            other => Err(self.bad(field, format!("unknown entity kind {other:?}"))),
        }
    }

    /// A JSON value stored as BSON; read through `serde_json::Value` so that JSON numbers come
    /// back as the same numbers whichever integer width the server returns.
    pub(crate) fn json<T: DeserializeOwned>(&self, field: &str) -> Result<T, StoreError> {
        let value: serde_json::Value =
            bson::from_bson(self.get(field)?.clone()).map_err(|e| self.bad(field, e))?;
        serde_json::from_value(value).map_err(|e| self.bad(field, e))
    }

    pub(crate) fn array(&self, field: &str) -> Result<&'a [Bson], StoreError> {
        match self.doc.get(field) {
            None => Ok(&[]),
            Some(Bson::Array(a)) => Ok(a),
            Some(other) => Err(self.bad(field, format!("not an array: {other}"))),
        }
    }
}

// ---- event_log -----------------------------------------------------------------------------

pub(crate) fn event_doc(e: &StoredEvent) -> Result<Document, StoreError> {
    Ok(doc! {
        "_id": &e.event_id,
        "entity_kind": e.entity_kind.as_str(),
        "entity_id": &e.entity_id,
        "version": int(e.version)?,
        "event_type": &e.event_type,
        "occurred_at": date(e.occurred_at),
        "envelope": to_bson(&e.envelope)?,
        "source": e.source.clone(),
        "recorded_at": date(e.recorded_at),
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

// ---- entities ------------------------------------------------------------------------------

pub(crate) fn entity_from(doc: &Document) -> Result<EntityRecord, StoreError> {
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

/// One element of an entity's embedded outbox.
#[derive(Clone, Debug)]
pub(crate) struct OutboxEntry {
    /// Kept as a CloudEvent (readable in the document); encoded for the bus when read.
    pub(crate) message: OutboxMessage,
    pub(crate) event_id: String,
    pub(crate) created_at: DateTime<Utc>,
    /// When the store recorded it: a time-ordered id (UUIDv7) taken at the write, so that the
    /// outbox reads back in the order changes were applied, whatever their `recorded_at`. The
    /// position in its change orders messages of one change.
    pub(crate) seq: String,
    pub(crate) position: u64,
    pub(crate) published: bool,
}

impl OutboxEntry {
    pub(crate) fn to_doc(&self) -> Result<Document, StoreError> {
        let m = &self.message;
        Ok(doc! {
            "id": &m.id,
            "topic": &m.topic,
            "key": &m.key,
            "event": to_bson(&m.event)?,
            "event_id": &self.event_id,
            "created_at": date(self.created_at),
            "seq": &self.seq,
            "position": int(self.position)?,
            "published": self.published,
        })
    }

    pub(crate) fn from_bson(value: &Bson) -> Result<Self, StoreError> {
        let doc = value
            .as_document()
            .ok_or_else(|| corrupt("outbox message", format!("not a document: {value}")))?;
        let f = Fields::new(doc, "outbox message");
        Ok(Self {
            message: OutboxMessage {
                id: f.str("id")?.to_string(),
                topic: f.str("topic")?.to_string(),
                key: f.str("key")?.to_string(),
                event: f.json("event")?,
            },
            event_id: f.str("event_id")?.to_string(),
            created_at: f.date("created_at")?,
            seq: f.str("seq")?.to_string(),
            position: f.u64("position")?,
            published: f.bool("published")?,
        })
    }

    pub(crate) fn to_stored(&self) -> StoredOutboxMessage {
        StoredOutboxMessage::encode(&self.message, &self.event_id, self.created_at)
    }

    /// Oldest first, as recorded.
    pub(crate) fn order_key(&self) -> (&str, u64) {
        (&self.seq, self.position)
    }
}

pub(crate) fn outbox_of(doc: &Document) -> Result<Vec<OutboxEntry>, StoreError> {
    Fields::new(doc, "entity")
        .array("outbox")?
        .iter()
        .map(OutboxEntry::from_bson)
        .collect()
}

// ---- idempotency ---------------------------------------------------------------------------

pub(crate) fn idempotency_doc(r: &IdempotencyRecord) -> Result<Document, StoreError> {
    Ok(doc! {
        "_id": &r.key,
        "fingerprint": &r.fingerprint,
        "topic": &r.topic,
        "event": to_bson(&r.event)?,
        "status": i32::from(r.status),
        "response": to_bson(&r.response)?,
        "published": r.published,
        // The TTL index expires records a day after this date.
        "created_at": date(r.created_at),
    })
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
