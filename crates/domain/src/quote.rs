//! The state of a quote as a fold over its events.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::events::QuoteEvent;
use crate::money::Money;
use crate::validation::TransitionError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum QuoteStatus {
    /// Asked for, not priced yet.
    Requested,
    /// Priced.
    Quoted,
}

impl QuoteStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "REQUESTED",
            Self::Quoted => "QUOTED",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Quote {
    pub quote_id: String,
    pub status: QuoteStatus,
    pub customer_id: String,
    pub product: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub premium: Option<Money>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Quote {
    pub fn apply(
        current: Option<&Quote>,
        event: &QuoteEvent,
        at: DateTime<Utc>,
    ) -> Result<Quote, TransitionError> {
        let reject = |from: &str, ty: &str, reason: &str| TransitionError {
            entity: "quote",
            from: from.to_string(),
            event_type: ty.to_string(),
            reason: reason.to_string(),
        };
        match (current, event) {
            (None, QuoteEvent::Requested(e)) => Ok(Quote {
                quote_id: e.quote_id.clone(),
                status: QuoteStatus::Requested,
                customer_id: e.customer_id.clone(),
                product: e.product.clone(),
                premium: None,
                created_at: at,
                updated_at: at,
            }),
            (None, QuoteEvent::Created(e)) => Ok(Quote {
                quote_id: e.quote_id.clone(),
                status: QuoteStatus::Quoted,
                customer_id: e.customer_id.clone(),
                product: e.product.clone(),
                premium: Some(e.premium.clone()),
                created_at: at,
                updated_at: at,
            }),
            (None, QuoteEvent::Updated(_)) => Err(reject(
                "unknown",
                "QuoteUpdated",
                "the quote does not exist",
            )),
            (Some(q), QuoteEvent::Requested(_)) => Err(reject(
                q.status.as_str(),
                "QuoteRequested",
                "the quote already exists",
            )),
            (Some(q), QuoteEvent::Created(e)) => {
                if q.status != QuoteStatus::Requested {
                    return Err(reject(
                        q.status.as_str(),
                        "QuoteCreated",
                        "the quote is already priced",
                    ));
                }
                if q.customer_id != e.customer_id {
                    return Err(reject(
                        q.status.as_str(),
                        "QuoteCreated",
                        "customer_id differs from the request",
                    ));
                }
                let mut next = q.clone();
                next.status = QuoteStatus::Quoted;
                next.product = e.product.clone();
                next.premium = Some(e.premium.clone());
                next.updated_at = at;
                Ok(next)
            }
            (Some(q), QuoteEvent::Updated(e)) => {
                if q.status != QuoteStatus::Quoted && e.premium.is_none() {
                    return Err(reject(
                        q.status.as_str(),
                        "QuoteUpdated",
                        "a requested quote needs a premium",
                    ));
                }
                let mut next = q.clone();
                if let Some(p) = &e.premium {
                    next.premium = Some(p.clone());
                    next.status = QuoteStatus::Quoted;
                }
                if let Some(p) = &e.product {
                    next.product = p.clone();
                }
                next.updated_at = at;
                Ok(next)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::*;

    fn t() -> DateTime<Utc> {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn request_then_price_then_update() {
        let q = Quote::apply(
            None,
            &QuoteEvent::Requested(QuoteRequested {
                quote_id: "Q".into(),
                customer_id: "C".into(),
                product: "p".into(),
            }),
            t(),
        )
        .unwrap();
        assert_eq!(q.status, QuoteStatus::Requested);
        let q = Quote::apply(
            Some(&q),
            &QuoteEvent::Created(QuoteCreated {
                quote_id: "Q".into(),
                customer_id: "C".into(),
                product: "p".into(),
                premium: Money::new(5000, "USD"),
            }),
            t(),
        )
        .unwrap();
        assert_eq!(q.status, QuoteStatus::Quoted);
        let q = Quote::apply(
            Some(&q),
            &QuoteEvent::Updated(QuoteUpdated {
                quote_id: "Q".into(),
                premium: Some(Money::new(4500, "USD")),
                product: None,
            }),
            t(),
        )
        .unwrap();
        assert_eq!(q.premium.unwrap().amount_minor, 4500);
    }

    #[test]
    fn update_of_unknown_quote_is_rejected() {
        let err = Quote::apply(
            None,
            &QuoteEvent::Updated(QuoteUpdated {
                quote_id: "Q".into(),
                premium: None,
                product: Some("x".into()),
            }),
            t(),
        )
        .unwrap_err();
        assert_eq!(err.from, "unknown");
    }
}
