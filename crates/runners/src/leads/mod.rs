//! Lead producer and lead integration service.
