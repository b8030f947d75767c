//! Produce: validate and append record batches.
//!
//! ```text
//! ProduceRequest ─▶ per partition: copy records ─▶ PartitionLog::append (validate, dedupe,
//!                   assign offsets in place, write) ─▶ wake fetchers ─▶ ProduceResponse
//! ```
//! acks=1 is answered once the batch is in the leader's log (and fsynced, when the topic's
//! flush policy says so). acks=all first checks that the committed ISR has at least
//! `min.insync.replicas` members (NOT_ENOUGH_REPLICAS), appends, then waits until the high
//! watermark passes the batch (every ISR member has it) and checks the ISR again
//! (NOT_ENOUGH_REPLICAS_AFTER_APPEND). A leadership lost while waiting answers
//! NOT_LEADER_OR_FOLLOWER: the client retries on the new leader, which dedupes an idempotent
//! producer's batch if it already has it. acks=0 gets no response.

use super::{Ctx, str_bytes};
use crate::error::{fatal, is_fatal, storage_error_code};
use crate::state::{BrokerState, NotServed, Partition, Role};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use std::sync::Arc;
use std::time::Duration;
use weir_model::{LeaderEpoch, Offset, Timestamp};
use weir_storage::AppendOutcome;

pub async fn produce(state: &Arc<BrokerState>, ctx: &Ctx, req: ProduceRequest) -> ProduceResponse {
    let mut r = ProduceResponse::default();
    let refuse_all = if req.transactional_id.is_some() {
        Some((
            ResponseError::TransactionalIdAuthorizationFailed,
            "transactions are not supported",
        ))
    } else if !matches!(req.acks, -1..=1) {
        Some((
            ResponseError::InvalidRequiredAcks,
            "acks must be -1 (all), 0 or 1",
        ))
    } else {
        None
    };
    let mut appended = false;
    let now = Timestamp::now();
    // acks=all partitions waiting for the ISR: (index in its topic's responses, partition,
    // last offset, the leader epoch it was appended at, topic index).
    let mut waits: Vec<(usize, Arc<Partition>, Offset, LeaderEpoch, usize)> = Vec::new();
    for (topic_index, topic_data) in req.topic_data.into_iter().enumerate() {
        let mut tr = TopicProduceResponse::default().with_name(topic_data.name.clone());
        for pd in topic_data.partition_data {
            let mut pr = PartitionProduceResponse::default()
                .with_index(pd.index)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(-1);
            let fail = |pr: &mut PartitionProduceResponse, code: ResponseError, msg: String| {
                pr.error_code = code.code();
                if ctx.version >= 8 {
                    pr.error_message = Some(str_bytes(msg));
                }
            };
            if let Some((code, msg)) = refuse_all {
                fail(&mut pr, code, msg.to_string());
                tr.partition_responses.push(pr);
                continue;
            }
            if topic_data.name.0.as_str() == crate::groups::OFFSETS_TOPIC {
                // Only the group coordinator writes it: a forged record would take effect at
                // the next load.
                fail(
                    &mut pr,
                    ResponseError::InvalidTopicException,
                    "__consumer_offsets is internal: only the group coordinator writes to it"
                        .into(),
                );
                tr.partition_responses.push(pr);
                continue;
            }
            let partition = match state.leader_partition(topic_data.name.0.as_str(), pd.index) {
                Ok(p) => p,
                Err(NotServed::UnknownTopicOrPartition) => {
                    fail(
                        &mut pr,
                        ResponseError::UnknownTopicOrPartition,
                        format!("{}-{} does not exist", topic_data.name.0.as_str(), pd.index),
                    );
                    tr.partition_responses.push(pr);
                    continue;
                }
                Err(NotServed::Offline) => {
                    fail(
                        &mut pr,
                        ResponseError::KafkaStorageError,
                        format!(
                            "{}-{} is offline on broker {}: its files cannot be opened",
                            topic_data.name.0.as_str(),
                            pd.index,
                            state.me
                        ),
                    );
                    tr.partition_responses.push(pr);
                    continue;
                }
                Err(NotServed::NotLeader) => {
                    fail(
                        &mut pr,
                        ResponseError::NotLeaderOrFollower,
                        format!(
                            "broker {} does not lead {}-{}",
                            state.me,
                            topic_data.name.0.as_str(),
                            pd.index
                        ),
                    );
                    tr.partition_responses.push(pr);
                    continue;
                }
            };
            let Some(records) = pd.records.filter(|r| !r.is_empty()) else {
                fail(
                    &mut pr,
                    ResponseError::CorruptMessage,
                    "no record batch".into(),
                );
                tr.partition_responses.push(pr);
                continue;
            };
            // Produce v3+ carries exactly one batch per partition (Kafka refuses more).
            if let Ok(h) = weir_storage::BatchHeader::parse(&records)
                && h.size_bytes() != records.len()
            {
                fail(
                    &mut pr,
                    ResponseError::InvalidRecord,
                    "a produce request carries exactly one record batch per partition".into(),
                );
                tr.partition_responses.push(pr);
                continue;
            }
            // One copy: the request frame is shared, and the log patches offsets in place.
            let mut batch = records.to_vec();
            let result = append_as_leader(state, &partition, &mut batch, req.acks, now, None);
            match result {
                Err(Refused::Replication(code, msg)) => fail(&mut pr, code, msg),
                Ok((
                    AppendOutcome::Appended {
                        base_offset,
                        last_offset,
                        log_append_time,
                        log_start_offset,
                    },
                    epoch,
                )) => {
                    appended = true;
                    pr.base_offset = base_offset.get();
                    pr.log_append_time_ms = log_append_time.map_or(-1, |t| t.get());
                    pr.log_start_offset = log_start_offset.get();
                    if req.acks == -1 {
                        waits.push((
                            tr.partition_responses.len(),
                            partition.clone(),
                            last_offset,
                            epoch,
                            topic_index,
                        ));
                    }
                }
                Ok((
                    AppendOutcome::Duplicate {
                        base_offset,
                        last_offset,
                        log_start_offset,
                    },
                    epoch,
                )) => {
                    pr.base_offset = base_offset.get();
                    pr.log_start_offset = log_start_offset.get();
                    // The first copy may not be replicated yet: wait for it like a new one.
                    if req.acks == -1 {
                        waits.push((
                            tr.partition_responses.len(),
                            partition.clone(),
                            last_offset,
                            epoch,
                            topic_index,
                        ));
                    }
                }
                Err(Refused::Storage(e)) => {
                    if is_fatal(&e) {
                        fatal(
                            &format!("appending to {}-{}", partition.topic, partition.id),
                            &e,
                        );
                    }
                    tracing::debug!(
                        topic = %partition.topic, partition = partition.id.get(), error = %weir_model::Chain(&e),
                        "produce refused"
                    );
                    fail(&mut pr, storage_error_code(&e), e.to_string());
                }
            }
            tr.partition_responses.push(pr);
        }
        r.responses.push(tr);
    }
    if appended {
        state.notify_appended();
    }
    if !waits.is_empty() {
        let timeout = Duration::from_millis(req.timeout_ms.clamp(0, 300_000) as u64);
        let deadline = tokio::time::Instant::now() + timeout;
        for (index, partition, last, epoch, topic_index) in waits {
            if let Err((code, msg)) = wait_for_isr(&partition, last, epoch, deadline).await {
                let pr = &mut r.responses[topic_index].partition_responses[index];
                pr.error_code = code.code();
                pr.base_offset = -1;
                if ctx.version >= 8 {
                    pr.error_message = Some(str_bytes(msg));
                }
            }
        }
    }
    tracing::trace!(
        partitions = ?r
            .responses
            .iter()
            .flat_map(|t| t.partition_responses.iter().map(|p| (p.index, p.error_code, p.base_offset)))
            .collect::<Vec<_>>(),
        "produce answered"
    );
    r
}

enum Refused {
    Storage(weir_storage::StorageError),
    Replication(ResponseError, String),
}

/// Appends as this partition's leader, at its epoch, under the replica lock so that a change
/// of role cannot interleave. acks=all is refused up front when the ISR is too small. Returns
/// the leader epoch the batch was appended at (what an acks=all wait must still see); with
/// `expected`, refuses unless the epoch is that one.
fn append_as_leader(
    state: &BrokerState,
    partition: &Partition,
    batch: &mut [u8],
    acks: i16,
    now: Timestamp,
    expected: Option<LeaderEpoch>,
) -> Result<(AppendOutcome, LeaderEpoch), Refused> {
    if let Some(reason) = state.log_dir.offline_reason() {
        return Err(Refused::Replication(
            ResponseError::KafkaStorageError,
            format!(
                "the log directory of broker {} is offline: {reason}",
                state.me
            ),
        ));
    }
    let mut r = partition.replica();
    let epoch = r.epoch;
    if expected.is_some_and(|e| e != epoch) {
        return Err(Refused::Replication(
            ResponseError::NotLeaderOrFollower,
            format!(
                "{}-{} is at leader epoch {epoch}, not the one expected",
                partition.topic, partition.id
            ),
        ));
    }
    let min_insync = r.min_insync;
    let Role::Leader(leader) = &mut r.role else {
        return Err(Refused::Replication(
            ResponseError::NotLeaderOrFollower,
            format!(
                "broker {} no longer leads {}-{}",
                state.me, partition.topic, partition.id
            ),
        ));
    };
    if acks == -1 && leader.isr().len() < min_insync {
        return Err(Refused::Replication(
            ResponseError::NotEnoughReplicas,
            format!(
                "{}-{} has {} in-sync replicas; min.insync.replicas is {min_insync}",
                partition.topic,
                partition.id,
                leader.isr().len()
            ),
        ));
    }
    let outcome = {
        let mut log = partition.log.write().unwrap_or_else(|e| e.into_inner());
        // An append that may fsync (flush.messages set) can take milliseconds: let the
        // runtime move other tasks off this worker meanwhile. Page-cache appends take
        // microseconds and run inline.
        let out = if log.config().flush_messages.is_some() {
            tokio::task::block_in_place(|| log.append(batch, epoch, now))
        } else {
            log.append(batch, epoch, now)
        };
        let end = log.log_end_offset();
        drop(log);
        if leader.on_append(end) {
            partition.publish(&r);
        }
        out
    };
    if let Err(e) = &outcome {
        state.log_dir.record(
            &format!("appending to {}-{}", partition.topic, partition.id),
            e,
        );
    }
    outcome.map(|o| (o, epoch)).map_err(Refused::Storage)
}

/// Appends a batch the broker wrote itself (the group coordinator's records) as leader at
/// `epoch`, with acks=all's `min.insync.replicas` check; returns the last offset.
pub(crate) fn append_as_leader_internal(
    state: &BrokerState,
    partition: &Partition,
    batch: &mut [u8],
    epoch: LeaderEpoch,
) -> Result<Offset, weir_group::GroupError> {
    use weir_group::GroupError;
    match append_as_leader(state, partition, batch, -1, Timestamp::now(), Some(epoch)) {
        Ok((AppendOutcome::Appended { last_offset, .. }, _))
        | Ok((AppendOutcome::Duplicate { last_offset, .. }, _)) => Ok(last_offset),
        Err(Refused::Replication(ResponseError::NotEnoughReplicas, msg)) => {
            tracing::warn!(error = %msg, "group coordinator write refused");
            Err(GroupError::CoordinatorNotAvailable)
        }
        Err(Refused::Replication(_, _)) => Err(GroupError::NotCoordinator),
        Err(Refused::Storage(e)) => {
            if is_fatal(&e) {
                fatal(
                    &format!("appending to {}-{}", partition.topic, partition.id),
                    &e,
                );
            }
            tracing::warn!(error = %weir_model::Chain(&e), "group coordinator write failed");
            Err(GroupError::CoordinatorNotAvailable)
        }
    }
}

/// Waits until the high watermark passes `last` at `epoch`, the leader epoch the batch was
/// appended at. Any other epoch fails the wait, even a later one of this same broker: the
/// batch may have been truncated by another leader in between, and a high watermark past
/// `last` would then count other records.
pub(crate) async fn wait_for_isr(
    partition: &Partition,
    last: Offset,
    epoch: LeaderEpoch,
    deadline: tokio::time::Instant,
) -> Result<(), (ResponseError, String)> {
    let mut rx = partition.progress.subscribe();
    loop {
        let now = *rx.borrow_and_update();
        if !now.leader || now.epoch != epoch {
            return Err((
                ResponseError::NotLeaderOrFollower,
                format!(
                    "leadership of {}-{} moved before the record was replicated",
                    partition.topic, partition.id
                ),
            ));
        }
        if now.high_watermark > last {
            let min_insync = partition.replica().min_insync;
            if now.isr_len < min_insync {
                return Err((
                    ResponseError::NotEnoughReplicasAfterAppend,
                    format!(
                        "written, but {}-{} has {} in-sync replicas; min.insync.replicas is {min_insync}",
                        partition.topic, partition.id, now.isr_len
                    ),
                ));
            }
            return Ok(());
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => continue,
            Ok(Err(_)) => {
                return Err((
                    ResponseError::NotLeaderOrFollower,
                    format!(
                        "{}-{} is no longer hosted here",
                        partition.topic, partition.id
                    ),
                ));
            }
            Err(_) => {
                return Err((
                    ResponseError::RequestTimedOut,
                    format!(
                        "the in-sync replicas of {}-{} did not confirm the record in time",
                        partition.topic, partition.id
                    ),
                ));
            }
        }
    }
}
