//! The credential store contract: what every `CredentialStore` adapter must do. Each case takes a
//! fresh, empty store of its own and panics with the rule it saw broken.

use chrono::Duration;
use enrollstream_ports::{ApiKeyRecord, CredentialStore, KeyCreation, StoreError};

use super::store::fixtures::now;

fn ok<T>(what: &str, result: Result<T, StoreError>) -> T {
    result.unwrap_or_else(|e| panic!("{what} failed: {e}"))
}

fn key(name: &str, hash: &str, scopes: &[&str]) -> ApiKeyRecord {
    ApiKeyRecord {
        name: name.to_string(),
        hash: hash.to_string(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        created_at: now(),
        last_used_at: None,
        revoked_at: None,
    }
}

pub async fn create_then_find_by_hash(store: &dyn CredentialStore) {
    let record = key("ci", &"a".repeat(64), &["read", "quotes:write"]);
    assert_eq!(
        ok("create", store.create_api_key(&record).await),
        KeyCreation::Created
    );
    let found = ok("find", store.api_key_by_hash(&record.hash).await);
    assert_eq!(found.as_ref(), Some(&record), "a key reads back as written");
    assert_eq!(
        ok("find unknown", store.api_key_by_hash(&"b".repeat(64)).await),
        None
    );
}

pub async fn names_are_never_reused(store: &dyn CredentialStore) {
    let first = key("ci", &"a".repeat(64), &["read"]);
    ok("create", store.create_api_key(&first).await);
    let again = key("ci", &"c".repeat(64), &["admin"]);
    assert_eq!(
        ok("create again", store.create_api_key(&again).await),
        KeyCreation::NameTaken
    );
    assert!(ok("revoke", store.revoke_api_key("ci", now()).await));
    assert_eq!(
        ok("create after revoke", store.create_api_key(&again).await),
        KeyCreation::NameTaken,
        "a revoked key's name stays taken, so logs keep meaning one key"
    );
    assert_eq!(
        ok("find", store.api_key_by_hash(&again.hash).await),
        None,
        "a refused key is not stored"
    );
}

pub async fn revoke_once_and_keep_the_record(store: &dyn CredentialStore) {
    let record = key("ops", &"d".repeat(64), &["admin"]);
    ok("create", store.create_api_key(&record).await);
    let at = now();
    assert!(ok("revoke", store.revoke_api_key("ops", at).await));
    assert!(
        !ok("revoke again", store.revoke_api_key("ops", now()).await),
        "a revoked key cannot be revoked twice"
    );
    assert!(!ok(
        "revoke unknown",
        store.revoke_api_key("nobody", now()).await
    ));
    let found = ok("find", store.api_key_by_hash(&record.hash).await).expect("still stored");
    assert_eq!(
        found.revoked_at,
        Some(at),
        "the first revocation's time stays"
    );
}

pub async fn list_by_name(store: &dyn CredentialStore) {
    for (name, c) in [("zeta", 'e'), ("alpha", 'f'), ("mid", '0')] {
        ok(
            "create",
            store
                .create_api_key(&key(name, &c.to_string().repeat(64), &["read"]))
                .await,
        );
    }
    ok("revoke", store.revoke_api_key("mid", now()).await);
    let names: Vec<String> = ok("list", store.api_keys().await)
        .into_iter()
        .map(|k| k.name)
        .collect();
    assert_eq!(
        names,
        ["alpha", "mid", "zeta"],
        "every key, revoked too, by name"
    );
}

pub async fn last_use_only_moves_forward(store: &dyn CredentialStore) {
    let record = key("app", &"1".repeat(64), &["read"]);
    ok("create", store.create_api_key(&record).await);
    let later = now() + Duration::minutes(5);
    ok("touch", store.touch_api_key("app", later).await);
    ok(
        "touch earlier",
        store
            .touch_api_key("app", later - Duration::minutes(1))
            .await,
    );
    let found = ok("find", store.api_key_by_hash(&record.hash).await).expect("stored");
    assert_eq!(found.last_used_at, Some(later));
    ok("touch unknown", store.touch_api_key("nobody", later).await);
}
