//! The crate's integration tests, one binary: a binary per test file linked every
//! dependency again (~90 MB and a link step each), which filled a CI machine's disk.

mod common;

mod audit;
mod contract;
mod credentials;
mod deliveries;
mod fencing;
mod generations;
mod outbox;
mod reminders_contract;
