//! Placeholder replaced by the broker.
