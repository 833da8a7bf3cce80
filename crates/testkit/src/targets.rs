//! HTTP servers on 127.0.0.1 that play the downstream targets in tests: Azure Logic Apps,
//! Salesforce (token endpoint, sObject upsert, Platform Events) and the Lead Management API.
//!
//! Each one checks credentials the way the real system does, applies what it receives once per
//! idempotency key (or external id), keeps a ledger of what it applied and every request it saw,
//! and takes injected faults: error statuses, 429 with Retry-After, slow responses, dropped
//! connections (before or after applying) and held responses.

mod fake;
mod faults;
pub mod fixtures;
mod lead_management;
mod ledger;
mod logic_apps;
mod salesforce;

pub use fake::{Fake, Recorded, Reply, Role};
pub use faults::{Fault, FaultRule, Gate};
pub use lead_management::LeadManagement;
pub use ledger::{Applied, Ledger};
pub use logic_apps::LogicApps;
pub use salesforce::Salesforce;
