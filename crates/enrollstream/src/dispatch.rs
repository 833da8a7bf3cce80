//! Runs the command the CLI parsed: loads the configuration with the flags' overrides, starts
//! the logs (and span export for `serve`), and hands over to the command's module.

use crate::app;
use crate::cli::{Cli, Command, OutboxCommand, Role};
use crate::config::{Config, KafkaOverride, MongoOverride, Overrides};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let listen = match &cli.command {
        Command::Serve { listen, .. } => *listen,
        _ => None,
    };
    let overrides = Overrides {
        listen,
        data_dir: cli.data_dir.clone(),
        kafka: cli
            .kafka_brokers
            .clone()
            .map(|brokers| KafkaOverride { brokers }),
        mongodb: cli.mongodb_uri.clone().map(|uri| MongoOverride { uri }),
    };
    let config = Config::load(cli.config.as_deref(), &overrides)?;
    // Spans are exported by `serve` only: the other commands are short operations of their own.
    let exports = matches!(cli.command, Command::Serve { .. });
    let traces = crate::telemetry::init_logs(&config.log, exports.then_some(&config.telemetry))?;
    match cli.command {
        Command::Serve { roles, .. } => {
            let roles = if roles.is_empty() {
                Role::ALL.to_vec()
            } else {
                roles
            };
            let served = app::serve(config, &roles).await;
            if let Some(traces) = traces {
                traces.shutdown().await;
            }
            served
        }
        Command::Config { check: true } => {
            println!(
                "configuration OK{}",
                cli.config
                    .as_deref()
                    .map(|f| format!(" ({})", f.display()))
                    .unwrap_or_default()
            );
            Ok(())
        }
        Command::Config { check: false } => {
            println!("{}", toml::to_string_pretty(&config)?);
            // Adapter settings print through their Debug impls, which redact secrets.
            println!(
                "# bus: {}",
                config
                    .kafka
                    .as_ref()
                    .map_or("embedded".to_string(), |k| format!("{k:?}"))
            );
            println!(
                "# store: {}",
                config
                    .mongodb
                    .as_ref()
                    .map_or("sqlite".to_string(), |m| format!("{m:?}"))
            );
            Ok(())
        }
        Command::Dlq { command } => crate::dlq::dlq(config, command).await,
        Command::Rebuild { fresh, in_place } => match in_place {
            true => crate::rebuild::in_place(config).await,
            false => crate::rebuild::shadow(config, fresh).await,
        },
        Command::ApiKey { command } => crate::keys::run(config, command).await,
        Command::Outbox {
            command: OutboxCommand::Parked { limit },
        } => crate::dlq::parked(config, limit).await,
    }
}
