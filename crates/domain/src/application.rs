//! The state of an enrollment application as a fold over its events.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::events::{Applicant, ApplicationEvent, Submitter};
use crate::validation::TransitionError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ApplicationStatus {
    Started,
    /// Submitted by the member, who signed as part of submitting.
    Submitted,
    /// Submitted by a broker; the member's signature is still missing.
    AwaitingSignature,
    Signed,
    Approved,
    Declined,
    Withdrawn,
}

impl ApplicationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "STARTED",
            Self::Submitted => "SUBMITTED",
            Self::AwaitingSignature => "AWAITING_SIGNATURE",
            Self::Signed => "SIGNED",
            Self::Approved => "APPROVED",
            Self::Declined => "DECLINED",
            Self::Withdrawn => "WITHDRAWN",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, Self::Approved | Self::Declined | Self::Withdrawn)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Signature {
    pub signed_by: String,
    pub signed_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Application {
    pub application_id: String,
    pub status: ApplicationStatus,
    pub applicant: Applicant,
    pub product: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quote_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submission: Option<Submitter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Signature>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_reason: Option<String>,
    /// Set when the broker was reminded the maximum number of times without a signature
    /// (the seeds' PENDING flag).
    #[serde(default)]
    pub signature_overdue: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Application {
    /// Fold one event onto the current state (`None` before the first event).
    pub fn apply(
        current: Option<&Application>,
        event: &ApplicationEvent,
        at: DateTime<Utc>,
    ) -> Result<Application, TransitionError> {
        use ApplicationEvent as E;
        use ApplicationStatus as S;
        let reject = |from: &str, ty: &str, reason: &str| TransitionError {
            entity: "application",
            from: from.to_string(),
            event_type: ty.to_string(),
            reason: reason.to_string(),
        };
        let Some(app) = current else {
            return match event {
                E::Started(e) => Ok(Application {
                    application_id: e.application_id.clone(),
                    status: S::Started,
                    applicant: e.applicant.clone(),
                    product: e.product.clone(),
                    quote_id: e.quote_id.clone(),
                    submission: None,
                    submitted_at: None,
                    signature: None,
                    decision_reason: None,
                    signature_overdue: false,
                    created_at: at,
                    updated_at: at,
                }),
                other => Err(reject(
                    "unknown",
                    name(other),
                    "the application has not been started",
                )),
            };
        };
        let from = app.status;
        let mut next = app.clone();
        next.updated_at = at;
        match event {
            E::Started(_) => {
                return Err(reject(
                    from.as_str(),
                    name(event),
                    "the application already exists",
                ))
            }
            E::Submitted(e) => {
                if from != S::Started {
                    return Err(reject(
                        from.as_str(),
                        name(event),
                        "only a started application can be submitted",
                    ));
                }
                next.status = match e.submitter {
                    Submitter::Broker { .. } => S::AwaitingSignature,
                    Submitter::Member => S::Submitted,
                };
                next.submission = Some(e.submitter.clone());
                next.submitted_at = Some(at);
            }
            E::SignatureReceived(e) => {
                if !matches!(from, S::AwaitingSignature | S::Submitted) {
                    return Err(reject(
                        from.as_str(),
                        name(event),
                        "a signature needs a submitted application",
                    ));
                }
                next.status = S::Signed;
                next.signature = Some(crate::application::Signature {
                    signed_by: e.signed_by.clone(),
                    signed_at: e.signed_at.unwrap_or(at),
                });
                next.signature_overdue = false;
            }
            E::Approved(_) => {
                if !matches!(from, S::Signed | S::Submitted) {
                    return Err(reject(
                        from.as_str(),
                        name(event),
                        "only a signed application can be approved",
                    ));
                }
                next.status = S::Approved;
            }
            E::Declined(e) => {
                if from.is_final() || from == S::Started {
                    return Err(reject(
                        from.as_str(),
                        name(event),
                        "only a submitted application can be declined",
                    ));
                }
                next.status = S::Declined;
                next.decision_reason = Some(e.reason.clone());
            }
            E::Withdrawn(e) => {
                if from.is_final() {
                    return Err(reject(
                        from.as_str(),
                        name(event),
                        "the application is already closed",
                    ));
                }
                next.status = S::Withdrawn;
                next.decision_reason = e.reason.clone();
            }
            E::RemindersExhausted(_) => {
                // A late announcement (the signature won the race) changes nothing: it is a
                // fact about reminders, not a reason to reject the event.
                if from == S::AwaitingSignature {
                    next.signature_overdue = true;
                }
            }
        }
        Ok(next)
    }
}

fn name(event: &ApplicationEvent) -> &'static str {
    match event {
        ApplicationEvent::Started(_) => "ApplicationStarted",
        ApplicationEvent::Submitted(_) => "ApplicationSubmitted",
        ApplicationEvent::SignatureReceived(_) => "SignatureReceived",
        ApplicationEvent::Approved(_) => "ApplicationApproved",
        ApplicationEvent::Declined(_) => "ApplicationDeclined",
        ApplicationEvent::Withdrawn(_) => "ApplicationWithdrawn",
        ApplicationEvent::RemindersExhausted(_) => "SignatureRemindersExhausted",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::*;

    fn t() -> DateTime<Utc> {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    fn started() -> ApplicationEvent {
        ApplicationEvent::Started(ApplicationStarted {
            application_id: "A".into(),
            applicant: Applicant {
                name: "Jane".into(),
                email: "j@x.io".into(),
            },
            product: "dental".into(),
            quote_id: None,
        })
    }

    fn by_broker() -> ApplicationEvent {
        ApplicationEvent::Submitted(ApplicationSubmitted {
            application_id: "A".into(),
            submitter: Submitter::Broker {
                broker: Broker {
                    id: "B".into(),
                    name: "Acme".into(),
                    email: "a@acme.test".into(),
                },
            },
        })
    }

    fn signed() -> ApplicationEvent {
        ApplicationEvent::SignatureReceived(SignatureReceived {
            application_id: "A".into(),
            signed_by: "Jane".into(),
            signed_at: None,
        })
    }

    fn fold(events: &[ApplicationEvent]) -> Result<Application, TransitionError> {
        let mut state: Option<Application> = None;
        for e in events {
            state = Some(Application::apply(state.as_ref(), e, t())?);
        }
        Ok(state.unwrap())
    }

    #[test]
    fn broker_flow_reaches_signed() {
        let app = fold(&[started(), by_broker()]).unwrap();
        assert_eq!(app.status, ApplicationStatus::AwaitingSignature);
        let app = fold(&[started(), by_broker(), signed()]).unwrap();
        assert_eq!(app.status, ApplicationStatus::Signed);
        assert_eq!(app.signature.unwrap().signed_by, "Jane");
    }

    #[test]
    fn member_submission_is_submitted() {
        let member = ApplicationEvent::Submitted(ApplicationSubmitted {
            application_id: "A".into(),
            submitter: Submitter::Member,
        });
        assert_eq!(
            fold(&[started(), member]).unwrap().status,
            ApplicationStatus::Submitted
        );
    }

    #[test]
    fn invalid_transitions_are_rejected_with_a_reason() {
        let err = fold(&[signed()]).unwrap_err();
        assert_eq!(err.from, "unknown");
        let err = fold(&[started(), signed()]).unwrap_err();
        assert_eq!(err.from, "STARTED");
        assert!(err.reason.contains("submitted"));
        let err = fold(&[started(), by_broker(), by_broker()]).unwrap_err();
        assert_eq!(err.from, "AWAITING_SIGNATURE");
        let withdrawn = ApplicationEvent::Withdrawn(ApplicationWithdrawn {
            application_id: "A".into(),
            reason: None,
        });
        let err = fold(&[started(), withdrawn.clone(), signed()]).unwrap_err();
        assert_eq!(err.from, "WITHDRAWN");
        assert!(fold(&[started(), withdrawn.clone(), withdrawn]).is_err());
    }

    #[test]
    fn exhaustion_flags_only_while_awaiting() {
        let ex = ApplicationEvent::RemindersExhausted(SignatureRemindersExhausted {
            application_id: "A".into(),
            attempts: 5,
            broker_email: "a@acme.test".into(),
        });
        assert!(
            fold(&[started(), by_broker(), ex.clone()])
                .unwrap()
                .signature_overdue
        );
        let app = fold(&[started(), by_broker(), signed(), ex]).unwrap();
        assert!(!app.signature_overdue);
        assert_eq!(app.status, ApplicationStatus::Signed);
    }
}
