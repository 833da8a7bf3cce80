//! The delivery target port.
