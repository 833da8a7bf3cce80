//! What this member of a consumer group owns, kept by librdkafka's rebalance callback.
//!
//! The callback runs inside `BaseConsumer::poll`, on the thread that polls. It records the
//! assignment for `Subscription::assignment`, remembers which partitions were revoked so the poll
//! loop can drop what it fetched from them (another member owns them now), and, for a replay,
//! points every newly assigned partition at the beginning.
//!
//! Both rebalance protocols are served: eager (`range`, `roundrobin`: every revoke takes the
//! whole assignment back and the next assign hands out a whole new one) and cooperative
//! (`cooperative-sticky`, the default: each callback names only the partitions that move, and
//! the rest keep being consumed through the rebalance).

use enrollstream_ports::StartFrom;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};

use crate::context;

/// (topic, partition)
pub(crate) type Partition = (String, i32);

#[derive(Debug, Default)]
struct State {
    assigned: BTreeSet<Partition>,
    /// Revoked since the poll loop last looked.
    revoked: BTreeSet<Partition>,
    /// Where this subscription committed, per partition. A replay that gets a partition back
    /// after a rebalance resumes here instead of at the group's older commit, which could lie
    /// past messages the replay has not seen yet.
    committed: BTreeMap<Partition, i64>,
}

pub(crate) struct Membership {
    group: String,
    start: StartFrom,
    state: Mutex<State>,
}

fn partitions(tpl: &TopicPartitionList) -> Vec<Partition> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

impl Membership {
    pub(crate) fn new(group: String, start: StartFrom) -> Self {
        Self {
            group,
            start,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked: every update is a single insert
        // or removal.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn group(&self) -> &str {
        &self.group
    }

    pub(crate) fn assigned(&self) -> BTreeSet<Partition> {
        self.state().assigned.clone()
    }

    pub(crate) fn take_revoked(&self) -> BTreeSet<Partition> {
        std::mem::take(&mut self.state().revoked)
    }

    pub(crate) fn record_commits(&self, positions: &BTreeMap<Partition, i64>) {
        let mut state = self.state();
        for (partition, next) in positions {
            state.committed.insert(partition.clone(), *next);
        }
    }

    fn assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let granted = partitions(tpl);
        {
            let mut state = self.state();
            if self.start == StartFrom::Earliest {
                for (topic, partition) in &granted {
                    let offset = state
                        .committed
                        .get(&(topic.clone(), *partition))
                        .map_or(Offset::Beginning, |next| Offset::Offset(*next));
                    if let Err(e) = tpl.set_partition_offset(topic, *partition, offset) {
                        tracing::error!(group = %self.group, topic, partition, error = %e, "cannot rewind partition for replay");
                    }
                }
            }
            // Cooperative: an increment to what is held. Eager: the whole assignment, after a
            // revoke that emptied the set.
            state.assigned.extend(granted.iter().cloned());
        }
        tracing::info!(group = %self.group, partitions = ?granted, "partitions assigned");
        let result = if is_cooperative(consumer) {
            consumer.incremental_assign(tpl)
        } else {
            consumer.assign(tpl)
        };
        if let Err(e) = result {
            tracing::error!(group = %self.group, error = %e, "cannot take the assigned partitions");
        }
    }

    /// `tpl` names what is revoked under the cooperative protocol; the eager protocol takes
    /// everything back, whatever the list says. Also called when the assignment was lost
    /// (session timeout, fenced): librdkafka reports that as a revoke.
    fn revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let cooperative = is_cooperative(consumer);
        let taken = self.release(cooperative.then(|| partitions(tpl)));
        tracing::info!(group = %self.group, partitions = ?taken, lost = consumer.assignment_lost(), "partitions revoked");
        let result = if cooperative {
            consumer.incremental_unassign(tpl)
        } else {
            consumer.unassign()
        };
        if let Err(e) = result {
            tracing::error!(group = %self.group, error = %e, "cannot release the revoked partitions");
        }
    }

    /// A failed rebalance: give up everything held, as librdkafka advises, and let the group
    /// protocol rejoin.
    fn revoke_all(&self, consumer: &BaseConsumer<Self>) {
        let taken = self.release(None);
        let result = if is_cooperative(consumer) {
            let mut tpl = TopicPartitionList::with_capacity(taken.len());
            for (topic, partition) in &taken {
                tpl.add_partition(topic, *partition);
            }
            consumer.incremental_unassign(&tpl)
        } else {
            consumer.unassign()
        };
        if let Err(e) = result {
            tracing::error!(group = %self.group, error = %e, "cannot release the assignment");
        }
    }

    /// Forget `which` partitions (all when `None`) and remember them as revoked for the poll loop.
    fn release(&self, which: Option<Vec<Partition>>) -> Vec<Partition> {
        let mut state = self.state();
        let taken: Vec<Partition> = match which {
            Some(listed) => listed,
            None => std::mem::take(&mut state.assigned).into_iter().collect(),
        };
        for p in &taken {
            state.assigned.remove(p);
            state.revoked.insert(p.clone());
        }
        taken
    }
}

fn is_cooperative(consumer: &BaseConsumer<Membership>) -> bool {
    matches!(
        consumer.rebalance_protocol(),
        RebalanceProtocol::Cooperative
    )
}

impl ClientContext for Membership {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, line: &str) {
        context::log(level, facility, line);
    }

    fn error(&self, e: KafkaError, reason: &str) {
        context::error(&e, reason);
    }
}

impl ConsumerContext for Membership {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.assign(consumer, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => self.revoke(consumer, tpl),
            other => {
                tracing::warn!(group = %self.group, error = ?other, "rebalance failed");
                self.revoke_all(consumer);
            }
        }
    }
}
