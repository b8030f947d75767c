//! The broker's log cleaner: one dedicated thread that compacts the hosted partitions whose
//! `cleanup.policy` includes `compact`, leaders and followers alike (each replica cleans its
//! own copy, as in Kafka; their bytes may then differ, which replication does not need).
//!
//! Each pass picks the dirtiest partition that is due (`min.cleanable.dirty.ratio` or
//! `max.compaction.lag.ms`), and runs one round on it in the storage engine's three steps:
//!
//! ```text
//! log.read()  -> plan_clean(high watermark, now)   segment metadata and file handles
//! (no lock)   -> Cleaner::clean(plan)              map + copy, throttled, on this thread
//! log.write() -> finish_clean(round)               verify, commit, rename: milliseconds
//! ```
//!
//! so produce and replication keep appending while a segment is copied. The upper bound is the
//! high watermark: nothing that may yet be truncated is used to remove a record. When nothing
//! is due the thread waits `--log-cleaner-backoff-ms` (Kafka's `log.cleaner.backoff.ms`), or
//! until the broker stops.
//!
//! Why a thread and not a task: a round is blocking file I/O for as long as the copy takes,
//! and the throttle sleeps; a thread of its own keeps both off the runtime's workers.

use crate::config::LogCleanerSettings;
use crate::partition::Partition;
use crate::state::BrokerState;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;
use weir_model::{PartitionId, Timestamp, TopicId};
use weir_storage::{CleanOutcome, Cleaner, StorageError};

/// A partition whose round failed (a corrupt batch, say) is left alone this long, so one bad
/// partition neither spins the cleaner nor starves the others.
const FAILED_PARTITION_RETRY: Duration = Duration::from_secs(600);

/// The running cleaner thread; [`LogCleaner::stop`] ends it.
#[derive(Debug)]
pub struct LogCleaner {
    stop: Arc<AtomicBool>,
    wake: mpsc::SyncSender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LogCleaner {
    /// Starts the thread, unless the cleaner is disabled.
    pub fn start(state: Arc<BrokerState>) -> Option<LogCleaner> {
        let settings = state.config.log_cleaner.clone();
        if !settings.enable {
            return None;
        }
        let stop = Arc::new(AtomicBool::new(false));
        // One slot is enough: a wake-up only needs to be noticed, not counted.
        let (wake, woken) = mpsc::sync_channel(1);
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("log-cleaner".into())
            .spawn(move || run(state, settings, flag, woken));
        match thread {
            Ok(t) => Some(LogCleaner {
                stop,
                wake,
                thread: Some(t),
            }),
            Err(e) => {
                tracing::error!(error = %weir_model::Chain(&e), "cannot start the log cleaner thread");
                None
            }
        }
    }

    /// Stops the thread and waits for it: a round in progress is abandoned at its next batch
    /// (its temporary files deleted), so the logs can be closed after this returns.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.wake.try_send(());
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the log cleaner thread panicked");
        }
    }
}

fn run(
    state: Arc<BrokerState>,
    settings: LogCleanerSettings,
    stop: Arc<AtomicBool>,
    woken: mpsc::Receiver<()>,
) {
    let mut cleaner = Cleaner::new(settings.limits.clone());
    // Until when (the clock's monotonic ms) a partition whose round failed is left alone.
    let mut failed: HashMap<(TopicId, PartitionId), u64> = HashMap::new();
    let backoff = Duration::from_millis(settings.backoff_ms.max(1));
    tracing::info!(
        backoff_ms = settings.backoff_ms,
        dedupe_buffer_bytes = cleaner.config().dedupe_buffer_bytes,
        io_max_bytes_per_second = ?cleaner.config().io_max_bytes_per_second,
        "log cleaner started"
    );
    while !stop.load(Ordering::SeqCst) {
        let mono = state.clock.mono_ms();
        failed.retain(|_, until| *until > mono);
        let cleaned = clean_dirtiest(&state, &mut cleaner, &stop, &mut failed);
        if cleaned {
            continue;
        }
        // Nothing due: idle until the backoff passes or the broker stops.
        match woken.recv_timeout(backoff) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    tracing::info!("log cleaner stopped");
}

/// Runs one round on the dirtiest due partition. Returns whether a round swapped, so the
/// caller looks for more work at once rather than waiting.
fn clean_dirtiest(
    state: &BrokerState,
    cleaner: &mut Cleaner,
    stop: &AtomicBool,
    failed: &mut HashMap<(TopicId, PartitionId), u64>,
) -> bool {
    let now = state.clock.wall();
    let mut best: Option<(f64, Arc<Partition>)> = None;
    for p in state.local_partitions() {
        if failed.contains_key(&(p.topic_id, p.id)) {
            continue;
        }
        let hw = p.high_watermark();
        let log = p.log.read().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = log.cleanable(hw, now)
            && c.due
            && best.as_ref().is_none_or(|b| c.dirty_ratio > b.0)
        {
            best = Some((c.dirty_ratio, p.clone()));
        }
    }
    let Some((_, p)) = best else {
        return false;
    };
    match clean_partition(&p, cleaner, stop, now) {
        Ok(Some(CleanOutcome::Swapped { .. })) => true,
        Ok(Some(CleanOutcome::Aborted { reason })) => {
            tracing::debug!(topic = %p.topic, partition = p.id.get(), reason, "cleaning round aborted");
            false
        }
        Ok(None) => false,
        // Removed (topic deleted, broker closing) while the round ran.
        Err(StorageError::Closed { .. }) => false,
        Err(e) if e.is_fatal() => {
            weir_process::fatal(&format!("cleaning {}-{}", p.topic, p.id), &e)
        }
        Err(e) => {
            tracing::warn!(topic = %p.topic, partition = p.id.get(), error = %weir_model::Chain(&e),
                retry_in_s = FAILED_PARTITION_RETRY.as_secs(), "log cleaning failed");
            let retry_ms = u64::try_from(FAILED_PARTITION_RETRY.as_millis()).unwrap_or(u64::MAX);
            failed.insert(
                (p.topic_id, p.id),
                state.clock.mono_ms().saturating_add(retry_ms),
            );
            false
        }
    }
}

/// One round: plan under the read lock, copy with no lock, swap under the write lock.
fn clean_partition(
    p: &Partition,
    cleaner: &mut Cleaner,
    stop: &AtomicBool,
    now: Timestamp,
) -> Result<Option<CleanOutcome>, StorageError> {
    let hw = p.high_watermark();
    let plan = {
        let log = p.log.read().unwrap_or_else(|e| e.into_inner());
        log.plan_clean(hw, now)?
    };
    let Some(plan) = plan else {
        return Ok(None);
    };
    tracing::debug!(topic = %p.topic, partition = p.id.get(), dirty_ratio = plan.dirty_ratio,
        dirty_bytes = plan.dirty_bytes, "cleaning");
    let Some(round) = cleaner.clean(plan, &|| stop.load(Ordering::SeqCst))? else {
        return Ok(None);
    };
    let mut log = p.log.write().unwrap_or_else(|e| e.into_inner());
    log.finish_clean(round).map(Some)
}
