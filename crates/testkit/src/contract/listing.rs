//! The listing contract of the store (`Store::list_entities`): filters by status and broker,
//! id order, and cursor pages. Each case takes a fresh, empty store of its own.

use enrollstream_domain::EntityKind;
use enrollstream_ports::{EntityQuery, Store};

use super::store::fixtures::{application_id, application_lifecycle, history, new_quote};

/// The first `steps` changes of an application's lifecycle (1 started, 2 awaiting signature,
/// 4 approved), submitted by `broker`.
async fn application(store: &dyn Store, steps: usize, broker: &str) -> String {
    let id = application_id();
    let mut events = application_lifecycle(&id);
    events[1].data["broker"]["id"] = broker.into();
    let changes = history(&events[..steps]);
    store.apply(&changes).await.expect("apply");
    id
}

async fn ids(store: &dyn Store, query: EntityQuery) -> Vec<String> {
    store
        .list_entities(&query)
        .await
        .unwrap_or_else(|e| panic!("list_entities({query:?}) failed: {e}"))
        .into_iter()
        .map(|r| r.id)
        .collect()
}

fn applications() -> EntityQuery {
    EntityQuery {
        kind: EntityKind::Application,
        status: None,
        broker_id: None,
        after: None,
        limit: 100,
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

pub async fn filters_by_status_and_broker_in_id_order(store: &dyn Store) {
    let started = application(store, 1, "B-1").await;
    let waiting_1 = application(store, 2, "B-1").await;
    let waiting_2 = application(store, 2, "B-2").await;
    let approved_1 = application(store, 4, "B-1").await;
    let quote = new_quote();
    store
        .apply(std::slice::from_ref(&quote))
        .await
        .expect("apply quote");

    let all = ids(store, applications()).await;
    assert_eq!(
        all,
        sorted(vec![
            started.clone(),
            waiting_1.clone(),
            waiting_2.clone(),
            approved_1.clone()
        ]),
        "every application, in id order, and no quote"
    );
    let by_status = EntityQuery {
        status: Some("AWAITING_SIGNATURE".into()),
        ..applications()
    };
    assert_eq!(
        ids(store, by_status.clone()).await,
        sorted(vec![waiting_1.clone(), waiting_2])
    );
    let by_broker = EntityQuery {
        broker_id: Some("B-1".into()),
        ..applications()
    };
    assert_eq!(
        ids(store, by_broker.clone()).await,
        sorted(vec![waiting_1.clone(), approved_1]),
        "an application not yet submitted has no broker"
    );
    let both = EntityQuery {
        broker_id: Some("B-1".into()),
        ..by_status
    };
    assert_eq!(ids(store, both).await, vec![waiting_1]);
    let quotes = EntityQuery {
        kind: EntityKind::Quote,
        ..applications()
    };
    assert_eq!(ids(store, quotes).await, vec![quote.event.entity_id]);
    let nobody = EntityQuery {
        broker_id: Some("B-404".into()),
        ..applications()
    };
    assert!(ids(store, nobody).await.is_empty());
}

pub async fn pages_follow_the_cursor(store: &dyn Store) {
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(application(store, 1, "B-1").await);
    }
    let created = sorted(created);
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = ids(
            store,
            EntityQuery {
                after: after.clone(),
                limit: 2,
                ..applications()
            },
        )
        .await;
        assert!(page.len() <= 2, "a page holds at most `limit` entities");
        let Some(last) = page.last().cloned() else {
            break;
        };
        seen.extend(page);
        after = Some(last);
    }
    assert_eq!(
        seen, created,
        "the pages together are every entity once, in order"
    );
}
