//! Identifiers. Ids are strings everywhere (MongoDB, Kafka keys, HTTP) so that no store has to
//! understand a binary UUID subtype.

use uuid::Uuid;

/// Namespace for ids derived from other ids (notification ids, idempotency keys toward targets).
/// Changing it changes every derived id, so it is fixed forever.
const DERIVED_NAMESPACE: Uuid = Uuid::from_u128(0x5c1f_0e1a_8b47_4d2e_9a3c_6f1e_2b7d_4e90);

/// A new time-ordered id (UUIDv7): sorts by creation time, which keeps indexes append-mostly.
pub fn new_id() -> String {
    Uuid::now_v7().to_string()
}

/// A deterministic id derived from `parts`: the same parts give the same id on every machine,
/// in every replay, after every crash.
pub fn derived_id(parts: &[&str]) -> String {
    let joined = parts.join("\u{1f}");
    Uuid::new_v5(&DERIVED_NAMESPACE, joined.as_bytes()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_and_distinct() {
        assert_eq!(derived_id(&["a", "b"]), derived_id(&["a", "b"]));
        assert_ne!(derived_id(&["a", "b"]), derived_id(&["ab"]));
        assert_ne!(derived_id(&["a", "b"]), derived_id(&["b", "a"]));
    }

    #[test]
    fn new_ids_are_unique() {
        assert_ne!(new_id(), new_id());
    }
}
