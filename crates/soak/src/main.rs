//! The chaos soak (issue 19): the roles of enrollstream as separate processes on Apache Kafka
//! and FerretDB, under load, while a chaos loop SIGKILLs a random consumer process every few
//! seconds and restarts it, the broker restarts once, the HTTP targets fail a fifth of their
//! calls, poison lands on the event topics and reminders run on a seconds interval; then an
//! accounting that fails the run on any loss, duplicate or leftover. `scripts/soak --short` is
//! the quick run, `--full` the long one.

mod accounting;
mod bus;
mod config;
mod drain;
mod fleet;
mod load;
mod poison;
mod reminders;
mod roles;
mod rss;
mod targets;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use enrollstream_testkit::testbed::{Kafka, Mongo, Smtp};
use rand::Rng;

use accounting::Check;
use fleet::Fleet;
use roles::Launcher;

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

/// Longest wait for each step of the settling after the load.
const SETTLE_DEADLINE: Duration = Duration::from_secs(300);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let events = args.events.unwrap_or(if args.full { 100_000 } else { 400 });
    // 1 % of the events, at least one of each kind.
    let poison_total = (events / 100).max(3);
    let started = Instant::now();
    let root = tempfile::Builder::new()
        .prefix("enrollstream-soak-")
        .tempdir()?;
    println!(
        "soak: {events} events, {poison_total} poison, logs under {}",
        root.path().display()
    );
    // A failed run keeps the process logs it points at; a passed one leaves nothing behind.
    match run(&args, events, poison_total, started, root.path()).await {
        Ok(()) => Ok(()),
        Err(e) => {
            let kept = root.keep();
            Err(e.context(format!("process logs are under {}", kept.display())))
        }
    }
}

async fn run(
    args: &Args,
    events: u64,
    poison_total: u64,
    started: Instant,
    root: &std::path::Path,
) -> anyhow::Result<()> {
    let mut kafka = Kafka::start().context("starting Apache Kafka")?;
    let mongo = Mongo::start().context("starting FerretDB")?;
    println!(
        "soak: FerretDB on its {} handler, [mongodb] lookups = {:?}",
        mongo.handler(),
        mongo.lookups()
    );
    let smtp = Smtp::start().context("starting the SMTP server")?;
    let targets = targets::Targets::start().await;
    let peers = config::Peers {
        kafka: kafka.bootstrap(),
        logic_apps_url: targets.logic_apps.trigger_url(),
        salesforce_url: targets.salesforce.base_url().to_string(),
        leads_url: targets.leads.endpoint(),
        smtp_port: smtp.port(),
        mongodb_lookups: mongo.lookups(),
    };
    let launcher = Launcher {
        binary: std::fs::canonicalize(&args.binary)
            .with_context(|| format!("the binary {}", args.binary.display()))?,
        kafka: kafka.bootstrap(),
        mongodb: format!("{}/enrollstream", mongo.uri()),
        config: config::write(root, &peers)?,
    };
    let bus = bus::connect(&kafka.bootstrap())?;

    let mut fleet = Fleet::start(&launcher, root)?;
    let base = fleet.api.base_url.clone();
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
    let (mut kills, mut broker_restarts) = (0u32, 0u32);
    let mut poison = Vec::new();
    let mut next_kill = Instant::now() + Duration::from_secs(args.kill_every);
    while !workers.iter().all(|w| w.is_finished()) {
        fleet.sample(&mut sampler, (&kafka, &mongo, &smtp));
        fleet.restart_exited()?;
        if Instant::now() >= next_kill {
            let victim = rand::rng().random_range(0..fleet.consumers.len());
            let process = &mut fleet.consumers[victim];
            process.kill9();
            process.restart()?;
            kills += 1;
            next_kill = Instant::now() + Duration::from_secs(args.kill_every);
        }
        // Poison spread over the load: the next one once its share of the events is accepted.
        let due = poison.len() as u64 * events / poison_total;
        if (poison.len() as u64) < poison_total && tally.accepted_count() as u64 >= due {
            if let Some(sent) = poison::publish(&bus, poison.len() as u64).await {
                poison.push(sent);
            }
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
    // A short run may end its load before all its poison went out.
    while (poison.len() as u64) < poison_total {
        let deadline = load_started + SETTLE_DEADLINE * 2;
        if Instant::now() > deadline {
            bail!("the broker did not take the poison messages");
        }
        if let Some(sent) = poison::publish(&bus, poison.len() as u64).await {
            poison.push(sent);
        }
    }
    let load_time = load_started.elapsed();
    println!(
        "soak: load done in {load_time:.1?}: {} accepted, {} refused, {} poison; settling",
        tally.accepted_count(),
        tally.refused.load(Ordering::SeqCst),
        poison.len()
    );

    let settle_started = Instant::now();
    let accepted = tally.accepted.lock().expect("tally").clone();
    let applications: Vec<String> = {
        let mut ids: Vec<String> = accepted
            .iter()
            .filter(|a| a.kind == load::Kind::Application)
            .map(|a| a.entity.clone())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    };
    let awaiting = reminders::settle(
        &client,
        &base,
        &applications,
        Instant::now() + SETTLE_DEADLINE,
    )
    .await?;
    let phase = |what: &str, since: Instant| println!("soak: {what} in {:.1?}", since.elapsed());
    phase("reminders settled", settle_started);
    let step = Instant::now();
    let drained = drain::until_idle(
        &client,
        &base,
        &bus,
        &mut sampler,
        &fleet,
        (&kafka, &mongo, &smtp),
        Instant::now() + SETTLE_DEADLINE,
    )
    .await;
    phase("pipeline idle", step);
    let step = Instant::now();
    let model = accounting::read_model(&client, &base, &accepted, SETTLE_DEADLINE).await?;
    phase("read model read", step);
    let step = Instant::now();
    let until = Instant::now() + SETTLE_DEADLINE;
    let expected = targets::expected(&model.logged);
    let delivery_checks = targets::checks(&targets, &expected, until).await;
    phase("deliveries accounted", step);
    let step = Instant::now();
    let poison_checks = poison::checks(&bus, &poison, until).await?;
    phase("dead letters read", step);
    let mails = smtp.messages();
    let (reminder_checks, mail_figures) =
        reminders::checks(&model.logged, &model.applications, &mails);
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
        Check::new(
            "invalid transitions sent to the API (1 %)",
            "",
            invalid_sent,
            true,
        ),
        Check::equal(
            "invalid transitions accepted by the API",
            0,
            tally.invalid_accepted.load(Ordering::SeqCst),
        ),
        Check::equal(
            "applications still awaiting reminders after settling",
            0,
            awaiting as u64,
        ),
    ];
    checks.extend(delivery_checks);
    checks.extend(poison_checks);
    checks.extend(reminder_checks);
    checks.extend(drained.checks());
    checks.extend([
        Check::new(
            "consumer processes SIGKILLed and restarted",
            "> 0",
            kills,
            kills > 0,
        ),
        Check::equal("broker restarts", 1, u64::from(broker_restarts)),
    ]);
    checks.extend(rss::checks(&sampler));
    accounting::print(&checks);
    println!(
        "\nentities {}, refused requests {}, events in logs never acknowledged (lost responses) {}, \
         processes that exited on their own {}, starts that ended in an exit (started again) {}",
        model.entities,
        tally.refused.load(Ordering::SeqCst),
        model.unacknowledged_in_log,
        fleet.own_exits,
        fleet.failed_starts()
    );
    // A commit answered "fenced" is taken as done by the runners: counted, because a fenced
    // commit on a partition the member kept is the suspect of a lag that never goes back to
    // zero (docs/reliability.md).
    println!(
        "commits fenced by a rebalance (process logs): {}",
        fleet::log_lines_with(root, "commit fenced after a rebalance")
    );
    let calls: Vec<String> = targets
        .requests()
        .iter()
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    let notifications: Vec<String> = expected
        .iter()
        .map(|(name, ids)| format!("{name} {}", ids.len()))
        .collect();
    println!(
        "notifications per target: {}; calls received (faults included): {}",
        notifications.join(", "),
        calls.join(", ")
    );
    println!(
        "reminder mails: {} distinct, {} resent with the same Message-ID, {} sent but not recorded \
         (a kill between send and record, then the signature)",
        mail_figures.mails, mail_figures.resent, mail_figures.unrecorded
    );
    println!(
        "durations: load {load_time:.1?}, settle and accounting {settle_time:.1?} (to idle {:.1?}), total {:.1?}",
        drained.took,
        started.elapsed()
    );
    println!(
        "RSS growth of the test bed's servers (not judged): {}",
        rss::peer_growth(&sampler)
    );
    for (name, kib) in sampler.peaks() {
        println!("peak RSS {name:<14} {:>8.1} MiB", kib as f64 / 1024.0);
    }
    if !model.missing.is_empty() {
        let shown: Vec<_> = model.missing.iter().take(10).collect();
        println!("missing events (first 10): {shown:?}");
    }
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.what.as_str())
        .collect();
    if !failed.is_empty() {
        bail!(
            "the soak FAILED {} check(s): {}",
            failed.len(),
            failed.join("; ")
        );
    }
    println!("soak: every check passed");
    Ok(())
}
