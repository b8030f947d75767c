//! The group coordinator's runtime: which broker coordinates a group, loading groups from
//! `__consumer_offsets`, persisting what they change, timers, and answering waiting requests.
//!
//! ```text
//! group id ──partition_for──▶ __consumer_offsets partition P ──its leader──▶ coordinator
//!
//!  request ──▶ shard(P) lock ──▶ Group (weir-group state machine) ──▶ Effects
//!                 │                                                    │ replies → waiters
//!                 │ first use at a leader epoch: load P's records       │ records → append to P
//!                 ▼                                                    ▼ (acks=all, then answer)
//!          groups of P in memory                          tick loop: sessions, rebalance deadlines
//! ```
//!
//! The leader of partition P of `__consumer_offsets` coordinates every group that hashes to P
//! (Kafka's rule, same hash). When leadership of P moves, the new leader loads P's log on first
//! use and the old one drops its groups (waiting requests get NOT_COORDINATOR, and clients find
//! the new coordinator). Offsets and group assignments are answered only once the record is
//! replicated to the ISR (acks=all on P), so a committed offset survives the loss of the
//! coordinator's broker.

use crate::config::GroupSettings;
use crate::partition::{Acks, AppendError, NotServed, Partition, WaitError};
use crate::state::BrokerState;
use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedMutexGuard, oneshot};
use weir_group::records::{self, OffsetValue, RecordKey};
use weir_group::{
    Effects, Group, GroupConfig, GroupError, GroupId, JoinResponse, Reply, SyncResponse, Waiter,
};
use weir_model::{Clock, LeaderEpoch, Offset, PartitionId};
use weir_storage::AppendOutcome;

/// The internal topic holding committed offsets and group metadata (Kafka's name, so tools
/// that know it find it).
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// How long a write to `__consumer_offsets` may wait for the ISR.
const PERSIST_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes read per step while loading a partition of `__consumer_offsets`.
const LOAD_READ_BYTES: usize = 1024 * 1024;
/// Group timers (sessions, rebalance deadlines, the initial delay) are checked this often.
pub const TICK: Duration = Duration::from_millis(50);

/// A waiting request's way back.
#[derive(Debug)]
enum Responder {
    Join(oneshot::Sender<JoinResponse>),
    Sync(oneshot::Sender<SyncResponse>),
}

/// The groups of one `__consumer_offsets` partition, as loaded at one leader epoch.
#[derive(Debug)]
pub struct Shard {
    pub index: PartitionId,
    /// The leadership these groups were loaded under; another epoch means reload.
    loaded: Option<(LeaderEpoch, Arc<Partition>)>,
    pub groups: BTreeMap<String, Group>,
    /// KIP-848 consumer groups (their offsets live in `groups`, like every group's).
    pub consumer: BTreeMap<String, weir_group::consumer::ConsumerGroup>,
}

impl Shard {
    /// The partition this shard writes to.
    pub fn partition(&self) -> Option<&Arc<Partition>> {
        self.loaded.as_ref().map(|(_, p)| p)
    }
}

/// The group coordinator of this broker.
#[derive(Debug)]
pub struct Coordinator {
    pub config: GroupConfig,
    pub consumer_config: weir_group::consumer::ConsumerConfig,
    pub settings: GroupSettings,
    shards: Mutex<HashMap<PartitionId, Arc<tokio::sync::Mutex<Shard>>>>,
    waiters: Mutex<HashMap<u64, Responder>>,
    next_waiter: AtomicU64,
    clock: Arc<dyn Clock>,
}

/// The `__consumer_offsets` partition of `group`, if the topic exists.
pub fn partition_of(state: &BrokerState, group: &str) -> Option<PartitionId> {
    let view = state.view();
    let n = view.topic(OFFSETS_TOPIC)?.partitions.len();
    Some(PartitionId(weir_group::partition_for(group, n as i32)))
}

/// The clock the groups run on: monotonic ms for timers, wall ms for stored timestamps.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    pub mono: u64,
    pub wall: i64,
}

impl Coordinator {
    pub fn new(settings: GroupSettings, clock: Arc<dyn Clock>) -> Coordinator {
        Coordinator {
            config: GroupConfig {
                min_session_timeout_ms: settings.min_session_timeout_ms,
                max_session_timeout_ms: settings.max_session_timeout_ms,
                initial_rebalance_delay_ms: settings.initial_rebalance_delay_ms,
                max_size: settings.max_size,
                offset_metadata_max_bytes: settings.offset_metadata_max_bytes,
            },
            consumer_config: weir_group::consumer::ConsumerConfig {
                session_timeout_ms: settings.consumer_session_timeout_ms,
                heartbeat_interval_ms: settings.consumer_heartbeat_interval_ms,
                max_size: settings.max_size,
            },
            settings,
            shards: Mutex::new(HashMap::new()),
            waiters: Mutex::new(HashMap::new()),
            next_waiter: AtomicU64::new(1),
            clock,
        }
    }

    pub fn now(&self) -> Now {
        Now {
            mono: self.clock.mono_ms(),
            wall: self.clock.wall().get(),
        }
    }

    /// Locks the shard coordinating `group`, loading it first if this broker just became its
    /// leader. NOT_COORDINATOR when another broker leads it.
    pub async fn shard(
        &self,
        state: &BrokerState,
        group: &str,
    ) -> Result<OwnedMutexGuard<Shard>, GroupError> {
        if group.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let index = partition_of(state, group).ok_or(GroupError::CoordinatorNotAvailable)?;
        self.shard_at(state, index).await
    }

    async fn shard_at(
        &self,
        state: &BrokerState,
        index: PartitionId,
    ) -> Result<OwnedMutexGuard<Shard>, GroupError> {
        // Not the leader: answer at once, without queueing behind the shard's lock.
        match state.leader_partition(OFFSETS_TOPIC, index) {
            Ok(_) => {}
            Err(NotServed::NotLeader) => return Err(GroupError::NotCoordinator),
            Err(NotServed::UnknownTopicOrPartition | NotServed::Offline) => {
                return Err(GroupError::CoordinatorNotAvailable);
            }
        }
        let shard = self
            .shards
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(index)
            .or_insert_with(|| {
                Arc::new(tokio::sync::Mutex::new(Shard {
                    index,
                    loaded: None,
                    groups: BTreeMap::new(),
                    consumer: BTreeMap::new(),
                }))
            })
            .clone();
        let mut guard = shard.lock_owned().await;
        // Leadership may have moved while this request waited for the lock: decide on what
        // holds now.
        let partition = match state.leader_partition(OFFSETS_TOPIC, index) {
            Ok(p) => p,
            Err(NotServed::NotLeader) => return Err(GroupError::NotCoordinator),
            Err(NotServed::UnknownTopicOrPartition | NotServed::Offline) => {
                return Err(GroupError::CoordinatorNotAvailable);
            }
        };
        let epoch = partition.progress.borrow().epoch;
        let current = guard
            .loaded
            .as_ref()
            .is_some_and(|(e, p)| *e == epoch && Arc::ptr_eq(p, &partition));
        if !current {
            self.unload(&mut guard);
            let now = self.now();
            let p = partition.clone();
            let groups = tokio::task::block_in_place(|| load(&p, now))?;
            tracing::info!(
                partition = index.get(),
                epoch = epoch.get(),
                groups = groups.len(),
                "loaded consumer groups"
            );
            guard.groups = groups;
            guard.loaded = Some((epoch, partition));
        }
        Ok(guard)
    }

    /// Forgets a shard's groups; their waiting requests learn this broker is not the
    /// coordinator any more.
    fn unload(&self, shard: &mut Shard) {
        if shard.loaded.take().is_some() {
            tracing::info!(
                partition = shard.index.get(),
                "no longer coordinating this partition's groups"
            );
        }
        for g in shard.groups.values_mut() {
            for r in g.abandon(GroupError::NotCoordinator) {
                self.deliver(r);
            }
        }
        shard.groups.clear();
        shard.consumer.clear();
    }

    /// Every shard this broker has created (loaded or not), without holding the map's lock.
    fn all_shards(&self) -> Vec<Arc<tokio::sync::Mutex<Shard>>> {
        self.shards
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// A fresh waiter for a JoinGroup.
    pub fn join_waiter(&self) -> (Waiter, oneshot::Receiver<JoinResponse>) {
        let id = self.next_waiter.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, Responder::Join(tx));
        (Waiter(id), rx)
    }

    /// A fresh waiter for a SyncGroup.
    pub fn sync_waiter(&self) -> (Waiter, oneshot::Receiver<SyncResponse>) {
        let id = self.next_waiter.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, Responder::Sync(tx));
        (Waiter(id), rx)
    }

    /// Drops a waiter that was answered directly.
    pub fn forget(&self, w: Waiter) {
        self.waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&w.0);
    }

    pub fn deliver(&self, reply: Reply) {
        let (w, r) = match reply {
            Reply::Join(w, r) => (w, Ok(r)),
            Reply::Sync(w, r) => (w, Err(r)),
        };
        let responder = self
            .waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&w.0);
        // A send fails when the client went away meanwhile: nothing to answer.
        match (responder, r) {
            (Some(Responder::Join(tx)), Ok(r)) => {
                let _ = tx.send(r);
            }
            (Some(Responder::Sync(tx)), Err(r)) => {
                let _ = tx.send(r);
            }
            (other, r) => {
                tracing::debug!(waiter = w.0, ?other, ?r, "reply for an unknown waiter");
            }
        }
    }

    /// Delivers a call's replies and, when asked, stores the group's record. Returns where
    /// the record went, for a caller whose answer depends on it being durable (a static
    /// member's replacement); others need not wait.
    pub fn apply(
        &self,
        state: &BrokerState,
        shard: &Shard,
        group: &str,
        effects: Effects,
    ) -> Result<Option<Appended>, GroupError> {
        for r in effects.replies {
            self.deliver(r);
        }
        if effects.store_group
            && let Some(g) = shard.groups.get(group)
        {
            let value = records::encode_group_value(&g.stored_value());
            let key = records::encode_group_key(group);
            return match append(state, shard, vec![(key, Some(value))]) {
                Ok(a) => Ok(Some(a)),
                Err(e) => {
                    tracing::warn!(group, error = %weir_model::Chain(&e), "storing the group's state failed");
                    Err(e)
                }
            };
        }
        Ok(None)
    }

    /// Runs every loaded group's timers, drops shards whose leadership moved, and forgets
    /// groups with nothing left to keep.
    pub async fn tick(&self, state: &BrokerState) {
        let shards = self.all_shards();
        let now = self.now();
        for shard in shards {
            let mut shard = shard.lock().await;
            let Some((epoch, partition)) = shard.loaded.clone() else {
                continue;
            };
            let still = state
                .leader_partition(OFFSETS_TOPIC, shard.index)
                .is_ok_and(|p| Arc::ptr_eq(&p, &partition) && p.progress.borrow().epoch == epoch);
            if !still {
                self.unload(&mut shard);
                continue;
            }
            let due: Vec<String> = shard
                .groups
                .iter()
                .filter(|(_, g)| g.next_deadline().is_some_and(|d| d <= now.mono))
                .map(|(id, _)| id.clone())
                .collect();
            for id in due {
                let Some(g) = shard.groups.get_mut(&id) else {
                    continue;
                };
                let effects = g.tick(&self.config, now.mono, now.wall);
                // Timer-driven changes (an emptied group) answer no request: not waited for.
                let _ = self.apply(state, &shard, &id, effects);
            }
            for g in shard.consumer.values_mut() {
                if g.next_deadline().is_some_and(|d| d <= now.mono) && g.tick(now.mono) {
                    tracing::info!(group = %g.id, "consumer group member session expired");
                }
            }
            shard.consumer.retain(|_, g| !g.is_empty());
            let consumer: std::collections::BTreeSet<String> =
                shard.consumer.keys().cloned().collect();
            shard.groups.retain(|id, g| {
                consumer.contains(id)
                    || !(g.state() == weir_group::GroupState::Dead
                        || (g.state() == weir_group::GroupState::Empty && g.is_unused()))
            });
        }
    }

    /// Groups this broker coordinates now: id, state, protocol type and group type
    /// (`classic` or `consumer`).
    pub async fn list(&self, state: &BrokerState) -> Vec<(String, String, String, &'static str)> {
        let indexes: Vec<PartitionId> = self
            .shards
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect();
        let mut out = Vec::new();
        for index in indexes {
            let Ok(shard) = self.shard_at(state, index).await else {
                continue;
            };
            for (id, g) in &shard.consumer {
                out.push((
                    id.clone(),
                    g.state().to_string(),
                    "consumer".to_string(),
                    "consumer",
                ));
            }
            for (id, g) in &shard.groups {
                if shard.consumer.contains_key(id) {
                    continue;
                }
                out.push((
                    id.clone(),
                    g.state().as_str().to_string(),
                    g.protocol_type().unwrap_or_default().to_string(),
                    "classic",
                ));
            }
        }
        out
    }

    /// Loads every `__consumer_offsets` partition this broker leads (after a leadership change,
    /// so ListGroups and lag metrics see the groups before any member comes back).
    pub async fn load_led(&self, state: &BrokerState) {
        let Some(topic) = state.view().topic(OFFSETS_TOPIC).cloned() else {
            return;
        };
        for info in &topic.partitions {
            if info.leader != Some(state.me) {
                continue;
            }
            let loaded = self
                .shards
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&info.index)
                .cloned();
            let needs = match loaded {
                None => true,
                Some(s) => match s.try_lock() {
                    Ok(s) => s
                        .loaded
                        .as_ref()
                        .is_none_or(|(e, _)| *e != info.leader_epoch),
                    Err(_) => false,
                },
            };
            if needs && let Err(e) = self.shard_at(state, info.index).await {
                tracing::debug!(partition = info.index.get(), error = %weir_model::Chain(&e), "not loading groups");
            }
        }
    }

    /// A snapshot of every group this broker coordinates, for metrics.
    pub async fn snapshot(&self) -> Vec<GroupSnapshot> {
        let shards = self.all_shards();
        let mut out = Vec::new();
        for s in shards {
            let s = s.lock().await;
            if s.loaded.is_none() {
                continue;
            }
            for (id, g) in &s.groups {
                let kip848 = s.consumer.get(id);
                out.push(GroupSnapshot {
                    id: id.clone(),
                    state: kip848.map_or(g.state().as_str(), |c| c.state()),
                    generation: kip848.map_or(g.generation(), |c| c.group_epoch),
                    members: kip848.map_or(g.member_count(), |c| c.members().count()),
                    offsets: g
                        .offsets()
                        .iter()
                        .map(|((t, p), v)| (t.clone(), p.get(), v.offset.get()))
                        .collect(),
                });
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }
}

/// What metrics report of one group.
#[derive(Clone, Debug)]
pub struct GroupSnapshot {
    pub id: String,
    pub state: &'static str,
    pub generation: i32,
    pub members: usize,
    /// (topic, partition, committed offset)
    pub offsets: Vec<(String, i32, i64)>,
}

/// Where a write to `__consumer_offsets` landed: what [`persisted`] waits on.
#[derive(Debug)]
pub struct Appended {
    pub partition: Arc<Partition>,
    pub last: Offset,
    pub epoch: LeaderEpoch,
}

/// Appends records to the shard's partition as its leader; returns where they landed.
/// Ordering of a shard's records follows the order of the calls, as they run under its lock.
pub fn append(
    state: &BrokerState,
    shard: &Shard,
    records: Vec<(Bytes, Option<Bytes>)>,
) -> Result<Appended, GroupError> {
    let Some((epoch, partition)) = shard.loaded.clone() else {
        return Err(GroupError::NotCoordinator);
    };
    let now = state.clock.wall();
    let batch: Vec<Record> = records
        .into_iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: epoch.get(),
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: now.get(),
            key: Some(key),
            value,
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &batch,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| {
        tracing::error!(error = %weir_model::Chain(&*e), "encoding a __consumer_offsets batch");
        GroupError::CoordinatorNotAvailable
    })?;
    let last = append_own(state, &partition, &mut buf, epoch)?;
    state.notify_appended();
    Ok(Appended {
        partition,
        last,
        epoch,
    })
}

/// Appends a batch the coordinator wrote itself as leader at `epoch`, with acks=all's
/// `min.insync.replicas` check; returns the last offset.
fn append_own(
    state: &BrokerState,
    partition: &Partition,
    batch: &mut [u8],
    epoch: LeaderEpoch,
) -> Result<Offset, GroupError> {
    let now = state.clock.wall();
    match partition.append_as_leader(&state.log_dir, state.me, batch, Acks::All, now, Some(epoch)) {
        Ok((AppendOutcome::Appended { last_offset, .. }, _))
        | Ok((AppendOutcome::Duplicate { last_offset, .. }, _)) => Ok(last_offset),
        Err(e @ AppendError::NotEnoughReplicas { .. }) => {
            tracing::warn!(error = %e, "group coordinator write refused");
            Err(GroupError::CoordinatorNotAvailable)
        }
        Err(
            AppendError::LogDirOffline { .. }
            | AppendError::EpochMoved { .. }
            | AppendError::NotLeader { .. },
        ) => Err(GroupError::NotCoordinator),
        Err(AppendError::Storage(e)) => {
            if crate::error::is_fatal(&e) {
                weir_process::fatal(
                    &format!("appending to {}-{}", partition.topic, partition.id),
                    &e,
                );
            }
            tracing::warn!(error = %weir_model::Chain(&e), "group coordinator write failed");
            Err(GroupError::CoordinatorNotAvailable)
        }
    }
}

/// Waits until the ISR has everything up to `last` (what makes a commit durable).
pub async fn persisted(a: &Appended) -> Result<(), GroupError> {
    let deadline = tokio::time::Instant::now() + PERSIST_TIMEOUT;
    a.partition
        .wait_for_isr(a.last, a.epoch, deadline)
        .await
        .map_err(|e| {
            tracing::debug!(error = %e, "group write not replicated");
            match e {
                WaitError::TimedOut { .. } => GroupError::RequestTimedOut,
                WaitError::NotEnoughReplicasAfterAppend { .. } => {
                    GroupError::CoordinatorNotAvailable
                }
                WaitError::LeadershipMoved { .. } | WaitError::NoLongerHosted { .. } => {
                    GroupError::NotCoordinator
                }
            }
        })
}

/// Reads a `__consumer_offsets` partition from its start and rebuilds its groups: the last
/// record for each key wins and a tombstone removes.
fn load(partition: &Partition, now: Now) -> Result<BTreeMap<String, Group>, GroupError> {
    let log = partition.log.read().unwrap_or_else(|e| e.into_inner());
    let end = log.log_end_offset();
    let mut from = log.log_start_offset();
    let mut loaded = Loaded::default();
    while from < end {
        let read = log.read(from, LOAD_READ_BYTES, end, true).map_err(|e| {
            tracing::error!(error = %weir_model::Chain(&e), "reading __consumer_offsets to load groups");
            GroupError::CoordinatorLoadInProgress
        })?;
        if read.bytes.is_empty() {
            break;
        }
        let mut buf = read.bytes.clone();
        let sets = RecordBatchDecoder::decode_all(&mut buf).map_err(|e| {
            tracing::error!(error = %weir_model::Chain(&*e), "decoding __consumer_offsets");
            GroupError::CoordinatorLoadInProgress
        })?;
        for r in sets.iter().flat_map(|set| &set.records) {
            loaded.apply(r, now);
        }
        // Step by batches, not records: after compaction a batch may end past its last
        // record, or hold none.
        if read.next_offset <= from {
            break;
        }
        from = read.next_offset;
    }
    Ok(loaded.finish(now))
}

/// Groups as read so far from `__consumer_offsets`: offsets applied as they come, the last
/// group record of each group kept for the end.
#[derive(Default)]
struct Loaded {
    groups: BTreeMap<String, Group>,
    stored: BTreeMap<String, Option<records::GroupValue>>,
}

impl Loaded {
    /// Applies one record; an unreadable one is skipped with a warning.
    fn apply(&mut self, r: &Record, now: Now) {
        if r.control {
            return;
        }
        let Some(key) = r.key.as_deref() else {
            return;
        };
        let key = match records::decode_key(key) {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(offset = r.offset, error = %weir_model::Chain(&e), "skipping an unreadable __consumer_offsets key");
                return;
            }
        };
        let group = key.group().to_string();
        let g = self
            .groups
            .entry(group.clone())
            .or_insert_with(|| Group::new(GroupId(group.clone()), now.wall));
        match key {
            RecordKey::Offset {
                topic, partition, ..
            } => match r.value.as_deref().map(records::decode_offset_value) {
                None => g.set_offset(&topic, partition, None, Offset(r.offset)),
                Some(Ok(v)) => g.set_offset(&topic, partition, Some(v), Offset(r.offset)),
                Some(Err(e)) => {
                    tracing::warn!(offset = r.offset, error = %weir_model::Chain(&e), "skipping an unreadable offset record");
                }
            },
            RecordKey::Group { .. } => match r.value.as_deref().map(records::decode_group_value) {
                None => {
                    self.stored.insert(group, None);
                }
                Some(Ok(v)) => {
                    self.stored.insert(group, Some(v));
                }
                Some(Err(e)) => {
                    tracing::warn!(offset = r.offset, error = %weir_model::Chain(&e), "skipping an unreadable group record");
                }
            },
        }
    }

    /// Gives each group its last stored state; drops the groups left with nothing.
    fn finish(mut self, now: Now) -> BTreeMap<String, Group> {
        for (id, value) in self.stored {
            let g = self
                .groups
                .entry(id.clone())
                .or_insert_with(|| Group::new(GroupId(id.clone()), now.wall));
            // None: the group was deleted; offsets written after the deletion (a commit from
            // outside the group) stay.
            let value = value.unwrap_or_else(|| records::GroupValue {
                protocol_type: String::new(),
                generation: 0,
                protocol: None,
                leader: None,
                state_timestamp: now.wall,
                members: Vec::new(),
            });
            g.load(value, now.mono);
        }
        self.groups.retain(|_, g| !g.is_unused());
        self.groups
    }
}

/// An offset commit's records, ready to append.
pub fn offset_record(
    group: &str,
    topic: &str,
    partition: PartitionId,
    v: Option<&OffsetValue>,
) -> (Bytes, Option<Bytes>) {
    (
        records::encode_offset_key(group, topic, partition),
        v.map(records::encode_offset_value),
    )
}

/// The timer loop; also loads the partitions this broker comes to lead.
pub async fn run(state: Arc<BrokerState>, groups: Arc<Coordinator>) {
    let mut version = state.subscribe_view();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => groups.tick(&state).await,
            changed = version.changed() => {
                if changed.is_err() {
                    return;
                }
                groups.load_led(&state).await;
            }
        }
    }
}
