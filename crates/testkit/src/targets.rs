//! HTTP servers that play the downstream targets in tests.
