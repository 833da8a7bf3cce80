use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context;
use tempfile::TempDir;

use super::process::{Launch, Process};
use super::{binaries, free_port, scratch};

/// JVM settings of every test broker: a small heap (a few brokers run beside parallel tests on
/// two cores), the serial collector (no GC threads competing for those cores), and no perf-data
/// file in /tmp. scripts/testbed/install.sh dumps the class archive with the same options.
const JVM_OPTIONS: &[&str] = &[
    "-Xms64m",
    "-Xmx384m",
    "-XX:+UseSerialGC",
    "-XX:-UsePerfData",
    "-Djava.awt.headless=true",
];

/// How the broker's JIT compiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Jit {
    /// The client compiler only: a test broker lives seconds to minutes, and C2's compilations
    /// would cost it more CPU than they win back. With the class archive a broker starts in a
    /// third of the time and holds 25-40 MB less (docs/testbed.md).
    Client,
    /// Both compilers, as a production broker runs: for benchmarks, which measure the broker
    /// at its best once warm.
    Full,
}

/// An Apache Kafka broker (KRaft: broker and controller in one JVM) with its own log directory;
/// killed when dropped.
pub struct Kafka {
    process: Process,
    // Declared after `process` so that the broker is dead before its files are removed.
    _dir: TempDir,
}

impl Kafka {
    /// Starts a fresh single-node cluster on a free port and waits until it answers ApiVersions
    /// (a KRaft broker opens its port early but serves requests only once it is unfenced, so an
    /// answer means it is ready for clients).
    pub fn start() -> anyhow::Result<Kafka> {
        Self::start_with(Jit::Client)
    }

    /// [`Kafka::start`] with the JIT a production broker has, for benchmarks: a slower start,
    /// a faster broker once warm.
    pub fn start_for_benchmark() -> anyhow::Result<Kafka> {
        Self::start_with(Jit::Full)
    }

    fn start_with(jit: Jit) -> anyhow::Result<Kafka> {
        let home = binaries::kafka()?;
        let dir = scratch::scratch_dir("kafka")?;
        let path = dir.path().to_path_buf();
        let logs = path.join("logs");
        copy_dir(&home.logdir_template, &logs).with_context(|| {
            format!(
                "copying the formatted storage template {} (reinstall with scripts/testbed/install.sh)",
                home.logdir_template.display()
            )
        })?;
        let classpath = format!("{}/*", home.lib.display());
        let log4j = format!("-Dlog4j2.configurationFile={}", home.log4j.display());
        let class_archive = home.class_archive.clone();
        let process = Process::start_on_free_port(|port| {
            let controller = free_port();
            let properties = path.join("server.properties");
            fs::write(&properties, server_properties(port, controller, &logs))
                .with_context(|| format!("writing {}", properties.display()))?;
            let mut args: Vec<std::ffi::OsString> = JVM_OPTIONS.iter().map(Into::into).collect();
            if jit == Jit::Client {
                args.push("-XX:TieredStopAtLevel=1".into());
            }
            // The classes of a broker start, loaded from one mapped file instead of 40 MB of
            // jars. A JVM that finds the archive stale (another java) warns and starts without.
            if class_archive.is_file() {
                args.push(format!("-XX:SharedArchiveFile={}", class_archive.display()).into());
            }
            args.extend([
                log4j.clone().into(),
                "-cp".into(),
                classpath.clone().into(),
                "kafka.Kafka".into(),
                properties.into(),
            ]);
            Ok(Launch {
                name: "kafka",
                program: home.java.clone(),
                args,
                dir: path.clone(),
                addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                clear_env: false,
                env: Vec::new(),
                probe: |addr| api_versions(addr).map(drop),
                logs: Vec::new(),
                run_as: None,
            })
        })?;
        Ok(Kafka { process, _dir: dir })
    }

    /// One broker for all tests of this test process, started on first use.
    ///
    /// Never dropped: it dies with the test process. Panics with the reason when it cannot start.
    pub fn shared() -> &'static Kafka {
        static SHARED: OnceLock<Kafka> = OnceLock::new();
        SHARED.get_or_init(|| {
            Kafka::start()
                .unwrap_or_else(|error| panic!("the shared Kafka broker did not start: {error:#}"))
        })
    }

    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.process.addr().to_string()
    }

    pub fn port(&self) -> u16 {
        self.process.addr().port()
    }

    /// Kills the broker like a crash (SIGKILL); [`Kafka::restart`] brings it back.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Kills the broker and starts it again on the same ports with the same log directory.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.process.kill();
        self.process.start()
    }

    /// The process id of the running broker, for reading its memory use.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Asks the broker which API versions it serves: a real round trip of the Kafka protocol.
    pub fn api_versions(&self) -> anyhow::Result<Vec<ApiVersionRange>> {
        api_versions(self.process.addr()).map_err(|error| {
            anyhow::anyhow!(
                "Kafka on {} did not answer ApiVersions: {error}{}",
                self.process.addr(),
                self.process.log_tail()
            )
        })
    }
}

/// The broker's configuration: one node that is its own controller quorum, internal topics
/// with one replica, no initial rebalance delay (a test's first consumer starts at once), and
/// session timeouts down to one second so crash tests can use short ones. Topics are created by
/// the code under test, as in production: a topic it forgot fails the test here too.
fn server_properties(port: u16, controller: u16, logs: &Path) -> String {
    let mut p = String::new();
    let lines = [
        "process.roles=broker,controller".to_string(),
        "node.id=1".into(),
        format!("controller.quorum.voters=1@127.0.0.1:{controller}"),
        format!("listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}"),
        format!("advertised.listeners=PLAINTEXT://127.0.0.1:{port}"),
        "controller.listener.names=CONTROLLER".into(),
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT".into(),
        "inter.broker.listener.name=PLAINTEXT".into(),
        format!("log.dirs={}", logs.display()),
        "auto.create.topics.enable=false".into(),
        "num.partitions=3".into(),
        "default.replication.factor=1".into(),
        "min.insync.replicas=1".into(),
        "offsets.topic.replication.factor=1".into(),
        "offsets.topic.num.partitions=3".into(),
        "transaction.state.log.replication.factor=1".into(),
        "transaction.state.log.min.isr=1".into(),
        "transaction.state.log.num.partitions=3".into(),
        "share.coordinator.state.topic.replication.factor=1".into(),
        "share.coordinator.state.topic.min.isr=1".into(),
        "group.initial.rebalance.delay.ms=0".into(),
        "group.min.session.timeout.ms=1000".into(),
        // Few threads: two cores, and several brokers may run at once.
        "num.network.threads=2".into(),
        "num.io.threads=2".into(),
        "background.threads=2".into(),
        "group.coordinator.threads=1".into(),
        "num.recovery.threads.per.data.dir=1".into(),
        "log.cleaner.threads=1".into(),
        "log.cleaner.dedupe.buffer.size=4194304".into(),
    ];
    for line in lines {
        let _ = writeln!(p, "{line}");
    }
    p
}

fn copy_dir(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        fs::copy(entry.path(), to.join(entry.file_name()))?;
    }
    Ok(())
}

/// One entry of an ApiVersions response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiVersionRange {
    pub api_key: i16,
    pub min_version: i16,
    pub max_version: i16,
}

const API_VERSIONS_KEY: i16 = 18;
const CORRELATION_ID: i32 = 0x5e57;
const CLIENT_ID: &[u8] = b"enrollstream-testbed";

/// ApiVersions v0, written by hand: it is the one request a readiness check needs, and its v0
/// frame is a dozen fixed bytes; a Kafka client library would be far more than that.
fn api_versions(addr: SocketAddr) -> io::Result<Vec<ApiVersionRange>> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;

    let mut request = Vec::new();
    request.extend(API_VERSIONS_KEY.to_be_bytes());
    request.extend(0i16.to_be_bytes());
    request.extend(CORRELATION_ID.to_be_bytes());
    request.extend((CLIENT_ID.len() as i16).to_be_bytes());
    request.extend(CLIENT_ID);
    let mut frame = (request.len() as i32).to_be_bytes().to_vec();
    frame.extend(request);
    stream.write_all(&frame)?;

    let mut size = [0u8; 4];
    stream.read_exact(&mut size)?;
    let size = i32::from_be_bytes(size);
    if !(10..=1 << 20).contains(&size) {
        return Err(invalid(format!("response size {size}")));
    }
    let mut body = vec![0u8; size as usize];
    stream.read_exact(&mut body)?;

    let mut reader = Reader(&body);
    let correlation_id = reader.i32()?;
    if correlation_id != CORRELATION_ID {
        return Err(invalid(format!(
            "correlation id {correlation_id}, sent {CORRELATION_ID}"
        )));
    }
    let error_code = reader.i16()?;
    if error_code != 0 {
        return Err(invalid(format!("error code {error_code}")));
    }
    let count = reader.i32()?;
    (0..count)
        .map(|_| {
            Ok(ApiVersionRange {
                api_key: reader.i16()?,
                min_version: reader.i16()?,
                max_version: reader.i16()?,
            })
        })
        .collect()
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> io::Result<[u8; N]> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or_else(|| invalid("truncated ApiVersions response".into()))?;
        self.0 = rest;
        Ok(*head)
    }

    fn i16(&mut self) -> io::Result<i16> {
        self.take().map(i16::from_be_bytes)
    }

    fn i32(&mut self) -> io::Result<i32> {
        self.take().map(i32::from_be_bytes)
    }
}

fn invalid(what: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("unexpected ApiVersions reply: {what}"),
    )
}
