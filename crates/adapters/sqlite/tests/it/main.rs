//! The crate's integration tests, one binary: a binary per test file linked every
//! dependency again (~90 MB and a link step each), which filled a CI machine's disk.

mod audit_contract;
mod bus_contract;
mod credentials_contract;
mod deliveries_contract;
mod reminders_contract;
mod store_contract;
