//! `enrollstream`: one binary, roles by flag.

mod adapters;
mod app;
mod cli;
mod config;
mod delivery_log;
mod dispatch;
mod dlq;
mod keys;
mod rebuild;
mod rebuild_progress;
mod strict;
mod supervise;
mod targets;
mod telemetry;
mod topics;
mod traces;

use clap::Parser;

// Small short-lived allocations (JSON, CloudEvents, SQL rows) dominate; glibc's malloc spent a
// quarter of the server's CPU on them (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("enrollstream: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("enrollstream: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
