//! Typed reads of stored documents, and the limits every document written must respect.
//!
//! Ids are strings, integers Int64 (read back as Int32 too: servers may narrow small ones),
//! times BSON dates (millisecond precision), JSON values plain BSON documents so operators can
//! query them. No ObjectId, Decimal128 or Binary anywhere. The documents themselves are in
//! `entry` (the event log and entity heads) and `reminders::record`.

use chrono::{DateTime, Utc};
use enrollstream_domain::EntityKind;
use enrollstream_ports::StoreError;
use mongodb::bson::{self, Bson, DateTime as BsonDate, Document};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::corrupt;

/// MongoDB's limit on one document: 16 MiB of BSON.
pub(crate) const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;
/// MongoDB keeps documents nested at most 100 levels deep (each document or array is one,
/// counting the stored document itself).
pub(crate) const MAX_DEPTH: usize = 100;

/// `_id` of an entity head: one collection holds both kinds.
pub(crate) fn entity_key(kind: EntityKind, id: &str) -> String {
    format!("{}:{id}", kind.as_str())
}

pub(crate) fn date(t: DateTime<Utc>) -> Bson {
    Bson::DateTime(BsonDate::from_millis(t.timestamp_millis()))
}

pub(crate) fn int(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::Fatal(format!("{n} does not fit a BSON Int64")))
}

/// Why a value cannot be stored: the change carrying it is refused, not retried.
#[derive(Debug)]
pub(crate) struct Unwritable(pub(crate) String);

/// A JSON value (or anything serde can write) as BSON; a number beyond Int64 is unwritable.
pub(crate) fn to_bson(value: &impl Serialize) -> Result<Bson, Unwritable> {
    bson::to_bson(value).map_err(|e| Unwritable(format!("not representable in BSON: {e}")))
}

/// Checks what the server would refuse, so that one change is refused on its own instead of
/// failing its whole batch with an error nobody can retry away.
pub(crate) fn writable(doc: &Document) -> Result<(), Unwritable> {
    let depth = depth(doc);
    if depth > MAX_DEPTH {
        return Err(Unwritable(format!(
            "nested {depth} levels deep; MongoDB keeps at most {MAX_DEPTH}"
        )));
    }
    let bytes = bson::to_vec(doc)
        .map_err(|e| Unwritable(format!("cannot encode as BSON: {e}")))?
        .len();
    if bytes > MAX_DOCUMENT_BYTES {
        return Err(Unwritable(format!(
            "{bytes} bytes of BSON; MongoDB keeps at most {MAX_DOCUMENT_BYTES} per document"
        )));
    }
    Ok(())
}

/// Levels of documents and arrays, the outermost included. Iterative: a hostile value must
/// not exhaust the stack.
fn depth(doc: &Document) -> usize {
    let mut deepest = 1;
    let mut stack: Vec<(&Bson, usize)> = doc.values().map(|v| (v, 1)).collect();
    while let Some((value, level)) = stack.pop() {
        match value {
            Bson::Document(d) => {
                deepest = deepest.max(level + 1);
                stack.extend(d.values().map(|v| (v, level + 1)));
            }
            Bson::Array(a) => {
                deepest = deepest.max(level + 1);
                stack.extend(a.iter().map(|v| (v, level + 1)));
            }
            _ => {}
        }
    }
    deepest
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

    pub(crate) fn bool(&self, field: &str) -> Result<bool, StoreError> {
        match self.get(field)? {
            Bson::Boolean(b) => Ok(*b),
            other => Err(self.bad(field, format!("not a boolean: {other}"))),
        }
    }

    pub(crate) fn date(&self, field: &str) -> Result<DateTime<Utc>, StoreError> {
        match self.get(field)? {
            Bson::DateTime(d) => DateTime::from_timestamp_millis(d.timestamp_millis())
                .ok_or_else(|| self.bad(field, "date out of range")),
            other => Err(self.bad(field, format!("not a date: {other}"))),
        }
    }

    pub(crate) fn opt_date(&self, field: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        match self.doc.get(field) {
            None | Some(Bson::Null) => Ok(None),
            Some(_) => self.date(field).map(Some),
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

    pub(crate) fn doc(&self, field: &str) -> Result<Option<&'a Document>, StoreError> {
        match self.doc.get(field) {
            None | Some(Bson::Null) => Ok(None),
            Some(Bson::Document(d)) => Ok(Some(d)),
            Some(other) => Err(self.bad(field, format!("not a document: {other}"))),
        }
    }

    /// The strings of an array field (absent: none).
    pub(crate) fn strings(&self, field: &str) -> Result<Vec<&'a str>, StoreError> {
        match self.doc.get(field) {
            None | Some(Bson::Null) => Ok(Vec::new()),
            Some(Bson::Array(a)) => a
                .iter()
                .map(|v| v.as_str().ok_or_else(|| self.bad(field, "not strings")))
                .collect(),
            Some(other) => Err(self.bad(field, format!("not an array: {other}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::doc;

    #[test]
    fn depth_counts_documents_and_arrays_from_the_outermost() {
        assert_eq!(depth(&doc! { "a": 1 }), 1);
        assert_eq!(depth(&doc! { "a": { "b": [1, { "c": 2 }] } }), 4);
        let mut deep = Bson::from("x");
        for _ in 0..MAX_DEPTH {
            deep = Bson::Document(doc! { "n": deep });
        }
        assert!(writable(&doc! { "v": deep.clone() }).is_err());
        assert!(writable(&deep.as_document().unwrap().clone()).is_ok());
    }

    #[test]
    fn numbers_beyond_int64_are_unwritable() {
        assert!(to_bson(&serde_json::json!(u64::MAX)).is_err());
        assert!(to_bson(&serde_json::json!(i64::MAX)).is_ok());
    }
}
