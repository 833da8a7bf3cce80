//! The crate's integration tests, one binary: a binary per test file linked every
//! dependency again (~90 MB and a link step each), which filled a CI machine's disk.

mod deliveries_support;
mod reminders_support;

mod consumer_loop;
mod deliveries_crash;
mod deliveries_faults;
mod deliveries_journal;
mod deliveries_routing;
mod leads_pipeline;
mod projector_poison;
mod rebuild_shadow;
mod reminders_crash;
mod reminders_instances;
mod reminders_lifecycle;
mod reminders_smtp_outage;
