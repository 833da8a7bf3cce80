//! How the store's values become SQLite columns and back.

use enrollstream_domain::notification::OutboxMessage;
use enrollstream_domain::{CloudEvent, EntityKind};
use enrollstream_ports::{
    codec, Change, EntityRecord, IdempotencyRecord, OutboundMessage, StoredEvent,
    StoredOutboxMessage,
};

use crate::sqlite::{json, parse_json, parse_time, time, Failure, Result};

/// A row as a table stores it: its struct, its column list for `SELECT` and `INSERT`, and
/// `read`, which takes a query's row by column name. Rows are decoded outside the row
/// callback, so decoding errors stay ours.
macro_rules! row {
    ($(#[$doc:meta])* $row:ident, $columns:ident {
        $first:ident: $first_ty:ty $(, $field:ident: $ty:ty)* $(,)?
    }) => {
        $(#[$doc])*
        pub(crate) struct $row {
            pub $first: $first_ty,
            $(pub $field: $ty,)*
        }

        pub(crate) const $columns: &str =
            concat!(stringify!($first) $(, ", ", stringify!($field))*);

        impl $row {
            pub(crate) fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
                Ok(Self {
                    $first: row.get(stringify!($first))?,
                    $($field: row.get(stringify!($field))?,)*
                })
            }
        }
    };
}

pub(crate) fn parse_kind(s: &str) -> Result<EntityKind> {
    match s {
        "quote" => Ok(EntityKind::Quote),
        "application" => Ok(EntityKind::Application),
        other => Err(Failure::Corrupt(format!("unknown entity kind {other:?}"))),
    }
}

pub(crate) fn int(column: &str, v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| Failure::Corrupt(format!("{column} {v} does not fit SQLite")))
}

fn uint(column: &str, v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| Failure::Corrupt(format!("{column} {v} is negative")))
}

/// A change encoded for the writer: all serialisation happens on the caller's task, so the
/// writer only binds strings while it holds the lock.
pub(crate) struct ChangeRow {
    pub event_id: String,
    pub entity_kind: &'static str,
    pub entity_id: String,
    pub version: i64,
    pub event_type: String,
    pub occurred_at: String,
    pub envelope: String,
    pub source: Option<String>,
    pub recorded_at: String,
    pub expected_version: i64,
    pub status: String,
    pub state: String,
    pub outbox: Vec<OutboxRow>,
    pub replay: bool,
}

/// An outbox message in the bus binding: headers as JSON pairs (as `bus.db` keeps them), the
/// CloudEvent's data as payload.
pub(crate) struct OutboxRow {
    pub id: String,
    pub topic: String,
    pub key: String,
    pub headers: String,
    pub payload: Vec<u8>,
}

impl ChangeRow {
    pub(crate) fn encode(change: &Change) -> Result<Self> {
        let e = &change.event;
        let outbox = change
            .outbox
            .iter()
            .map(|m| {
                let encoded = codec::encode_outbox(m);
                Ok(OutboxRow {
                    id: m.id.clone(),
                    topic: m.topic.clone(),
                    key: encoded.key,
                    headers: json("outbox headers", &encoded.headers)?,
                    payload: encoded.payload,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            event_id: e.event_id.clone(),
            entity_kind: e.entity_kind.as_str(),
            entity_id: e.entity_id.clone(),
            version: int("version", e.version)?,
            event_type: e.event_type.clone(),
            occurred_at: time(e.occurred_at),
            envelope: json("envelope", &e.envelope)?,
            source: e.source.clone(),
            recorded_at: time(e.recorded_at),
            expected_version: int("expected version", change.expected_version)?,
            status: change.status.clone(),
            state: json("state", &change.state)?,
            outbox,
            replay: change.replay,
        })
    }
}

row! {
    /// An event-log row as read.
    EventRow, EVENT_COLUMNS {
        event_id: String,
        entity_kind: String,
        entity_id: String,
        version: i64,
        event_type: String,
        occurred_at: String,
        envelope: String,
        source: Option<String>,
        recorded_at: String,
    }
}

impl EventRow {
    pub(crate) fn decode(self) -> Result<StoredEvent> {
        let envelope: CloudEvent = parse_json("envelope", &self.envelope)?;
        Ok(StoredEvent {
            event_id: self.event_id,
            entity_kind: parse_kind(&self.entity_kind)?,
            entity_id: self.entity_id,
            version: uint("version", self.version)?,
            event_type: self.event_type,
            occurred_at: parse_time("occurred_at", &self.occurred_at)?,
            envelope,
            source: self.source,
            recorded_at: parse_time("recorded_at", &self.recorded_at)?,
        })
    }
}

row! {
    EntityRow, ENTITY_COLUMNS {
        kind: String,
        id: String,
        version: i64,
        status: String,
        state: String,
        last_event_id: String,
        updated_at: String,
    }
}

impl EntityRow {
    pub(crate) fn decode(self) -> Result<EntityRecord> {
        Ok(EntityRecord {
            kind: parse_kind(&self.kind)?,
            id: self.id,
            version: uint("version", self.version)?,
            status: self.status,
            state: parse_json("state", &self.state)?,
            last_event_id: self.last_event_id,
            updated_at: parse_time("updated_at", &self.updated_at)?,
        })
    }
}

row! {
    OutboxReadRow, OUTBOX_COLUMNS {
        id: String,
        topic: String,
        key: String,
        headers: Option<String>,
        payload: Option<Vec<u8>>,
        event: Option<String>,
        event_id: String,
        created_at: String,
    }
}

impl OutboxReadRow {
    pub(crate) fn decode(self) -> Result<StoredOutboxMessage> {
        let created_at = parse_time("created_at", &self.created_at)?;
        if let (Some(headers), Some(payload)) = (&self.headers, self.payload) {
            return Ok(StoredOutboxMessage {
                id: self.id,
                topic: self.topic,
                message: OutboundMessage {
                    key: self.key,
                    headers: parse_json("outbox headers", headers)?,
                    payload,
                },
                event_id: self.event_id,
                created_at,
            });
        }
        // Written before the outbox kept messages encoded (schema version 2 and older).
        let event = self.event.ok_or_else(|| {
            Failure::Corrupt(format!("outbox message {} has no content", self.id))
        })?;
        let message = OutboxMessage {
            id: self.id,
            topic: self.topic,
            key: self.key,
            event: parse_json("outbox event", &event)?,
        };
        Ok(StoredOutboxMessage::encode(
            &message,
            &self.event_id,
            created_at,
        ))
    }
}

row! {
    IdempotencyRow, IDEMPOTENCY_COLUMNS {
        key: String,
        fingerprint: String,
        topic: String,
        event: String,
        status: i64,
        response: String,
        published: bool,
        created_at: String,
    }
}

impl IdempotencyRow {
    pub(crate) fn encode(r: &IdempotencyRecord) -> Result<Self> {
        Ok(Self {
            key: r.key.clone(),
            fingerprint: r.fingerprint.clone(),
            topic: r.topic.clone(),
            event: json("idempotency event", &r.event)?,
            status: i64::from(r.status),
            response: json("response", &r.response)?,
            published: r.published,
            created_at: time(r.created_at),
        })
    }

    pub(crate) fn decode(self) -> Result<IdempotencyRecord> {
        Ok(IdempotencyRecord {
            key: self.key,
            fingerprint: self.fingerprint,
            topic: self.topic,
            event: parse_json("idempotency event", &self.event)?,
            status: u16::try_from(self.status)
                .map_err(|_| Failure::Corrupt(format!("status {} is not HTTP", self.status)))?,
            response: parse_json("response", &self.response)?,
            published: self.published,
            created_at: parse_time("created_at", &self.created_at)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use enrollstream_testkit::contract::store::fixtures::new_quote;

    #[test]
    fn an_outbox_row_from_before_the_encoded_outbox_reads_back_encoded() {
        let change = new_quote();
        let message = &change.outbox[0];
        let created_at = change.event.recorded_at;
        let row = OutboxReadRow {
            id: message.id.clone(),
            topic: message.topic.clone(),
            key: message.key.clone(),
            headers: None,
            payload: None,
            event: Some(serde_json::to_string(&message.event).unwrap()),
            event_id: change.event.event_id.clone(),
            created_at: time(created_at),
        };
        assert_eq!(
            row.decode().unwrap(),
            StoredOutboxMessage::encode(message, &change.event.event_id, created_at)
        );
    }
}
