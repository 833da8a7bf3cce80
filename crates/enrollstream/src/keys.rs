//! `enrollstream api-key create | list | revoke`: API keys in the store every API process reads
//! (SQLite `credentials.db` beside a running server, or MongoDB). The key is printed once, on
//! stdout and alone there, so `KEY=$(enrollstream api-key create …)` captures exactly it.

use anyhow::Context;
use enrollstream_api::auth::keys;
use enrollstream_ports::{CredentialStore, KeyCreation};
use std::sync::Arc;

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
                crate::app::mongo_settings(m),
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
