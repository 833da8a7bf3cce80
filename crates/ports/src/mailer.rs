//! The mailer port.
