//! Placeholder replaced by the storage engine.
