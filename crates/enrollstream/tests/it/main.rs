//! The crate's integration tests, one binary: a binary per test file linked every
//! dependency again (~90 MB and a link step each), which filled a CI machine's disk.

mod deploy;
mod support;

mod auth;
mod crash;
mod deliveries;
mod deploy_manifests;
mod e2e;
mod edges;
mod fuzz;
mod graphql;
mod kafka_crash;
mod kafka_pipeline;
mod limits;
mod metrics;
mod mongodb_outage;
mod operations;
mod rebuild_online;
mod rebuild_online_mongodb;
mod schedule;
mod tracing;
mod ui;
