//! The Raft state machine: [`MetadataState`] in memory, snapshots in `<data-dir>/snapshot.json`.
//!
//! The state is small (brokers, topics, partitions), so it lives in memory and is rebuilt at
//! start from the last snapshot plus the log entries after it (openraft re-applies the
//! committed entries past the snapshot). Snapshots are taken every `snapshot_every` entries;
//! openraft then purges the log up to the snapshot.
//!
//! Every applied command that succeeded is announced on a broadcast channel as an
//! [`Applied`]: the log index plus copies of the records it changed, taken while the state
//! was locked, so a watcher gets each record exactly as it was at that index.

use crate::types::{
    CommandResult, Entry, LogId, NodeId, Snapshot, SnapshotMeta, StorageError, StoredMembership,
    TypeConfig,
};
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tokio::sync::broadcast;
use tracing::info;
use weir_metadata::{BrokerRecord, MetadataState, Reply, TopicRecord, UserCredentials};
use weir_model::TopicId;
use weir_model::acl::AclBinding;
use weir_process::fatal;

/// The snapshot file's name inside the data directory.
pub const SNAPSHOT_FILE: &str = "snapshot.json";
/// Its format version.
const SNAPSHOT_FORMAT: u32 = 1;

/// How many applied changes a slow watcher may fall behind before it is sent a full update
/// instead of the deltas it missed.
pub const APPLIED_CHANNEL_CAPACITY: usize = 1024;

/// What one successfully applied command changed, for the watch streams.
#[derive(Clone, Debug)]
pub struct Applied {
    /// The log index of the command.
    pub index: u64,
    /// The whole state was replaced (a snapshot was installed): watchers must resend it all.
    pub full: bool,
    pub cluster_id: String,
    /// The changed records as they were right after this command.
    pub brokers: Vec<BrokerRecord>,
    pub topics: Vec<TopicRecord>,
    pub removed_topics: Vec<TopicId>,
    /// Users whose credentials changed, with all they have now (`None`: none left).
    pub users: Vec<(String, Option<UserCredentials>)>,
    pub acls_added: Vec<AclBinding>,
    pub acls_removed: Vec<AclBinding>,
}

/// The state machine's data, shared between openraft (which applies) and the services (which
/// read).
#[derive(Debug, Default)]
pub struct SmData {
    pub state: MetadataState,
    pub last_applied: Option<LogId>,
    pub last_membership: StoredMembership,
}

/// `snapshot.json`: the whole state machine at one log index.
///
/// Format 1, JSON: `{"format": 1, "meta": <openraft SnapshotMeta: last_log_id, last_membership,
/// snapshot_id>, "state": <MetadataState>}`. Written to `snapshot.json.tmp`, fsync'd, renamed
/// over `snapshot.json`, and the directory fsync'd, so the file is always a whole snapshot.
/// The bytes sent to a follower by InstallSnapshot are the JSON of `state` alone; the meta
/// travels beside them.
#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotFile {
    pub format: u32,
    pub meta: SnapshotMeta,
    pub state: MetadataState,
}

/// Reads `<dir>/snapshot.json`, if there is one.
pub fn read_snapshot_file(dir: &Path) -> Result<Option<SnapshotFile>, std::io::Error> {
    let path = dir.join(SNAPSHOT_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let file: SnapshotFile = serde_json::from_slice(&bytes).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} is not a valid snapshot: {e}", path.display()),
        )
    })?;
    if let Err(why) = file.state.check_invariants() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} breaks the metadata invariants: {why}", path.display()),
        ));
    }
    if file.format != SNAPSHOT_FORMAT {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{} has format {}; this coordinator reads format {SNAPSHOT_FORMAT}",
                path.display(),
                file.format
            ),
        ));
    }
    Ok(Some(file))
}

/// Writes the snapshot file atomically (see [`SnapshotFile`]). A failed fsync stops the process.
fn write_snapshot_file(dir: &Path, file: &SnapshotFile) -> Result<(), std::io::Error> {
    let bytes = serde_json::to_vec(file).map_err(std::io::Error::other)?;
    let tmp = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
    let path = dir.join(SNAPSHOT_FILE);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&bytes)?;
    if let Err(e) = f.sync_all() {
        fatal(&format!("fsync of {}", tmp.display()), &e);
    }
    drop(f);
    std::fs::rename(&tmp, &path)?;
    let d = std::fs::File::open(dir)?;
    if let Err(e) = d.sync_all() {
        fatal(&format!("fsync of directory {}", dir.display()), &e);
    }
    Ok(())
}

/// A snapshot held in memory for followers that need it.
#[derive(Debug, Clone)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Arc<Vec<u8>>,
}

/// The state machine handed to openraft. Clones share everything.
#[derive(Debug, Clone)]
pub struct StateMachineStore {
    data: Arc<RwLock<SmData>>,
    dir: PathBuf,
    applied_tx: broadcast::Sender<Arc<Applied>>,
    current: Arc<Mutex<Option<StoredSnapshot>>>,
    snapshot_seq: Arc<AtomicU64>,
}

impl StateMachineStore {
    /// Loads the state machine from `<dir>/snapshot.json`, or starts empty.
    pub fn open(dir: &Path) -> Result<StateMachineStore, std::io::Error> {
        let (applied_tx, _) = broadcast::channel(APPLIED_CHANNEL_CAPACITY);
        let mut data = SmData::default();
        let mut current = None;
        if let Some(file) = read_snapshot_file(dir)? {
            let index = file.meta.last_log_id.map(|l| l.index).unwrap_or(0);
            info!(
                index,
                topics = file.state.topics.len(),
                brokers = file.state.brokers.len(),
                "loaded snapshot at index {index}"
            );
            let bytes = serde_json::to_vec(&file.state).map_err(std::io::Error::other)?;
            data.last_applied = file.meta.last_log_id;
            data.last_membership = file.meta.last_membership.clone();
            data.state = file.state;
            current = Some(StoredSnapshot {
                meta: file.meta,
                data: Arc::new(bytes),
            });
        }
        Ok(StateMachineStore {
            data: Arc::new(RwLock::new(data)),
            dir: dir.to_path_buf(),
            applied_tx,
            current: Arc::new(Mutex::new(current)),
            snapshot_seq: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The shared data, for readers.
    pub fn shared(&self) -> Arc<RwLock<SmData>> {
        self.data.clone()
    }

    /// Where applied changes are announced.
    pub fn applied_sender(&self) -> broadcast::Sender<Arc<Applied>> {
        self.applied_tx.clone()
    }

    fn write_lock(&self) -> RwLockWriteGuard<'_, SmData> {
        // A panic while holding the lock would leave a half-applied state; the state machine is
        // pure and does not panic on input, so a poisoned lock is itself a bug.
        match self.data.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn read_lock(&self) -> RwLockReadGuard<'_, SmData> {
        match self.data.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    async fn save_snapshot(&self, file: SnapshotFile) -> Result<(), StorageError> {
        let dir = self.dir.clone();
        let signature = file.meta.signature();
        let result = tokio::task::spawn_blocking(move || write_snapshot_file(&dir, &file)).await;
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StorageIOError::<NodeId>::write_snapshot(Some(signature), &e).into()),
            Err(e) => Err(StorageIOError::<NodeId>::write_snapshot(Some(signature), &e).into()),
        }
    }
}

/// Applies one normal entry and announces what changed. Runs with the write lock held, so
/// the announcement is ordered with the state readers see.
fn apply_command(
    data: &mut SmData,
    index: u64,
    command: &weir_metadata::Command,
    tx: &broadcast::Sender<Arc<Applied>>,
) -> CommandResult {
    match data.state.apply(index, command) {
        // A command that changed nothing (a repeat, a stale epoch) is not news to watchers.
        Ok((reply, _)) if data.state.version != index => Ok(reply),
        Ok((reply, changes)) => {
            let state = &data.state;
            let applied = Applied {
                index,
                full: false,
                cluster_id: state.cluster_id.clone(),
                brokers: changes
                    .brokers
                    .iter()
                    .filter_map(|id| state.brokers.get(id).cloned())
                    .collect(),
                topics: changes
                    .topics
                    .iter()
                    .filter_map(|name| state.topics.get(name).cloned())
                    .collect(),
                removed_topics: changes.removed_topics,
                users: changes
                    .users
                    .into_iter()
                    .map(|u| {
                        let creds = state.users.get(&u).cloned();
                        (u, creds)
                    })
                    .collect(),
                acls_added: changes.acls_added,
                acls_removed: changes.acls_removed,
            };
            // No receivers is fine: nobody is watching.
            let _ = tx.send(Arc::new(applied));
            Ok(reply)
        }
        Err(e) => Err(e),
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let data = self.read_lock();
        Ok((data.last_applied, data.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut data = self.write_lock();
        let mut out = Vec::new();
        for entry in entries {
            data.last_applied = Some(entry.log_id);
            let result = match &entry.payload {
                EntryPayload::Blank => Ok(Reply::Done),
                EntryPayload::Normal(command) => {
                    apply_command(&mut data, entry.log_id.index, command, &self.applied_tx)
                }
                EntryPayload::Membership(m) => {
                    data.last_membership = StoredMembership::new(Some(entry.log_id), m.clone());
                    Ok(Reply::Done)
                }
            };
            out.push(result);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let state: MetadataState = serde_json::from_slice(&bytes)
            .map_err(|e| StorageIOError::<NodeId>::read_snapshot(Some(meta.signature()), &e))?;
        self.save_snapshot(SnapshotFile {
            format: SNAPSHOT_FORMAT,
            meta: meta.clone(),
            state: state.clone(),
        })
        .await?;
        let index = meta.last_log_id.map(|l| l.index).unwrap_or(0);
        {
            let mut data = self.write_lock();
            data.state = state;
            data.last_applied = meta.last_log_id;
            data.last_membership = meta.last_membership.clone();
            // Watchers cannot tell what changed: they resend everything.
            let _ = self.applied_tx.send(Arc::new(Applied {
                index,
                full: true,
                cluster_id: data.state.cluster_id.clone(),
                brokers: Vec::new(),
                topics: Vec::new(),
                removed_topics: Vec::new(),
                users: Vec::new(),
                acls_added: Vec::new(),
                acls_removed: Vec::new(),
            }));
        }
        info!(index, "installed snapshot from the leader at index {index}");
        if let Ok(mut current) = self.current.lock() {
            *current = Some(StoredSnapshot {
                meta: meta.clone(),
                data: Arc::new(bytes),
            });
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let current = match self.current.lock() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        };
        Ok(current.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data.as_ref().clone())),
        }))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let (state, last_applied, last_membership) = {
            let data = self.read_lock();
            (
                data.state.clone(),
                data.last_applied,
                data.last_membership.clone(),
            )
        };
        let seq = self.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-{seq}", l.leader_id.term, l.index),
            None => format!("0-0-{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership,
            snapshot_id,
        };
        let bytes = serde_json::to_vec(&state)
            .map_err(|e| StorageIOError::<NodeId>::write_snapshot(Some(meta.signature()), &e))?;
        self.save_snapshot(SnapshotFile {
            format: SNAPSHOT_FORMAT,
            meta: meta.clone(),
            state,
        })
        .await?;
        let index = last_applied.map(|l| l.index).unwrap_or(0);
        info!(
            index,
            bytes = bytes.len(),
            "wrote snapshot at index {index}"
        );
        let data = Arc::new(bytes);
        if let Ok(mut current) = self.current.lock() {
            *current = Some(StoredSnapshot {
                meta: meta.clone(),
                data: data.clone(),
            });
        }
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data.as_ref().clone())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, Membership};
    use std::collections::{BTreeMap, BTreeSet};
    use weir_metadata::Command;
    use weir_model::BrokerId;

    fn entry(index: u64, payload: EntryPayload<TypeConfig>) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload,
        }
    }

    fn register(id: i32) -> EntryPayload<TypeConfig> {
        EntryPayload::Normal(Command::RegisterBroker {
            id: BrokerId(id),
            kafka_addr: "k:1".into(),
            internal_addr: "i:1".into(),
            rack: None,
            incarnation: format!("inc-{id}"),
            directory_id: format!("dir-{id}"),
            endpoints: Vec::new(),
        })
    }

    /// Applied changes are announced with their records; a snapshot written to disk brings
    /// back the same state, last applied id and membership after a restart.
    #[tokio::test]
    async fn snapshots_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachineStore::open(dir.path()).unwrap();
        let mut applied = sm.applied_sender().subscribe();
        let membership = Membership::new(
            vec![BTreeSet::from([1])],
            BTreeMap::from([(1, openraft::BasicNode { addr: "a:1".into() })]),
        );
        let results = sm
            .apply(vec![
                entry(1, EntryPayload::Membership(membership)),
                entry(
                    2,
                    EntryPayload::Normal(Command::InitCluster {
                        cluster_id: "c".into(),
                    }),
                ),
                entry(3, register(7)),
                entry(4, register(7)),
                entry(5, EntryPayload::Blank),
            ])
            .await
            .unwrap();
        assert_eq!(results.len(), 5);
        assert_eq!(
            results[2],
            Ok(Reply::BrokerRegistered {
                epoch: weir_model::BrokerEpoch(3)
            })
        );
        let first = applied.try_recv().unwrap();
        assert_eq!((first.index, first.cluster_id.as_str()), (2, "c"));
        let second = applied.try_recv().unwrap();
        assert_eq!(second.index, 3);
        assert_eq!(second.brokers.len(), 1);
        // The repeated registration changed nothing and is not announced.
        assert!(applied.try_recv().is_err());

        let snapshot = sm.build_snapshot().await.unwrap();
        assert_eq!(snapshot.meta.last_log_id.map(|l| l.index), Some(5));

        let mut reopened = StateMachineStore::open(dir.path()).unwrap();
        let (last, membership) = reopened.applied_state().await.unwrap();
        assert_eq!(last.map(|l| l.index), Some(5));
        assert_eq!(membership.voter_ids().collect::<Vec<_>>(), vec![1]);
        let state = reopened.shared().read().unwrap().state.clone();
        assert_eq!(state.cluster_id, "c");
        assert!(state.brokers.contains_key(&BrokerId(7)));
        let current = reopened.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta.snapshot_id, snapshot.meta.snapshot_id);
    }

    /// A snapshot file that is not whole refuses to load rather than starting empty.
    #[test]
    fn a_damaged_snapshot_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SNAPSHOT_FILE), b"{\"format\":1,").unwrap();
        let e = StateMachineStore::open(dir.path()).unwrap_err();
        assert!(e.to_string().contains("not a valid snapshot"), "{e}");
    }
}
