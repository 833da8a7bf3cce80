//! What the bus reports about positions: what a group committed, and where each partition ends.
//! Together they are a consumer group's lag.

use enrollstream_ports::{CommitPosition, EventBus, StartFrom};
use std::sync::Arc;

use super::{create_topic, keys, last_positions, message, poll_until, publish, unique, Member};

/// A topic of three partitions holding nine messages of nine keys, and an empty topic.
async fn nine_messages_on_three_partitions(bus: &dyn EventBus) -> (String, String) {
    let topic = unique("offsets");
    let empty = unique("empty");
    create_topic(bus, &topic, 3).await;
    create_topic(bus, &empty, 1).await;
    let keys = keys("entity", 9);
    publish(bus, &topic, keys.iter().map(|k| message(k, "0")).collect()).await;
    (topic, empty)
}

/// A member of `group` on `topic` that has read all nine messages.
async fn read_all_nine(bus: &dyn EventBus, group: &str, topic: &str, start: StartFrom) -> Member {
    let mut member = Member::join(bus, "member", group, topic, start).await;
    poll_until(&mut [&mut member], "all 9 messages", |m| {
        m[0].seen.len() >= 9
    })
    .await;
    member
}

/// `committed` reports what a group committed, per partition, and nothing for partitions,
/// topics or groups without a commit.
pub async fn committed_offsets_are_reported(bus: Arc<dyn EventBus>) {
    let (topic, other) = nine_messages_on_three_partitions(bus.as_ref()).await;
    let group = unique("group");
    let report = |group: String, topics: Vec<String>| {
        let bus = Arc::clone(&bus);
        async move {
            let mut got = bus
                .committed(&group, &topics)
                .await
                .unwrap_or_else(|e| panic!("committed({group}): {e}"));
            got.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
            got
        }
    };
    assert_eq!(
        report(group.clone(), vec![topic.clone()]).await,
        vec![],
        "a group that never committed"
    );

    let mut member = read_all_nine(bus.as_ref(), &group, &topic, StartFrom::Committed).await;
    let mut positions = last_positions(&member.seen);
    positions.truncate(positions.len().min(2));
    member.commit(&positions).await;
    let both = vec![topic.clone(), other.clone()];
    assert_eq!(
        report(group.clone(), both.clone()).await,
        positions,
        "committed partitions only"
    );
    assert_eq!(report(unique("group"), both).await, vec![], "another group");
    member.close().await;
}

/// `end_offsets` names every partition of the topics asked for, each at the offset its next
/// message gets: one past the last message read from it, 0 where nothing was written.
pub async fn end_offsets_are_reported(bus: Arc<dyn EventBus>) {
    let (topic, empty) = nine_messages_on_three_partitions(bus.as_ref()).await;
    let mut member =
        read_all_nine(bus.as_ref(), &unique("group"), &topic, StartFrom::Earliest).await;
    let mut expected = last_positions(&member.seen);
    member.close().await;
    // The keys may leave a partition without a message; it ends where it began.
    let partitions = [
        (topic.clone(), 0),
        (topic.clone(), 1),
        (topic.clone(), 2),
        (empty.clone(), 0),
    ];
    for (topic, partition) in partitions {
        if !expected
            .iter()
            .any(|p| p.topic == topic && p.partition == partition)
        {
            expected.push(CommitPosition {
                topic,
                partition,
                next_offset: 0,
            });
        }
    }
    expected.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    let mut got = bus
        .end_offsets(&[topic.clone(), empty.clone()])
        .await
        .unwrap_or_else(|e| panic!("end_offsets: {e}"));
    got.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    assert_eq!(
        got, expected,
        "one end per partition, one past its last message"
    );
    assert_eq!(
        got.iter().map(|p| p.next_offset).sum::<i64>(),
        9,
        "the ends add up to the messages written"
    );
}
