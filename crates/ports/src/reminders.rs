//! The reminder store port.
