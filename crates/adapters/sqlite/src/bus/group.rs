//! In-process consumer groups: the members of one group split the partitions of the topics
//! they subscribe to, and the split is recomputed whenever a member joins or leaves.
//!
//! Assignment is Kafka's range strategy per topic: members in join order, each takes a
//! contiguous run of partitions, the first ones one more when the count does not divide. So
//! the oldest members keep their partitions when a new member joins.
//!
//! Every time a partition gets an owner it gets a new lease. A member holding an old lease
//! (it lost the partition, maybe got it back later) is recognised: its commits for that
//! partition are not applied, and it restarts the partition from the committed offset.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use tokio::sync::watch;

pub(super) type TopicPartition = (String, i32);
pub(super) type MemberId = u64;
pub(super) type Lease = u64;

#[derive(Default)]
pub(super) struct Coordinator {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    groups: HashMap<String, Group>,
    /// Source of member ids and leases: unique for the life of the bus.
    last_id: u64,
}

struct Group {
    /// Members in join order, with the topics each subscribes to.
    members: BTreeMap<MemberId, Vec<String>>,
    partitions: BTreeMap<String, i32>,
    owners: HashMap<TopicPartition, (MemberId, Lease)>,
    /// Bumped on every change of `owners`, to wake members so they pick up their assignment.
    generation: watch::Sender<u64>,
}

pub(super) struct Joined {
    pub(super) member: MemberId,
    pub(super) generation: watch::Receiver<u64>,
}

impl Coordinator {
    /// Adds a member subscribing to `topics` (with their partition counts) and rebalances.
    pub(super) fn join(&self, group: &str, topics: &[(String, i32)]) -> Joined {
        let mut state = self.state.lock().expect("group coordinator lock");
        state.last_id += 1;
        let member = state.last_id;
        let State { groups, last_id } = &mut *state;
        let group = groups.entry(group.to_string()).or_insert_with(|| Group {
            members: BTreeMap::new(),
            partitions: BTreeMap::new(),
            owners: HashMap::new(),
            generation: watch::channel(0).0,
        });
        group
            .members
            .insert(member, topics.iter().map(|(t, _)| t.clone()).collect());
        group.partitions.extend(topics.iter().cloned());
        group.rebalance(last_id);
        // Subscribed after the rebalance: the new member reads its assignment on its first poll.
        Joined {
            member,
            generation: group.generation.subscribe(),
        }
    }

    /// Removes a member (closed or dropped) and hands its partitions to the others at once.
    pub(super) fn leave(&self, group_name: &str, member: MemberId) {
        let mut state = self.state.lock().expect("group coordinator lock");
        let State { groups, last_id } = &mut *state;
        let Some(group) = groups.get_mut(group_name) else {
            return;
        };
        if group.members.remove(&member).is_none() {
            return;
        }
        if group.members.is_empty() {
            groups.remove(group_name);
        } else {
            group.rebalance(last_id);
        }
    }

    /// The partitions `member` holds now, with their leases, sorted.
    pub(super) fn assignment(&self, group: &str, member: MemberId) -> Vec<(TopicPartition, Lease)> {
        let state = self.state.lock().expect("group coordinator lock");
        let mut held: Vec<(TopicPartition, Lease)> = state
            .groups
            .get(group)
            .map(|g| {
                g.owners
                    .iter()
                    .filter(|(_, (owner, _))| *owner == member)
                    .map(|(tp, (_, lease))| (tp.clone(), *lease))
                    .collect()
            })
            .unwrap_or_default();
        held.sort();
        held
    }

    /// Keeps the positions whose partition `member` still holds under the same lease.
    pub(super) fn retain_held<T>(
        &self,
        group: &str,
        member: MemberId,
        positions: impl IntoIterator<Item = (TopicPartition, Lease, T)>,
    ) -> Vec<(TopicPartition, T)> {
        let state = self.state.lock().expect("group coordinator lock");
        let Some(group) = state.groups.get(group) else {
            return Vec::new();
        };
        positions
            .into_iter()
            .filter(|(tp, lease, _)| group.owners.get(tp) == Some(&(member, *lease)))
            .map(|(tp, _, value)| (tp, value))
            .collect()
    }
}

impl Group {
    fn rebalance(&mut self, last_id: &mut u64) {
        let mut owners = HashMap::new();
        for (topic, &count) in &self.partitions {
            let subscribers: Vec<MemberId> = self
                .members
                .iter()
                .filter(|(_, topics)| topics.contains(topic))
                .map(|(id, _)| *id)
                .collect();
            if subscribers.is_empty() {
                continue;
            }
            let count = usize::try_from(count).unwrap_or(0);
            let (base, extra) = (count / subscribers.len(), count % subscribers.len());
            let mut partition = 0i32;
            for (rank, member) in subscribers.iter().enumerate() {
                for _ in 0..base + usize::from(rank < extra) {
                    let tp = (topic.clone(), partition);
                    let lease = match self.owners.get(&tp) {
                        Some((owner, lease)) if owner == member => *lease,
                        _ => {
                            *last_id += 1;
                            *last_id
                        }
                    };
                    owners.insert(tp, (*member, lease));
                    partition += 1;
                }
            }
        }
        if owners != self.owners {
            self.owners = owners;
            self.generation.send_modify(|g| *g = g.wrapping_add(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partitions(held: &[(TopicPartition, Lease)]) -> Vec<i32> {
        held.iter().map(|((_, p), _)| *p).collect()
    }

    #[test]
    fn members_split_ranges_and_the_oldest_keep_theirs() {
        let groups = Coordinator::default();
        let topics = [("t".to_string(), 5)];
        let a = groups.join("g", &topics).member;
        let alone = groups.assignment("g", a);
        assert_eq!(partitions(&alone), vec![0, 1, 2, 3, 4]);

        let b = groups.join("g", &topics).member;
        let (held_a, held_b) = (groups.assignment("g", a), groups.assignment("g", b));
        assert_eq!(partitions(&held_a), vec![0, 1, 2]);
        assert_eq!(partitions(&held_b), vec![3, 4]);
        // a kept partitions 0..3 under the same leases.
        assert_eq!(held_a[..], alone[..3]);

        groups.leave("g", a);
        let after = groups.assignment("g", b);
        assert_eq!(partitions(&after), vec![0, 1, 2, 3, 4]);
        assert_eq!(after[3..], held_b[..], "b keeps its leases");
        assert!(after[..3]
            .iter()
            .all(|(tp, lease)| !held_a.contains(&(tp.clone(), *lease))));
    }

    #[test]
    fn a_partition_that_came_back_has_a_new_lease() {
        let groups = Coordinator::default();
        let topics = [("t".to_string(), 2)];
        let a = groups.join("g", &topics).member;
        let before = groups.assignment("g", a);
        let b = groups.join("g", &topics).member;
        groups.leave("g", b);
        let kept = groups.retain_held("g", a, before.iter().map(|(tp, l)| (tp.clone(), *l, ())));
        assert_eq!(kept.len(), 1, "only partition 0 stayed with a throughout");
        assert_eq!(kept[0].0, ("t".to_string(), 0));
    }

    #[test]
    fn members_of_other_topics_or_groups_do_not_share() {
        let groups = Coordinator::default();
        let a = groups.join("g", &[("t".to_string(), 2)]).member;
        let b = groups.join("g", &[("u".to_string(), 2)]).member;
        let c = groups.join("h", &[("t".to_string(), 2)]).member;
        assert_eq!(partitions(&groups.assignment("g", a)), vec![0, 1]);
        assert_eq!(partitions(&groups.assignment("g", b)), vec![0, 1]);
        assert_eq!(partitions(&groups.assignment("h", c)), vec![0, 1]);
        assert!(groups.assignment("g", a).iter().all(|((t, _), _)| t == "t"));
    }

    #[test]
    fn joins_and_leaves_wake_the_members() {
        let groups = Coordinator::default();
        let topics = [("t".to_string(), 2)];
        let mut a = groups.join("g", &topics);
        assert!(!a.generation.has_changed().expect("open"));
        let b = groups.join("g", &topics).member;
        assert!(a.generation.has_changed().expect("open"));
        a.generation.borrow_and_update();
        groups.leave("g", b);
        assert!(a.generation.has_changed().expect("open"));
    }
}
