//! Real components for tests, each started as a child process on a free port of 127.0.0.1 with
//! its own scratch directory:
//!
//! - [`Kafka`]: Apache Kafka 4.1 in KRaft mode (broker and controller in one JVM).
//! - [`Mongo`]: FerretDB 1.24 (MongoDB wire protocol) on its SQLite backend, or with
//!   `ENROLLSTREAM_FERRETDB_BACKEND=postgresql` on a PostgreSQL cluster of its own.
//! - [`Smtp`]: the aiosmtpd SMTP server, storing every mail in a maildir.
//!
//! Every instance is fresh, answers on its socket before `start` returns, and dies with its
//! handle or, when a test crashes, with the test process. A component that cannot start is an
//! error naming the reason (binary missing, log tail), never a skipped test.
//! `bash scripts/testbed/install.sh` installs the components; `scripts/testbed/env.sh` exports
//! `ENROLLSTREAM_KAFKA_HOME`, `ENROLLSTREAM_JAVA`, `ENROLLSTREAM_FERRETDB_BIN` and
//! `ENROLLSTREAM_PYTHON`, which win over the default cache paths and `PATH`
//! (`ENROLLSTREAM_POSTGRESQL_BINDIR` too, for `ENROLLSTREAM_FERRETDB_BACKEND=postgresql`).
//!
//! The helpers block while a component starts or stops (a few seconds for Kafka's JVM, well
//! under a second for the others), so they can be called from sync and async tests alike.
//!
//! ```no_run
//! use std::time::Duration;
//! use enrollstream_testkit::testbed::{Kafka, Mongo, Smtp};
//!
//! # async fn example() -> anyhow::Result<()> {
//! let mut kafka = Kafka::start()?; // bootstrap(): "127.0.0.1:PORT"
//! let mut mongo = Mongo::start()?; // uri(): "mongodb://127.0.0.1:PORT"
//! let smtp = Smtp::start()?; // port(), maildir()
//! // ... point the code under test at them, then make things go wrong:
//! kafka.restart()?; // a broker crash: same port, same data
//! mongo.pause(); // MongoDB away until resume()
//! mongo.resume()?;
//! let mails = smtp.wait_for_messages(1, Duration::from_secs(10)).await?;
//! assert_eq!(mails[0].subject(), Some("Signature pending"));
//! # Ok(())
//! # }
//! ```

mod binaries;
mod kafka;
mod mail;
mod mongo;
mod port;
mod postgres;
mod process;
mod scratch;
mod smtp;

pub use kafka::{ApiVersionRange, Kafka};
pub use mail::ReceivedMail;
pub use mongo::Mongo;
pub use port::free_port;
pub use smtp::Smtp;
