//! Where the components are: the variables of `scripts/testbed/env.sh` first, then the install
//! script's default location, then `PATH`.

use std::env;
use std::path::PathBuf;

use anyhow::{anyhow, ensure};

pub(crate) const INSTALL_HINT: &str = "install the test components with \
    `bash scripts/testbed/install.sh` (`bash scripts/test` runs it before the tests)";

/// Versions that `scripts/testbed/install.sh` installs, and so the default cache paths.
const KAFKA_VERSION: &str = "4.1.1";
const FERRETDB_VERSION: &str = "1.24.2";

fn cache() -> Option<PathBuf> {
    env::var_os("ENROLLSTREAM_CACHE")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/enrollstream")))
}

/// An installed Apache Kafka: its jars, its log configuration and a formatted storage template.
pub(crate) struct KafkaHome {
    pub java: PathBuf,
    pub lib: PathBuf,
    pub log4j: PathBuf,
    pub logdir_template: PathBuf,
    /// Class data sharing archive of a broker start, written by the install; absent in an
    /// install from before it, which then starts without one.
    pub class_archive: PathBuf,
}

pub(crate) fn kafka() -> anyhow::Result<KafkaHome> {
    let home = match env::var_os("ENROLLSTREAM_KAFKA_HOME").filter(|path| !path.is_empty()) {
        Some(home) => PathBuf::from(home),
        None => cache()
            .map(|cache| cache.join(format!("kafka-{KAFKA_VERSION}")))
            .ok_or_else(|| {
                anyhow!(
                    "Apache Kafka: neither ENROLLSTREAM_KAFKA_HOME nor HOME is set; {INSTALL_HINT}"
                )
            })?,
    };
    ensure!(
        home.join(".complete").is_file(),
        "Apache Kafka {KAFKA_VERSION} is not installed in {} (no .complete marker); {INSTALL_HINT}",
        home.display()
    );
    Ok(KafkaHome {
        java: resolve("java (17 or newer)", "ENROLLSTREAM_JAVA", None, "java")?,
        lib: home.join("lib"),
        log4j: home.join("log4j2.properties"),
        logdir_template: home.join("logdir-template"),
        class_archive: home.join("kafka.jsa"),
    })
}

pub(crate) fn ferretdb() -> anyhow::Result<PathBuf> {
    let default =
        cache().map(|cache| cache.join(format!("ferretdb-{FERRETDB_VERSION}/bin/ferretdb")));
    resolve(
        "FerretDB (MongoDB wire protocol)",
        "ENROLLSTREAM_FERRETDB_BIN",
        default,
        "ferretdb",
    )
}

/// Where FerretDB stores its collections in the test bed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FerretBackend {
    /// The default: SQLite files in the server's own directory.
    Sqlite,
    /// Opt-in (`ENROLLSTREAM_FERRETDB_BACKEND=postgresql`): a PostgreSQL cluster of its own,
    /// copied from the install's template (docs/testbed.md, "FerretDB on PostgreSQL").
    Postgresql,
}

pub(crate) const BACKEND_VARIABLE: &str = "ENROLLSTREAM_FERRETDB_BACKEND";

pub(crate) fn ferretdb_backend() -> anyhow::Result<FerretBackend> {
    match env::var(BACKEND_VARIABLE).as_deref() {
        Err(env::VarError::NotPresent) | Ok("") | Ok("sqlite") => Ok(FerretBackend::Sqlite),
        Ok("postgresql") => Ok(FerretBackend::Postgresql),
        Ok(other) => Err(anyhow!(
            "{BACKEND_VARIABLE}={other:?}: expected `sqlite` (the default) or `postgresql`"
        )),
        Err(env::VarError::NotUnicode(_)) => Err(anyhow!(
            "{BACKEND_VARIABLE} is not UTF-8; expected `sqlite` or `postgresql`"
        )),
    }
}

/// Debian's PostgreSQL programs and the install's cluster template (with FerretDB's database
/// and the index trigger in it).
pub(crate) struct PostgresHome {
    pub postgres: PathBuf,
    pub template: PathBuf,
}

pub(crate) fn postgresql() -> anyhow::Result<PostgresHome> {
    let hint = format!(
        "{BACKEND_VARIABLE}=postgresql needs PostgreSQL and its template cluster: \
         `{BACKEND_VARIABLE}=postgresql bash scripts/testbed/install.sh` installs both"
    );
    let bindir = match env::var_os("ENROLLSTREAM_POSTGRESQL_BINDIR").filter(|dir| !dir.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => newest_debian_bindir().ok_or_else(|| {
            anyhow!("PostgreSQL not found: ENROLLSTREAM_POSTGRESQL_BINDIR is not set and there is no /usr/lib/postgresql/*/bin; {hint}")
        })?,
    };
    let postgres = bindir.join("postgres");
    ensure!(
        postgres.is_file(),
        "PostgreSQL not found: {} does not exist; {hint}",
        postgres.display()
    );
    let home = cache()
        .map(|cache| cache.join("postgresql-template"))
        .ok_or_else(|| anyhow!("neither ENROLLSTREAM_CACHE nor HOME is set; {hint}"))?;
    ensure!(
        home.join(".complete").is_file(),
        "the PostgreSQL template cluster is not installed in {} (no .complete marker); {hint}",
        home.display()
    );
    Ok(PostgresHome {
        postgres,
        template: home.join("data"),
    })
}

/// Debian installs each major version in /usr/lib/postgresql/MAJOR/bin, outside PATH.
fn newest_debian_bindir() -> Option<PathBuf> {
    std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let major: u32 = entry.file_name().to_str()?.parse().ok()?;
            Some((major, entry.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("postgres").is_file())
        .max_by_key(|(major, _)| *major)
        .map(|(_, bin)| bin)
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
