//! `enrollstream api-key create | list | revoke`: API keys in the store every API process reads
//! (SQLite `credentials.db` beside a running server, or MongoDB). The key is printed once, on
//! stdout and alone there, so `KEY=$(enrollstream api-key create …)` captures exactly it.

use anyhow::Context;
use enrollstream_api::auth::keys;
use enrollstream_ports::{CredentialStore, KeyCreation, SystemClock};
use std::sync::Arc;

use crate::adapters::Adapters;
use crate::cli::ApiKeyCommand;
use crate::config::Config;

/// The credential store of this configuration, on its own connection: these commands run
/// beside a serving process and need neither the bus nor the data directory's lock.
pub async fn open(config: &Config) -> anyhow::Result<Arc<dyn CredentialStore>> {
    Ok(match &config.mongodb {
        Some(m) => Arc::new(
            enrollstream_mongodb::MongoCredentialStore::connect_with(
                &m.uri,
                &m.database,
                crate::adapters::mongo_settings(m),
            )
            .await
            .with_context(|| {
                format!(
                    "cannot open the API keys in MongoDB at {}",
                    crate::config::redact_uri(&m.uri)
                )
            })?,
        ),
        None => Arc::new(
            enrollstream_sqlite::credentials::SqliteCredentialStore::open(&config.data_dir)
                .with_context(|| {
                    format!("cannot open the API keys in {}", config.data_dir.display())
                })?,
        ),
    })
}

/// Where API keys live: beside the read model, in the same engine (on MongoDB, through the
/// store's client; on SQLite, in `credentials.db`, which `api-key create` writes beside us).
async fn open_credentials(
    config: &Config,
    adapters: &Adapters,
) -> anyhow::Result<Arc<dyn enrollstream_ports::CredentialStore>> {
    match &adapters.mongodb {
        Some(store) => Ok(Arc::new(
            store
                .credential_store()
                .await
                .context("cannot open the API keys in MongoDB")?,
        )),
        None => open(config).await,
    }
}

/// The authenticator of the API; says loudly when nothing can get in, or everything can.
pub(crate) async fn authenticator(
    config: &Config,
    adapters: &Adapters,
    serves_api: bool,
) -> anyhow::Result<Arc<enrollstream_api::Authenticator>> {
    use enrollstream_api::auth::AuthMode;
    let keys = open_credentials(config, adapters).await?;
    if serves_api && config.api.auth == AuthMode::On && config.auth.jwt.is_none() {
        let active = keys
            .api_keys()
            .await
            .context("cannot read the API keys")?
            .iter()
            .filter(|k| k.revoked_at.is_none())
            .count();
        if active == 0 {
            tracing::warn!("no API key exists: every request but /healthz and /readyz is refused with 401; create one with `enrollstream api-key create --name NAME --scope admin`");
        }
    }
    let clock: Arc<dyn enrollstream_ports::Clock> = Arc::new(SystemClock);
    let auth = enrollstream_api::Authenticator::new(config.api.auth, &config.auth, keys, clock)
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(Arc::new(auth))
}

pub async fn run(config: Config, command: ApiKeyCommand) -> anyhow::Result<()> {
    let store = open(&config).await?;
    match command {
        ApiKeyCommand::Create { name, scopes } => {
            let (key, record) =
                keys::new_key(&name, &scopes, chrono::Utc::now()).map_err(anyhow::Error::msg)?;
            match store.create_api_key(&record).await? {
                KeyCreation::Created => {
                    println!("{key}");
                    eprintln!(
                        "created API key {name:?} with scope(s) {}; it is shown only this once",
                        record.scopes.join(", ")
                    );
                    Ok(())
                }
                KeyCreation::NameTaken => anyhow::bail!(
                    "an API key named {name:?} exists or existed (names are never reused); choose another name"
                ),
            }
        }
        ApiKeyCommand::List => {
            for k in store.api_keys().await? {
                println!("{}", keys::listed(&k));
            }
            Ok(())
        }
        ApiKeyCommand::Revoke { name } => {
            anyhow::ensure!(
                store.revoke_api_key(&name, chrono::Utc::now()).await?,
                "no active API key named {name:?}"
            );
            eprintln!(
                "revoked API key {name:?}; API processes refuse it within [auth] key_cache_ttl"
            );
            Ok(())
        }
    }
}
