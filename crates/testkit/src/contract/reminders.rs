//! The reminder store contract.
