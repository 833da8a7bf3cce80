//! Child processes that die with the test process, and the wait until they answer.

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use super::binaries::INSTALL_HINT;

/// Bound on a start; generous because CI builds run beside the tests on two cores.
const STARTUP_DEADLINE: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Fresh starts that lost their port to another process between `free_port` and bind.
const PORT_ATTEMPTS: usize = 4;

/// Everything needed to start a component, kept so that it can start again on the same port.
pub(crate) struct Launch {
    pub name: &'static str,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub dir: PathBuf,
    pub addr: SocketAddr,
    /// Start with an empty environment (plus PATH), for a component that reads settings from
    /// variables that must not leak in from the caller.
    pub clear_env: bool,
    pub env: Vec<(&'static str, &'static str)>,
    /// Answers `Ok` once the component serves requests on `addr`.
    pub probe: fn(SocketAddr) -> io::Result<()>,
    /// Logs the component writes itself, shown with its output when it fails.
    pub logs: Vec<PathBuf>,
    /// Runs the component as this (uid, gid): PostgreSQL refuses to run as root. Set on the
    /// child itself, not through a wrapper such as runuser, which would be the process killed.
    pub run_as: Option<(u32, u32)>,
}

impl Launch {
    fn output_log(&self) -> PathBuf {
        self.dir.join(format!("{}.out", self.name))
    }

    fn command(&self) -> anyhow::Result<Command> {
        let out = self.output_log();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&out)
            .with_context(|| format!("opening {}", out.display()))?;
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if self.clear_env {
            command.env_clear();
            if let Some(path) = std::env::var_os("PATH") {
                command.env("PATH", path);
            }
        }
        command.envs(self.env.iter().copied());
        if let Some((uid, gid)) = self.run_as {
            // std switches the ids before the pre_exec hooks run, so the parent-death signal set
            // below survives (the kernel clears it on a change of credentials).
            command.uid(uid).gid(gid);
        }
        die_with_test_process(&mut command);
        Ok(command)
    }

    /// The last lines of the component's output and logs, for failure messages.
    fn log_tail(&self) -> String {
        let mut tail = String::new();
        for path in std::iter::once(self.output_log()).chain(self.logs.iter().cloned()) {
            let text = fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let last = &lines[lines.len().saturating_sub(30)..];
            tail.push_str(&format!(
                "\n--- last lines of {} ---\n{}",
                path.display(),
                last.join("\n")
            ));
        }
        tail
    }
}

/// A running (or stopped) component; killed when dropped.
pub(crate) struct Process {
    launch: Launch,
    child: Option<Child>,
}

impl Process {
    /// Starts a fresh component on a free port, taking another port when the chosen one was
    /// taken in the meantime by another test process.
    pub fn start_on_free_port(
        mut launch_on: impl FnMut(u16) -> anyhow::Result<Launch>,
    ) -> anyhow::Result<Process> {
        let mut attempt = 1;
        loop {
            let mut process = Process {
                launch: launch_on(super::free_port())?,
                child: None,
            };
            match process.start() {
                Ok(()) => return Ok(process),
                Err(error) if attempt < PORT_ATTEMPTS && lost_port(&error) => attempt += 1,
                Err(error) => return Err(error),
            }
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.launch.addr
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the component again on its port and waits until it answers.
    pub fn start(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!(
                "{} on {} is already running",
                self.launch.name,
                self.launch.addr
            );
        }
        let launch = &self.launch;
        let command = launch.command()?;
        let mut child = spawn(command).map_err(|error| {
            anyhow!(
                "could not run {} ({}): {error}; {INSTALL_HINT}",
                launch.name,
                launch.program.display()
            )
        })?;
        let started = Instant::now();
        loop {
            // Exit first: a probe could reach another process that took the port meanwhile.
            if let Some(status) = child.try_wait()? {
                bail!(
                    "{} ({}) exited with {status} before answering on {}; {INSTALL_HINT}{}",
                    launch.name,
                    launch.program.display(),
                    launch.addr,
                    launch.log_tail()
                );
            }
            let probe = (launch.probe)(launch.addr);
            if probe.is_ok() {
                self.child = Some(child);
                return Ok(());
            }
            if started.elapsed() > STARTUP_DEADLINE {
                stop(&mut child);
                bail!(
                    "{} did not answer on {} within {STARTUP_DEADLINE:?} (last probe: {}){}",
                    launch.name,
                    launch.addr,
                    probe
                        .err()
                        .map(|error| error.to_string())
                        .unwrap_or_default(),
                    launch.log_tail()
                );
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Kills the component (SIGKILL, like a crash) and reaps it; nothing when already stopped.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child);
        }
    }

    pub fn log_tail(&self) -> String {
        self.launch.log_tail()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

fn stop(child: &mut Child) {
    // Errors mean it is already gone, which is the goal.
    let _ = child.kill();
    let _ = child.wait();
}

fn lost_port(error: &anyhow::Error) -> bool {
    let message = format!("{error:#}").to_lowercase();
    message.contains("address already in use") || message.contains("errno 98")
}

/// Makes the kernel kill the child when the test process dies, however it dies.
///
/// PR_SET_PDEATHSIG fires when the *thread* that forked the child ends, so children are forked
/// by [`spawn`]'s thread, which lives as long as the process.
fn die_with_test_process(command: &mut Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs between fork and exec and only calls async-signal-safe functions
    // (prctl, getppid) without allocating.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) == -1 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl: then no signal would ever come.
            if libc::getppid() as u32 != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `command` from the process-lifetime spawner thread (see [`die_with_test_process`]).
fn spawn(command: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (requests, incoming) = mpsc::channel::<SpawnRequest>();
        thread::Builder::new()
            .name("testbed-spawner".into())
            .spawn(move || {
                for (mut command, reply) in incoming {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("starting the testbed spawner thread");
        requests
    });
    let (reply, answer) = mpsc::channel();
    spawner
        .send((command, reply))
        .map_err(|_| io::Error::other("testbed spawner thread is gone"))?;
    answer
        .recv()
        .map_err(|_| io::Error::other("testbed spawner thread is gone"))?
}
