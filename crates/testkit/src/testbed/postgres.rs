//! The PostgreSQL cluster under one FerretDB of the opt-in postgresql backend: a copy of the
//! install's template (initdb and FerretDB's database are paid once, at install), started on a
//! free port of 127.0.0.1 and killed with its FerretDB.

use std::fs::{self, Permissions};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};

use super::binaries;
use super::process::{Launch, Process};

/// The database the template holds for FerretDB; each cluster serves one FerretDB only.
pub(crate) const DATABASE: &str = "ferretdb";

/// Test-bed settings: nothing here has to survive a machine crash, so no syncing; a small
/// shared memory and few connections, as several clusters run beside parallel tests.
const SETTINGS: &[&str] = &[
    "listen_addresses=127.0.0.1",
    // No socket file: the cluster is reached over TCP only, like every other test component.
    "unix_socket_directories=",
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "shared_buffers=16MB",
    "max_connections=40",
];

pub(crate) struct Postgres {
    process: Process,
}

impl Postgres {
    /// Copies the template into `dir` (which must be empty or absent) and starts the cluster.
    pub(crate) fn start(dir: &Path) -> anyhow::Result<Postgres> {
        let home = binaries::postgresql()?;
        let data = dir.join("data");
        copy_tree(&home.template, &data).with_context(|| {
            format!(
                "copying the PostgreSQL template cluster {} (reinstall with \
                 ENROLLSTREAM_FERRETDB_BACKEND=postgresql bash scripts/testbed/install.sh)",
                home.template.display()
            )
        })?;
        let owner = cluster_owner()?;
        if let Some((uid, gid)) = owner {
            chown_tree(dir, uid, gid)
                .with_context(|| format!("giving {} to the postgres user", dir.display()))?;
        }
        // PostgreSQL refuses a data directory others can read.
        fs::set_permissions(&data, Permissions::from_mode(0o700))?;
        let program = home.postgres;
        let process = Process::start_on_free_port(|port| {
            let mut args: Vec<std::ffi::OsString> = vec![
                "-D".into(),
                data.clone().into(),
                "-p".into(),
                port.to_string().into(),
            ];
            for setting in SETTINGS {
                args.push("-c".into());
                args.push(setting.into());
            }
            Ok(Launch {
                name: "postgres",
                program: program.clone(),
                args,
                dir: dir.to_path_buf(),
                addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                // PG* variables of the caller would change its settings.
                clear_env: true,
                env: Vec::new(),
                probe: accepts_sessions,
                logs: Vec::new(),
                run_as: owner,
            })
        })?;
        Ok(Postgres { process })
    }

    pub(crate) fn port(&self) -> u16 {
        self.process.addr().port()
    }

    /// The postmaster's pid; its backends are its children.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.process.pid()
    }
}

/// PostgreSQL refuses to run as root: then the cluster runs as the postgres system user (Debian's
/// package creates it). Anyone else runs it as themselves.
fn cluster_owner() -> anyhow::Result<Option<(u32, u32)>> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let passwd = fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    for line in passwd.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() >= 4 && fields[0] == "postgres" {
            let uid = fields[2].parse().context("the postgres user's uid")?;
            let gid = fields[3].parse().context("the postgres user's gid")?;
            return Ok(Some((uid, gid)));
        }
    }
    bail!(
        "the tests run as root and PostgreSQL refuses root, but there is no postgres user to run \
         it as (Debian's postgresql package creates one: \
         ENROLLSTREAM_FERRETDB_BACKEND=postgresql bash scripts/testbed/install.sh)"
    )
}

fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            fs::copy(entry.path(), &target)?;
        } else {
            return Err(io::Error::other(format!(
                "{} is neither a file nor a directory",
                entry.path().display()
            )));
        }
    }
    Ok(())
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
    if path.is_dir() {
        for entry in fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Ready when it authenticates a session: during recovery it accepts TCP connections but
/// answers them with an error ("the database system is starting up").
fn accepts_sessions(addr: SocketAddr) -> io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    // StartupMessage, protocol 3.0.
    let mut body = 196_608u32.to_be_bytes().to_vec();
    for (key, value) in [("user", "postgres"), ("database", DATABASE)] {
        body.extend_from_slice(key.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let length = u32::try_from(body.len() + 4).map_err(io::Error::other)?;
    stream.write_all(&length.to_be_bytes())?;
    stream.write_all(&body)?;
    let mut kind = [0u8; 1];
    stream.read_exact(&mut kind)?;
    match kind[0] {
        // An authentication request: with the template's trust setting, AuthenticationOk.
        b'R' => {
            // Terminate, so that the server does not log a lost connection.
            let _ = stream.write_all(&[b'X', 0, 0, 0, 4]);
            Ok(())
        }
        b'E' => {
            let mut message = vec![0u8; 512];
            let n = stream.read(&mut message).unwrap_or(0);
            let text: String = String::from_utf8_lossy(&message[..n])
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            Err(io::Error::other(format!(
                "refused the session: {}",
                text.trim()
            )))
        }
        other => Err(io::Error::other(anyhow!(
            "answered a startup message with {other:#04x}"
        ))),
    }
}
