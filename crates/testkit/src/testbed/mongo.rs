use std::ffi::OsString;
use std::fs::{self, Permissions};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use tempfile::TempDir;

use super::binaries::{self, FerretBackend};
use super::postgres::{self, Postgres};
use super::process::{Launch, Process};
use super::scratch;

/// A FerretDB server (MongoDB wire protocol) with its own storage: SQLite files in its own
/// directory by default, or with `ENROLLSTREAM_FERRETDB_BACKEND=postgresql` a PostgreSQL
/// cluster of its own. Killed when dropped. Its data survives [`Mongo::pause`] and
/// [`Mongo::resume`] (which stop and start FerretDB only).
pub struct Mongo {
    process: Process,
    backend: FerretBackend,
    // Declared after `process`: FerretDB dies before its PostgreSQL, and both before their
    // files are removed.
    postgres: Option<Postgres>,
    _dir: TempDir,
}

impl Mongo {
    /// Starts a fresh server on a free port and waits until it accepts connections.
    pub fn start() -> anyhow::Result<Mongo> {
        let backend = binaries::ferretdb_backend()?;
        let program = binaries::ferretdb()?;
        let dir = scratch::scratch_dir("mongo")?;
        let path = dir.path().to_path_buf();
        let (storage, postgres): (Vec<OsString>, _) = match backend {
            FerretBackend::Sqlite => {
                let data = path.join("data");
                fs::create_dir_all(&data)?;
                let args = vec![
                    "--handler=sqlite".into(),
                    // FerretDB wants the directory as a file: URI ending in a slash.
                    format!("--sqlite-url=file:{}/", data.display()).into(),
                ];
                (args, None)
            }
            FerretBackend::Postgresql => {
                // The cluster may run as the postgres user, which must reach its directory
                // inside this one (a temp dir is the owner's only).
                fs::set_permissions(&path, Permissions::from_mode(0o711))?;
                let postgres = Postgres::start(&path.join("postgresql"))?;
                let url = format!(
                    "--postgresql-url=postgres://postgres@127.0.0.1:{}/{}?pool_max_conns=20",
                    postgres.port(),
                    postgres::DATABASE
                );
                (
                    vec!["--handler=postgresql".into(), url.into()],
                    Some(postgres),
                )
            }
        };
        let process = Process::start_on_free_port(|port| {
            let mut args = storage.clone();
            args.extend([
                format!("--state-dir={}", path.display()).into(),
                format!("--listen-addr=127.0.0.1:{port}").into(),
                // No debug HTTP listener (it would take a fixed port) and no telemetry.
                "--debug-addr=-".into(),
                "--telemetry=disable".into(),
                "--log-level=warn".into(),
            ]);
            Ok(Launch {
                name: "ferretdb",
                program: program.clone(),
                args,
                dir: path.clone(),
                addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                // FERRETDB_* variables of the caller would change its settings.
                clear_env: true,
                env: Vec::new(),
                // It binds its port once its backend is open.
                probe: |addr| TcpStream::connect_timeout(&addr, Duration::from_secs(1)).map(drop),
                logs: Vec::new(),
                run_as: None,
            })
        })?;
        Ok(Mongo {
            process,
            backend,
            postgres,
            _dir: dir,
        })
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

    /// The PostgreSQL cluster's postmaster, on the PostgreSQL handler.
    pub fn postgres_pid(&self) -> Option<u32> {
        self.postgres.as_ref().and_then(Postgres::pid)
    }

    /// The store's `[mongodb] lookups` setting that suits this server: `point` on the
    /// PostgreSQL handler (whose index trigger serves equalities, not `$in` or `$or`), `batched`
    /// on SQLite (which scans for every filter but a lone `_id`, so one scan per batch beats
    /// one per key).
    pub fn lookups(&self) -> &'static str {
        match self.backend {
            FerretBackend::Sqlite => "batched",
            FerretBackend::Postgresql => "point",
        }
    }

    /// `SQLite` or `PostgreSQL`: the handler this server stores its collections with.
    pub fn handler(&self) -> &'static str {
        match self.backend {
            FerretBackend::Sqlite => "SQLite",
            FerretBackend::Postgresql => "PostgreSQL",
        }
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
