//! The health of the broker's log directory, and what happens when a write to it fails.
//!
//! Kafka's rule for a failed log directory, which Weir follows: the first write that fails
//! with an I/O error (ENOSPC, EIO, EDQUOT, ...) takes the whole directory offline. From then
//! on every append to every partition is refused with KAFKA_STORAGE_ERROR — consistently,
//! whatever its size (a full disk that refuses big batches and takes small ones confuses
//! idempotent producers into a fatal "inconsistent state") — followers stop appending, the
//! broker asks the coordinators to move its leaderships to in-sync followers (a controlled
//! shutdown that does not exit), `/readyz` fails, and it is logged at ERROR with the cause.
//!
//! Recovery (Weir's decision; Kafka needs a restart for both):
//! - **No space (ENOSPC, EDQUOT):** a probe writes and fsyncs [`PROBE_BYTES`] in the data
//!   directory every [`PROBE_INTERVAL`]; once it succeeds the directory is online again and the
//!   broker registers anew, so the coordinators take it back (it catches up, rejoins the ISRs
//!   and gets its preferred leaderships back).
//! - **Any other error:** the disk cannot be trusted; the directory stays offline until an
//!   operator has looked at it and restarts the broker.

use std::sync::Mutex;
use std::time::Duration;
use weir_storage::StorageError;

/// Bytes the recovery probe writes: more than one record batch may take (`message.max.bytes`),
/// so space that lets the probe through lets a produce through.
pub const PROBE_BYTES: usize = 2 * 1024 * 1024;
pub const PROBE_INTERVAL: Duration = Duration::from_secs(2);
const PROBE_FILE: &str = "space-probe.tmp";

const _: () = assert!(PROBE_BYTES > weir_model::limits::MESSAGE_BYTES_MAX_DEFAULT as usize);

/// Why the directory went offline.
#[derive(Debug, Clone)]
pub struct Failure {
    pub reason: String,
    /// ENOSPC or EDQUOT: the directory comes back once the probe finds space.
    pub no_space: bool,
}

/// Whether the log directory takes writes. Shared by every partition.
#[derive(Debug, Default)]
pub struct LogDirHealth {
    failure: Mutex<Option<Failure>>,
    changed: tokio::sync::Notify,
}

impl LogDirHealth {
    /// Why the directory is offline, if it is.
    pub fn offline_reason(&self) -> Option<String> {
        self.lock().as_ref().map(|f| f.reason.clone())
    }

    pub fn is_offline(&self) -> bool {
        self.lock().is_some()
    }

    /// Takes the directory offline if `e` is a failed write (an I/O error); returns whether
    /// `e` was one. The first failure is the one kept and logged.
    pub fn record(&self, context: &str, e: &StorageError) -> bool {
        if !matches!(e, StorageError::Io { .. }) {
            return false;
        }
        let mut failure = self.lock();
        if failure.is_none() {
            let reason = format!("{context}: {}", weir_model::Chain(e));
            tracing::error!(error = %reason,
                "log directory offline: every partition refuses writes with KAFKA_STORAGE_ERROR and leaderships move to other brokers");
            *failure = Some(Failure {
                reason,
                no_space: is_no_space(e),
            });
            self.changed.notify_one();
        }
        true
    }

    /// Waits for the next failure to be recorded, and returns it.
    pub async fn failed(&self) -> Failure {
        loop {
            self.changed.notified().await;
            if let Some(f) = self.lock().clone() {
                return f;
            }
        }
    }

    /// Brings the directory back online (the probe found space).
    pub fn clear(&self) {
        *self.lock() = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Failure>> {
        self.failure.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// ENOSPC or EDQUOT anywhere in the error's causes.
fn is_no_space(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && (io.kind() == std::io::ErrorKind::StorageFull
                || io.kind() == std::io::ErrorKind::QuotaExceeded
                || matches!(io.raw_os_error(), Some(28 | 122)))
        {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Writes, fsyncs and removes a probe file: whether the directory takes writes again.
pub fn probe(dir: &std::path::Path) -> std::io::Result<()> {
    use std::io::Write;
    let path = dir.join(PROBE_FILE);
    let result = (|| {
        let mut f = std::fs::File::create(&path)?;
        f.write_all(&vec![0u8; PROBE_BYTES])?;
        f.sync_all()
    })();
    // Removed whatever happened: a half-written probe must not keep the space it took.
    let _ = std::fs::remove_file(&path);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(kind: std::io::Error) -> StorageError {
        StorageError::Io {
            path: "/x".into(),
            op: "writing",
            source: kind,
        }
    }

    /// Proves: an I/O error takes the directory offline once, keeps the first cause, and
    /// tells ENOSPC apart; other storage errors (a bad batch) do not.
    #[test]
    fn the_first_write_failure_takes_the_directory_offline() {
        let h = LogDirHealth::default();
        let bad = StorageError::RecordTooLarge { size: 1, max: 0 };
        assert!(!h.record("append", &bad));
        assert!(!h.is_offline());
        assert!(h.record("append", &io(std::io::Error::from_raw_os_error(28))));
        assert!(h.record("roll", &io(std::io::Error::from_raw_os_error(5))));
        let reason = h.offline_reason().unwrap();
        assert!(reason.starts_with("append: writing /x: "), "{reason}");
        assert!(h.lock().as_ref().unwrap().no_space);
        assert!(!is_no_space(&io(std::io::Error::from_raw_os_error(5))));
    }
}
