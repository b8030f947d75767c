//! The Raft log, vote, committed id and last purged id, in one `redb` database.
//!
//! On-disk format (`<data-dir>/raft.redb`, a redb database, format of redb 4):
//! - table `log`: key `u64` log index → value: the openraft `Entry` as JSON (format 1: the
//!   serde form of `openraft::Entry<TypeConfig>` of openraft 0.9).
//! - table `meta`: key `&str` → value JSON: `"vote"` (`Vote`), `"committed"` (`Option<LogId>`),
//!   `"last_purged"` (`Option<LogId>`), `"format"` (the number 1).
//!
//! Durability: every write is one redb transaction committed with `Durability::Immediate`
//! (redb's default), so an entry is on disk (fsync'd) when `append` reports it flushed, and a
//! vote is on disk before `save_vote` returns, as Raft requires. redb's commit is atomic: after
//! `kill -9` the database holds exactly the transactions that committed.
//!
//! redb is synchronous; each operation runs on tokio's blocking pool so an fsync never stalls
//! the runtime's workers.

// openraft's storage traits fix the error type (`StorageError`, 224 bytes); boxing it in our
// helpers would only unbox it again at the trait boundary.
#![allow(clippy::result_large_err)]

use crate::types::{Entry, LogId, NodeId, StorageError, TypeConfig, Vote};
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader, StorageIOError};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;
use weir_process::fatal;

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_LAST_PURGED: &str = "last_purged";
const KEY_FORMAT: &str = "format";
/// The version of the layout above.
const FORMAT: u32 = 1;

/// The log store. Cloning is cheap and gives another handle on the same database (openraft
/// asks for a separate reader).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

/// Why the log store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("opening {path}: {source}")]
    Database {
        path: String,
        #[source]
        source: redb::Error,
    },
    #[error("{path} has format {found}; this coordinator reads format {FORMAT}")]
    Format { path: String, found: String },
}

impl LogStore {
    /// Opens (or creates) `<dir>/raft.redb`.
    pub fn open(dir: &Path) -> Result<LogStore, OpenError> {
        let path = dir.join("raft.redb");
        let shown = path.display().to_string();
        let wrap = |e: redb::Error| OpenError::Database {
            path: shown.clone(),
            source: e,
        };
        let db = Database::create(&path).map_err(|e| wrap(e.into()))?;
        let txn = db.begin_write().map_err(|e| wrap(e.into()))?;
        {
            txn.open_table(LOG).map_err(|e| wrap(e.into()))?;
            let mut meta = txn.open_table(META).map_err(|e| wrap(e.into()))?;
            let found = meta
                .get(KEY_FORMAT)
                .map_err(|e| wrap(e.into()))?
                .map(|v| String::from_utf8_lossy(v.value()).into_owned());
            match found {
                None => {
                    let format = FORMAT.to_string();
                    meta.insert(KEY_FORMAT, format.as_bytes())
                        .map_err(|e| wrap(e.into()))?;
                }
                Some(f) if f == FORMAT.to_string() => {}
                Some(found) => {
                    return Err(OpenError::Format {
                        path: shown.clone(),
                        found,
                    });
                }
            }
        }
        txn.commit().map_err(|e| wrap(e.into()))?;
        Ok(LogStore { db: Arc::new(db) })
    }

    /// Runs `f` on the blocking pool.
    async fn blocking<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StorageError> + Send + 'static,
    {
        let db = self.db.clone();
        match tokio::task::spawn_blocking(move || f(&db)).await {
            Ok(r) => r,
            Err(e) => Err(StorageIOError::read_logs(&e).into()),
        }
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        db: &Database,
        key: &str,
    ) -> Result<Option<T>, redb::Error> {
        let txn = db.begin_read()?;
        let table = txn.open_table(META)?;
        let Some(v) = table.get(key)? else {
            return Ok(None);
        };
        let parsed = serde_json::from_slice(v.value()).map_err(|e| {
            redb::Error::Corrupted(format!("meta key {key} is not valid JSON: {e}"))
        })?;
        Ok(Some(parsed))
    }

    fn write_meta<T: serde::Serialize>(
        db: &Database,
        key: &str,
        value: &T,
    ) -> Result<(), redb::Error> {
        let bytes = serde_json::to_vec(value).map_err(|e| {
            redb::Error::Corrupted(format!("meta key {key} does not serialise: {e}"))
        })?;
        let txn = db.begin_write()?;
        {
            let mut table = txn.open_table(META)?;
            table.insert(key, bytes.as_slice())?;
        }
        commit(txn)
    }
}

/// Commits a write transaction. A failed commit means the disk did not take the write (fsync
/// failed, disk full): Raft's promises rest on it, so the process stops.
fn commit(txn: redb::WriteTransaction) -> Result<(), redb::Error> {
    if let Err(e) = txn.commit() {
        fatal("committing to the Raft log store", &e);
    }
    Ok(())
}

fn decode_entry(index: u64, bytes: &[u8]) -> Result<Entry, StorageError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StorageIOError::<NodeId>::read_log_at_index(index, &e).into())
}

fn bound_start(range: &impl RangeBounds<u64>) -> u64 {
    match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    }
}

/// The last index in the range, or `None` for an empty range.
fn bound_end(range: &impl RangeBounds<u64>) -> Option<u64> {
    match range.end_bound() {
        Bound::Included(&e) => Some(e),
        Bound::Excluded(&e) => e.checked_sub(1),
        Bound::Unbounded => Some(u64::MAX),
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = bound_start(&range);
        let Some(end) = bound_end(&range) else {
            return Ok(Vec::new());
        };
        if end < start {
            return Ok(Vec::new());
        }
        self.blocking(move |db| {
            let read = || -> Result<Vec<(u64, Vec<u8>)>, redb::Error> {
                let txn = db.begin_read()?;
                let table = txn.open_table(LOG)?;
                let mut out = Vec::new();
                for item in table.range(start..=end)? {
                    let (k, v) = item?;
                    out.push((k.value(), v.value().to_vec()));
                }
                Ok(out)
            };
            let raw = read().map_err(|e| StorageIOError::<NodeId>::read_logs(&e))?;
            raw.into_iter()
                .map(|(index, bytes)| decode_entry(index, &bytes))
                .collect()
        })
        .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        self.blocking(|db| {
            let last_purged: Option<LogId> =
                LogStore::read_meta::<Option<LogId>>(db, KEY_LAST_PURGED)
                    .map_err(|e| StorageIOError::<NodeId>::read_logs(&e))?
                    .flatten();
            let last = (|| -> Result<Option<(u64, Vec<u8>)>, redb::Error> {
                let txn = db.begin_read()?;
                let table = txn.open_table(LOG)?;
                Ok(table.last()?.map(|(k, v)| (k.value(), v.value().to_vec())))
            })()
            .map_err(|e| StorageIOError::<NodeId>::read_logs(&e))?;
            let last_log_id = match last {
                Some((index, bytes)) => Some(decode_entry(index, &bytes)?.log_id),
                None => last_purged,
            };
            Ok(LogState {
                last_purged_log_id: last_purged,
                last_log_id,
            })
        })
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let vote = *vote;
        self.blocking(move |db| {
            LogStore::write_meta(db, KEY_VOTE, &vote)
                .map_err(|e| StorageIOError::<NodeId>::write_vote(&e).into())
        })
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.blocking(|db| {
            LogStore::read_meta(db, KEY_VOTE)
                .map_err(|e| StorageIOError::<NodeId>::read_vote(&e).into())
        })
        .await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.blocking(move |db| {
            LogStore::write_meta(db, KEY_COMMITTED, &committed)
                .map_err(|e| StorageIOError::<NodeId>::write(&e).into())
        })
        .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        self.blocking(|db| {
            Ok(LogStore::read_meta::<Option<LogId>>(db, KEY_COMMITTED)
                .map_err(|e| StorageIOError::<NodeId>::read(&e))?
                .flatten())
        })
        .await
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        for entry in entries {
            let bytes = serde_json::to_vec(&entry)
                .map_err(|e| StorageIOError::<NodeId>::write_log_entry(entry.log_id, &e))?;
            encoded.push((entry.log_id.index, bytes));
        }
        let result = self
            .blocking(move |db| {
                let write = || -> Result<(), redb::Error> {
                    let txn = db.begin_write()?;
                    {
                        let mut table = txn.open_table(LOG)?;
                        for (index, bytes) in &encoded {
                            table.insert(*index, bytes.as_slice())?;
                        }
                    }
                    commit(txn)
                };
                write().map_err(|e| StorageIOError::<NodeId>::write_logs(&e).into())
            })
            .await;
        match &result {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        result
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let from = log_id.index;
        self.blocking(move |db| {
            let write = || -> Result<(), redb::Error> {
                let txn = db.begin_write()?;
                {
                    let mut table = txn.open_table(LOG)?;
                    table.retain_in(from.., |_, _| false)?;
                }
                commit(txn)
            };
            write().map_err(|e| StorageIOError::<NodeId>::write_logs(&e).into())
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking(move |db| {
            let write = || -> Result<(), redb::Error> {
                let bytes = serde_json::to_vec(&Some(log_id)).map_err(|e| {
                    redb::Error::Corrupted(format!("last purged id does not serialise: {e}"))
                })?;
                let txn = db.begin_write()?;
                {
                    // The purge mark and the removal commit together, so a crash never leaves
                    // a hole between the last purged id and the first stored entry.
                    let mut meta = txn.open_table(META)?;
                    meta.insert(KEY_LAST_PURGED, bytes.as_slice())?;
                    let mut table = txn.open_table(LOG)?;
                    table.retain_in(..=log_id.index, |_, _| false)?;
                }
                commit(txn)
            };
            write().map_err(|e| StorageIOError::<NodeId>::write_logs(&e).into())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};
    use weir_metadata::Command;

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(Command::InitCluster {
                cluster_id: format!("c{index}"),
            }),
        }
    }

    async fn append(store: &mut LogStore, entries: Vec<Entry>) {
        // The callback is only constructible inside openraft; write through the same path
        // `append` uses.
        let encoded: Vec<(u64, Vec<u8>)> = entries
            .iter()
            .map(|e| (e.log_id.index, serde_json::to_vec(e).unwrap()))
            .collect();
        store
            .blocking(move |db| {
                let txn = db.begin_write().unwrap();
                {
                    let mut t = txn.open_table(LOG).unwrap();
                    for (i, b) in &encoded {
                        t.insert(*i, b.as_slice()).unwrap();
                    }
                }
                txn.commit().unwrap();
                Ok(())
            })
            .await
            .unwrap();
    }

    /// Entries, votes, truncation and purging survive reopening the database.
    #[tokio::test]
    async fn log_state_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = LogStore::open(dir.path()).unwrap();
            append(&mut store, (1..=10).map(|i| entry(1, i)).collect()).await;
            store
                .truncate(LogId::new(CommittedLeaderId::new(1, 1), 9))
                .await
                .unwrap();
            store
                .purge(LogId::new(CommittedLeaderId::new(1, 1), 3))
                .await
                .unwrap();
            let vote = Vote::new(3, 2);
            store.save_vote(&vote).await.unwrap();
            store
                .save_committed(Some(LogId::new(CommittedLeaderId::new(1, 1), 7)))
                .await
                .unwrap();
        }
        let mut store = LogStore::open(dir.path()).unwrap();
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(3));
        assert_eq!(state.last_log_id.map(|l| l.index), Some(8));
        let entries = store.try_get_log_entries(0..100).await.unwrap();
        let indexes: Vec<u64> = entries.iter().map(|e| e.log_id.index).collect();
        assert_eq!(indexes, vec![4, 5, 6, 7, 8]);
        assert_eq!(store.try_get_log_entries(5..=6).await.unwrap().len(), 2);
        assert_eq!(store.read_vote().await.unwrap(), Some(Vote::new(3, 2)));
        assert_eq!(
            store.read_committed().await.unwrap().map(|l| l.index),
            Some(7)
        );
    }

    /// With every entry purged, the last log id is the last purged one.
    #[tokio::test]
    async fn fully_purged_log_reports_the_purge_point() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LogStore::open(dir.path()).unwrap();
        append(&mut store, (1..=4).map(|i| entry(2, i)).collect()).await;
        store
            .purge(LogId::new(CommittedLeaderId::new(2, 1), 4))
            .await
            .unwrap();
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id.map(|l| l.index), Some(4));
        assert!(store.try_get_log_entries(0..10).await.unwrap().is_empty());
    }
}
