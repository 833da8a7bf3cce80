//! Every process of the run: the API, two processes per consumer role, and the test bed's
//! peers; sampled together for memory, and restarted when one exits on its own.

use enrollstream_testkit::testbed::{free_port, Kafka, Mongo, Smtp};

use crate::roles::{Launcher, RoleProcess};
use crate::rss;

/// Consumer roles and how many processes of each run.
pub const CONSUMERS: &[(&str, usize)] = &[
    ("projector", 2),
    ("relay", 2),
    ("deliveries", 2),
    ("leads", 2),
    ("reminders", 2),
];

pub struct Fleet {
    pub api: RoleProcess,
    pub consumers: Vec<RoleProcess>,
    pub own_exits: u32,
}

impl Fleet {
    pub fn start(launcher: &Launcher, root: &std::path::Path) -> anyhow::Result<Self> {
        let api_listen = format!("127.0.0.1:{}", free_port());
        let api = RoleProcess::start(launcher, "api", "api".into(), root, api_listen)?;
        let mut consumers = Vec::new();
        for (role, count) in CONSUMERS {
            for n in 1..=*count {
                let name = format!("{role}-{n}");
                let listen = "127.0.0.1:0".to_string();
                consumers.push(RoleProcess::start(launcher, role, name, root, listen)?);
            }
        }
        Ok(Self {
            api,
            consumers,
            own_exits: 0,
        })
    }

    /// Restarts every process that exited on its own (a role that stopped exits non-zero).
    pub fn restart_exited(&mut self) -> anyhow::Result<()> {
        for process in std::iter::once(&mut self.api).chain(self.consumers.iter_mut()) {
            if let Some(status) = process.exited() {
                println!(
                    "soak: {} exited on its own ({status}); restarting it",
                    process.name
                );
                self.own_exits += 1;
                process.restart()?;
            }
        }
        Ok(())
    }

    /// Starts of any process that ended in an exit before its listen line.
    pub fn failed_starts(&self) -> u32 {
        std::iter::once(&self.api)
            .chain(&self.consumers)
            .map(|p| p.failed_starts)
            .sum()
    }

    pub fn sample(&self, sampler: &mut rss::Sampler, peers: (&Kafka, &Mongo, &Smtp)) {
        for p in std::iter::once(&self.api).chain(&self.consumers) {
            sampler.sample(&p.name, p.starts, p.pid());
        }
        let (kafka, mongo, smtp) = peers;
        sampler.sample("kafka", 0, kafka.pid());
        sampler.sample("ferretdb", 0, mongo.pid());
        sampler.sample("smtp", 0, smtp.pid());
    }
}

/// Lines of every process log under `root` that contain `text`, summed.
pub fn log_lines_with(root: &std::path::Path, text: &str) -> usize {
    let Ok(dirs) = std::fs::read_dir(root) else {
        return 0;
    };
    dirs.filter_map(Result::ok)
        .filter_map(|d| std::fs::read_to_string(d.path().join("enrollstream.log")).ok())
        .map(|log| log.lines().filter(|l| l.contains(text)).count())
        .sum()
}
