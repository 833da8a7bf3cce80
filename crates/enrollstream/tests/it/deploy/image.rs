//! deploy/Dockerfile: stages, what the runtime image holds, who it runs as, how it is probed.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;

use super::dockerfile::{self, exec_form, Stage};
use super::source;
use crate::support::TestApp;

pub const DOCKERFILE: &str = "deploy/Dockerfile";

pub fn stages() -> Vec<Stage> {
    let stages = dockerfile::parse(&source::read(DOCKERFILE));
    assert!(
        stages.len() >= 2,
        "{DOCKERFILE}: a multi-stage build expected, found {} stage(s)",
        stages.len()
    );
    stages
}

/// The environment the image gives every container (`ENV` of the final stage).
pub fn image_env() -> super::Env {
    stages().last().expect("a final stage").env()
}

/// The healthcheck's bash script.
pub fn probe_script() -> String {
    let stages = stages();
    let runtime = stages.last().expect("a final stage");
    let check = runtime
        .all("HEALTHCHECK")
        .next()
        .unwrap_or_else(|| panic!("{DOCKERFILE}: the runtime stage has no HEALTHCHECK"));
    let command = exec_form(&check.args, Some("CMD"));
    assert_eq!(
        command[..2],
        ["bash", "-c"],
        "{DOCKERFILE}: HEALTHCHECK runs `bash -c SCRIPT`"
    );
    command[2].clone()
}

#[test]
fn the_image_is_built_in_stages_and_runs_the_binary_alone_as_a_non_root_user() {
    let stages = stages();
    let runtime = stages.last().unwrap();
    let build = stages
        .iter()
        .find(|s| s.from.starts_with("rust:"))
        .unwrap_or_else(|| panic!("{DOCKERFILE}: no stage builds FROM the rust image"));
    let build_name = build
        .name
        .as_deref()
        .expect("the build stage is named (FROM … AS build)");
    let runs: Vec<&str> = build.all("RUN").map(|i| i.args.as_str()).collect();
    assert!(
        runs.iter().any(|r| r.contains("bash scripts/install-build-deps.sh")),
        "{DOCKERFILE}: the build stage installs the packages of scripts/install-build-deps.sh: {runs:?}"
    );
    assert!(
        runs.iter()
            .any(|r| r.contains("cargo build --release --locked") && r.contains("-p enrollstream")),
        "{DOCKERFILE}: the build stage builds the locked release binary: {runs:?}"
    );

    assert!(
        runtime.from.starts_with("debian:") && runtime.from.ends_with("-slim")
            || runtime.from.starts_with("gcr.io/distroless/"),
        "{DOCKERFILE}: the runtime stage is Debian slim or distroless, not {}",
        runtime.from
    );
    let copies: Vec<&str> = runtime
        .all("COPY")
        .chain(runtime.all("ADD"))
        .map(|i| i.args.as_str())
        .collect();
    assert_eq!(
        copies,
        [format!(
            "--from={build_name} /out/enrollstream /usr/local/bin/enrollstream"
        )],
        "{DOCKERFILE}: the runtime stage takes the binary from the build and nothing else"
    );
    let entrypoint = runtime.all("ENTRYPOINT").last().expect("an ENTRYPOINT");
    assert_eq!(exec_form(&entrypoint.args, None), ["enrollstream", "serve"]);

    let user = runtime
        .all("USER")
        .last()
        .expect("the runtime stage sets USER");
    let uid = user.args.split(':').next().unwrap();
    assert!(
        uid != "root" && uid != "0" && !uid.is_empty(),
        "{DOCKERFILE}: the image runs as a non-root user, not {}",
        user.args
    );
    assert!(
        uid.parse::<u32>().is_ok(),
        "USER is numeric ({uid}), so that Kubernetes' runAsNonRoot can verify it"
    );

    let env = runtime.env();
    let data_dir = env
        .get("ENROLLSTREAM_DATA_DIR")
        .expect("ENV ENROLLSTREAM_DATA_DIR");
    let volumes: Vec<String> = runtime
        .all("VOLUME")
        .flat_map(|v| exec_form(&v.args, None))
        .collect();
    assert!(
        volumes.contains(data_dir),
        "{DOCKERFILE}: the data dir {data_dir} is a VOLUME ({volumes:?})"
    );
    let listen = env
        .get("ENROLLSTREAM_LISTEN")
        .expect("ENV ENROLLSTREAM_LISTEN");
    assert!(
        listen.starts_with("0.0.0.0:"),
        "the container listens on every interface, not {listen}"
    );
    let port = listen.rsplit(':').next().unwrap();
    assert!(
        runtime.all("EXPOSE").any(|e| e
            .args
            .split_whitespace()
            .any(|p| p.trim_end_matches("/tcp") == port)),
        "{DOCKERFILE}: EXPOSE {port}, the port of ENROLLSTREAM_LISTEN"
    );
    let script = probe_script();
    assert!(
        script.contains("/healthz") && script.contains("/readyz"),
        "the healthcheck asks /healthz and /readyz: {script}"
    );

    let ignore = source::read("deploy/Dockerfile.dockerignore");
    assert!(
        ignore
            .lines()
            .any(|l| l.trim() == "**" || l.trim() == "target" || l.trim() == "**/target"),
        "deploy/Dockerfile.dockerignore keeps target/ out of the build context"
    );
}

/// The soname prefixes of the libraries the binary may link, and the Debian package of each;
/// `None` = in every Debian slim image already.
const LIBRARY_PACKAGES: [(&str, Option<&str>); 12] = [
    ("linux-vdso.so", None),
    ("ld-linux", None),
    ("libc.so", None),
    ("libm.so", None),
    ("libdl.so", None),
    ("libpthread.so", None),
    ("librt.so", None),
    ("libgcc_s.so", None),
    ("libz.so", None),
    ("libstdc++.so", None),
    ("libssl.so.3", Some("libssl3")),
    ("libsasl2.so.2", Some("libsasl2-2")),
];

#[test]
fn the_runtime_image_installs_every_library_the_binary_links() {
    let output = Command::new("ldd")
        .arg(env!("CARGO_BIN_EXE_enrollstream"))
        .output()
        .expect("ldd (Debian's libc-bin) runs");
    assert!(
        output.status.success(),
        "ldd failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stages = stages();
    let runtime = stages.last().unwrap();
    let installs: String = runtime
        .all("RUN")
        .map(|r| r.args.clone())
        .collect::<Vec<_>>()
        .join(" ");
    let installed: BTreeSet<&str> = installs.split_whitespace().collect();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let library = line.split_whitespace().next().unwrap_or_default();
        let library = library.rsplit('/').next().unwrap();
        let library = if library == "libcrypto.so.3" {
            "libssl.so.3"
        } else {
            library
        };
        let package = LIBRARY_PACKAGES
            .iter()
            .find(|(prefix, _)| library.starts_with(prefix))
            .unwrap_or_else(|| {
                panic!("the binary links {library}, unknown here: install its package in the runtime stage of {DOCKERFILE} and name it in LIBRARY_PACKAGES")
            })
            .1;
        if let Some(package) = package {
            assert!(
                installed.contains(package),
                "the binary links {library}: the runtime stage of {DOCKERFILE} must install {package}"
            );
        }
    }
    assert!(
        installed.contains("ca-certificates"),
        "the runtime stage installs ca-certificates"
    );
}

/// A server that answers every request with 503, like a process that is alive and not ready.
fn not_ready_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().map_while(Result::ok) {
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ =
                stream.write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n");
        }
    });
    port
}

fn probe(script: &str, port: u16) -> bool {
    Command::new("bash")
        .args(["-c", script])
        .env_clear()
        .env("ENROLLSTREAM_LISTEN", format!("0.0.0.0:{port}"))
        .output()
        .expect("bash runs")
        .status
        .success()
}

#[test]
fn the_healthcheck_passes_on_a_ready_binary_and_fails_on_a_not_ready_or_absent_one() {
    let script = probe_script();
    let data = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(data.path(), &[]);
    let port: u16 = app.base_url.rsplit(':').next().unwrap().parse().unwrap();
    assert!(
        probe(&script, port),
        "the healthcheck fails on a ready enrollstream on port {port}"
    );
    drop(app);
    assert!(
        !probe(&script, port),
        "the healthcheck passes with nothing listening on {port}"
    );
    assert!(
        !probe(&script, not_ready_server()),
        "the healthcheck passes on a 503 from /readyz"
    );
}
