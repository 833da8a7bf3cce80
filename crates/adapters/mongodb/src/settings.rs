//! `MongoSettings` and the client they configure.

use std::sync::Arc;
use std::time::Duration;

use enrollstream_ports::StoreError;
use mongodb::options::ClientOptions;
use mongodb::Client;

use crate::error::classify;
use crate::monitor::Monitor;

/// Connection and timing settings. The defaults keep `/readyz` and the runners' retry loop
/// responsive when MongoDB is away; a URI that sets `serverSelectionTimeoutMS` or
/// `connectTimeoutMS` wins over them.
#[derive(Clone, Debug)]
pub struct MongoSettings {
    /// How long an operation waits for a usable server before failing as Unavailable.
    pub server_selection_timeout: Duration,
    pub connect_timeout: Duration,
    /// Upper bound of any one store call; past it the call fails as Unavailable (the driver
    /// has no socket timeout, so a hung server would otherwise hang the caller).
    pub operation_timeout: Duration,
    /// Bound of `check`.
    pub check_timeout: Duration,
    /// How often `wait_for_outbox` looks for pending messages without a change stream.
    pub outbox_poll_interval: Duration,
    /// Lifetime of idempotency keys, on the callers' clock. Where the server has TTL indexes,
    /// the index takes the lifetime it was first created with.
    pub idempotency_ttl: Duration,
    /// Count round trips, documents and bytes per command ([`MongoStore::take_commands`]).
    /// Costs a second decoding of every reply; for benchmarks and diagnosis.
    pub count_commands: bool,
    /// How long a generation of the read model switched out by a rebuild stays before it is
    /// dropped (once its outbox is drained too). Past it a write can no longer land there
    /// (see `generations`), and a redelivered event it held is still recognised as announced.
    pub retired_grace: Duration,
    /// How long a process goes on using the read model's pointer (which generation is active)
    /// and the switch lease it read, for reads and before applies (the check after an apply
    /// reads the pointer again always). Another process's switch is seen by reads within this,
    /// and its pause by applies. Keep `pointer_ttl` + 10 s + `operation_timeout` below
    /// `retired_grace`.
    pub pointer_ttl: Duration,
    /// How a batch reads many documents by key: see [`Lookups`].
    pub lookups: Lookups,
}

/// How the store reads a batch's documents by key (a batch's event ids, its entities, their
/// entries above a version, the entries of published messages).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lookups {
    /// One find per batch (`$in`, `$or`): one round trip MongoDB serves from its indexes.
    #[default]
    Batched,
    /// One find per key, a top-level equality each, up to 16 in flight. For servers that serve
    /// only equalities from an index and read the whole collection for `$in`, `$or` and ranges:
    /// FerretDB 1.x on PostgreSQL (with the test bed's index trigger, docs/testbed.md). Slower
    /// on MongoDB (a round trip per key) and on FerretDB's SQLite handler (which scans for
    /// every filter but a lone `_id`, so a scan per key instead of one per batch).
    Point,
}

impl Default for MongoSettings {
    fn default() -> Self {
        Self {
            server_selection_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            operation_timeout: Duration::from_secs(15),
            check_timeout: Duration::from_secs(2),
            outbox_poll_interval: Duration::from_millis(50),
            idempotency_ttl: Duration::from_secs(24 * 60 * 60),
            count_commands: false,
            retired_grace: Duration::from_secs(60),
            pointer_ttl: Duration::from_secs(1),
            lookups: Lookups::Batched,
        }
    }
}

/// A client with our timeouts: short server selection and connect, so `/readyz` and the
/// runners' retry loop notice an absent server quickly. A URI that sets them wins.
pub(crate) async fn client(
    uri: &str,
    settings: &MongoSettings,
    monitor: Option<&Arc<Monitor>>,
) -> Result<Client, StoreError> {
    let mut options = ClientOptions::parse(uri).await.map_err(classify)?;
    options.command_event_handler = monitor.map(Monitor::handler);
    options
        .server_selection_timeout
        .get_or_insert(settings.server_selection_timeout);
    options
        .connect_timeout
        .get_or_insert(settings.connect_timeout);
    options
        .app_name
        .get_or_insert_with(|| "enrollstream".to_string());
    Client::with_options(options).map_err(classify)
}
