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
use crate::error::{append_error_code, is_fatal, wait_error_code};
use crate::partition::{Acks, AppendError, NotServed, Partition};
use crate::state::BrokerState;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use std::sync::Arc;
use std::time::Duration;
use weir_model::acl::{Operation, ResourceType};
use weir_model::limits::PRODUCE_TIMEOUT_MS_MAX;
use weir_model::{LeaderEpoch, Offset, PartitionId, Timestamp};
use weir_process::fatal;
use weir_storage::AppendOutcome;

/// Kafka's `acks` on the wire; anything else is refused.
fn acks_of(wire: i16) -> Option<Acks> {
    match wire {
        -1 => Some(Acks::All),
        0 => Some(Acks::None),
        1 => Some(Acks::Leader),
        _ => None,
    }
}

/// An acks=all partition waiting for the ISR: where its response is, and what it waits for.
struct Wait {
    topic_index: usize,
    index: usize,
    partition: Arc<Partition>,
    last: Offset,
    /// The leader epoch the batch was appended at.
    epoch: LeaderEpoch,
}

/// A partition's answer, before the acks=all wait: an error, or what was appended.
enum Answer {
    Refused(ResponseError, String),
    Written {
        outcome: AppendOutcome,
        partition: Arc<Partition>,
        epoch: LeaderEpoch,
    },
}

pub async fn produce(state: &Arc<BrokerState>, ctx: &Ctx, req: ProduceRequest) -> ProduceResponse {
    let mut r = ProduceResponse::default();
    // Refusals that apply to every partition of the request.
    let acks = if req.transactional_id.is_some() {
        Err((
            ResponseError::TransactionalIdAuthorizationFailed,
            "transactions are not supported",
        ))
    } else {
        acks_of(req.acks).ok_or((
            ResponseError::InvalidRequiredAcks,
            "acks must be -1 (all), 0 or 1",
        ))
    };
    let mut appended = false;
    let now = state.clock.wall();
    let mut waits: Vec<Wait> = Vec::new();
    for (topic_index, topic_data) in req.topic_data.into_iter().enumerate() {
        let mut tr = TopicProduceResponse::default().with_name(topic_data.name.clone());
        let writable = super::allowed(
            state,
            ctx,
            Operation::Write,
            ResourceType::Topic,
            &topic_data.name,
        );
        for pd in topic_data.partition_data {
            let mut pr = PartitionProduceResponse::default()
                .with_index(pd.index)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(-1);
            let answer = match acks {
                Err((code, msg)) => Answer::Refused(code, msg.to_string()),
                Ok(_) if !writable => Answer::Refused(
                    ResponseError::TopicAuthorizationFailed,
                    "WRITE on the topic is needed".to_string(),
                ),
                Ok(acks) => produce_partition(state, &topic_data.name, pd, acks, now),
            };
            match answer {
                Answer::Refused(code, msg) => fail(ctx, &mut pr, code, msg),
                Answer::Written {
                    outcome,
                    partition,
                    epoch,
                } => {
                    let last = answered(&mut pr, &outcome);
                    appended |= matches!(outcome, AppendOutcome::Appended { .. });
                    // A duplicate's first copy may not be replicated yet: wait for it too.
                    if matches!(acks, Ok(Acks::All)) {
                        waits.push(Wait {
                            topic_index,
                            index: tr.partition_responses.len(),
                            partition,
                            last,
                            epoch,
                        });
                    }
                }
            }
            tr.partition_responses.push(pr);
        }
        r.responses.push(tr);
    }
    if appended {
        state.notify_appended();
    }
    await_isr(ctx, &mut r, waits, req.timeout_ms).await;
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

fn fail(ctx: &Ctx, pr: &mut PartitionProduceResponse, code: ResponseError, msg: String) {
    pr.error_code = code.code();
    if ctx.version >= 8 {
        pr.error_message = Some(str_bytes(msg));
    }
}

/// Fills a written partition's response; returns the batch's last offset.
fn answered(pr: &mut PartitionProduceResponse, outcome: &AppendOutcome) -> Offset {
    match *outcome {
        AppendOutcome::Appended {
            base_offset,
            last_offset,
            log_append_time,
            log_start_offset,
        } => {
            pr.base_offset = base_offset.get();
            pr.log_append_time_ms = log_append_time.map_or(-1, |t| t.get());
            pr.log_start_offset = log_start_offset.get();
            last_offset
        }
        AppendOutcome::Duplicate {
            base_offset,
            last_offset,
            log_start_offset,
        } => {
            pr.base_offset = base_offset.get();
            pr.log_start_offset = log_start_offset.get();
            last_offset
        }
    }
}

/// Checks one partition's data and appends it as leader.
fn produce_partition(
    state: &BrokerState,
    topic: &TopicName,
    pd: produce_request::PartitionProduceData,
    acks: Acks,
    now: Timestamp,
) -> Answer {
    let name = topic.0.as_str();
    if name == crate::groups::OFFSETS_TOPIC {
        // Only the group coordinator writes it: a forged record would take effect at the next
        // load.
        return Answer::Refused(
            ResponseError::InvalidTopicException,
            "__consumer_offsets is internal: only the group coordinator writes to it".into(),
        );
    }
    let partition = match state.leader_partition(name, PartitionId(pd.index)) {
        Ok(p) => p,
        Err(e) => return not_served(state, e, name, pd.index),
    };
    let Some(records) = pd.records.filter(|r| !r.is_empty()) else {
        return Answer::Refused(ResponseError::CorruptMessage, "no record batch".into());
    };
    // Produce v3+ carries exactly one batch per partition (Kafka refuses more).
    if let Ok(h) = weir_storage::BatchHeader::parse(&records)
        && h.size_bytes() != records.len()
    {
        return Answer::Refused(
            ResponseError::InvalidRecord,
            "a produce request carries exactly one record batch per partition".into(),
        );
    }
    // One copy: the request frame is shared, and the log patches offsets in place.
    let mut batch = records.to_vec();
    match partition.append_as_leader(&state.log_dir, state.me, &mut batch, acks, now, None) {
        Ok((outcome, epoch)) => Answer::Written {
            outcome,
            partition,
            epoch,
        },
        Err(AppendError::Storage(e)) => {
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
            let e = AppendError::Storage(e);
            Answer::Refused(append_error_code(&e), e.to_string())
        }
        Err(e) => Answer::Refused(append_error_code(&e), e.to_string()),
    }
}

fn not_served(state: &BrokerState, e: NotServed, topic: &str, index: i32) -> Answer {
    let msg = match e {
        NotServed::UnknownTopicOrPartition => format!("{topic}-{index} does not exist"),
        NotServed::Offline => format!(
            "{topic}-{index} is offline on broker {}: its files cannot be opened",
            state.me
        ),
        NotServed::NotLeader => format!("broker {} does not lead {topic}-{index}", state.me),
    };
    Answer::Refused(crate::error::not_served_code(e), msg)
}

/// Waits, within the request's timeout, until each acks=all batch is in every ISR member's
/// log; a batch that is not gets its error and no offset.
async fn await_isr(ctx: &Ctx, r: &mut ProduceResponse, waits: Vec<Wait>, timeout_ms: i32) {
    if waits.is_empty() {
        return;
    }
    let timeout = Duration::from_millis(timeout_ms.clamp(0, PRODUCE_TIMEOUT_MS_MAX) as u64);
    let deadline = tokio::time::Instant::now() + timeout;
    for w in waits {
        if let Err(e) = w.partition.wait_for_isr(w.last, w.epoch, deadline).await {
            let pr = &mut r.responses[w.topic_index].partition_responses[w.index];
            fail(ctx, pr, wait_error_code(&e), e.to_string());
            pr.base_offset = -1;
        }
    }
}
