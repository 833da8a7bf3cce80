//! Reproduces, against a fresh test-bed server, the FerretDB 1.24 defects the adapter is built
//! around (docs/testbed.md): conditional updates and `findAndModify` are not atomic, an
//! `update` command of 100 statements never answers, and there are no change streams.
//!
//! `source scripts/testbed/env.sh && cargo run -p enrollstream-mongodb --example ferretdb_defects`
//!
//! Each race sends rounds of 8 compare-and-set writes (filter on a version, move it by one) at
//! once over two clients: on an atomic server one write per round matches; on FerretDB several
//! do, because each reads the document and then writes it back without a lock
//! (`internal/handler/msg_update.go`, `common.UpdateDocument`, `sqlite` `UpdateAll`).

use std::time::Duration;

use enrollstream_testkit::testbed::Mongo;
use mongodb::bson::{doc, Document};
use mongodb::options::ReturnDocument;
use mongodb::{Client, Collection};

const WRITERS: usize = 8;
const ROUNDS: i64 = 50;

/// Rounds of `WRITERS` compare-and-set writes on the same version, all at once: on an atomic
/// server exactly one of each round matches. Answers how many matched in all.
async fn race(collections: &[Collection<Document>; 2], find_and_modify: bool) -> usize {
    let c = &collections[0];
    c.delete_many(doc! {}).await.expect("clear");
    c.insert_one(doc! { "_id": "x", "version": 0_i64 })
        .await
        .expect("seed");
    let mut matched = 0;
    for round in 0..ROUNDS {
        let writes = (0..WRITERS).map(|w| {
            let c = collections[w % 2].clone();
            tokio::spawn(async move {
                let filter = doc! { "_id": "x", "version": round };
                let update = doc! { "$set": { "version": round + 1 } };
                if find_and_modify {
                    c.find_one_and_update(filter, update)
                        .return_document(ReturnDocument::After)
                        .await
                        .expect("findAndModify")
                        .is_some()
                } else {
                    c.update_one(filter, update)
                        .await
                        .expect("update")
                        .matched_count
                        == 1
                }
            })
        });
        for write in writes.collect::<Vec<_>>() {
            matched += usize::from(write.await.expect("writer"));
        }
    }
    matched
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let server = Mongo::start().unwrap_or_else(|e| panic!("FerretDB must start: {e:#}"));
    let uri = server.uri();
    let collection = |client: Client| client.database("defects").collection::<Document>("race");
    let clients: [Collection<Document>; 2] = [
        collection(Client::with_uri_str(&uri).await.expect("client")),
        collection(Client::with_uri_str(&uri).await.expect("client")),
    ];
    for (what, fam) in [("update_one", false), ("findAndModify", true)] {
        let matched = race(&clients, fam).await;
        println!(
            "{what}: {matched} of {ROUNDS} rounds' compare-and-set writes matched, one per round expected{}",
            if matched as i64 > ROUNDS { "  <- not atomic" } else { "" }
        );
    }

    let opened = clients[0].watch().await;
    println!(
        "change stream: {}",
        match opened {
            Ok(_) => "opened".to_string(),
            Err(e) => format!("refused: {e}"),
        }
    );

    let db = clients[0].client().database("defects");
    let existing: Vec<Document> = (0..100).map(|i| doc! { "_id": format!("k{i}") }).collect();
    db.collection::<Document>("many")
        .insert_many(existing)
        .await
        .expect("documents to update");
    for statements in [99_usize, 100] {
        let updates: Vec<Document> = (0..statements)
            .map(|i| doc! { "q": { "_id": format!("k{i}") }, "u": { "$set": { "v": 1 } } })
            .collect();
        let answered = tokio::time::timeout(
            Duration::from_secs(10),
            db.run_command(doc! { "update": "many", "updates": updates }),
        )
        .await;
        println!(
            "update command of {statements} statements: {}",
            match answered {
                Ok(Ok(_)) => "answered".to_string(),
                Ok(Err(e)) => format!("failed: {e}"),
                Err(_) => "no answer within 10 s  <- hangs".to_string(),
            }
        );
    }
}
