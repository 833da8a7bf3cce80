use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use tempfile::TempDir;

use super::process::{Launch, Process};
use super::{binaries, scratch};

/// An nx-27017 server (MongoDB wire protocol) in its own directory; killed when dropped.
pub struct Mongo {
    process: Process,
    // Declared after `process` so that the server is dead before its files are removed.
    _dir: TempDir,
}

impl Mongo {
    /// Starts a fresh in-memory server on a free port: its data is gone after [`Mongo::pause`].
    pub fn start() -> anyhow::Result<Mongo> {
        Mongo::launch(false)
    }

    /// Starts a fresh server storing in a file of its directory: its data survives
    /// [`Mongo::pause`] and [`Mongo::resume`].
    pub fn start_persistent() -> anyhow::Result<Mongo> {
        Mongo::launch(true)
    }

    fn launch(persistent: bool) -> anyhow::Result<Mongo> {
        let program = binaries::nx27017()?;
        let dir = scratch::scratch_dir("mongo")?;
        let path = dir.path().to_path_buf();
        let db = if persistent {
            path.join("nx-27017.db").into_os_string()
        } else {
            "memory".into()
        };
        let log = path.join("nx-27017.log");
        let process = Process::start_on_free_port(|port| {
            Ok(Launch {
                name: "nx-27017",
                program: program.clone(),
                args: vec![
                    "--db".into(),
                    db.clone(),
                    "--host".into(),
                    "127.0.0.1".into(),
                    "--port".into(),
                    port.to_string().into(),
                    "--pid-file".into(),
                    path.join("nx-27017.pid").into(),
                    "--log-file".into(),
                    log.clone().into(),
                ],
                dir: path.clone(),
                addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                clear_env: false,
                env: vec![("PYTHONUNBUFFERED", "1")],
                // It accepts connections only once its server loop runs.
                probe: |addr| TcpStream::connect_timeout(&addr, Duration::from_secs(1)).map(drop),
                logs: vec![log.clone()],
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

    /// Kills the server like a crash, for "MongoDB goes away for a while" tests.
    pub fn pause(&mut self) {
        self.process.kill();
    }

    /// Starts the server again on the same port (with the same data if persistent).
    pub fn resume(&mut self) -> anyhow::Result<()> {
        self.process.start()
    }
}
