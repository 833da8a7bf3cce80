//! What the store files (`store.db`, `reminders.db`) and the bus log share: opening a
//! durable connection, versioned schemas, failures and their classification, and the text
//! forms of values.

mod checkpoint;
mod connection;
mod failure;
mod text;

pub(crate) use checkpoint::Checkpointer;
pub(crate) use connection::{
    check, immediate, open_durable, open_reader, open_writer, relaxed, set_durability, Durability,
    SingleFile,
};
pub(crate) use failure::{blocking, create_data_dir, Failure, Result};
pub(crate) use text::{json, parse_json, parse_time, time};
