//! The `enrollstream serve --role R` processes of the soak: each one a slot with its own data
//! directory and log, which the chaos loop kills and starts again.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{anyhow, Context};

/// Bound on a start: the build and the other processes share two cores.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// What every process of the run shares: the binary and the engines it runs on.
#[derive(Clone)]
pub struct Launcher {
    pub binary: PathBuf,
    pub kafka: String,
    pub mongodb: String,
    pub config: PathBuf,
}

/// One role process; killed when dropped.
pub struct RoleProcess {
    pub name: String,
    role: &'static str,
    dir: PathBuf,
    launcher: Launcher,
    listen: String,
    child: Option<Child>,
    pub base_url: String,
    pub starts: u32,
    /// Starts that ended in an exit before the listen line (the store too slow to answer the
    /// process's first call, say); each is tried again, up to `START_ATTEMPTS` in a row.
    pub failed_starts: u32,
}

/// Starts in a row that may end in an exit before one counts as a failure of the run.
const START_ATTEMPTS: u32 = 5;

impl RoleProcess {
    pub fn start(
        launcher: &Launcher,
        role: &'static str,
        name: String,
        root: &Path,
        listen: String,
    ) -> anyhow::Result<Self> {
        let dir = root.join(&name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut process = Self {
            name,
            role,
            dir,
            launcher: launcher.clone(),
            listen,
            child: None,
            base_url: String::new(),
            starts: 0,
            failed_starts: 0,
        };
        process.restart()?;
        Ok(process)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: no shutdown code runs, like a power cut.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process died on its own (a role that stopped exits non-zero).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Starts the process (again) on its data directory and waits for its listen line. A
    /// process that exits while starting (it gives up on a peer that does not answer in time,
    /// as an orchestrator's restart would see) is started again, a few times.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let mut attempt = 1;
        loop {
            match self.start_once() {
                Ok(()) => return Ok(()),
                Err(StartFailure::Exited(why)) if attempt < START_ATTEMPTS => {
                    println!("soak: {why}; starting it again");
                    self.failed_starts += 1;
                    attempt += 1;
                }
                Err(StartFailure::Exited(why) | StartFailure::Other(why)) => return Err(why),
            }
        }
    }

    fn start_once(&mut self) -> Result<(), StartFailure> {
        self.kill9();
        let log_path = self.dir.join("enrollstream.log");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))
            .map_err(StartFailure::Other)?;
        let l = &self.launcher;
        let mut command = Command::new(&l.binary);
        command
            .args(["serve", "--listen", &self.listen, "--role", self.role])
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("--config")
            .arg(&l.config)
            .args(["--kafka-brokers", &l.kafka, "--mongodb-uri", &l.mongodb])
            // The runners' info lines (retries, rebalances, fenced commits, reminders sent) are what
            // a failed run is diagnosed from.
            .env("RUST_LOG", "warn,enrollstream_runners=info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        die_with_parent(&mut command);
        let mut child = command
            .spawn()
            .with_context(|| format!("running {}", l.binary.display()))
            .map_err(StartFailure::Other)?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("enrollstream listening on ") {
                    let _ = tx.send(url.to_string());
                }
            }
        });
        match rx.recv_timeout(START_DEADLINE) {
            Ok(url) => self.base_url = url,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // Its stdout closed before the listen line: it is exiting.
                let status = child.wait();
                return Err(StartFailure::Exited(anyhow!(
                    "{} exited while starting ({status:?}); see {}",
                    self.name,
                    log_path.display()
                )));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(StartFailure::Other(anyhow!(
                    "{} did not report its address within {START_DEADLINE:?}; see {}",
                    self.name,
                    log_path.display()
                )));
            }
        }
        self.child = Some(child);
        self.starts += 1;
        Ok(())
    }
}

enum StartFailure {
    /// The process exited before its listen line.
    Exited(anyhow::Error),
    Other(anyhow::Error),
}

impl Drop for RoleProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The kernel kills the child when the soak dies, however it dies. PR_SET_PDEATHSIG fires
/// when the forking *thread* ends: the soak starts processes only from its main future, which
/// `block_on` runs on the main thread for the whole run.
fn die_with_parent(command: &mut Command) {
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
