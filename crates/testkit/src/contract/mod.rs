//! Contract suites for the ports.
