//! Replication between brokers, over gRPC.
//!
//! ```text
//!  follower                                 leader
//!  fetcher ── EpochEndOffsets(latest epoch) ──▶  end offset of that epoch
//!          ◀─ truncate divergent tail (KIP-101/279)
//!  fetcher ── Fetch(fetch_offset = log end) ──▶  on_fetch: follower progress, watermark
//!          ◀─ raw batches + watermark ────────   (long poll until data or max_wait)
//!  append_replicated, watermark = min(leader's, own log end)
//! ```
//! One fetcher task per leader broker carries every partition this broker follows there.
//! A fetch response is applied only if the partition is still following at the epoch the
//! request was made for: a partition that became leader meanwhile never takes a late copy.

use crate::partition::{Partition, Role};
use crate::state::BrokerState;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tonic::{Request, Response, Status};
use weir_model::limits::{
    REPLICA_FETCH_BYTES_MAX, REPLICA_FETCH_PARTITION_BYTES_MAX, REPLICA_FETCH_PARTITIONS_MAX,
    REPLICATION_MESSAGE_BYTES_MAX, WATERMARKS_MAX,
};
use weir_model::{BrokerId, LeaderEpoch, Offset, PartitionId, TopicId};
use weir_proto::v1;
use weir_proto::v1::replication_client::ReplicationClient;
use weir_replication::follower;

use weir_proto::codes::{
    FENCED_LEADER_EPOCH, KAFKA_STORAGE_ERROR, NONE, NOT_LEADER_OR_FOLLOWER, OFFSET_OUT_OF_RANGE,
    UNKNOWN_LEADER_EPOCH, UNKNOWN_TOPIC_OR_PARTITION,
};

/// How long a leader holds a fetch with no new data.
const FETCH_WAIT_MS: i32 = 500;

/// The leader's side: the `Replication` gRPC service.
#[derive(Debug, Clone)]
pub struct ReplicationService {
    pub state: Arc<BrokerState>,
}

impl ReplicationService {
    /// Checks who sent a replica fetch: a registered broker other than this one, at the epoch
    /// of its current registration. A fetch moves the high watermark and keeps its sender in
    /// the ISR, so one that claims to come from a cut-off follower would void acks=all; the
    /// epoch is what the coordinators gave the real follower at registration. (Which
    /// partitions it replicates is checked per partition, in `LeaderState::on_fetch`.)
    fn check_sender(&self, replica: BrokerId, broker_epoch: i64) -> Result<(), Status> {
        if replica == self.state.me {
            return Err(Status::invalid_argument(format!(
                "broker {replica} does not fetch from itself"
            )));
        }
        let view = self.state.view();
        let Some(b) = view.brokers.get(&replica) else {
            return Err(Status::permission_denied(format!(
                "broker {replica} is not registered"
            )));
        };
        if b.epoch.0 != broker_epoch {
            // Either a stale incarnation (or a forgery), or this broker's view lags a new
            // registration: the follower backs off and retries, and the view catches up.
            return Err(Status::failed_precondition(format!(
                "broker {replica} is at epoch {}, the fetch says {broker_epoch}",
                b.epoch.0
            )));
        }
        Ok(())
    }

    /// Checks a follower's request against a hosted partition this broker leads.
    fn leading(&self, topic_id: &str, partition: i32, epoch: i32) -> Result<Arc<Partition>, i32> {
        let id = TopicId::parse(topic_id).ok_or(UNKNOWN_TOPIC_OR_PARTITION)?;
        let p = self
            .state
            .local_partition(id, PartitionId(partition))
            .ok_or(NOT_LEADER_OR_FOLLOWER)?;
        let progress = *p.progress.borrow();
        if !progress.leader {
            return Err(NOT_LEADER_OR_FOLLOWER);
        }
        match epoch.cmp(&progress.epoch.get()) {
            std::cmp::Ordering::Less => Err(FENCED_LEADER_EPOCH),
            std::cmp::Ordering::Greater => Err(UNKNOWN_LEADER_EPOCH),
            std::cmp::Ordering::Equal => Ok(p),
        }
    }

    /// Reads one partition for a follower. Records the follower's position on the first
    /// pass only (`record`), so a long poll's re-read does not count as a new fetch.
    fn read_one(
        &self,
        replica: BrokerId,
        fp: &v1::ReplicaFetchPartition,
        max_bytes: usize,
        record: bool,
    ) -> v1::ReplicaFetchPartitionData {
        let mut out = v1::ReplicaFetchPartitionData {
            topic_id: fp.topic_id.clone(),
            partition: fp.partition,
            error_code: NONE,
            high_watermark: None,
            log_start_offset: None,
            log_end_offset: None,
            records: bytes::Bytes::new(),
        };
        let p = match self.leading(&fp.topic_id, fp.partition, fp.current_leader_epoch) {
            Ok(p) => p,
            Err(code) => {
                out.error_code = code;
                return out;
            }
        };
        let fetch_offset = Offset(fp.fetch_offset);
        if record {
            self.record_fetch(&p, replica, fp.current_leader_epoch, fetch_offset);
        }
        let log = p.log.read().unwrap_or_else(|e| e.into_inner());
        let end = log.log_end_offset();
        out.high_watermark = Some(p.high_watermark().get());
        out.log_start_offset = Some(log.log_start_offset().get());
        out.log_end_offset = Some(end.get());
        if fetch_offset > end || fetch_offset < log.log_start_offset() {
            out.error_code = OFFSET_OUT_OF_RANGE;
            return out;
        }
        if fetch_offset == end || max_bytes == 0 {
            return out;
        }
        match log.read(fetch_offset, max_bytes, end, true) {
            Ok(read) => out.records = read.bytes,
            Err(weir_storage::StorageError::OffsetOutOfRange { .. }) => {
                out.error_code = OFFSET_OUT_OF_RANGE
            }
            Err(e) => {
                tracing::error!(topic = %p.topic, partition = p.id.get(), error = %weir_model::Chain(&e), "replica read failed");
                out.error_code = KAFKA_STORAGE_ERROR;
            }
        }
        out
    }

    /// Records a follower's fetch position as the leader's: the high watermark may move, and a
    /// follower that has caught up is proposed back into the ISR.
    fn record_fetch(
        &self,
        p: &Arc<Partition>,
        replica: BrokerId,
        current_leader_epoch: i32,
        fetch_offset: Offset,
    ) {
        let state = &self.state;
        let mut r = p.replica();
        // Eligibility reads the view only when a caught-up follower is to be proposed, not on
        // every fetch.
        let recorded = r.on_follower_fetch(
            replica,
            LeaderEpoch(current_leader_epoch),
            fetch_offset,
            state.clock.mono_ms(),
            |b| crate::session::eligible_in(&state.view(), b),
        );
        if let Some(l) = r.leader()
            && !l.isr().contains(&replica)
        {
            tracing::debug!(
                topic = %p.topic, partition = p.id.get(), replica = replica.get(),
                fetch_offset = fetch_offset.get(), high_watermark = l.high_watermark().get(),
                log_end = l.log_end().get(), pending = ?l.pending(),
                "fetch from a replica outside the ISR"
            );
        }
        if recorded.watermark_moved || recorded.proposal.is_some() {
            p.publish(&r);
        }
        drop(r);
        if recorded.watermark_moved {
            self.state.notify_appended();
        }
        if let Some(proposal) = recorded.proposal {
            crate::session::alter_partition(self.state.clone(), p.clone(), proposal);
        }
    }
}

#[tonic::async_trait]
impl v1::replication_server::Replication for ReplicationService {
    async fn fetch(
        &self,
        request: Request<v1::ReplicaFetchRequest>,
    ) -> Result<Response<v1::ReplicaFetchResponse>, Status> {
        let req = request.into_inner();
        let replica = BrokerId(req.replica_id);
        self.check_sender(replica, req.broker_epoch)?;
        let wait = Duration::from_millis(req.max_wait_ms.clamp(0, 5_000) as u64);
        let deadline = Instant::now() + wait;
        let mut appends = self.state.subscribe_appends();
        let mut first = true;
        loop {
            appends.borrow_and_update();
            let mut remaining = req.max_bytes.clamp(0, REPLICA_FETCH_BYTES_MAX) as usize;
            let mut partitions =
                Vec::with_capacity(req.partitions.len().min(REPLICA_FETCH_PARTITIONS_MAX));
            let mut bytes = 0usize;
            let mut errored = false;
            for fp in req.partitions.iter().take(REPLICA_FETCH_PARTITIONS_MAX) {
                let max = (fp.max_bytes.clamp(0, REPLICA_FETCH_PARTITION_BYTES_MAX) as usize)
                    .min(remaining);
                let d = self.read_one(replica, fp, max, first);
                remaining = remaining.saturating_sub(d.records.len());
                bytes += d.records.len();
                errored |= d.error_code != NONE;
                partitions.push(d);
            }
            first = false;
            if bytes > 0 || errored || Instant::now() >= deadline {
                return Ok(Response::new(v1::ReplicaFetchResponse { partitions }));
            }
            if tokio::time::timeout_at(deadline, appends.changed())
                .await
                .is_err()
            {
                return Ok(Response::new(v1::ReplicaFetchResponse { partitions }));
            }
        }
    }

    async fn epoch_end_offsets(
        &self,
        request: Request<v1::EpochEndOffsetRequest>,
    ) -> Result<Response<v1::EpochEndOffsetResponse>, Status> {
        let req = request.into_inner();
        let partitions = req
            .partitions
            .iter()
            .take(REPLICA_FETCH_PARTITIONS_MAX)
            .map(|ep| {
                let mut out = v1::EpochEndOffset {
                    topic_id: ep.topic_id.clone(),
                    partition: ep.partition,
                    error_code: NONE,
                    leader_epoch: None,
                    end_offset: None,
                };
                match self.leading(&ep.topic_id, ep.partition, ep.current_leader_epoch) {
                    Err(code) => out.error_code = code,
                    Ok(p) => {
                        let log = p.log.read().unwrap_or_else(|e| e.into_inner());
                        if let Some((epoch, end)) =
                            log.end_offset_for_epoch(LeaderEpoch(ep.leader_epoch))
                        {
                            out.leader_epoch = Some(epoch.get());
                            out.end_offset = Some(end.get());
                        }
                    }
                }
                out
            })
            .collect();
        Ok(Response::new(v1::EpochEndOffsetResponse { partitions }))
    }

    async fn watermarks(
        &self,
        request: Request<v1::WatermarksRequest>,
    ) -> Result<Response<v1::WatermarksResponse>, Status> {
        let req = request.into_inner();
        let partitions = req
            .partitions
            .iter()
            .take(WATERMARKS_MAX)
            .map(|wp| {
                let mut out = v1::Watermark {
                    topic_id: wp.topic_id.clone(),
                    partition: wp.partition,
                    error_code: NONE,
                    high_watermark: None,
                    log_end_offset: None,
                };
                let local = TopicId::parse(&wp.topic_id)
                    .and_then(|id| self.state.local_partition(id, PartitionId(wp.partition)))
                    .filter(|p| p.progress.borrow().leader);
                match local {
                    None => out.error_code = NOT_LEADER_OR_FOLLOWER,
                    Some(p) => {
                        out.high_watermark = Some(p.high_watermark().get());
                        out.log_end_offset = Some(
                            p.log
                                .read()
                                .unwrap_or_else(|e| e.into_inner())
                                .log_end_offset()
                                .get(),
                        );
                    }
                }
                out
            })
            .collect();
        Ok(Response::new(v1::WatermarksResponse { partitions }))
    }
}

/// A running fetcher: what it copies, and its task.
type Fetcher = (
    tokio::sync::watch::Sender<Vec<Arc<Partition>>>,
    tokio::task::JoinHandle<()>,
);

/// Runs the follower side: one fetcher per leader broker, started and stopped as the set of
/// followed partitions changes. Returns when the broker shuts down (the task is aborted).
pub async fn run_fetchers(state: Arc<BrokerState>) {
    let mut follow = state.follow.subscribe();
    let mut fetchers: HashMap<BrokerId, Fetcher> = HashMap::new();
    loop {
        let wanted: BTreeMap<BrokerId, Vec<Arc<Partition>>> = follow.borrow_and_update().clone();
        fetchers.retain(|leader, (_, task)| {
            let keep = wanted.contains_key(leader);
            if !keep {
                task.abort();
            }
            keep
        });
        for (leader, partitions) in wanted {
            match fetchers.get(&leader) {
                Some((tx, _)) => {
                    tx.send_if_modified(|current| {
                        let same = crate::state::same_partitions(current, &partitions);
                        if !same {
                            *current = partitions;
                        }
                        !same
                    });
                }
                None => {
                    let (tx, rx) = tokio::sync::watch::channel(partitions);
                    let task = tokio::spawn(fetch_from(state.clone(), leader, rx));
                    fetchers.insert(leader, (tx, task));
                }
            }
        }
        if follow.changed().await.is_err() {
            for (_, (_, task)) in fetchers {
                task.abort();
            }
            return;
        }
    }
}

/// What the fetcher knows of one partition it copies.
#[derive(Debug, Clone, Copy)]
struct Copying {
    /// The epoch whose divergence check is done; a new epoch needs a new check.
    validated_epoch: Option<LeaderEpoch>,
}

async fn fetch_from(
    state: Arc<BrokerState>,
    leader: BrokerId,
    mut partitions: tokio::sync::watch::Receiver<Vec<Arc<Partition>>>,
) {
    let mut client: Option<(String, ReplicationClient<tonic::transport::Channel>)> = None;
    let mut copying: HashMap<(TopicId, i32), Copying> = HashMap::new();
    let mut backoff = Duration::from_millis(50);
    let mut failures = 0u64;
    loop {
        let current: Vec<Arc<Partition>> = partitions.borrow_and_update().clone();
        copying.retain(|k, _| current.iter().any(|p| (p.topic_id, p.id.get()) == *k));
        // Subscribe before reading the view: an update published in between is then seen by
        // `changed()` below rather than lost.
        let mut view = state.subscribe_view();
        let Some(addr) = state
            .view()
            .brokers
            .get(&leader)
            .map(|b| b.internal_addr.clone())
        else {
            // The leader's address is not known yet: wait for metadata.
            tokio::select! {
                changed = partitions.changed() => if changed.is_err() { return; },
                _ = view.changed() => {}
            }
            continue;
        };
        if client.as_ref().is_none_or(|(a, _)| *a != addr) {
            match replication_client(&addr) {
                Ok(c) => client = Some((addr.clone(), c)),
                Err(e) => {
                    tracing::error!(leader = leader.get(), addr, error = %weir_model::Chain(&e), "bad leader address");
                    if partitions.changed().await.is_err() {
                        return;
                    }
                    continue;
                }
            }
        }
        let Some((_, c)) = client.as_mut() else {
            continue;
        };
        let round = tokio::select! {
            r = fetch_round(&state, leader, c, &current, &mut copying) => r,
            changed = partitions.changed() => {
                if changed.is_err() { return; }
                continue;
            }
        };
        match round {
            Ok(()) => {
                if failures > 0 {
                    tracing::info!(
                        leader = leader.get(),
                        failures,
                        "replica fetches work again"
                    );
                }
                failures = 0;
                backoff = Duration::from_millis(50);
            }
            Err(e) => {
                failures += 1;
                // Said once, then now and then: a dead leader makes this fail until metadata
                // moves the partitions.
                if failures == 1 || failures.is_multiple_of(50) {
                    tracing::warn!(leader = leader.get(), failures, error = %weir_model::Chain(&e), "replica fetch failed");
                }
                // Reconnect next time, after a pause (the leader may be down: metadata will say).
                client = None;
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    changed = partitions.changed() => if changed.is_err() { return; },
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// A client of the leader's Replication service at `addr`, connecting on first use.
fn replication_client(
    addr: &str,
) -> Result<ReplicationClient<tonic::transport::Channel>, tonic::transport::Error> {
    let e = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?;
    // A paused or cut-off leader must not hold a fetch for ever: every call has a deadline
    // past the long-poll wait.
    let ch = e
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_millis(FETCH_WAIT_MS as u64 + 2_000))
        .tcp_nodelay(true)
        .connect_lazy();
    // A response holds up to REPLICA_FETCH_BYTES_MAX of batches plus framing.
    Ok(ReplicationClient::new(ch).max_decoding_message_size(REPLICATION_MESSAGE_BYTES_MAX))
}

/// The epoch a follower replica is at, if it still follows `leader`.
fn following(p: &Partition, leader: BrokerId) -> Option<LeaderEpoch> {
    let r = p.replica();
    match r.role {
        Role::Follower { leader: Some(l) } if l == leader => Some(r.epoch),
        _ => None,
    }
}

async fn fetch_round(
    state: &BrokerState,
    leader: BrokerId,
    client: &mut ReplicationClient<tonic::transport::Channel>,
    partitions: &[Arc<Partition>],
    copying: &mut HashMap<(TopicId, i32), Copying>,
) -> Result<(), Status> {
    // An offline log directory takes no copies: this broker drops out of the ISRs, as Kafka's
    // does, until it is back (see `log_dir`).
    if state.log_dir.is_offline() {
        tokio::time::sleep(crate::log_dir::PROBE_INTERVAL).await;
        return Ok(());
    }
    // 1. Divergence checks for partitions new to this fetcher or at a new epoch.
    let mut check = Vec::new();
    for p in partitions {
        let Some(epoch) = following(p, leader) else {
            continue;
        };
        let c = copying.entry((p.topic_id, p.id.get())).or_insert(Copying {
            validated_epoch: None,
        });
        if c.validated_epoch != Some(epoch) {
            check.push((p.clone(), epoch));
        }
    }
    if !check.is_empty() {
        truncate_divergent(state, client, &check, copying).await?;
    }
    // 2. Fetch from the log end of every validated partition.
    let (req, asked) = fetch_request(state, leader, partitions, copying);
    if asked.is_empty() {
        // Nothing to fetch now (divergence checks pending an epoch the leader does not know
        // yet): try again shortly.
        tokio::time::sleep(Duration::from_millis(50)).await;
        return Ok(());
    }
    let resp = client.fetch(req).await?.into_inner();
    let mut appended = false;
    for (d, (p, epoch)) in resp.partitions.iter().zip(asked.iter()) {
        if d.partition == p.id.get() {
            appended |= apply_fetched(state, leader, p, *epoch, d, copying);
        }
    }
    if appended {
        state.notify_appended();
    }
    Ok(())
}

/// The fetch for every partition whose divergence check is done at its current epoch, from
/// its log end; with the partitions asked for, in order.
fn fetch_request(
    state: &BrokerState,
    leader: BrokerId,
    partitions: &[Arc<Partition>],
    copying: &HashMap<(TopicId, i32), Copying>,
) -> (v1::ReplicaFetchRequest, Vec<(Arc<Partition>, LeaderEpoch)>) {
    let mut asked = Vec::new();
    let mut req = v1::ReplicaFetchRequest {
        replica_id: state.me.get(),
        broker_epoch: state.broker_epoch(),
        max_wait_ms: FETCH_WAIT_MS,
        min_bytes: 1,
        max_bytes: REPLICA_FETCH_BYTES_MAX,
        partitions: Vec::new(),
    };
    for p in partitions {
        let Some(epoch) = following(p, leader) else {
            continue;
        };
        if copying
            .get(&(p.topic_id, p.id.get()))
            .and_then(|c| c.validated_epoch)
            != Some(epoch)
        {
            continue;
        }
        let end = p
            .log
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .log_end_offset();
        req.partitions.push(v1::ReplicaFetchPartition {
            topic_id: p.topic_id.to_uuid_string(),
            partition: p.id.get(),
            current_leader_epoch: epoch.get(),
            fetch_offset: end.get(),
            max_bytes: REPLICA_FETCH_PARTITION_BYTES_MAX,
        });
        asked.push((p.clone(), epoch));
    }
    (req, asked)
}

/// The leader answered OFFSET_OUT_OF_RANGE: below its log start (retention moved on), start
/// over there; above its end cannot happen after the divergence check, so check again.
fn out_of_range(
    p: &Partition,
    epoch: LeaderEpoch,
    d: &v1::ReplicaFetchPartitionData,
    copying: &mut HashMap<(TopicId, i32), Copying>,
) {
    let r = p.replica();
    if r.epoch != epoch {
        return;
    }
    let mut log = p.log.write().unwrap_or_else(|e| e.into_inner());
    // Without the leader's log start there is nothing to reset to: check again.
    let Some(leader_start) = d.log_start_offset.map(Offset) else {
        copying.remove(&(p.topic_id, p.id.get()));
        return;
    };
    match follower::out_of_range(log.log_end_offset(), leader_start) {
        follower::OutOfRange::ResetTo(start) => {
            tracing::info!(topic = %p.topic, partition = p.id.get(), start = start.get(), "behind the leader's log start; resetting");
            if let Err(e) = log.reset_to(start) {
                tracing::error!(error = %weir_model::Chain(&e), "resetting a follower log");
            }
        }
        follower::OutOfRange::Recheck => {
            copying.remove(&(p.topic_id, p.id.get()));
        }
    }
}

/// Applies the leader's answer for one partition: resets below the leader's log start,
/// appends the records, follows the log start and the high watermark (never past the log
/// end). Returns whether records were appended.
fn apply_fetched(
    state: &BrokerState,
    leader: BrokerId,
    p: &Partition,
    epoch: LeaderEpoch,
    d: &v1::ReplicaFetchPartitionData,
    copying: &mut HashMap<(TopicId, i32), Copying>,
) -> bool {
    let mut appended = false;
    match d.error_code {
        NONE => {}
        OFFSET_OUT_OF_RANGE => {
            out_of_range(p, epoch, d, copying);
            return false;
        }
        code => {
            // Not leader / stale epoch: metadata will move this partition; a new check then.
            tracing::debug!(topic = %p.topic, partition = p.id.get(), code, "leader refused fetch");
            if code == FENCED_LEADER_EPOCH || code == NOT_LEADER_OR_FOLLOWER {
                copying.remove(&(p.topic_id, p.id.get()));
            }
            return false;
        }
    }
    let mut r = p.replica();
    // Still following this leader at this epoch? A promotion meanwhile must not take it.
    if r.epoch != epoch || !matches!(r.role, Role::Follower { leader: Some(l) } if l == leader) {
        return false;
    }
    let mut log = p.log.write().unwrap_or_else(|e| e.into_inner());
    if !d.records.is_empty() {
        match log.append_replicated(&d.records, state.clock.wall()) {
            Ok(_) => appended = true,
            Err(e) if e.is_fatal() => {
                weir_process::fatal(&format!("replicating {}-{}", p.topic, p.id), &e)
            }
            Err(e)
                if state
                    .log_dir
                    .record(&format!("replicating {}-{}", p.topic, p.id), &e) =>
            {
                return false;
            }
            Err(e) => {
                tracing::warn!(topic = %p.topic, partition = p.id.get(), error = %weir_model::Chain(&e), "replicated append refused; re-checking divergence");
                copying.remove(&(p.topic_id, p.id.get()));
                return false;
            }
        }
    }
    let (start, end) = (log.log_start_offset(), log.log_end_offset());
    if let Some(leader_start) = d.log_start_offset.map(Offset)
        && let Some(target) = follower::log_start(leader_start, start, end)
        && let Err(e) = log.delete_records_before(target)
    {
        tracing::warn!(error = %weir_model::Chain(&e), "following the leader's log start");
    }
    if let Some(leader_hw) = d.high_watermark.map(Offset)
        && let Some(hw) = follower::high_watermark(leader_hw, end, r.high_watermark)
    {
        r.high_watermark = hw;
        p.publish(&r);
    }
    appended
}

/// KIP-101 with the KIP-279 refinement: ask the leader where our latest epoch ends on its log;
/// truncate to that (or to where that epoch ends here, if earlier), and repeat until the
/// epochs agree. A log with no epochs (empty) has nothing to check.
async fn truncate_divergent(
    state: &BrokerState,
    client: &mut ReplicationClient<tonic::transport::Channel>,
    check: &[(Arc<Partition>, LeaderEpoch)],
    copying: &mut HashMap<(TopicId, i32), Copying>,
) -> Result<(), Status> {
    let mut pending: Vec<(Arc<Partition>, LeaderEpoch)> = check.to_vec();
    for _round in 0..16 {
        let mut ask = Vec::new();
        let mut req = v1::EpochEndOffsetRequest {
            replica_id: state.me.get(),
            partitions: Vec::new(),
        };
        for (p, epoch) in &pending {
            let latest = p
                .log
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .latest_epoch();
            match latest {
                None => {
                    copying.insert(
                        (p.topic_id, p.id.get()),
                        Copying {
                            validated_epoch: Some(*epoch),
                        },
                    );
                }
                Some(latest) => {
                    req.partitions.push(v1::EpochEndOffsetPartition {
                        topic_id: p.topic_id.to_uuid_string(),
                        partition: p.id.get(),
                        current_leader_epoch: epoch.get(),
                        leader_epoch: latest.get(),
                    });
                    ask.push((p.clone(), *epoch, latest));
                }
            }
        }
        if ask.is_empty() {
            return Ok(());
        }
        let resp = client.epoch_end_offsets(req).await?.into_inner();
        let mut again = Vec::new();
        for (e, (p, epoch, latest)) in resp.partitions.iter().zip(ask) {
            match apply_epoch_end(state, &p, epoch, latest, e) {
                Checked::Validated => {
                    copying.insert(
                        (p.topic_id, p.id.get()),
                        Copying {
                            validated_epoch: Some(epoch),
                        },
                    );
                }
                Checked::Truncated => again.push((p.clone(), epoch)),
                Checked::Undecided => {}
            }
        }
        if again.is_empty() {
            return Ok(());
        }
        pending = again;
    }
    Ok(())
}

/// What a divergence check decided for one partition.
enum Checked {
    /// The logs agree up to this follower's end: fetch from there.
    Validated,
    /// A divergent tail was cut: ask again, for the epoch now latest here.
    Truncated,
    /// Nothing to do now (the epoch moved on, or truncating would lose committed records).
    Undecided,
}

/// Applies the leader's epoch end offset for one partition (KIP-101/279): truncates a
/// divergent tail, but never below the high watermark unless the topic allows unclean
/// election.
fn apply_epoch_end(
    state: &BrokerState,
    p: &Partition,
    epoch: LeaderEpoch,
    latest: LeaderEpoch,
    e: &v1::EpochEndOffset,
) -> Checked {
    if e.error_code != NONE {
        // The leader does not know this epoch yet (UNKNOWN_LEADER_EPOCH) or is no
        // longer leader: the next round or new metadata sorts it out.
        return Checked::Undecided;
    }
    let r = p.replica();
    if r.epoch != epoch {
        return Checked::Undecided;
    }
    let mut log = p.log.write().unwrap_or_else(|e| e.into_inner());
    let end = log.log_end_offset();
    let local = follower::Local {
        latest,
        log_end: end,
        high_watermark: r.high_watermark,
        unclean_allowed: unclean_allowed(state, p),
    };
    // Both absent: the leader knows no epoch at or below ours (where it ends is then unused).
    let answer = follower::EpochEnd {
        epoch: e.end_offset.and(e.leader_epoch).map(LeaderEpoch),
        end_offset: Offset(e.end_offset.unwrap_or_default()),
    };
    let end_here = |epoch| log.end_offset_for_epoch(epoch).map(|(_, o)| o);
    match follower::divergence(local, answer, end_here) {
        follower::Divergence::Agree => Checked::Validated,
        follower::Divergence::Refuse { target } => {
            tracing::error!(
                topic = %p.topic, partition = p.id.get(), leader_epoch = epoch.get(),
                high_watermark = r.high_watermark.get(), to = target.get(),
                "refusing to truncate below the high watermark: the leader lacks committed records"
            );
            Checked::Undecided
        }
        follower::Divergence::TruncateTo(target) => {
            tracing::info!(
                topic = %p.topic, partition = p.id.get(), from = end.get(), to = target.get(),
                epoch = epoch.get(), "truncating a divergent tail to the leader's epoch end offset"
            );
            if let Err(err) = log.truncate_to(target) {
                tracing::error!(error = %weir_model::Chain(&err), "truncating a follower log");
                return Checked::Undecided;
            }
            Checked::Truncated
        }
    }
}

/// Whether the partition's topic allows unclean leader election: then a leader may lack
/// committed records by the operator's choice, and followers truncate to it as Kafka's do.
fn unclean_allowed(state: &BrokerState, p: &Partition) -> bool {
    state.view().topic(p.topic.as_str()).is_some_and(|t| {
        t.configs
            .get("unclean.leader.election.enable")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    })
}
