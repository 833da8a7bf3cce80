use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use tempfile::TempDir;

use super::process::{Launch, Process};
use super::{binaries, scratch};

/// A FerretDB server (MongoDB wire protocol) storing in SQLite in its own directory; killed
/// when dropped. Its data survives [`Mongo::pause`] and [`Mongo::resume`].
pub struct Mongo {
    process: Process,
    // Declared after `process` so that the server is dead before its files are removed.
    _dir: TempDir,
}

impl Mongo {
    /// Starts a fresh server on a free port and waits until it accepts connections.
    pub fn start() -> anyhow::Result<Mongo> {
        let program = binaries::ferretdb()?;
        let dir = scratch::scratch_dir("mongo")?;
        let path = dir.path().to_path_buf();
        let data = path.join("data");
        std::fs::create_dir_all(&data)?;
        let process = Process::start_on_free_port(|port| {
            Ok(Launch {
                name: "ferretdb",
                program: program.clone(),
                args: vec![
                    "--handler=sqlite".into(),
                    // FerretDB wants the directory as a file: URI ending in a slash.
                    format!("--sqlite-url=file:{}/", data.display()).into(),
                    format!("--state-dir={}", path.display()).into(),
                    format!("--listen-addr=127.0.0.1:{port}").into(),
                    // No debug HTTP listener (it would take a fixed port) and no telemetry.
                    "--debug-addr=-".into(),
                    "--telemetry=disable".into(),
                    "--log-level=warn".into(),
                ],
                dir: path.clone(),
                addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                // FERRETDB_* variables of the caller would change its settings.
                clear_env: true,
                env: Vec::new(),
                // It binds its port once its backend is open.
                probe: |addr| TcpStream::connect_timeout(&addr, Duration::from_secs(1)).map(drop),
                logs: Vec::new(),
            })
        })?;
        Ok(Mongo { process, _dir: dir })
    }

    /// `mongodb://127.0.0.1:PORT`.
    pub fn uri(&self) -> String {
        format!("mongodb://{}", self.process.addr())
    }

    pub fn port(&self) -> u16 {
        self.process.addr().port()
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Kills the server like a crash, for "MongoDB goes away for a while" tests.
    pub fn pause(&mut self) {
        self.process.kill();
    }

    /// Starts the server again on the same port with the same data.
    pub fn resume(&mut self) -> anyhow::Result<()> {
        self.process.start()
    }
}
