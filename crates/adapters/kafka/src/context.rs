//! librdkafka's log lines and global errors go to `tracing`, like the rest of enrollstream.

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;

/// The context of the producer, the admin client and the throughput consumer: logging only.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Logging;

pub(crate) fn log(level: RDKafkaLogLevel, facility: &str, line: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", facility, "{line}"),
        RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, "{line}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", facility, "{line}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{line}"),
    }
}

/// Global errors are mostly transient (a broker went away and the client reconnects by itself),
/// so they are warnings; the operation that cannot complete reports its own error.
pub(crate) fn error(error: &KafkaError, reason: &str) {
    tracing::warn!(target: "librdkafka", %error, "{reason}");
}

impl ClientContext for Logging {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, line: &str) {
        log(level, facility, line);
    }

    fn error(&self, e: KafkaError, reason: &str) {
        error(&e, reason);
    }
}

/// For consumers that assign partitions themselves and so never rebalance.
impl ConsumerContext for Logging {}
