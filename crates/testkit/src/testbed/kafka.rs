use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

use tempfile::TempDir;

use super::process::{Launch, Process};
use super::{binaries, scratch};

/// tansu's SQLite database, in the broker's own directory.
const TANSU_DB: &str = "tansu.db";

/// A tansu broker storing in SQLite in its own directory; killed when dropped.
pub struct Kafka {
    process: Process,
    // Declared after `process` so that the broker is dead before its files are removed.
    _dir: TempDir,
}

impl Kafka {
    /// Starts a fresh broker on a free port and waits until it answers ApiVersions.
    pub fn start() -> anyhow::Result<Kafka> {
        let program = binaries::tansu()?;
        let dir = scratch::scratch_dir("kafka")?;
        let path = dir.path().to_path_buf();
        let process = Process::start_on_free_port(|port| {
            let url = format!("tcp://127.0.0.1:{port}");
            Ok(Launch {
                name: "tansu",
                program: program.clone(),
                args: [
                    "broker",
                    "--cluster-id",
                    "enrollstream-test",
                    "--listener-url",
                    &url,
                    "--advertised-listener-url",
                    &url,
                    // Relative on purpose: tansu mangles an absolute path in this URL; the
                    // working directory is the broker's own directory.
                    "--storage-engine",
                    &format!("sqlite://{TANSU_DB}"),
                ]
                .map(Into::into)
                .to_vec(),
                dir: path.clone(),
                addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                clear_env: true,
                env: Vec::new(),
                probe: |addr| api_versions(addr).map(drop),
                logs: Vec::new(),
            })
        })?;
        index_headers(&path.join(TANSU_DB)).map_err(|error| {
            anyhow::anyhow!(
                "could not add the header index to tansu's database: {error:#}{}",
                process.log_tail()
            )
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

    /// Kills the broker and starts it again on the same port with the same data.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.process.kill();
        self.process.start()
    }

    /// Asks the broker which API versions it serves: a real round trip of the Kafka protocol.
    pub fn api_versions(&self) -> anyhow::Result<Vec<ApiVersionRange>> {
        api_versions(self.process.addr()).map_err(|error| {
            anyhow::anyhow!(
                "tansu on {} did not answer ApiVersions: {error}{}",
                self.process.addr(),
                self.process.log_tail()
            )
        })
    }
}

/// tansu 0.6's SQLite schema has no index on `header (topition, offset_id)`, yet it looks up the
/// headers of every fetched record by that pair (`header_fetch.sql`): each fetched record scans
/// every header ever written, so fetching gets slower with every message produced (84 events/s
/// after 20,000 CloudEvents with eight headers each; ~900/s with the index). The index changes no
/// result, only the plan; `if not exists` keeps a restarted broker's database as it is.
fn index_headers(db: &std::path::Path) -> anyhow::Result<()> {
    let connection = rusqlite::Connection::open(db)?;
    // tansu writes to the same file concurrently; wait for its write lock instead of failing.
    connection.busy_timeout(Duration::from_secs(10))?;
    connection.execute_batch(
        "create index if not exists enrollstream_header_record on header (topition, offset_id);",
    )?;
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
