//! librdkafka errors as bus errors: what a retry can fix is `Unavailable`, what it cannot is
//! `Fatal`, and a group that moved on is `Fenced`.

use enrollstream_ports::BusError;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

pub(crate) fn classify(error: &KafkaError) -> BusError {
    let text = error.to_string();
    match error {
        KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_) | KafkaError::Nul(_) => {
            BusError::Fatal(text)
        }
        KafkaError::Canceled => BusError::Unavailable(text),
        _ => match error.rdkafka_error_code() {
            Some(code) if is_fenced(code) => BusError::Fenced(text),
            Some(code) if is_fatal(code) => BusError::Fatal(text),
            _ => BusError::Unavailable(text),
        },
    }
}

/// The group generation moved on: the member's partitions may belong to someone else now.
pub(crate) fn is_fenced(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        code,
        IllegalGeneration
            | UnknownMemberId
            | RebalanceInProgress
            | FencedInstanceId
            | FencedMemberEpoch
            | StaleMemberEpoch
            | AssignmentLost
            | Fenced
    )
}

/// Consumer reports meaning no message can arrive for now: no broker answers, or a subscribed
/// topic does not exist.
pub(crate) fn means_unavailable(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        code,
        AllBrokersDown | UnknownTopicOrPartition | UnknownTopic
    )
}

/// Configuration, authorisation or message errors that no retry can fix.
fn is_fatal(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        code,
        Fatal
            | InvalidArgument
            | MessageSizeTooLarge
            | InvalidMessageSize
            | InvalidMessage
            | InvalidRecord
            | MessageBatchTooLarge
            | InvalidTopic
            | InvalidRequiredAcks
            | InvalidConfig
            | InvalidPartitions
            | InvalidReplicationFactor
            | PolicyViolation
            | UnsupportedVersion
            | UnsupportedCompressionType
            | UnsupportedSASLMechanism
            | Authentication
            | SaslAuthenticationFailed
            | TopicAuthorizationFailed
            | GroupAuthorizationFailed
            | ClusterAuthorizationFailed
            | InvalidGroupId
            | InvalidSessionTimeout
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_what_a_retry_can_fix() {
        let produce = |c| KafkaError::MessageProduction(c);
        assert!(matches!(
            classify(&produce(RDKafkaErrorCode::MessageTimedOut)),
            BusError::Unavailable(_)
        ));
        assert!(matches!(
            classify(&produce(RDKafkaErrorCode::MessageSizeTooLarge)),
            BusError::Fatal(_)
        ));
        assert!(matches!(
            classify(&KafkaError::ConsumerCommit(
                RDKafkaErrorCode::IllegalGeneration
            )),
            BusError::Fenced(_)
        ));
        assert!(matches!(
            classify(&KafkaError::ClientCreation("bad".into())),
            BusError::Fatal(_)
        ));
    }
}
