//! The broker's shared state: the cluster view, the partitions this broker hosts (their logs
//! and replication roles), and producer ids.
//!
//! The coordinators decide which broker hosts and leads what; this broker follows their watch
//! stream and reconciles ([`BrokerState::apply_update`]): it opens the logs of partitions it
//! is a replica of, becomes leader or follower as told, and removes the logs of partitions it
//! no longer hosts. Lock order, everywhere: a partition's `replica` mutex, then its `log` lock.

use crate::cluster::{ClusterView, PartitionView, TopicView};
use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::partition::{NotServed, Partition, Replica, Role};
use crate::topic_config;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::watch;
use weir_coordinator_client::ControlClient;
use weir_model::limits;
use weir_model::{BrokerId, Clock, PartitionId, Timestamp, TopicId, TopicName};
use weir_replication::replica::{Assignment, RoleChange};
use weir_storage::{LogConfig, PartitionLog};

/// Everything the request handlers share.
#[derive(Debug)]
pub struct BrokerState {
    pub config: BrokerConfig,
    pub me: BrokerId,
    /// Every Kafka listener's name and advertised `host:port`, the first one's being the
    /// address the cluster knows this broker by.
    pub endpoints: Vec<(String, String)>,
    /// The `host:port` other brokers replicate from.
    pub internal_advertised: String,
    pub control: Arc<ControlClient>,
    /// The wall and monotonic time every part of the broker reads (a manual one in tests).
    pub clock: Arc<dyn Clock>,
    /// This incarnation's epoch from the coordinators' registration.
    pub broker_epoch: AtomicI64,
    /// The data directory's id (`meta.properties`), sent at registration: a new one tells the
    /// coordinators this broker lost its disk.
    pub directory_id: String,
    /// Random per process start, and again when the broker comes back after its log directory
    /// was offline: the coordinators then handle it as a restart.
    pub incarnation: Mutex<String>,
    /// Whether the log directory takes writes (see [`crate::log_dir`]).
    pub log_dir: crate::log_dir::LogDirHealth,
    view: RwLock<Arc<ClusterView>>,
    view_version: watch::Sender<i64>,
    local: RwLock<HashMap<(TopicId, PartitionId), Arc<Partition>>>,
    /// Partitions this broker is a replica of whose logs could not be opened, with the error.
    offline: RwLock<HashMap<(TopicId, PartitionId), String>>,
    /// Serialises reconciliation of metadata updates; `true` once the broker is closing, so a
    /// late update cannot reopen a log that `close` has closed.
    reconcile: Mutex<bool>,
    /// Bytes of requests read and not yet answered, over all connections.
    pub request_memory: Arc<tokio::sync::Semaphore>,
    /// Bumped after every append and watermark move; long-polling fetches wait on it.
    appended: watch::Sender<u64>,
    producer_ids: tokio::sync::Mutex<Range<i64>>,
    /// Where the replica fetchers learn which partitions to copy from which leader.
    pub follow: watch::Sender<BTreeMap<BrokerId, Vec<Arc<Partition>>>>,
    /// SASL logins since start, for `/metrics`.
    pub auth_counts: AuthCounts,
}

/// SASL authentications that succeeded and that failed.
#[derive(Debug, Default)]
pub struct AuthCounts {
    pub succeeded: std::sync::atomic::AtomicU64,
    pub failed: std::sync::atomic::AtomicU64,
}

impl BrokerState {
    /// Prepares the data directory (removing leftovers of interrupted deletions). Partitions
    /// are opened when the first metadata update says which ones this broker hosts.
    pub fn open(
        config: BrokerConfig,
        control: Arc<ControlClient>,
        clock: Arc<dyn Clock>,
        // The listeners' advertised addresses for clients, internal `host:port` for brokers.
        (endpoints, internal_advertised): (Vec<(String, String)>, String),
    ) -> Result<BrokerState, BrokerError> {
        let logs = logs_dir(&config.data_dir);
        std::fs::create_dir_all(&logs).map_err(|source| BrokerError::DataDir {
            path: logs.clone(),
            source,
        })?;
        remove_deleted_dirs(&logs)?;
        let directory_id =
            crate::data_dir::load_or_create(&config.data_dir, config.node_id)?.directory_id;
        let (appended, _) = watch::channel(0);
        let (view_version, _) = watch::channel(-1);
        let (follow, _) = watch::channel(BTreeMap::new());
        // A single request must fit in the shared budget, or its reader would wait for ever.
        let queued = config
            .queued_request_bytes_max
            .max(u64::from(config.request_bytes_max));
        let queued = usize::try_from(queued)
            .unwrap_or(usize::MAX)
            .min(tokio::sync::Semaphore::MAX_PERMITS);
        Ok(BrokerState {
            me: BrokerId(config.node_id),
            request_memory: Arc::new(tokio::sync::Semaphore::new(queued)),
            config,
            control,
            clock,
            broker_epoch: AtomicI64::new(-1),
            directory_id,
            incarnation: Mutex::new(uuid::Uuid::new_v4().to_string()),
            log_dir: crate::log_dir::LogDirHealth::default(),
            endpoints,
            internal_advertised,
            view: RwLock::new(Arc::new(ClusterView::default())),
            view_version,
            local: RwLock::new(HashMap::new()),
            offline: RwLock::new(HashMap::new()),
            reconcile: Mutex::new(false),
            appended,
            producer_ids: tokio::sync::Mutex::new(0..0),
            follow,
            auth_counts: AuthCounts::default(),
        })
    }

    pub fn broker_epoch(&self) -> i64 {
        self.broker_epoch.load(Ordering::Relaxed)
    }

    /// The latest cluster view.
    pub fn view(&self) -> Arc<ClusterView> {
        self.view.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn cluster_id(&self) -> String {
        self.view().cluster_id.clone()
    }

    /// Waits until the view satisfies `ready` or `timeout` passes; returns whether it did.
    pub async fn wait_for_view(
        &self,
        timeout: std::time::Duration,
        ready: impl Fn(&ClusterView) -> bool,
    ) -> bool {
        let mut rx = self.view_version.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            rx.borrow_and_update();
            if ready(&self.view()) {
                return true;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                _ => return ready(&self.view()),
            }
        }
    }

    /// Changes whenever a metadata update has been applied.
    pub fn subscribe_view(&self) -> watch::Receiver<i64> {
        self.view_version.subscribe()
    }

    /// Whether the coordinators count this broker live (registered and unfenced).
    pub fn is_unfenced(&self) -> bool {
        self.view().brokers.get(&self.me).is_some_and(|b| !b.fenced)
    }

    /// The hosted partition, if this broker is one of its replicas.
    pub fn local_partition(&self, topic: TopicId, index: PartitionId) -> Option<Arc<Partition>> {
        self.local
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(topic, index))
            .cloned()
    }

    /// Why a partition this broker is a replica of is offline here, if it is.
    pub fn offline_reason(&self, topic: TopicId, index: PartitionId) -> Option<String> {
        self.offline
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(topic, index))
            .cloned()
    }

    pub fn local_partitions(&self) -> Vec<Arc<Partition>> {
        self.local
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The partition named by a client, if this broker leads it.
    pub fn leader_partition(
        &self,
        topic: &str,
        index: PartitionId,
    ) -> Result<Arc<Partition>, NotServed> {
        let view = self.view();
        let info = view
            .topic(topic)
            .filter(|t| t.partition(index).is_some())
            .ok_or(NotServed::UnknownTopicOrPartition)?;
        let Some(p) = self.local_partition(info.id, index) else {
            return Err(if self.offline_reason(info.id, index).is_some() {
                NotServed::Offline
            } else {
                NotServed::NotLeader
            });
        };
        if !p.progress.borrow().leader {
            return Err(NotServed::NotLeader);
        }
        Ok(p)
    }

    /// Applies one metadata update and reconciles the hosted partitions with it.
    pub fn apply_update(&self, update: &weir_proto::v1::MetadataUpdate) -> Result<(), BrokerError> {
        let closing = self.reconcile.lock().unwrap_or_else(|p| p.into_inner());
        if *closing {
            return Ok(());
        }
        let current = self.view();
        // A coordinator that lags the others may stream an older state after a reconnect:
        // never go back in time (it could make this broker drop a partition it hosts).
        if current.version > 0 && update.version < current.version {
            tracing::debug!(
                version = update.version,
                current = current.version,
                "ignoring an older metadata update"
            );
            return Ok(());
        }
        let mut next = (*current).clone();
        next.apply(update);
        let next = Arc::new(next);
        // Reconcile first, publish after: a handler that sees a topic in the view finds its
        // partitions opened and their roles set.
        let result = self.reconcile(&next);
        *self.view.write().unwrap_or_else(|p| p.into_inner()) = next.clone();
        self.view_version.send_replace(next.version);
        result
    }

    fn reconcile(&self, view: &ClusterView) -> Result<(), BrokerError> {
        let now = self.clock.wall();
        let mono = self.clock.mono_ms();
        let mut first_error = None;
        let mut wanted = HashMap::new();
        let mut offline = HashMap::new();
        let was_offline =
            std::mem::take(&mut *self.offline.write().unwrap_or_else(|p| p.into_inner()));
        for topic in view.topics.values() {
            for info in &topic.partitions {
                if !info.replicas.contains(&self.me) {
                    continue;
                }
                let key = (topic.id, info.index);
                match self.host(topic, info, now, mono) {
                    Ok(p) => {
                        wanted.insert(key, p);
                    }
                    Err(e) => {
                        let reason = weir_model::Chain(&e).to_string();
                        // Said once, not at every metadata update.
                        if was_offline.get(&key) != Some(&reason) {
                            tracing::error!(topic = %topic.name, partition = info.index.get(), error = %reason,
                                "partition offline on this broker: its files cannot be opened; clients get KAFKA_STORAGE_ERROR");
                        }
                        offline.insert(key, reason);
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        *self.offline.write().unwrap_or_else(|p| p.into_inner()) = offline;
        // Partitions no longer hosted here: deleted topics, or moved away by a reassignment.
        let gone: Vec<Arc<Partition>> = {
            let mut local = self.local.write().unwrap_or_else(|p| p.into_inner());
            let gone_keys: Vec<_> = local
                .keys()
                .filter(|k| !wanted.contains_key(k))
                .copied()
                .collect();
            gone_keys.iter().filter_map(|k| local.remove(k)).collect()
        };
        for p in gone {
            tracing::info!(topic = %p.topic, partition = p.id.get(), "no longer a replica; removing the local log");
            if let Err(e) = self.remove_partition(&p) {
                first_error.get_or_insert(e);
            }
        }
        // Tell the fetchers which partitions to copy from which leader.
        let mut follow: BTreeMap<BrokerId, Vec<Arc<Partition>>> = BTreeMap::new();
        for p in self.local_partitions() {
            if let Role::Follower {
                leader: Some(leader),
            } = p.replica().role
            {
                follow.entry(leader).or_default().push(p.clone());
            }
        }
        // Only a real change wakes the fetchers: each wake restarts their in-flight fetch.
        self.follow.send_if_modified(|current| {
            if same_follow(current, &follow) {
                false
            } else {
                *current = follow;
                true
            }
        });
        self.notify_appended();
        first_error.map_or(Ok(()), Err)
    }

    /// Opens (if needed) a partition this broker is a replica of and sets its role.
    fn host(
        &self,
        topic: &TopicView,
        info: &PartitionView,
        now: Timestamp,
        mono: u64,
    ) -> Result<Arc<Partition>, BrokerError> {
        let p = self.open_or_reconfigure(topic, info, now)?;
        let min_insync = topic
            .configs
            .get("min.insync.replicas")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(self.config.min_insync_replicas)
            .max(1);
        self.take_role(&p, topic, info, min_insync, mono);
        Ok(p)
    }

    /// The hosted partition, its log config brought up to date; opened if it is new here.
    fn open_or_reconfigure(
        &self,
        topic: &TopicView,
        info: &PartitionView,
        now: Timestamp,
    ) -> Result<Arc<Partition>, BrokerError> {
        let log_config = topic_config::log_config(&self.config.log_defaults, &topic.configs);
        let existing = self.local_partition(topic.id, info.index);
        Ok(match existing {
            Some(p) => {
                p.log
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .set_config(log_config);
                p
            }
            None => {
                let p = Arc::new(open_partition(
                    &self.config.data_dir,
                    topic,
                    info.index,
                    log_config,
                    now,
                )?);
                self.local
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert((topic.id, info.index), p.clone());
                p
            }
        })
    }

    /// Becomes leader or follower as metadata says (`Replica::on_metadata` decides), and
    /// executes the change: a new leader records its epoch at its log end.
    fn take_role(
        &self,
        p: &Partition,
        topic: &TopicView,
        info: &PartitionView,
        min_insync: usize,
        mono: u64,
    ) {
        let mut r = p.replica();
        // Appends happen under the replica lock, so the log end read here is the one the
        // leadership starts from.
        let log_end = p
            .log
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .log_end_offset();
        let assignment = Assignment {
            leader: info.leader,
            leader_epoch: info.leader_epoch,
            partition_epoch: info.partition_epoch,
            replicas: &info.replicas,
            isr: &info.isr,
            min_insync,
        };
        match r.on_metadata(self.me, &assignment, log_end, mono) {
            RoleChange::Stale => return,
            RoleChange::StillLeading { watermark_moved } => {
                if watermark_moved {
                    self.notify_appended();
                }
            }
            RoleChange::Leads { epoch, log_end, .. } => {
                // The epoch is known at the log end from now on, so followers asking where
                // their epochs end get an answer (KIP-101) before any append.
                let mut log = p.log.write().unwrap_or_else(|e| e.into_inner());
                if let Err(e) = log.start_leader_epoch(epoch) {
                    tracing::error!(topic = %topic.name, partition = info.index.get(), error = %weir_model::Chain(&e), "recording the leader epoch");
                }
                tracing::info!(topic = %topic.name, partition = info.index.get(), epoch = epoch.get(), log_end = log_end.get(), "leading");
            }
            RoleChange::Follows { leader, changed } => {
                if changed {
                    tracing::info!(topic = %topic.name, partition = info.index.get(), epoch = info.leader_epoch.get(), leader = ?leader.map(|b| b.get()), "following");
                }
            }
        }
        p.publish(&r);
    }

    fn remove_partition(&self, p: &Partition) -> Result<(), BrokerError> {
        // Requests waiting on this partition (acks=all) learn at once that it is gone.
        {
            let mut r = p.replica();
            r.retire();
            p.publish(&r);
        }
        p.log.write().unwrap_or_else(|e| e.into_inner()).retire();
        let dir = partition_dir(&self.config.data_dir, &p.topic, p.id);
        let to = logs_dir(&self.config.data_dir).join(aside_name(
            &p.topic,
            p.id,
            p.topic_id,
            DELETE_SUFFIX,
        ));
        if dir.exists() {
            std::fs::rename(&dir, &to).map_err(|source| BrokerError::DataDir {
                path: dir.clone(),
                source,
            })?;
            std::fs::remove_dir_all(&to).map_err(|source| BrokerError::DataDir {
                path: to.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// Wakes long-polling fetches after an append or a watermark move.
    pub fn notify_appended(&self) {
        self.appended.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn subscribe_appends(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    /// Hands out a producer id never given before, reserving blocks from the coordinators.
    pub async fn next_producer_id(&self) -> Result<i64, BrokerError> {
        let mut ids = self.producer_ids.lock().await;
        if ids.is_empty() {
            let broker_id = self.me.get();
            let broker_epoch = self.broker_epoch();
            let resp = self
                .control
                .call(std::time::Duration::from_secs(10), |ch| async move {
                    weir_coordinator_client::ControlClient::broker(ch)
                        .allocate_producer_ids(weir_proto::v1::AllocateProducerIdsRequest {
                            broker_id,
                            broker_epoch,
                        })
                        .await
                        .map(|r| r.into_inner())
                })
                .await?;
            if let Some(e) = resp.error.filter(|e| e.code != 0) {
                return Err(BrokerError::Coordinator(e.message));
            }
            *ids = resp.first..resp.first + i64::from(resp.count);
        }
        let id = ids.start;
        ids.start += 1;
        Ok(id)
    }

    /// Runs time-based flushing, and retention when `retention` is set, on every hosted
    /// partition. A failing partition does not stop the others; every failure is returned.
    pub fn housekeeping(&self, now: Timestamp, retention: bool) -> Vec<BrokerError> {
        let mut errors = Vec::new();
        for p in self.local_partitions() {
            let mut log = p.log.write().unwrap_or_else(|e| e.into_inner());
            let result = if retention {
                log.apply_retention(now).map(|_| ())
            } else {
                Ok(())
            }
            .and_then(|()| log.maybe_flush(now));
            match result {
                Ok(()) => {}
                // Removed while this pass ran.
                Err(weir_storage::StorageError::Closed { .. }) => {}
                Err(source) => {
                    self.log_dir
                        .record(&format!("housekeeping {}-{}", p.topic, p.id), &source);
                    errors.push(BrokerError::Storage {
                        topic: p.topic.to_string(),
                        partition: p.id.get(),
                        source,
                    });
                }
            }
        }
        errors
    }

    /// Flushes and closes every log (the clean-shutdown path). Carries on past a failing
    /// partition and returns the first failure.
    pub fn close(&self) -> Result<(), BrokerError> {
        let mut closing = self.reconcile.lock().unwrap_or_else(|p| p.into_inner());
        *closing = true;
        let all: Vec<_> = {
            let mut local = self.local.write().unwrap_or_else(|p| p.into_inner());
            local.drain().map(|(_, p)| p).collect()
        };
        let mut first = None;
        for p in all {
            let mut log = p.log.write().unwrap_or_else(|e| e.into_inner());
            if let Err(source) = log.close() {
                let e = BrokerError::Storage {
                    topic: p.topic.to_string(),
                    partition: p.id.get(),
                    source,
                };
                tracing::error!(error = %weir_model::Chain(&e), "closing a partition log");
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Partitions hosted now.
    pub fn partition_count(&self) -> usize {
        self.local.read().unwrap_or_else(|p| p.into_inner()).len()
    }
}

fn same_follow(
    a: &BTreeMap<BrokerId, Vec<Arc<Partition>>>,
    b: &BTreeMap<BrokerId, Vec<Arc<Partition>>>,
) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b.iter())
            .all(|((la, pa), (lb, pb))| la == lb && same_partitions(pa, pb))
}

/// Whether two lists hold the same hosted partitions (the same objects, in any order).
pub fn same_partitions(a: &[Arc<Partition>], b: &[Arc<Partition>]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.iter().any(|y| Arc::ptr_eq(x, y)))
}

pub fn logs_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("logs")
}

/// `<data-dir>/logs/<topic>-<partition>`, as Kafka lays out its log directories.
pub fn partition_dir(data_dir: &Path, topic: &TopicName, partition: PartitionId) -> PathBuf {
    logs_dir(data_dir).join(format!("{topic}-{partition}"))
}

/// The file in a partition directory naming the topic id it belongs to, so a topic deleted
/// and re-created under the same name while this broker was down starts from an empty log.
/// Format: the UUID on one line, then a `crc32c=` line (see [`crate::data_dir::with_crc`]).
/// Files written before the checksum hold the bare UUID and are still read.
const TOPIC_ID_FILE: &str = "topic.id";

/// Suffixes of partition directories set aside: `-delete` ones are removed at the next start,
/// `-stray` ones are kept for an operator (Kafka 3.7+ names stray logs the same way).
const DELETE_SUFFIX: &str = "-delete";
const STRAY_SUFFIX: &str = "-stray";

/// `<topic>-<partition>.<topic id hex><suffix>`, with the topic name cut short so that the
/// whole fits in NAME_MAX, as Kafka does: a 249-character topic name plus the rest would not.
fn aside_name(topic: &TopicName, partition: PartitionId, id: TopicId, suffix: &str) -> String {
    let tail = format!("-{partition}.{}{suffix}", id.to_hex());
    let keep = limits::FILE_NAME_BYTES_MAX.saturating_sub(tail.len());
    // Topic names are ASCII, so any byte index is a character boundary.
    let name = topic.as_str();
    format!("{}{tail}", &name[..name.len().min(keep)])
}

/// What a partition directory's `topic.id` file says.
#[derive(Debug, PartialEq, Eq)]
enum TopicIdFile {
    Missing,
    /// `checksummed` is false for a file written before the checksum (a bare UUID).
    Valid {
        id: TopicId,
        checksummed: bool,
    },
    Damaged(String),
}

fn read_topic_id(path: &Path) -> Result<TopicIdFile, std::io::Error> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(TopicIdFile::Missing),
        Err(e) => return Err(e),
    };
    let checksummed = bytes.windows(7).any(|w| w == b"crc32c=");
    let text = if checksummed {
        match crate::data_dir::checked_body(&bytes) {
            Ok(body) => body.to_string(),
            Err(reason) => return Ok(TopicIdFile::Damaged(reason)),
        }
    } else {
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Ok(match TopicId::parse(text.trim()) {
        Some(id) => TopicIdFile::Valid { id, checksummed },
        None => TopicIdFile::Damaged(format!("not a topic id: {:?}", text.trim())),
    })
}

/// Checks that `dir` holds topic `topic`'s log. The log of another topic of the same name (one
/// deleted and re-created while this broker was down) is set aside as `-stray`, never deleted:
/// a mistaken id must not cost data. A damaged id file leaves the partition offline. Returns
/// whether the id file is to be (re)written, with a checksum: it is missing or has none.
fn claim_partition_dir(
    dir: &Path,
    topic: &TopicView,
    id: PartitionId,
) -> Result<bool, BrokerError> {
    let io = |source| BrokerError::DataDir {
        path: dir.to_path_buf(),
        source,
    };
    let id_file = dir.join(TOPIC_ID_FILE);
    match read_topic_id(&id_file).map_err(io)? {
        TopicIdFile::Missing => Ok(true),
        TopicIdFile::Valid {
            id: found,
            checksummed,
        } if found == topic.id => Ok(!checksummed),
        TopicIdFile::Valid { id: found, .. } => {
            let aside = dir.with_file_name(aside_name(&topic.name, id, found, STRAY_SUFFIX));
            tracing::error!(dir = %dir.display(), found = %found.to_uuid_string(),
                wanted = %topic.id.to_uuid_string(), aside = %aside.display(),
                "the log belongs to another topic of the same name; setting it aside (remove it once it is not needed)");
            std::fs::rename(dir, &aside).map_err(io)?;
            Ok(true)
        }
        TopicIdFile::Damaged(reason) => Err(BrokerError::DataDirMeta {
            path: id_file,
            reason: format!(
                "damaged ({reason}); the partition stays offline until it is repaired or removed"
            ),
        }),
    }
}

fn open_partition(
    data_dir: &Path,
    topic: &TopicView,
    id: PartitionId,
    config: LogConfig,
    now: Timestamp,
) -> Result<Partition, BrokerError> {
    let dir = partition_dir(data_dir, &topic.name, id);
    let write_id = claim_partition_dir(&dir, topic, id)?;
    let log = PartitionLog::open(&dir, config, now).map_err(|source| BrokerError::Storage {
        topic: topic.name.to_string(),
        partition: id.get(),
        source,
    })?;
    if write_id {
        let body = crate::data_dir::with_crc(format!("{}\n", topic.id.to_uuid_string()));
        crate::data_dir::write_atomically(&dir.join(TOPIC_ID_FILE), &body)?;
    }
    let (progress, _) = watch::channel(Replica::new().progress());
    Ok(Partition {
        topic: topic.name.clone(),
        topic_id: topic.id,
        id,
        log: RwLock::new(log),
        replica: Mutex::new(Replica::new()),
        progress,
    })
}

fn remove_deleted_dirs(logs: &Path) -> Result<(), BrokerError> {
    let entries = std::fs::read_dir(logs).map_err(|source| BrokerError::DataDir {
        path: logs.into(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| BrokerError::DataDir {
            path: logs.into(),
            source,
        })?;
        let path = entry.path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(DELETE_SUFFIX))
        {
            std::fs::remove_dir_all(&path).map_err(|source| BrokerError::DataDir {
                path: path.clone(),
                source,
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str, id: u8) -> TopicView {
        TopicView {
            name: TopicName::new(name).unwrap(),
            id: TopicId([id; 16]),
            configs: BTreeMap::new(),
            partitions: Vec::new(),
        }
    }

    fn open(data: &Path, t: &TopicView) -> Result<Partition, BrokerError> {
        open_partition(
            data,
            t,
            PartitionId(0),
            LogConfig::default(),
            Timestamp::now(),
        )
    }

    /// Proves: a partition directory holding another topic's log (a topic of the same name
    /// re-created while this broker was down) is set aside as `-stray` with every file in it,
    /// never deleted, and the new topic starts from an empty directory.
    #[test]
    fn another_topics_log_is_set_aside_not_deleted() {
        let data = tempfile::tempdir().unwrap();
        let old = topic("orders", 1);
        let p = open(data.path(), &old).unwrap();
        p.log.write().unwrap().close().unwrap();
        let dir = partition_dir(data.path(), &old.name, PartitionId(0));
        let before: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();

        let new = topic("orders", 2);
        open(data.path(), &new).unwrap();
        let aside =
            logs_dir(data.path()).join(aside_name(&old.name, PartitionId(0), old.id, STRAY_SUFFIX));
        let kept: Vec<_> = std::fs::read_dir(&aside)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(
            kept.len(),
            before.len(),
            "every file of the old log is kept"
        );
        assert_eq!(
            read_topic_id(&dir.join(TOPIC_ID_FILE)).unwrap(),
            TopicIdFile::Valid {
                id: new.id,
                checksummed: true
            }
        );
        // Kept across restarts: only `-delete` directories are removed at start-up.
        remove_deleted_dirs(&logs_dir(data.path())).unwrap();
        assert!(aside.exists());
    }

    /// Proves: a damaged `topic.id` (one changed hex digit) leaves the partition offline with
    /// an error naming the file, and removes nothing; a file from before the checksum (a bare
    /// UUID) is still read, and rewritten with a checksum.
    #[test]
    fn a_damaged_topic_id_keeps_the_partition_offline() {
        let data = tempfile::tempdir().unwrap();
        let t = topic("orders", 7);
        let p = open(data.path(), &t).unwrap();
        p.log.write().unwrap().close().unwrap();
        let id_file = partition_dir(data.path(), &t.name, PartitionId(0)).join(TOPIC_ID_FILE);
        let good = std::fs::read(&id_file).unwrap();
        let mut bad = good.clone();
        bad[3] = if bad[3] == b'0' { b'1' } else { b'0' };
        std::fs::write(&id_file, &bad).unwrap();
        let e = open(data.path(), &t).expect_err("refused");
        assert!(
            e.to_string().contains("topic.id") && e.to_string().contains("checksum"),
            "{e}"
        );
        assert_eq!(std::fs::read(&id_file).unwrap(), bad, "nothing rewritten");
        assert!(
            std::fs::read_dir(id_file.parent().unwrap())
                .unwrap()
                .count()
                > 1,
            "nothing removed"
        );

        std::fs::write(&id_file, t.id.to_uuid_string()).unwrap();
        let p = open(data.path(), &t).unwrap();
        p.log.write().unwrap().close().unwrap();
        assert_eq!(
            std::fs::read(&id_file).unwrap(),
            good,
            "rewritten with a checksum"
        );
    }

    /// Proves: the names of set-aside directories fit NAME_MAX even for a 249-character topic
    /// name (Kafka's limit), and a real rename to one succeeds.
    #[test]
    fn set_aside_names_fit_name_max() {
        let name = TopicName::new("t".repeat(249)).unwrap();
        let id = TopicId([0xab; 16]);
        for suffix in [DELETE_SUFFIX, STRAY_SUFFIX] {
            let n = aside_name(&name, PartitionId(9999), id, suffix);
            assert!(n.len() <= limits::FILE_NAME_BYTES_MAX, "{} bytes", n.len());
            assert!(n.ends_with(&format!("-9999.{}{suffix}", id.to_hex())));
        }
        let data = tempfile::tempdir().unwrap();
        let from = partition_dir(data.path(), &name, PartitionId(0));
        std::fs::create_dir_all(&from).unwrap();
        let to = logs_dir(data.path()).join(aside_name(&name, PartitionId(0), id, DELETE_SUFFIX));
        std::fs::rename(&from, &to).unwrap();
        remove_deleted_dirs(&logs_dir(data.path())).unwrap();
        assert!(!to.exists());
    }
}
