//! What every service shares: the Raft handle, the state machine's data, broker leases, and the
//! rules for where a request runs.
//!
//! Any coordinator accepts any request. Reads are served from the local state machine (a
//! follower may be a few entries behind). Writes and heartbeats only run on the leader: a
//! follower forwards them over `Raft.Forward` to the leader named by its Raft metrics, and the
//! leader executes a forwarded request locally, never forwarding it again. After a forwarded
//! write, the follower waits (briefly) until it has applied the entry itself, so a client that
//! writes through a follower then reads from it sees its write. Admin requests that build
//! their command from the state (placement, the new config map) first pass a read barrier
//! (`read_barrier`, Raft's ReadIndex through the leader), so a follower a few entries behind
//! does not place a topic on brokers it has not yet seen unfenced.

use crate::config::{CoordinatorConfig, FORWARD_TIMEOUT};
use crate::leases::{Check, Leases};
use crate::network::{PeerChannels, RaftRpc, call};
use crate::store::state_machine::{Applied, SmData};
use crate::types::{
    CommandResult, ForwardRequest, ForwardResponse, HeartbeatOutcome, NodeId, Raft,
};
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, ServerState};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};
use tonic::Status;
use tracing::{debug, info, warn};
use weir_metadata::{Command, MetadataError, MetadataState, Reply};
use weir_model::limits::{RAFT_MEMBERS_MAX, RAFT_NAME_BYTES_MAX};
use weir_model::{BrokerEpoch, BrokerId};

/// How long a write may wait for a quorum on the leader.
const WRITE_TIMEOUT: Duration = Duration::from_secs(8);
const _: () = assert!(WRITE_TIMEOUT.as_millis() < FORWARD_TIMEOUT.as_millis());
/// How long a follower waits to apply an entry it forwarded before answering anyway.
const READ_YOUR_WRITE_WAIT: Duration = Duration::from_secs(2);

/// A committed write: its log index and what applying it gave.
#[derive(Clone, Debug)]
pub struct Written {
    pub index: u64,
    pub result: CommandResult,
}

/// Why the leader-only path refused.
#[derive(Clone, Debug)]
enum LocalError {
    NotLeader(Option<NodeId>),
    Failed(String),
}

impl From<LocalError> for ForwardResponse {
    fn from(e: LocalError) -> Self {
        match e {
            LocalError::NotLeader(leader) => ForwardResponse::NotLeader { leader },
            LocalError::Failed(message) => ForwardResponse::Failed { message },
        }
    }
}

/// One coordinator's shared core.
pub struct Core {
    pub id: NodeId,
    pub raft: Raft,
    pub config: CoordinatorConfig,
    data: Arc<RwLock<SmData>>,
    applied_tx: broadcast::Sender<Arc<Applied>>,
    leases: Mutex<Leases>,
    channels: PeerChannels,
    /// Flips to true once, at shutdown.
    pub shutdown: watch::Receiver<bool>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Core {
    pub fn new(
        id: NodeId,
        raft: Raft,
        config: CoordinatorConfig,
        data: Arc<RwLock<SmData>>,
        applied_tx: broadcast::Sender<Arc<Applied>>,
        channels: PeerChannels,
        shutdown: watch::Receiver<bool>,
    ) -> Core {
        Core {
            id,
            raft,
            config,
            data,
            applied_tx,
            leases: Mutex::new(Leases::new(crate::config::LEASE_PAUSE_GAP)),
            channels,
            shutdown,
        }
    }

    /// Reads the local state machine.
    pub fn read<T>(&self, f: impl FnOnce(&SmData) -> T) -> T {
        match self.data.read() {
            Ok(d) => f(&d),
            Err(p) => f(&p.into_inner()),
        }
    }

    /// Reads the metadata state.
    pub fn state<T>(&self, f: impl FnOnce(&MetadataState) -> T) -> T {
        self.read(|d| f(&d.state))
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Applied>> {
        self.applied_tx.subscribe()
    }

    fn leases(&self) -> std::sync::MutexGuard<'_, Leases> {
        match self.leases.lock() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        }
    }

    /// The Raft leader this coordinator knows of.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// What this coordinator knows of itself when it judges a peer's Raft request.
    pub fn receiver(&self) -> crate::peer_input::Receiver {
        let m = self.raft.metrics();
        let m = m.borrow();
        crate::peer_input::Receiver {
            id: self.id,
            term: m.current_term,
            members: m
                .membership_config
                .membership()
                .nodes()
                .map(|(id, _)| *id)
                .collect(),
        }
    }

    /// The leader id as the wire carries it: -1 when unknown.
    /// The Raft leader's id as the wire carries it (absent when unknown).
    pub fn leader_wire(&self) -> Option<i32> {
        self.leader().and_then(|l| i32::try_from(l).ok())
    }

    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.id)
    }

    /// The coordinators in the current membership: id, address, and whether it votes.
    pub fn coordinators(&self) -> Vec<(NodeId, String, bool)> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, node)| (*id, node.addr.clone(), voters.contains(id)))
            .collect()
    }

    /// Proposes `command` (on the leader, or through it) and waits until it is applied here.
    pub async fn write(&self, command: Command) -> Result<Written, Status> {
        if self.is_leader() {
            match self.write_local(command.clone()).await {
                Ok(w) => return Ok(w),
                // Leadership moved while proposing: forward to the new leader.
                Err(LocalError::NotLeader(_)) => {}
                Err(LocalError::Failed(m)) => return Err(Status::unavailable(m)),
            }
        }
        match self.forward(ForwardRequest::Write(command)).await? {
            ForwardResponse::Written { index, result } => {
                self.wait_applied(index).await;
                Ok(Written { index, result })
            }
            other => Err(unexpected(other)),
        }
    }

    /// Proposes on this node, which must be the leader.
    async fn write_local(&self, command: Command) -> Result<Written, LocalError> {
        let registering = match &command {
            Command::RegisterBroker { id, .. } => Some(*id),
            _ => None,
        };
        let outcome = tokio::time::timeout(WRITE_TIMEOUT, self.raft.client_write(command)).await;
        let response = match outcome {
            Err(_) => {
                return Err(LocalError::Failed(format!(
                    "no quorum committed the write within {WRITE_TIMEOUT:?}"
                )));
            }
            Ok(Ok(r)) => r,
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                return Err(LocalError::NotLeader(f.leader_id));
            }
            Ok(Err(e)) => return Err(LocalError::Failed(e.to_string())),
        };
        if let (Some(id), Ok(Reply::BrokerRegistered { epoch })) = (registering, &response.data) {
            self.leases().renew(id, *epoch, Instant::now());
        }
        Ok(Written {
            index: response.log_id.index,
            result: response.data,
        })
    }

    /// Waits until this node has applied `index`, for at most [`READ_YOUR_WRITE_WAIT`].
    pub async fn wait_applied(&self, index: u64) {
        let waited = self
            .raft
            .wait(Some(READ_YOUR_WRITE_WAIT))
            .applied_index_at_least(Some(index), "forwarded write applied here")
            .await;
        if let Err(e) = waited {
            debug!(index, error = %weir_model::Chain(&e), "answering before applying a forwarded write");
        }
    }

    /// Waits until this coordinator has applied everything committed before the call (Raft's
    /// ReadIndex, through the leader), so a command built from the local state next is built
    /// from a state at least as new as any write the caller has seen acknowledged.
    pub async fn read_barrier(&self) -> Result<(), Status> {
        if self.is_leader() {
            match self.read_index_local().await {
                Ok(index) => {
                    self.wait_applied(index).await;
                    return Ok(());
                }
                Err(LocalError::NotLeader(_)) => {}
                Err(LocalError::Failed(m)) => return Err(Status::unavailable(m)),
            }
        }
        match self.forward(ForwardRequest::ReadIndex).await? {
            ForwardResponse::ReadIndex { index } => {
                self.wait_applied(index).await;
                Ok(())
            }
            other => Err(unexpected(other)),
        }
    }

    async fn read_index_local(&self) -> Result<u64, LocalError> {
        match tokio::time::timeout(WRITE_TIMEOUT, self.raft.get_read_log_id()).await {
            Err(_) => Err(LocalError::Failed(format!(
                "no quorum confirmed the leader within {WRITE_TIMEOUT:?}"
            ))),
            Ok(Ok((read, _applied))) => Ok(read.map_or(0, |l| l.index)),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                Err(LocalError::NotLeader(f.leader_id))
            }
            Ok(Err(e)) => Err(LocalError::Failed(e.to_string())),
        }
    }

    /// Sends a leader-only request to the leader.
    async fn forward(&self, request: ForwardRequest) -> Result<ForwardResponse, Status> {
        let (leader, addr) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let leader = match m.current_leader {
                Some(l) if l != self.id => l,
                _ => return Err(Status::unavailable("no coordinator leader yet")),
            };
            let addr = m
                .membership_config
                .membership()
                .get_node(&leader)
                .map(|n| n.addr.clone());
            match addr {
                Some(a) => (leader, a),
                None => return Err(Status::unavailable("no coordinator leader yet")),
            }
        };
        let response: ForwardResponse = call(
            &self.channels,
            &addr,
            RaftRpc::Forward,
            &request,
            FORWARD_TIMEOUT,
        )
        .await
        .map_err(|e| {
            Status::unavailable(format!(
                "forwarding to the leader, coordinator {leader} at {addr}: {e}"
            ))
        })?;
        match response {
            ForwardResponse::NotLeader { .. } => Err(Status::unavailable(format!(
                "coordinator {leader} is no longer the leader; retry"
            ))),
            ForwardResponse::Failed { message } => Err(Status::unavailable(message)),
            other => Ok(other),
        }
    }

    /// Executes a request forwarded by another coordinator.
    pub async fn handle_forwarded(&self, request: ForwardRequest) -> ForwardResponse {
        if !self.is_leader() {
            return ForwardResponse::NotLeader {
                leader: self.leader(),
            };
        }
        let result = match request {
            ForwardRequest::Write(command) => {
                self.write_local(command)
                    .await
                    .map(|w| ForwardResponse::Written {
                        index: w.index,
                        result: w.result,
                    })
            }
            ForwardRequest::Heartbeat {
                broker_id,
                broker_epoch,
                metadata_version,
            } => self
                .heartbeat_local(
                    BrokerId(broker_id),
                    BrokerEpoch(broker_epoch),
                    metadata_version,
                )
                .await
                .map(ForwardResponse::Heartbeat),
            ForwardRequest::AddCoordinator { id, addr } => self
                .add_coordinator_local(id, addr)
                .await
                .map(|index| ForwardResponse::QuorumChanged { index }),
            ForwardRequest::RemoveCoordinator { id } => self
                .remove_coordinator_local(id)
                .await
                .map(|index| ForwardResponse::QuorumChanged { index }),
            ForwardRequest::ReadIndex => self
                .read_index_local()
                .await
                .map(|index| ForwardResponse::ReadIndex { index }),
        };
        result.unwrap_or_else(ForwardResponse::from)
    }

    /// A broker's heartbeat, wherever it arrived.
    pub async fn heartbeat(
        &self,
        id: BrokerId,
        epoch: BrokerEpoch,
        metadata_version: i64,
    ) -> Result<HeartbeatOutcome, Status> {
        if self.is_leader() {
            match self.heartbeat_local(id, epoch, metadata_version).await {
                Ok(o) => return Ok(o),
                Err(LocalError::NotLeader(_)) => {}
                Err(LocalError::Failed(m)) => return Err(Status::unavailable(m)),
            }
        }
        let request = ForwardRequest::Heartbeat {
            broker_id: id.get(),
            broker_epoch: epoch.get(),
            metadata_version,
        };
        match self.forward(request).await? {
            ForwardResponse::Heartbeat(o) => Ok(o),
            other => Err(unexpected(other)),
        }
    }

    /// The leader's side of a heartbeat: check the epoch, renew the lease, and unfence a
    /// fenced broker once it has caught up with the metadata up to its own registration.
    async fn heartbeat_local(
        &self,
        id: BrokerId,
        epoch: BrokerEpoch,
        metadata_version: i64,
    ) -> Result<HeartbeatOutcome, LocalError> {
        if !self.is_leader() {
            return Err(LocalError::NotLeader(self.leader()));
        }
        let broker = self.state(|s| s.brokers.get(&id).cloned());
        let Some(broker) = broker else {
            let e = MetadataError::UnknownBroker(id);
            return Ok(HeartbeatOutcome {
                error: Some((i32::from(e.kafka_code()), e.to_string())),
                fenced: true,
            });
        };
        if broker.epoch != epoch {
            let e = MetadataError::StaleBrokerEpoch {
                id,
                given: epoch,
                current: broker.epoch,
            };
            return Ok(HeartbeatOutcome {
                error: Some((i32::from(e.kafka_code()), e.to_string())),
                fenced: true,
            });
        }
        self.leases().renew(id, epoch, Instant::now());
        if broker.fenced && !broker.shutting_down && metadata_version >= epoch.get() {
            let written = self
                .write_local(Command::UnfenceBroker { id, epoch })
                .await?;
            if let Err(e) = written.result {
                warn!(broker = id.get(), error = %weir_model::Chain(&e), "unfencing refused");
            } else {
                info!(broker = id.get(), epoch = epoch.get(), "broker unfenced");
            }
        }
        let fenced = self.state(|s| s.brokers.get(&id).is_none_or(|b| b.fenced));
        Ok(HeartbeatOutcome {
            error: None,
            fenced,
        })
    }

    /// Adds a coordinator: first as a learner (waiting until it has caught up), then as a
    /// voter. Returns once this coordinator has applied the change.
    pub async fn add_coordinator(&self, id: NodeId, addr: String) -> Result<(), Status> {
        if self.is_leader() {
            match self.add_coordinator_local(id, addr.clone()).await {
                Ok(_) => return Ok(()),
                Err(LocalError::NotLeader(_)) => {}
                Err(LocalError::Failed(m)) => return Err(Status::failed_precondition(m)),
            }
        }
        match self
            .forward(ForwardRequest::AddCoordinator { id, addr })
            .await?
        {
            ForwardResponse::QuorumChanged { index } => {
                self.wait_applied(index).await;
                Ok(())
            }
            other => Err(unexpected(other)),
        }
    }

    async fn add_coordinator_local(&self, id: NodeId, addr: String) -> Result<u64, LocalError> {
        // Followers refuse a membership past these bounds (`peer_input`), so the leader must
        // never propose one: replication would stop at that entry.
        if addr.len() > RAFT_NAME_BYTES_MAX {
            return Err(LocalError::Failed(format!(
                "coordinator address is {} bytes; at most {RAFT_NAME_BYTES_MAX}",
                addr.len()
            )));
        }
        let members = self.coordinators();
        if members.len() >= RAFT_MEMBERS_MAX && !members.iter().any(|(m, _, _)| *m == id) {
            return Err(LocalError::Failed(format!(
                "the quorum already names {RAFT_MEMBERS_MAX} coordinators, the most it may"
            )));
        }
        info!(coordinator = id, addr = %addr, "adding coordinator as a learner");
        self.raft
            .add_learner(id, BasicNode { addr }, true)
            .await
            .map_err(membership_error)?;
        info!(coordinator = id, "learner caught up; making it a voter");
        let written = self
            .raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(membership_error)?;
        Ok(written.log_id.index)
    }

    /// Removes a coordinator from the quorum entirely. Returns once this coordinator has
    /// applied the change.
    pub async fn remove_coordinator(&self, id: NodeId) -> Result<(), Status> {
        if self.is_leader() {
            match self.remove_coordinator_local(id).await {
                Ok(_) => return Ok(()),
                Err(LocalError::NotLeader(_)) => {}
                Err(LocalError::Failed(m)) => return Err(Status::failed_precondition(m)),
            }
        }
        match self
            .forward(ForwardRequest::RemoveCoordinator { id })
            .await?
        {
            ForwardResponse::QuorumChanged { index } => {
                self.wait_applied(index).await;
                Ok(())
            }
            other => Err(unexpected(other)),
        }
    }

    async fn remove_coordinator_local(&self, id: NodeId) -> Result<u64, LocalError> {
        let membership = self.coordinators();
        if !membership.iter().any(|(m, _, _)| *m == id) {
            return Err(LocalError::Failed(format!(
                "coordinator {id} is not in the quorum"
            )));
        }
        let voters: Vec<NodeId> = membership
            .iter()
            .filter(|(_, _, v)| *v)
            .map(|(m, _, _)| *m)
            .collect();
        if voters == [id] {
            return Err(LocalError::Failed(format!(
                "coordinator {id} is the last voter; add another before removing it"
            )));
        }
        info!(coordinator = id, "removing coordinator");
        let change = if voters.contains(&id) {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        let written = self
            .raft
            .change_membership(change, false)
            .await
            .map_err(membership_error)?;
        Ok(written.log_id.index)
    }

    /// The leader's periodic duties, until shutdown: initialise the cluster id, fence brokers
    /// whose lease expired, and move leadership back to preferred replicas; and, beside them,
    /// the timer that notices when this process was paused.
    pub async fn run_leader_duties(self: Arc<Self>) {
        tokio::join!(self.clone().watch_for_pauses(), self.run_duties());
    }

    /// Looks at the clock every `LEASE_CHECK_INTERVAL` and never waits on anything else, so a
    /// gap between two looks is a pause of the process, not a slow write of the duties (see
    /// `leases`).
    async fn watch_for_pauses(self: Arc<Self>) {
        let mut shutdown = self.shutdown.clone();
        let mut tick = tokio::time::interval(crate::config::LEASE_CHECK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
            let rearmed = self.leases().observe(Instant::now());
            if let Some(gap) = rearmed {
                warn!(
                    gap_ms = gap.as_millis() as u64,
                    "this coordinator did not run for a while (paused?); broker leases start afresh"
                );
            }
        }
    }

    async fn run_duties(self: Arc<Self>) {
        let mut shutdown = self.shutdown.clone();
        let mut tick = tokio::time::interval(crate::config::LEASE_CHECK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut leading_term: Option<u64> = None;
        let mut last_rebalance = Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
            let term = {
                let m = self.raft.metrics();
                let m = m.borrow();
                (m.state == ServerState::Leader && m.current_leader == Some(self.id))
                    .then_some(m.current_term)
            };
            let Some(term) = term else {
                leading_term = None;
                continue;
            };
            let now = Instant::now();
            if leading_term != Some(term) {
                leading_term = Some(term);
                info!(
                    term,
                    "became the coordinator leader; broker leases start afresh"
                );
                let mut leases = self.leases();
                self.state(|s| leases.restart_all(s, now));
                last_rebalance = now;
            }
            self.leader_tick(now, &mut last_rebalance).await;
        }
    }

    async fn leader_tick(&self, now: Instant, last_rebalance: &mut Instant) {
        if self.state(|s| s.cluster_id.is_empty()) {
            let cluster_id = uuid::Uuid::new_v4().to_string();
            match self
                .write_local(Command::InitCluster {
                    cluster_id: cluster_id.clone(),
                })
                .await
            {
                Ok(Written { result: Ok(_), .. }) => info!(%cluster_id, "initialised the cluster"),
                Ok(Written { result: Err(e), .. }) => {
                    debug!(error = %weir_model::Chain(&e), "cluster id already set")
                }
                Err(e) => debug!(error = ?e, "could not initialise the cluster yet"),
            }
        }
        self.fence_expired(now).await;
        if now.saturating_duration_since(*last_rebalance) >= self.config.leader_rebalance_interval {
            *last_rebalance = now;
            if self.state(|s| s.needs_preferred_election()) {
                let command = Command::ElectPreferredLeaders {
                    partitions: Vec::new(),
                };
                match self.write_local(command).await {
                    Ok(Written {
                        result: Ok(Reply::Elected(n)),
                        ..
                    }) => info!(elected = n, "moved leadership back to preferred replicas"),
                    Ok(_) => {}
                    Err(e) => warn!(error = ?e, "preferred leader election failed"),
                }
            }
        }
    }

    /// Fences the brokers whose lease expired at `now`, once a quorum has confirmed that this
    /// coordinator still leads: a leader deposed while it was paused learns it here instead of
    /// proposing fences for leases it could not renew.
    async fn fence_expired(&self, now: Instant) {
        let timeout = self.config.broker_session_timeout;
        let check = {
            let mut leases = self.leases();
            self.state(|s| leases.check(s, now, timeout))
        };
        let expired = match check {
            Check::Expired(expired) if expired.is_empty() => return,
            Check::Expired(expired) => expired,
            Check::Rearmed { gap } => {
                warn!(
                    gap_ms = gap.as_millis() as u64,
                    "the lease check ran late (paused?); broker leases start afresh"
                );
                return;
            }
        };
        if let Err(e) = self.read_index_local().await {
            info!(error = ?e, "not fencing: leadership not confirmed");
            return;
        }
        for (id, epoch) in expired {
            warn!(
                broker = id.get(),
                epoch = epoch.get(),
                timeout_ms = timeout.as_millis() as u64,
                "broker lease expired; fencing"
            );
            if let Err(e) = self.write_local(Command::FenceBroker { id, epoch }).await {
                warn!(broker = id.get(), error = ?e, "fencing failed");
            }
        }
    }
}

/// The initial voters, as openraft wants them.
pub fn voters(peers: &BTreeMap<NodeId, String>) -> BTreeMap<NodeId, BasicNode> {
    peers
        .iter()
        .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
        .collect()
}

fn membership_error(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> LocalError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            LocalError::NotLeader(f.leader_id)
        }
        other => LocalError::Failed(other.to_string()),
    }
}

fn unexpected(response: ForwardResponse) -> Status {
    Status::internal(format!("unexpected answer from the leader: {response:?}"))
}
