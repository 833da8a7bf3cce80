//! Where the component binaries are: the variables of `scripts/testbed/env.sh` first, then the
//! install script's default location, then `PATH`.

use std::env;
use std::path::PathBuf;

use anyhow::{anyhow, ensure};

pub(crate) const INSTALL_HINT: &str = "install the test components with \
    `bash scripts/testbed/install.sh` (`bash scripts/test` runs it before the tests)";

pub(crate) fn tansu() -> anyhow::Result<PathBuf> {
    let cache = env::var_os("ENROLLSTREAM_CACHE")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/enrollstream"))
        });
    let default = cache.map(|cache| cache.join("tansu-0.6.0-libsql/bin/tansu"));
    resolve(
        "tansu (Kafka-protocol broker)",
        "ENROLLSTREAM_TANSU_BIN",
        default,
        "tansu",
    )
}

pub(crate) fn nx27017() -> anyhow::Result<PathBuf> {
    resolve(
        "nx-27017 (MongoDB-protocol server)",
        "ENROLLSTREAM_NX27017_BIN",
        None,
        "nx-27017",
    )
}

/// The python that has aiosmtpd installed.
pub(crate) fn python() -> anyhow::Result<PathBuf> {
    resolve(
        "python3 (with aiosmtpd)",
        "ENROLLSTREAM_PYTHON",
        None,
        "python3",
    )
}

fn resolve(
    what: &str,
    variable: &str,
    default: Option<PathBuf>,
    on_path: &str,
) -> anyhow::Result<PathBuf> {
    if let Some(path) = env::var_os(variable).filter(|path| !path.is_empty()) {
        let path = PathBuf::from(path);
        ensure!(
            path.is_file(),
            "{what}: {variable}={} does not exist; {INSTALL_HINT}",
            path.display()
        );
        return Ok(path);
    }
    if let Some(path) = default.as_ref().filter(|path| path.is_file()) {
        return Ok(path.clone());
    }
    which::which(on_path).map_err(|_| {
        let default = default
            .map(|path| format!(", {} does not exist", path.display()))
            .unwrap_or_default();
        anyhow!("{what} not found: {variable} is not set{default} and `{on_path}` is not on PATH; {INSTALL_HINT}")
    })
}
