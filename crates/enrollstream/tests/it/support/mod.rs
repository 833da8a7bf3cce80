//! Starts the real `enrollstream` binary on a free port with its own data directory and drives it
//! over HTTP, zero2prod style. Every wait is a condition polled against a deadline.

pub mod load;

use enrollstream_ports::{EventBus, InboundMessage, StartFrom, SubscriptionSpec};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct TestApp {
    child: Option<Child>,
    pub base_url: String,
    pub data_dir: PathBuf,
    /// Sends `key` (an `admin` key made by `enrollstream api-key create`) with every request.
    pub client: reqwest::Client,
    pub key: String,
}

/// The flags of `extra_args` that every command takes (where the data and the engines are).
fn global_args<'a>(extra_args: &[&'a str]) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut args = extra_args.iter();
    while let Some(arg) = args.next() {
        if ["--config", "--kafka-brokers", "--mongodb-uri"].contains(arg) {
            out.push(*arg);
            out.extend(args.next().copied());
        }
    }
    out
}

/// A config file `enrollstream.toml` in `dir` holding `text`; its path.
pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("enrollstream.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A config file in `dir` that delivers to the Logic Apps trigger at `trigger_url`, unsigned.
pub fn logic_apps_config(dir: &Path, trigger_url: &str) -> PathBuf {
    write_config(
        dir,
        &format!("[deliveries.logic_apps.target]\nurl = \"{trigger_url}\"\n"),
    )
}

/// Run `enrollstream api-key create` as an operator would, and return what it printed on
/// stdout: the key alone.
pub fn create_key(data_dir: &Path, extra_args: &[&str], name: &str, scopes: &[&str]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_enrollstream"));
    command
        .args(["api-key", "create", "--name", name, "--data-dir"])
        .arg(data_dir)
        .args(global_args(extra_args));
    for scope in scopes {
        command.args(["--scope", scope]);
    }
    let output = command.output().expect("enrollstream api-key create runs");
    assert!(
        output.status.success(),
        "api-key create failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    let key = stdout.trim_end_matches('\n');
    assert!(
        key.starts_with("es_") && !key.contains('\n'),
        "stdout holds the key and nothing else: {stdout:?}"
    );
    key.to_string()
}

/// Run `enrollstream api-key ARGS…` on `data_dir`; its exit status and stdout.
pub fn api_key(data_dir: &Path, args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_enrollstream"))
        .arg("api-key")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("enrollstream api-key runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// A client that sends `key` as `Authorization: Bearer` with every request.
pub fn client_with_key(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {key}")
            .parse()
            .expect("a key is a header value"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

impl TestApp {
    /// Start `enrollstream serve` with all roles on `data_dir`, after creating an `admin` key
    /// for it; panics with the process output if it does not come up.
    pub fn spawn(data_dir: &Path, extra_args: &[&str]) -> Self {
        let name = format!("test-admin-{}", uuid::Uuid::new_v4().simple());
        let key = create_key(data_dir, extra_args, &name, &["admin"]);
        // These tests drive load through one key to test the pipeline; the limits have tests
        // of their own (tests/it/limits.rs), which set the rate they test.
        Self::spawn_with(
            data_dir,
            extra_args,
            key,
            &[("ENROLLSTREAM_API__LIMITS__RATE_PER_SECOND", "0")],
        )
    }

    /// As [`TestApp::spawn`], with the process's log written to `log` at `filter`: for tests
    /// that print what the processes said when they fail.
    pub fn spawn_to_log(data_dir: &Path, extra_args: &[&str], log: &Path, filter: &str) -> Self {
        let name = format!("test-admin-{}", uuid::Uuid::new_v4().simple());
        let key = create_key(data_dir, extra_args, &name, &["admin"]);
        Self::spawn_logged(
            data_dir,
            extra_args,
            key,
            &[
                ("ENROLLSTREAM_API__LIMITS__RATE_PER_SECOND", "0"),
                ("RUST_LOG", filter),
            ],
            log,
        )
    }

    /// Start `enrollstream serve` with `envs`, whose `client` sends `key`.
    pub fn spawn_with(
        data_dir: &Path,
        extra_args: &[&str],
        key: String,
        envs: &[(&str, &str)],
    ) -> Self {
        Self::start(data_dir, extra_args, key, envs, Stdio::inherit())
    }

    /// The same, with the process's log (stderr) written to `log`.
    pub fn spawn_logged(
        data_dir: &Path,
        extra_args: &[&str],
        key: String,
        envs: &[(&str, &str)],
        log: &Path,
    ) -> Self {
        let file = std::fs::File::create(log).expect("log file");
        Self::start(data_dir, extra_args, key, envs, Stdio::from(file))
    }

    fn start(
        data_dir: &Path,
        extra_args: &[&str],
        key: String,
        envs: &[(&str, &str)],
        stderr: Stdio,
    ) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_enrollstream"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra_args)
            .env("RUST_LOG", "warn")
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("the enrollstream binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("enrollstream listening on ") {
                    let _ = tx.send(url.to_string());
                }
            }
        });
        let base_url = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(_) => {
                let status = child.try_wait().ok().flatten();
                let _ = child.kill();
                panic!("enrollstream did not report its address within 60 s (exit status: {status:?}); see stderr above");
            }
        };
        Self {
            child: Some(child),
            base_url,
            data_dir: data_dir.to_path_buf(),
            client: client_with_key(&key),
            key,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("request reaches the API")
    }

    /// One upstream CloudEvent (structured mode) to `/v1/events`.
    pub async fn post_cloudevent(&self, event: &serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url("/v1/events"))
            .header("content-type", "application/cloudevents+json")
            .json(event)
            .send()
            .await
            .expect("request reaches the API")
    }

    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("request reaches the API");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// The text of `/metrics`, or `None` while the process does not answer.
    pub async fn scrape_metrics(&self) -> Option<String> {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()
    }

    /// SIGKILL: no shutdown code runs, like a power cut of the process.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL delivered");
            child.wait().expect("killed process reaped");
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id() as i32;
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe {
                libc_kill(pid, 15);
            }
            let deadline = Instant::now() + Duration::from_secs(40);
            loop {
                if let Some(status) = child.try_wait().expect("wait works") {
                    assert!(
                        status.success(),
                        "enrollstream exited with {status} after SIGTERM"
                    );
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "enrollstream did not stop within 40 s of SIGTERM"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// Poll `check` until it returns Some or the deadline passes.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Everything on `topics` from the beginning, read with a fresh group until the topics are quiet.
pub async fn read_all(bus: &dyn EventBus, topics: &[&str]) -> Vec<InboundMessage> {
    let mut spec = SubscriptionSpec::new(format!("test-reader-{}", uuid::Uuid::new_v4()), topics);
    spec.start = StartFrom::Earliest;
    let mut sub = bus.subscribe(spec).await.expect("subscribe");
    let mut all = Vec::new();
    loop {
        let batch = sub
            .poll(1000, Duration::from_millis(500))
            .await
            .expect("poll");
        if batch.is_empty() {
            break;
        }
        all.extend(batch);
    }
    sub.close().await.expect("close");
    all
}

/// Read `topics` from the beginning until `done` holds for everything read so far, or panic at
/// the deadline. For brokers where an empty poll does not yet mean "the end".
pub async fn read_until(
    bus: &dyn EventBus,
    topics: &[&str],
    timeout: Duration,
    mut done: impl FnMut(&[InboundMessage]) -> bool,
) -> Vec<InboundMessage> {
    let mut spec = SubscriptionSpec::new(format!("test-reader-{}", uuid::Uuid::new_v4()), topics);
    spec.start = StartFrom::Earliest;
    let mut sub = bus.subscribe(spec).await.expect("subscribe");
    let deadline = Instant::now() + timeout;
    let mut all = Vec::new();
    while !done(&all) {
        assert!(
            Instant::now() < deadline,
            "read {} message(s) from {topics:?} in {timeout:?}, still not done",
            all.len()
        );
        all.extend(
            sub.poll(1000, Duration::from_millis(500))
                .await
                .expect("poll"),
        );
    }
    sub.close().await.expect("close");
    all
}

/// Poll `remaining` until it reaches zero; an error when it has not gone down for `stall`. A
/// bound on progress, not on the total: on a busy machine a backlog drains slowly but steadily,
/// and a stuck one (the defect these waits look for) stops moving.
pub async fn drained<F, Fut>(what: &str, stall: Duration, mut remaining: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<u64>>,
{
    let mut best = u64::MAX;
    let mut moved_at = Instant::now();
    loop {
        match remaining().await {
            Some(0) => return Ok(()),
            Some(left) if left < best => {
                best = left;
                moved_at = Instant::now();
            }
            _ => {}
        }
        if moved_at.elapsed() >= stall {
            return Err(format!("{what}: no progress for {stall:?}, {best} left"));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
