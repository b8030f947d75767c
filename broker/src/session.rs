//! The broker's membership in the cluster: registration, heartbeats that keep its lease, the
//! metadata watch it follows, the ISR changes it proposes as a leader, and controlled
//! shutdown, and what the broker does when its log directory fails.

use crate::error::BrokerError;
use crate::partition::Partition;
use crate::state::BrokerState;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_stream::StreamExt;
use weir_coordinator_client::ControlClient;
use weir_model::{BrokerId, PartitionEpoch};
use weir_proto::v1;
use weir_replication::replica::{Answer, Committed, Proposal, Settlement};

use weir_proto::codes::{BROKER_ID_NOT_REGISTERED, INVALID_UPDATE_VERSION, STALE_BROKER_EPOCH};

/// Makes the `--scram-user` users that have no credential yet for their mechanisms; existing
/// credentials are kept (the flag is given at every start, as a StatefulSet does), so a
/// password changed since through AlterUserScramCredentials stays changed. Waits until this
/// broker's view holds them.
pub async fn create_scram_users(state: &BrokerState) -> Result<(), BrokerError> {
    let users = &state.config.sasl.scram_users;
    if users.is_empty() {
        return Ok(());
    }
    let mut upsertions = Vec::new();
    for u in users {
        for &m in &u.mechanisms {
            let mut salt = vec![0u8; 32];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt).map_err(
                |_| {
                    BrokerError::Coordinator(
                        "no random salt: the system's random source failed".into(),
                    )
                },
            )?;
            let iterations = weir_model::limits::SCRAM_ITERATIONS_MIN;
            let c = weir_auth::scram::credential(m, u.password.as_bytes(), salt, iterations);
            upsertions.push(v1::ScramUpsertion {
                user: u.name.clone(),
                credential: Some(weir_proto::convert::scram_credential(m, &c)),
            });
        }
    }
    let req = v1::AlterScramCredentialsRequest {
        upsertions,
        deletions: Vec::new(),
        only_if_absent: true,
    };
    let resp = state
        .control
        .call(Duration::from_secs(60), |ch| {
            let req = req.clone();
            async move {
                ControlClient::admin(ch)
                    .alter_scram_credentials(req)
                    .await
                    .map(|r| r.into_inner())
            }
        })
        .await?;
    let refusals = resp
        .error
        .into_iter()
        .chain(resp.results.into_iter().filter_map(|r| r.error))
        .filter(|e| e.code != 0);
    if let Some(e) = refusals.into_iter().next() {
        return Err(BrokerError::Coordinator(format!(
            "--scram-user: {}",
            e.message
        )));
    }
    let version = resp.version;
    state
        .wait_for_view(Duration::from_secs(60), |v| v.version >= version)
        .await;
    let names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
    tracing::info!(users = ?names, "SCRAM users present");
    Ok(())
}

/// Registers this broker; returns the heartbeat interval the coordinators asked for.
pub async fn register(state: &BrokerState, incarnation: &str) -> Result<Duration, BrokerError> {
    let req = v1::RegisterBrokerRequest {
        broker_id: state.me.get(),
        kafka_addr: state.endpoints[0].1.clone(),
        internal_addr: state.internal_advertised.clone(),
        rack: state.config.rack.clone(),
        incarnation: incarnation.to_string(),
        directory_id: state.directory_id.clone(),
        endpoints: state
            .endpoints
            .iter()
            .map(|(listener, addr)| v1::Endpoint {
                listener: listener.clone(),
                addr: addr.clone(),
            })
            .collect(),
    };
    let resp = state
        .control
        .call(Duration::from_secs(3600), |ch| {
            let req = req.clone();
            async move {
                ControlClient::broker(ch)
                    .register(req)
                    .await
                    .map(|r| r.into_inner())
            }
        })
        .await?;
    if let Some(e) = resp.error.filter(|e| e.code != 0) {
        return Err(BrokerError::Coordinator(e.message));
    }
    state
        .broker_epoch
        .store(resp.broker_epoch, Ordering::Relaxed);
    tracing::info!(
        broker = state.me.get(),
        epoch = resp.broker_epoch,
        cluster_id = %resp.cluster_id,
        "registered with the coordinators"
    );
    Ok(Duration::from_millis(
        resp.heartbeat_interval_ms.clamp(50, 10_000) as u64,
    ))
}

/// Heartbeats for ever, re-registering if the coordinators forgot this incarnation.
pub async fn heartbeat_loop(state: Arc<BrokerState>, mut every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut fenced_logged = false;
    let mut view = state.subscribe_view();
    loop {
        // While fenced, heartbeat again as soon as new metadata is applied: the coordinators
        // unfence a broker once it reports having caught up, so this makes start-up quick.
        if state.is_unfenced() {
            tick.tick().await;
        } else {
            tokio::select! {
                _ = tick.tick() => {}
                _ = view.changed() => {}
            }
        }
        let req = v1::BrokerHeartbeatRequest {
            broker_id: state.me.get(),
            broker_epoch: state.broker_epoch(),
            metadata_version: state.view().version,
        };
        let resp = state
            .control
            .call(every, |ch| async move {
                ControlClient::broker(ch)
                    .heartbeat(req)
                    .await
                    .map(|r| r.into_inner())
            })
            .await;
        match resp {
            Ok(r) => match r.error.filter(|e| e.code != 0) {
                Some(e) if e.code == STALE_BROKER_EPOCH || e.code == BROKER_ID_NOT_REGISTERED => {
                    tracing::warn!(reason = %e.message, "the coordinators do not know this incarnation; registering again");
                    let incarnation = state
                        .incarnation
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone();
                    match register(&state, &incarnation).await {
                        Ok(d) if d != every => {
                            every = d;
                            tick = tokio::time::interval(every);
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %weir_model::Chain(&e), "re-registering"),
                    }
                }
                Some(e) => tracing::warn!(code = e.code, reason = %e.message, "heartbeat refused"),
                None => {
                    if r.fenced != fenced_logged {
                        tracing::info!(fenced = r.fenced, "fencing state changed");
                        fenced_logged = r.fenced;
                    }
                }
            },
            Err(e) => tracing::warn!(error = %weir_model::Chain(&e), "heartbeat failed"),
        }
    }
}

/// Follows the metadata watch stream, reconnecting (to any coordinator) when it breaks.
/// `first` is told once the first update has been applied.
pub async fn watch_loop(state: Arc<BrokerState>, first: tokio::sync::oneshot::Sender<()>) {
    let mut first = Some(first);
    loop {
        let broker_id = state.me.get();
        let stream = state
            .control
            .call(Duration::from_secs(3600), |ch| async move {
                ControlClient::broker(ch)
                    .watch(v1::WatchRequest { broker_id })
                    .await
                    .map(|r| r.into_inner())
            })
            .await;
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %weir_model::Chain(&e), "opening the metadata watch");
                continue;
            }
        };
        loop {
            match stream.next().await {
                Some(Ok(update)) => {
                    let s = state.clone();
                    let applied =
                        tokio::task::spawn_blocking(move || s.apply_update(&update)).await;
                    match applied {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::error!(error = %weir_model::Chain(&e), "applying a metadata update")
                        }
                        Err(e) => {
                            tracing::error!(error = %weir_model::Chain(&e), "metadata update task")
                        }
                    }
                    if let Some(tx) = first.take() {
                        let _ = tx.send(());
                    }
                }
                Some(Err(status)) => {
                    tracing::info!(status = %status.message(), "metadata watch broke; reconnecting");
                    break;
                }
                None => {
                    tracing::info!("metadata watch ended; reconnecting");
                    break;
                }
            }
        }
    }
}

/// As leader of each partition, proposes the ISR changes follower progress calls for (shrinks,
/// and expansions of followers that are at the watermark at the check; expansions are also
/// proposed right after a follower's fetch, see `replication`). `Replica::isr_proposal`
/// decides.
pub async fn isr_loop(state: Arc<BrokerState>) {
    let every = Duration::from_millis((state.config.replica_lag_time_max_ms / 4).clamp(50, 250));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = state.clock.mono_ms();
        let eligible = eligible(&state);
        for p in state.local_partitions() {
            let proposal =
                p.replica()
                    .isr_proposal(now, state.config.replica_lag_time_max_ms, &eligible);
            if let Some(proposal) = proposal {
                alter_partition(state.clone(), p, proposal);
            }
        }
    }
}

/// Sends an ISR proposal (already in flight in the replica's leader state) to the coordinators,
/// in the background, until `Replica::settle` says it is settled or no longer this leader's.
pub fn alter_partition(state: Arc<BrokerState>, p: Arc<Partition>, proposal: Proposal) {
    tracing::info!(topic = %p.topic, partition = p.id.get(), isr = ?proposal.isr.iter().map(|b| b.get()).collect::<Vec<_>>(), "proposing an ISR change");
    tokio::spawn(async move {
        let req = v1::AlterPartitionRequest {
            broker_id: state.me.get(),
            broker_epoch: state.broker_epoch(),
            topic_id: p.topic_id.to_uuid_string(),
            partition: p.id.get(),
            leader_epoch: proposal.leader_epoch.get(),
            partition_epoch: proposal.partition_epoch.get(),
            new_isr: proposal.isr.iter().map(|b| b.get()).collect(),
        };
        loop {
            let resp = state
                .control
                .call(Duration::from_secs(5), |ch| {
                    let req = req.clone();
                    async move {
                        ControlClient::broker(ch)
                            .alter_partition(req)
                            .await
                            .map(|r| r.into_inner())
                    }
                })
                .await;
            let answer = answer(&p, resp);
            // Settle under the lock (no await inside); resend after it.
            let settled = {
                let mut r = p.replica();
                let settled = r.settle(&proposal, answer, state.clock.mono_ms());
                if settled == Settlement::Settled {
                    p.publish(&r);
                }
                settled
            };
            match settled {
                Settlement::Gone => return,
                Settlement::Resend => tokio::time::sleep(Duration::from_millis(200)).await,
                Settlement::Settled => {
                    state.notify_appended();
                    return;
                }
            }
        }
    });
}

/// The coordinators' answer to an AlterPartition, as the replica machine takes it.
fn answer(
    p: &Partition,
    resp: Result<v1::AlterPartitionResponse, weir_coordinator_client::ControlError>,
) -> Answer {
    match resp {
        Ok(resp) if resp.error.as_ref().is_none_or(|e| e.code == 0) => {
            Answer::Applied(resp.partition.map(|part| Committed {
                partition_epoch: PartitionEpoch(part.partition_epoch),
                replicas: part.replicas.iter().map(|&b| BrokerId(b)).collect(),
                isr: part.isr.iter().map(|&b| BrokerId(b)).collect(),
            }))
        }
        Ok(resp) => {
            let (code, reason) = resp
                .error
                .map_or((0, String::new()), |e| (e.code, e.message));
            tracing::info!(topic = %p.topic, partition = p.id.get(), code, reason, "ISR change refused");
            Answer::Refused {
                maybe_applied: code == INVALID_UPDATE_VERSION,
            }
        }
        Err(e) => {
            tracing::warn!(topic = %p.topic, partition = p.id.get(), error = %weir_model::Chain(&e), "ISR change not answered; sending it again");
            Answer::Unanswered
        }
    }
}

/// Hands every leadership to in-sync followers before the broker exits: asks the
/// coordinators until this broker leads nothing, or the timeout passes.
pub async fn controlled_shutdown(state: &BrokerState) {
    let deadline = tokio::time::Instant::now()
        + Duration::from_millis(state.config.controlled_shutdown_timeout_ms);
    loop {
        let req = v1::ControlledShutdownRequest {
            broker_id: state.me.get(),
            broker_epoch: state.broker_epoch(),
        };
        let resp = state
            .control
            .call(Duration::from_secs(5), |ch| async move {
                ControlClient::broker(ch)
                    .controlled_shutdown(req)
                    .await
                    .map(|r| r.into_inner())
            })
            .await;
        match resp {
            Ok(r) if r.error.as_ref().is_none_or(|e| e.code == 0) => {
                if r.remaining_leaderships == 0 {
                    tracing::info!("controlled shutdown: no leaderships left");
                    return;
                }
                // Leaderships with no other live in-sync replica cannot move: waiting would
                // only delay the exit (a single broker, or every peer stopping too).
                let view = state.view();
                let me = state.me;
                let movable = view
                    .topics
                    .values()
                    .flat_map(|t| t.partitions.iter())
                    .filter(|p| p.leader == Some(me))
                    .any(|p| {
                        p.isr.iter().any(|b| {
                            *b != me
                                && view
                                    .brokers
                                    .get(b)
                                    .is_some_and(|i| !i.fenced && !i.shutting_down)
                        })
                    });
                if !movable {
                    tracing::info!(
                        remaining = r.remaining_leaderships,
                        "controlled shutdown: no in-sync follower can take the remaining leaderships"
                    );
                    return;
                }
                tracing::info!(
                    remaining = r.remaining_leaderships,
                    "controlled shutdown: waiting for leaderships to move"
                );
            }
            Ok(r) => {
                tracing::warn!(reason = ?r.error.map(|e| e.message), "controlled shutdown refused");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %weir_model::Chain(&e), "controlled shutdown: coordinators unreachable");
                return;
            }
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!("controlled shutdown timed out; exiting with leaderships left");
            return;
        }
        // Wait for the next metadata change (leaderships moving) rather than a fixed pause.
        let me = state.me;
        state
            .wait_for_view(Duration::from_millis(500), |v| {
                v.topics
                    .values()
                    .flat_map(|t| t.partitions.iter())
                    .all(|p| p.leader != Some(me))
            })
            .await;
    }
}

/// Registers as a new incarnation: after the log directory was offline, the coordinators must
/// treat this broker as restarted (fenced until it catches up, no longer shutting down).
/// Retries until the coordinators answer.
pub async fn reregister(state: &BrokerState) {
    let incarnation = uuid::Uuid::new_v4().to_string();
    *state.incarnation.lock().unwrap_or_else(|p| p.into_inner()) = incarnation.clone();
    loop {
        match register(state, &incarnation).await {
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %weir_model::Chain(&e), "registering again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Reacts to the log directory going offline: moves leaderships away, then waits for space
/// to return (ENOSPC only) and brings the broker back. Runs for the life of the broker.
pub async fn log_dir_loop(state: Arc<BrokerState>) {
    loop {
        let failure = state.log_dir.failed().await;
        state.notify_appended();
        controlled_shutdown(&state).await;
        if !failure.no_space {
            tracing::error!(reason = %failure.reason,
                "the log directory stays offline until an operator restarts the broker");
            return;
        }
        let dir = state.config.data_dir.clone();
        // Probing is periodic by nature: nothing signals that space came back.
        loop {
            tokio::time::sleep(crate::log_dir::PROBE_INTERVAL).await;
            let d = dir.clone();
            match tokio::task::spawn_blocking(move || crate::log_dir::probe(&d)).await {
                Ok(Ok(())) => break,
                Ok(Err(e)) => tracing::debug!(error = %weir_model::Chain(&e), "still no space"),
                Err(e) => tracing::warn!(error = %weir_model::Chain(&e), "space probe"),
            }
        }
        state.log_dir.clear();
        tracing::info!("space is back: the log directory is online; registering again");
        reregister(&state).await;
    }
}

/// Which brokers may join an ISR now, by this broker's view: registered, unfenced and not in
/// controlled shutdown (the coordinators would refuse the others; see
/// `weir_replication::replica::eligible_isr`).
pub fn eligible(state: &BrokerState) -> impl Fn(BrokerId) -> bool + use<> {
    let view = state.view();
    move |b| eligible_in(&view, b)
}

/// Whether broker `b` may join an ISR by `view`.
pub fn eligible_in(view: &crate::cluster::ClusterView, b: BrokerId) -> bool {
    view.brokers
        .get(&b)
        .is_some_and(|i| !i.fenced && !i.shutting_down)
}
