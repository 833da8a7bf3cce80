//! The single writer of the log, with group commit.
//!
//! Every publish has to be on disk before it is acknowledged, and an fsync costs about as much
//! for one message as for thousands. So one thread owns the write connection, takes every
//! command waiting in its channel, applies them all in one transaction, commits (one fsync)
//! and only then answers each caller. Under load the batches grow by themselves; alone, a
//! publish waits for exactly one commit. Commands are applied in the order they were sent,
//! which keeps per-key order across the calls of one task.

use super::log::{self, unavailable};
use super::partitioner::partition_for;
use super::wakeup::Wakeups;
use crate::sqlite::{set_durability, Durability};
use enrollstream_ports::{BusError, CommitPosition, OutboundMessage};
use rusqlite::{Connection, TransactionBehavior};
use std::collections::{HashMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// Commands queued before callers of `send` wait for room: backpressure on a saturated disk.
const QUEUE: usize = 4096;
/// Upper bound of messages per transaction, so one batch never holds the WAL for long.
const MAX_BATCH_MESSAGES: usize = 8192;

type Reply<T> = oneshot::Sender<Result<T, BusError>>;

enum Command {
    Append {
        topic: String,
        messages: Vec<OutboundMessage>,
        done: Reply<()>,
    },
    /// Create missing topics with the given partition count; answer every topic's actual count.
    Topics {
        topics: Vec<(String, i32)>,
        done: Reply<Vec<i32>>,
    },
    Commit {
        group: String,
        positions: Vec<CommitPosition>,
        done: Reply<()>,
    },
    Check {
        done: Reply<()>,
    },
}

impl Command {
    fn weight(&self) -> usize {
        match self {
            Command::Append { messages, .. } => messages.len().max(1),
            Command::Commit { positions, .. } => positions.len().max(1),
            Command::Topics { topics, .. } => topics.len().max(1),
            Command::Check { .. } => 1,
        }
    }

    /// How its transaction must commit. An offset commit needs no fsync: the effects it
    /// acknowledges are durable before it is sent, so losing it to a power loss only delivers
    /// those messages again, and redelivery is a no-op by design. A publish is acknowledged as
    /// durable, and a topic's partition count must never change.
    fn durability(&self) -> Durability {
        match self {
            Command::Append { .. } | Command::Topics { .. } => Durability::Durable,
            Command::Commit { .. } | Command::Check { .. } => Durability::Relaxed,
        }
    }
}

/// Handle to the writer thread; the thread ends when the last handle is dropped.
#[derive(Clone)]
pub(super) struct Writer {
    commands: mpsc::Sender<Command>,
}

impl Writer {
    pub(super) fn start(
        conn: Connection,
        default_partitions: i32,
        wakeups: Wakeups,
    ) -> Result<Self, BusError> {
        let (commands, queue) = mpsc::channel(QUEUE);
        let thread = WriterThread {
            conn,
            durability: Durability::Durable,
            default_partitions,
            wakeups,
            partitions: HashMap::new(),
        };
        std::thread::Builder::new()
            .name("bus-writer".into())
            .spawn(move || thread.run(queue))
            .map_err(|e| unavailable("cannot start the bus writer thread", e))?;
        Ok(Self { commands })
    }

    pub(super) async fn append(
        &self,
        topic: String,
        messages: Vec<OutboundMessage>,
    ) -> Result<(), BusError> {
        self.call(|done| Command::Append {
            topic,
            messages,
            done,
        })
        .await
    }

    pub(super) async fn topics(&self, topics: Vec<(String, i32)>) -> Result<Vec<i32>, BusError> {
        self.call(|done| Command::Topics { topics, done }).await
    }

    pub(super) async fn commit(
        &self,
        group: String,
        positions: Vec<CommitPosition>,
    ) -> Result<(), BusError> {
        self.call(|done| Command::Commit {
            group,
            positions,
            done,
        })
        .await
    }

    pub(super) async fn check(&self) -> Result<(), BusError> {
        self.call(|done| Command::Check { done }).await
    }

    async fn call<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, BusError> {
        let stopped = || BusError::Fatal("the bus writer thread has stopped".into());
        let (done, answer) = oneshot::channel();
        self.commands
            .send(command(done))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

struct WriterThread {
    conn: Connection,
    /// The level the connection commits at now (`log::open_writer` leaves it `Durable`).
    durability: Durability,
    default_partitions: i32,
    wakeups: Wakeups,
    /// Partition counts of committed topics; a topic's count never changes once created.
    partitions: HashMap<String, i32>,
}

/// What one transaction did, to be published only once it is committed.
#[derive(Default)]
struct Written {
    created: HashMap<String, i32>,
    appended: HashSet<String>,
    /// Per `Topics` command, in batch order.
    topic_counts: Vec<Vec<i32>>,
}

impl WriterThread {
    fn run(mut self, mut queue: mpsc::Receiver<Command>) {
        while let Some(first) = queue.blocking_recv() {
            let mut weight = first.weight();
            let mut batch = vec![first];
            while weight < MAX_BATCH_MESSAGES {
                match queue.try_recv() {
                    Ok(command) => {
                        weight += command.weight();
                        batch.push(command);
                    }
                    Err(_) => break,
                }
            }
            match self.write(&batch) {
                Ok(written) => self.answer_ok(batch, written),
                Err(e) if batch.len() > 1 => {
                    // One bad command must not fail its neighbours: redo them one by one.
                    tracing::warn!(error = %e, commands = batch.len(), "bus log batch failed, writing its commands one by one");
                    for command in batch {
                        match self.write(std::slice::from_ref(&command)) {
                            Ok(written) => self.answer_ok(vec![command], written),
                            Err(e) => answer_err(command, &e),
                        }
                    }
                }
                Err(e) => answer_err(batch.into_iter().next().expect("a batch has a command"), &e),
            }
        }
    }

    fn write(&mut self, batch: &[Command]) -> rusqlite::Result<Written> {
        let durability = if batch.iter().all(|c| c.durability() == Durability::Relaxed) {
            Durability::Relaxed
        } else {
            Durability::Durable
        };
        if durability != self.durability {
            set_durability(&self.conn, durability)?;
            self.durability = durability;
        }
        let timestamp_ms = now_ms();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut written = Written::default();
        let mut next_offsets: HashMap<(String, i32), i64> = HashMap::new();
        for command in batch {
            match command {
                Command::Append {
                    topic, messages, ..
                } => {
                    let partitions = topic_partitions(
                        &tx,
                        &self.partitions,
                        &mut written.created,
                        topic,
                        self.default_partitions,
                    )?;
                    for message in messages {
                        let partition = partition_for(&message.key, partitions);
                        let slot = (topic.clone(), partition);
                        let offset = match next_offsets.get(&slot) {
                            Some(offset) => *offset,
                            None => log::next_offset(&tx, topic, partition)?,
                        };
                        log::append(&tx, topic, partition, offset, message, timestamp_ms)?;
                        next_offsets.insert(slot, offset + 1);
                    }
                    written.appended.insert(topic.clone());
                }
                Command::Topics { topics, .. } => {
                    let mut counts = Vec::with_capacity(topics.len());
                    for (topic, partitions) in topics {
                        counts.push(topic_partitions(
                            &tx,
                            &self.partitions,
                            &mut written.created,
                            topic,
                            *partitions,
                        )?);
                    }
                    written.topic_counts.push(counts);
                }
                Command::Commit {
                    group, positions, ..
                } => {
                    for p in positions {
                        log::commit(&tx, group, &p.topic, p.partition, p.next_offset)?;
                    }
                }
                Command::Check { .. } => {
                    tx.query_row("SELECT 1", [], |row| row.get::<_, i64>(0))?;
                }
            }
        }
        tx.commit()?;
        Ok(written)
    }

    fn answer_ok(&mut self, batch: Vec<Command>, written: Written) {
        self.partitions.extend(written.created);
        for topic in &written.appended {
            self.wakeups.appended(topic);
        }
        let mut topic_counts = written.topic_counts.into_iter();
        for command in batch {
            // A caller that stopped waiting (its future was dropped) no longer needs the answer.
            match command {
                Command::Append { done, .. }
                | Command::Commit { done, .. }
                | Command::Check { done } => {
                    let _ = done.send(Ok(()));
                }
                Command::Topics { done, .. } => {
                    let counts = topic_counts
                        .next()
                        .expect("one count list per Topics command");
                    let _ = done.send(Ok(counts));
                }
            }
        }
    }
}

fn answer_err(command: Command, e: &rusqlite::Error) {
    tracing::warn!(error = %e, "bus log write failed");
    let error = || unavailable("bus log write failed", e);
    match command {
        Command::Append { done, .. } | Command::Commit { done, .. } | Command::Check { done } => {
            let _ = done.send(Err(error()));
        }
        Command::Topics { done, .. } => {
            let _ = done.send(Err(error()));
        }
    }
}

/// The partition count of `topic`, creating it with `partitions` when it does not exist yet.
fn topic_partitions(
    conn: &Connection,
    committed: &HashMap<String, i32>,
    created: &mut HashMap<String, i32>,
    topic: &str,
    partitions: i32,
) -> rusqlite::Result<i32> {
    if let Some(count) = committed.get(topic).or_else(|| created.get(topic)) {
        return Ok(*count);
    }
    let count = log::ensure_topic(conn, topic, partitions)?;
    created.insert(topic.to_string(), count);
    Ok(count)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(key: &str, n: u8) -> OutboundMessage {
        OutboundMessage {
            key: key.into(),
            headers: vec![],
            payload: vec![n],
        }
    }

    /// Queues `commands` and runs the writer until the queue is drained: one batch.
    fn write_one_batch(dir: &std::path::Path, commands: Vec<Command>) {
        let conn = log::open_writer(&dir.join(log::FILE)).expect("open log");
        let (sender, queue) = mpsc::channel(QUEUE);
        for command in commands {
            sender
                .try_send(command)
                .unwrap_or_else(|_| panic!("queue has room"));
        }
        drop(sender);
        let thread = WriterThread {
            conn,
            durability: Durability::Durable,
            default_partitions: 1,
            wakeups: Wakeups::default(),
            partitions: HashMap::new(),
        };
        thread.run(queue);
    }

    #[test]
    fn one_batch_answers_every_caller_in_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut answers = Vec::new();
        let mut commands = Vec::new();
        for n in 0..5 {
            let (done, answer) = oneshot::channel();
            commands.push(Command::Append {
                topic: "t".into(),
                messages: vec![message("k", n)],
                done,
            });
            answers.push(answer);
        }
        write_one_batch(dir.path(), commands);
        for answer in answers {
            answer.blocking_recv().expect("answered").expect("appended");
        }
        let reader = log::open_reader(&dir.path().join(log::FILE)).expect("reader");
        let log = log::read(&reader, "t", 0, 0, 10).expect("read");
        let offsets: Vec<(i64, Vec<u8>)> = log.into_iter().map(|m| (m.offset, m.payload)).collect();
        assert_eq!(
            offsets,
            (0..5).map(|n| (n, vec![n as u8])).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_failing_command_does_not_fail_its_batch() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (before_done, before) = oneshot::channel();
        let (bad_done, bad) = oneshot::channel();
        let (after_done, after) = oneshot::channel();
        write_one_batch(
            dir.path(),
            vec![
                Command::Append {
                    topic: "t".into(),
                    messages: vec![message("k", 1)],
                    done: before_done,
                },
                // Violates the schema's CHECK (partitions > 0): the bus refuses it earlier.
                Command::Topics {
                    topics: vec![("bad".into(), 0)],
                    done: bad_done,
                },
                Command::Append {
                    topic: "t".into(),
                    messages: vec![message("k", 2)],
                    done: after_done,
                },
            ],
        );
        before.blocking_recv().expect("answered").expect("appended");
        after.blocking_recv().expect("answered").expect("appended");
        let refused = bad.blocking_recv().expect("answered");
        assert!(
            matches!(refused, Err(BusError::Unavailable(_))),
            "{refused:?}"
        );
        let reader = log::open_reader(&dir.path().join(log::FILE)).expect("reader");
        let payloads: Vec<Vec<u8>> = log::read(&reader, "t", 0, 0, 10)
            .expect("read")
            .into_iter()
            .map(|m| m.payload)
            .collect();
        assert_eq!(payloads, vec![vec![1], vec![2]]);
    }
}
