//! What marking published costs: the read of pending messages remembers their entries, so the
//! relay's mark is one update per entry; a mark of messages this process did not read finds
//! their entries first, and marks them as well.

use crate::common;

use common::{fresh_database, server};
use enrollstream_mongodb::{MongoSettings, MongoStore};
use enrollstream_ports::Store;
use enrollstream_testkit::contract::store::fixtures::new_quote;

async fn counting(database: &str) -> MongoStore {
    let settings = MongoSettings {
        count_commands: true,
        ..MongoSettings::default()
    };
    let uri = server().uri();
    MongoStore::connect_with(&uri, database, settings)
        .await
        .unwrap_or_else(|e| panic!("connecting to {uri}: {e}"))
}

/// Commands by name since the last call.
fn commands(store: &MongoStore) -> Vec<String> {
    store
        .take_commands()
        .iter()
        .map(|(name, stats)| format!("{name}×{}", stats.count))
        .collect()
}

#[tokio::test]
async fn the_relay_marks_what_it_read_without_finding_it_again() {
    let database = fresh_database();
    let relay = counting(&database).await;
    let other = counting(&database).await;
    let (a, b) = (new_quote(), new_quote());
    relay.apply(&[a.clone(), b.clone()]).await.unwrap();

    let read = relay.pending_outbox(100).await.unwrap();
    assert_eq!(read.len(), a.outbox.len() + b.outbox.len());
    let of = |event: &str| -> Vec<String> {
        read.iter()
            .filter(|m| m.event_id == event)
            .map(|m| m.id.clone())
            .collect()
    };
    commands(&relay);
    relay.mark_published(&of(&a.event.event_id)).await.unwrap();
    assert_eq!(
        commands(&relay),
        ["update×1"],
        "one update for the entry read (the generation pointer is cached)"
    );

    // Another process did not read b's messages: it finds their entry, then marks it.
    commands(&other);
    other.mark_published(&of(&b.event.event_id)).await.unwrap();
    assert_eq!(
        commands(&other),
        ["find×1", "update×1"],
        "a find of the entries, then one update"
    );
    assert!(relay.pending_outbox(100).await.unwrap().is_empty());
    assert_eq!(relay.outbox_backlog().await.unwrap(), 0);

    // What the relay remembered of b is stale now, and marking it again changes nothing.
    relay.mark_published(&of(&b.event.event_id)).await.unwrap();
    assert!(relay.pending_outbox(100).await.unwrap().is_empty());
}
