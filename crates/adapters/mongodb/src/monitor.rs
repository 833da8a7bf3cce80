//! Counting what the store asks of the server, per command: round trips, the time until each
//! reply, the documents it carried and the bytes each way. Off unless
//! [`crate::MongoSettings::count_commands`] asks for it, because the driver then decodes every
//! reply once more to report it; benchmarks and diagnosis turn it on.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mongodb::bson::{self, Bson, Document};
use mongodb::event::command::CommandEvent;
use mongodb::event::EventHandler;

/// What one kind of command cost, summed since the store opened (or since the last
/// [`crate::MongoStore::take_commands`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CommandStats {
    /// Round trips.
    pub count: u64,
    pub failed: u64,
    /// From sending each command to its reply, as the driver saw it.
    pub time: Duration,
    /// Documents inserted, matched, deleted or returned.
    pub documents: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

#[derive(Default)]
pub(crate) struct Monitor {
    tally: Mutex<BTreeMap<String, CommandStats>>,
}

impl Monitor {
    pub(crate) fn handler(self: &Arc<Self>) -> EventHandler<CommandEvent> {
        let monitor = self.clone();
        EventHandler::callback(move |event| monitor.record(event))
    }

    fn record(&self, event: CommandEvent) {
        let mut tally = self.tally.lock().expect("command tally lock");
        match event {
            CommandEvent::Started(e) => {
                let stats = tally.entry(e.command_name).or_default();
                stats.count += 1;
                stats.bytes_sent += size(&e.command);
            }
            CommandEvent::Succeeded(e) => {
                let stats = tally.entry(e.command_name).or_default();
                stats.time += e.duration;
                stats.documents += documents(&e.reply);
                stats.bytes_received += size(&e.reply);
            }
            CommandEvent::Failed(e) => {
                let stats = tally.entry(e.command_name).or_default();
                stats.time += e.duration;
                stats.failed += 1;
            }
            _ => {}
        }
    }

    pub(crate) fn take(&self) -> BTreeMap<String, CommandStats> {
        std::mem::take(&mut *self.tally.lock().expect("command tally lock"))
    }
}

fn size(doc: &Document) -> u64 {
    bson::to_vec(doc).map_or(0, |v| v.len() as u64)
}

/// `n` of a write's reply, or the batch of a cursor's.
fn documents(reply: &Document) -> u64 {
    if let Some(n) = reply
        .get("n")
        .and_then(|n| n.as_i64().or(n.as_i32().map(i64::from)))
    {
        return n.max(0) as u64;
    }
    let batch = reply.get_document("cursor").ok().and_then(|c| {
        c.get_array("firstBatch")
            .or_else(|_| c.get_array("nextBatch"))
            .ok()
    });
    batch.map_or(0, |b: &Vec<Bson>| b.len() as u64)
}
