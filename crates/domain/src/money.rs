//! Money as integer minor units plus an ISO 4217 currency code: no floating point, no Decimal128
//! (which some MongoDB-protocol servers reject).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validation::FieldError;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Money {
    /// Amount in the currency's minor unit (cents for USD). Never negative.
    pub amount_minor: i64,
    /// ISO 4217 alphabetic code, three upper-case letters.
    pub currency: String,
}

impl Money {
    pub fn new(amount_minor: i64, currency: impl Into<String>) -> Self {
        Self {
            amount_minor,
            currency: currency.into(),
        }
    }

    pub fn validate(&self, path: &str, errors: &mut Vec<FieldError>) {
        if self.amount_minor < 0 {
            errors.push(FieldError::new(
                format!("{path}amount_minor"),
                "must not be negative",
            ));
        }
        if self.currency.len() != 3 || !self.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            errors.push(FieldError::new(
                format!("{path}currency"),
                "must be an ISO 4217 code of three upper-case letters",
            ));
        }
    }
}
