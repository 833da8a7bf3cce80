//! Contract suites: the behaviour every adapter of a port must show. Each case is a public async
//! function so that an adapter's test file runs each case as its own test (and a slow adapter,
//! such as Kafka with its group joins, runs them in parallel).

pub mod bus;
pub mod reminders;
pub mod store;
