use std::fs;
use std::io::{self, BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tempfile::TempDir;

use super::mail::ReceivedMail;
use super::process::{Launch, Process};
use super::{binaries, scratch};

const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// An aiosmtpd server storing every mail it receives in a maildir; killed when dropped.
pub struct Smtp {
    process: Process,
    maildir: PathBuf,
    // Declared after `process` so that the server is dead before its files are removed.
    _dir: TempDir,
}

impl Smtp {
    /// Starts a fresh server on a free port and waits for its greeting.
    pub fn start() -> anyhow::Result<Smtp> {
        let python = binaries::python()?;
        let dir = scratch::scratch_dir("smtp")?;
        let path = dir.path().to_path_buf();
        let maildir = path.join("maildir");
        let process = Process::start_on_free_port(|port| {
            Ok(Launch {
                name: "aiosmtpd",
                program: python.clone(),
                args: vec![
                    "-m".into(),
                    "aiosmtpd".into(),
                    "-n".into(),
                    "-l".into(),
                    format!("127.0.0.1:{port}").into(),
                    "-c".into(),
                    "aiosmtpd.handlers.Mailbox".into(),
                    maildir.clone().into(),
                ],
                dir: path.clone(),
                addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                clear_env: false,
                env: vec![("PYTHONUNBUFFERED", "1")],
                probe: greeting,
                logs: Vec::new(),
                run_as: None,
            })
        })?;
        Ok(Smtp {
            process,
            maildir,
            _dir: dir,
        })
    }

    pub fn port(&self) -> u16 {
        self.process.addr().port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.process.addr()
    }

    /// The server's process id while it runs (the soak samples its memory).
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The maildir; each received mail is one file in its `new/`.
    pub fn maildir(&self) -> &Path {
        &self.maildir
    }

    /// Kills the server, for "SMTP is down for a while" tests; received mails stay.
    pub fn stop(&mut self) {
        self.process.kill();
    }

    /// Starts the server again on the same port, into the same maildir.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        self.process.start()
    }

    /// Every mail received so far, in arrival order. Panics with the reason when the maildir
    /// cannot be read.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        self.read_messages()
            .unwrap_or_else(|error| panic!("{error:#}"))
    }

    /// Waits until at least `count` mails arrived, polling the maildir; then all of them.
    ///
    /// Async so that the code under test keeps running on the test's runtime meanwhile.
    pub async fn wait_for_messages(
        &self,
        count: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<ReceivedMail>> {
        let started = Instant::now();
        loop {
            let arrived = self.files()?.len();
            if arrived >= count {
                return self.read_messages();
            }
            if started.elapsed() > timeout {
                bail!(
                    "{arrived} of {count} mails arrived in {} within {timeout:?}{}",
                    self.maildir.display(),
                    self.process.log_tail()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    fn read_messages(&self) -> anyhow::Result<Vec<ReceivedMail>> {
        self.files()?
            .iter()
            .map(|path| ReceivedMail::read(path))
            .collect()
    }

    /// Delivered files, oldest first. aiosmtpd writes into `tmp/` and renames into `new/`, so a
    /// file in `new/` is complete.
    fn files(&self) -> anyhow::Result<Vec<PathBuf>> {
        let new = self.maildir.join("new");
        let entries = match fs::read_dir(&new) {
            Ok(entries) => entries,
            // Created with the first delivery.
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(error).with_context(|| format!("reading {}", new.display())),
        };
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("reading {}", new.display()))?;
            let modified = entry.metadata()?.modified()?;
            files.push((modified, entry.path()));
        }
        files.sort();
        Ok(files.into_iter().map(|(_, path)| path).collect())
    }
}

/// Ready once the server sends its `220` greeting.
fn greeting(addr: SocketAddr) -> io::Result<()> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    if line.starts_with("220") {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("SMTP greeting was {line:?}"),
        ))
    }
}
