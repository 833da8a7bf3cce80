//! The command line: `serve` runs roles; the other commands are operations on a running system's
//! data (rebuild the read model, inspect and redrive dead letters).

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "enrollstream",
    version,
    about = "The event-driven backbone of enrollment and quotes"
)]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long, global = true, env = "ENROLLSTREAM_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory of the embedded adapters' files.
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// Run on Kafka (`host:port[,…]`) instead of the embedded bus.
    #[arg(long, global = true, env = "ENROLLSTREAM_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Keep state in MongoDB instead of SQLite.
    #[arg(
        long,
        global = true,
        env = "ENROLLSTREAM_MONGODB_URI",
        hide_env_values = true
    )]
    pub mongodb_uri: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run roles until SIGTERM/SIGINT (all roles unless --role is given).
    Serve {
        /// Role to run; repeat for several. Default: every role.
        #[arg(long = "role", value_enum)]
        roles: Vec<Role>,
        /// Address of the HTTP API (role `api`).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Print the effective configuration (secrets redacted) and exit; with `--check`, only
    /// validate it (unknown keys, bounds) and say so, without starting anything.
    Config {
        #[arg(long)]
        check: bool,
    },
    /// Dead-letter topics: list what is parked, send it back to its original topic, and the
    /// audit of those redrives.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Rebuild the read model from the beginning of the event topics, without side effects:
    /// into a shadow copy while the live one serves, then switched in (an interrupted rebuild
    /// resumes where it was).
    Rebuild {
        /// Drop an interrupted rebuild's copy and start over.
        #[arg(long, conflicts_with = "in_place")]
        fresh: bool,
        /// Rebuild into the live read model instead (the projector must be stopped; for stores
        /// without a shadow copy).
        #[arg(long)]
        in_place: bool,
    },
    /// API keys: create one (printed once, alone on stdout), list them, revoke one.
    ApiKey {
        #[command(subcommand)]
        command: ApiKeyCommand,
    },
    /// Outbox messages the bus would not take (too large, refused), parked in the store.
    Outbox {
        #[command(subcommand)]
        command: OutboxCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum ApiKeyCommand {
    /// Create a key and print it on stdout (only there, and only now).
    Create {
        /// Unique for ever; what logs name (letters, digits, '-', '_', '.', '@').
        #[arg(long)]
        name: String,
        /// quotes:write, applications:write, events:write, read or admin; repeat for several.
        #[arg(long = "scope", required = true)]
        scopes: Vec<enrollstream_api::auth::Scope>,
    },
    /// Print every key (name, scopes, created, last used, revoked) as JSON lines; never a key.
    List,
    /// Revoke a key by name; every API process refuses it within `[auth] key_cache_ttl`.
    Revoke { name: String },
}

#[derive(Subcommand, Debug)]
pub enum OutboxCommand {
    /// Print the parked messages as JSON lines (reason, topic, key, headers, payload).
    Parked {
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

#[derive(Subcommand, Debug)]
pub enum DlqCommand {
    /// Print the dead letters of a DLQ topic as JSON lines (id, reason, error, attempts,
    /// failures, redrives, origin, payload).
    List {
        #[command(flatten)]
        select: DlqSelect,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Print one dead letter as a JSON object, by its id (`DLQ_TOPIC:PARTITION:OFFSET`).
    Inspect { id: String },
    /// Publish dead letters back to their original topic: the ones named by `--id`, else every
    /// one of the topic the filters pick. A dead letter moves once; a delivery dead letter goes
    /// to its one target only; one redriven `[dlq] max_redrives` times stays parked. Fix the
    /// cause first, or the messages come straight back.
    Redrive {
        #[command(flatten)]
        select: DlqSelect,
        /// A dead letter to move (repeat for several); its topic is in the id.
        #[arg(long = "id", conflicts_with = "topic")]
        ids: Vec<String>,
        /// Print what would move, move nothing (recorded in the audit all the same).
        #[arg(long)]
        dry_run: bool,
    },
    /// Print the audit of redrives (CLI and admin API), newest first, as JSON lines: who, when,
    /// what was asked, dry run or not, and how many moved and were skipped.
    Audit {
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

/// Which DLQ topic, and which of its dead letters.
#[derive(Args, Debug, Default)]
pub struct DlqSelect {
    /// The original topic, e.g. `enrollment-events` (its `.dlq` is read). Required but for
    /// `redrive --id`.
    #[arg(long)]
    pub topic: Option<String>,
    /// A delivery target (`salesforce`, `logic-apps`): read `<topic>.<target>.dlq` instead.
    #[arg(long, requires = "topic")]
    pub target: Option<String>,
    /// Only dead letters with this reason (`dlq_reason`), e.g. `invalid_transition`.
    #[arg(long)]
    pub reason: Option<String>,
    /// Only dead letters of this entity (the message key: application or quote id).
    #[arg(long)]
    pub entity_id: Option<String>,
    /// Only dead letters that failed at or after this time (RFC 3339).
    #[arg(long)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only dead letters that failed before this time (RFC 3339).
    #[arg(long)]
    pub until: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum)]
pub enum Role {
    /// The HTTP API.
    Api,
    /// Builds the read model (group `read-model-service`).
    Projector,
    /// Publishes the outbox (notifications, EntityUpdated events).
    Relay,
    /// Broker signature reminders: reminder state from events (group `broker-email-service`)
    /// and the scheduler that sends due reminders.
    Reminders,
    /// Deliveries to Logic Apps and Salesforce, one consumer group per configured target.
    Deliveries,
    /// The lead producer (group `lead-producer-service`) and the lead integration service
    /// (group `lead-integration-service`), when Lead Management is configured.
    Leads,
}

impl Role {
    pub const ALL: &'static [Role] = &[
        Role::Api,
        Role::Projector,
        Role::Relay,
        Role::Reminders,
        Role::Deliveries,
        Role::Leads,
    ];
}
