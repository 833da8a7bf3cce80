//! The chaos soak (issue 19): the roles of enrollstream as separate processes on Apache Kafka
//! and FerretDB, under load, while a chaos loop SIGKILLs a random consumer process every few
//! seconds and restarts it, and the broker restarts once; then an accounting that fails the run
//! on any loss or duplicate. `scripts/soak --short` is the quick run, `--full` the long one.

mod accounting;
mod load;
mod roles;
mod rss;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use enrollstream_testkit::testbed::{free_port, Kafka, Mongo};
use rand::Rng;

use accounting::Check;
use roles::{Launcher, RoleProcess};

#[derive(Parser)]
#[command(about = "Chaos soak of enrollstream: kills, a broker restart, and an accounting")]
struct Args {
    /// The `enrollstream` binary to run.
    #[arg(long)]
    binary: PathBuf,
    /// The long run (100,000 events unless --events); the default is the short one.
    #[arg(long, conflicts_with = "short")]
    full: bool,
    /// The short run (a few hundred events): the default.
    #[arg(long)]
    short: bool,
    /// Events to send (overrides the mode's default).
    #[arg(long)]
    events: Option<u64>,
    /// Seconds between two kills.
    #[arg(long, default_value_t = 3)]
    kill_every: u64,
    /// Concurrent load workers.
    #[arg(long, default_value_t = 4)]
    workers: usize,
}

/// Consumer roles and how many processes of each run.
const CONSUMERS: &[(&str, usize)] = &[("projector", 2), ("relay", 2)];
/// Longest wait for the pipeline to settle after the load.
const SETTLE_DEADLINE: Duration = Duration::from_secs(300);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let events = args.events.unwrap_or(if args.full { 100_000 } else { 400 });
    let started = Instant::now();
    let root = tempfile::Builder::new()
        .prefix("enrollstream-soak-")
        .tempdir()?;
    println!(
        "soak: {events} events, logs under {}",
        root.path().display()
    );

    let mut kafka = Kafka::start().context("starting Apache Kafka")?;
    let mongo = Mongo::start().context("starting FerretDB")?;
    let launcher = Launcher {
        binary: std::fs::canonicalize(&args.binary)
            .with_context(|| format!("the binary {}", args.binary.display()))?,
        kafka: kafka.bootstrap(),
        mongodb: format!("{}/enrollstream", mongo.uri()),
        config: roles::write_config(root.path())?,
    };

    let api_listen = format!("127.0.0.1:{}", free_port());
    let mut api = RoleProcess::start(&launcher, "api", "api".into(), root.path(), api_listen)?;
    let mut consumers = Vec::new();
    for (role, count) in CONSUMERS {
        for n in 1..=*count {
            let name = format!("{role}-{n}");
            let listen = "127.0.0.1:0".to_string();
            consumers.push(RoleProcess::start(
                &launcher,
                role,
                name,
                root.path(),
                listen,
            )?);
        }
    }
    let base = api.base_url.clone();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;

    let tally = load::Tally::with_budget(events);
    let workers: Vec<_> = (0..args.workers)
        .map(|_| tokio::spawn(load::worker(client.clone(), base.clone(), tally.clone())))
        .collect();

    // The chaos loop runs here, in the main future, so that every process is forked from the
    // main thread (see roles::die_with_parent).
    let load_started = Instant::now();
    let mut sampler = rss::Sampler::default();
    let (mut kills, mut own_exits, mut broker_restarts) = (0u32, 0u32, 0u32);
    let mut next_kill = Instant::now() + Duration::from_secs(args.kill_every);
    while !workers.iter().all(|w| w.is_finished()) {
        sample_all(&mut sampler, &api, &consumers, &kafka, &mongo);
        for process in std::iter::once(&mut api).chain(consumers.iter_mut()) {
            if let Some(status) = process.exited() {
                println!(
                    "soak: {} exited on its own ({status}); restarting it",
                    process.name
                );
                own_exits += 1;
                process.restart()?;
            }
        }
        if Instant::now() >= next_kill {
            let victim = rand::rng().random_range(0..consumers.len());
            let process = &mut consumers[victim];
            process.kill9();
            process.restart()?;
            kills += 1;
            next_kill = Instant::now() + Duration::from_secs(args.kill_every);
        }
        if broker_restarts == 0 && tally.accepted_count() as u64 >= events / 2 {
            println!("soak: restarting the broker");
            kafka.restart().context("restarting Apache Kafka")?;
            broker_restarts += 1;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for worker in workers {
        worker.await?;
    }
    let load_time = load_started.elapsed();
    println!(
        "soak: load done in {load_time:.1?}: {} accepted, {} refused; settling",
        tally.accepted_count(),
        tally.refused.load(Ordering::SeqCst)
    );

    let settle_started = Instant::now();
    let backlog = settle(
        &client,
        &base,
        &mut sampler,
        &api,
        &consumers,
        &kafka,
        &mongo,
    )
    .await;
    let accepted = tally.accepted.lock().expect("tally").clone();
    let model = accounting::read_model(&client, &base, &accepted, SETTLE_DEADLINE).await?;
    let settle_time = settle_started.elapsed();

    let invalid_sent = tally.invalid_sent.load(Ordering::SeqCst);
    let mut checks = vec![
        Check::new(
            "events accepted (2xx at the API)",
            "> 0",
            accepted.len(),
            !accepted.is_empty(),
        ),
        Check::equal(
            "accepted events in the event logs",
            accepted.len() as u64,
            model.accepted_in_log,
        ),
        Check::equal(
            "duplicate events in the event logs",
            0,
            model.duplicates_in_log,
        ),
        Check::equal(
            "entities whose version != events in log",
            0,
            model.version_mismatches,
        ),
        Check::equal(
            "outbox backlog after settling",
            0,
            backlog.unwrap_or(u64::MAX),
        ),
        Check::new("invalid transitions sent (1 %)", "", invalid_sent, true),
        Check::equal(
            "invalid transitions accepted",
            0,
            tally.invalid_accepted.load(Ordering::SeqCst),
        ),
        Check::new(
            "consumer processes SIGKILLed and restarted",
            "> 0",
            kills,
            kills > 0,
        ),
        Check::equal("broker restarts", 1, u64::from(broker_restarts)),
    ];
    checks.extend(rss_checks(&sampler));
    accounting::print(&checks);
    println!(
        "\nentities {}, refused requests {}, events in logs never acknowledged (lost responses) {}, \
         processes that exited on their own {own_exits}",
        model.entities,
        tally.refused.load(Ordering::SeqCst),
        model.unacknowledged_in_log
    );
    println!(
        "durations: load {load_time:.1?}, settle and accounting {settle_time:.1?}, total {:.1?}",
        started.elapsed()
    );
    for (name, kib) in sampler.peaks() {
        println!("peak RSS {name:<12} {:>8.1} MiB", kib as f64 / 1024.0);
    }
    if !model.missing.is_empty() {
        let shown: Vec<_> = model.missing.iter().take(10).collect();
        println!("missing events (first 10): {shown:?}");
    }
    if checks.iter().any(|c| !c.ok) {
        bail!(
            "the soak failed; process logs are under {}",
            root.keep().display()
        );
    }
    println!("soak: every check passed");
    Ok(())
}

fn sample_all(
    sampler: &mut rss::Sampler,
    api: &RoleProcess,
    consumers: &[RoleProcess],
    kafka: &Kafka,
    mongo: &Mongo,
) {
    for p in std::iter::once(api).chain(consumers) {
        sampler.sample(&p.name, p.starts, p.pid());
    }
    sampler.sample("kafka", 0, kafka.pid());
    sampler.sample("ferretdb", 0, mongo.pid());
}

/// Waits until the outbox is empty (every notification published); the last backlog seen.
async fn settle(
    client: &reqwest::Client,
    base: &str,
    sampler: &mut rss::Sampler,
    api: &RoleProcess,
    consumers: &[RoleProcess],
    kafka: &Kafka,
    mongo: &Mongo,
) -> Option<u64> {
    let until = Instant::now() + SETTLE_DEADLINE;
    let mut backlog = None;
    while Instant::now() < until {
        sample_all(sampler, api, consumers, kafka, mongo);
        let ready = accounting::get(client, &format!("{base}/readyz"))
            .await
            .ok();
        backlog = ready.and_then(|r| r["outbox_backlog"].as_u64()).or(backlog);
        if backlog == Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    backlog
}

/// No lifetime of a process whose memory grew by more than half from its middle to its last
/// third; lifetimes too short to judge are counted, not judged.
fn rss_checks(sampler: &rss::Sampler) -> Vec<Check> {
    const LIMIT: f64 = 1.5;
    let mut judged = 0;
    let mut worst: (f64, String) = (0.0, String::new());
    for ((name, start), series) in &sampler.series {
        if let Some(g) = rss::growth(&series.samples) {
            judged += 1;
            if g > worst.0 {
                worst = (g, format!("{name}#{start}"));
            }
        }
    }
    vec![
        Check::new(
            "process lifetimes long enough to judge RSS",
            "> 0",
            judged,
            judged > 0,
        ),
        Check::new(
            &format!("worst RSS growth, last/middle third ({})", worst.1),
            format!("<= {LIMIT}"),
            format!("{:.2}", worst.0),
            worst.0 <= LIMIT,
        ),
    ]
}
