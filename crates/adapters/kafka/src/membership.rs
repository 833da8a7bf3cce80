//! What this member of a consumer group owns, kept by librdkafka's rebalance callback.
//!
//! The callback runs inside `BaseConsumer::poll`, on the thread that polls. It records the
//! assignment for `Subscription::assignment`, remembers which partitions were revoked so the poll
//! loop can drop what it fetched from them (another member owns them now), and, for a replay,
//! points every newly assigned partition at the beginning.

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
    /// Rebalance callbacks served so far: (revokes, assigns).
    rebalances: (u64, u64),
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

    /// (revokes, assigns) served so far.
    pub(crate) fn rebalances(&self) -> (u64, u64) {
        self.state().rebalances
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
            state.assigned.extend(granted.iter().cloned());
            state.rebalances.1 += 1;
        }
        tracing::info!(group = %self.group, partitions = ?granted, "partitions assigned");
        let result = match consumer.rebalance_protocol() {
            RebalanceProtocol::Cooperative => consumer.incremental_assign(tpl),
            _ => consumer.assign(tpl),
        };
        if let Err(e) = result {
            tracing::error!(group = %self.group, error = %e, "cannot take the assigned partitions");
        }
    }

    fn revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let taken = {
            let mut state = self.state();
            // The eager protocol takes everything back, whatever the list says.
            let taken: Vec<Partition> = if cooperative {
                partitions(tpl)
            } else {
                std::mem::take(&mut state.assigned).into_iter().collect()
            };
            for p in &taken {
                state.assigned.remove(p);
                state.revoked.insert(p.clone());
            }
            state.rebalances.0 += 1;
            taken
        };
        tracing::info!(group = %self.group, partitions = ?taken, "partitions revoked");
        let result = if cooperative {
            consumer.incremental_unassign(tpl)
        } else {
            consumer.unassign()
        };
        if let Err(e) = result {
            tracing::error!(group = %self.group, error = %e, "cannot release the revoked partitions");
        }
    }
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
                // librdkafka's own answer to a failed rebalance: give up the assignment and
                // rejoin.
                tracing::warn!(group = %self.group, error = ?other, "rebalance failed");
                self.revoke(consumer, tpl);
            }
        }
    }
}
