//! Produce: validate and append record batches.
//!
//! ```text
//! ProduceRequest ─▶ per partition: copy records ─▶ PartitionLog::append (validate, dedupe,
//!                   assign offsets in place, write) ─▶ wake fetchers ─▶ ProduceResponse
//! ```
//! On a single node, acks=1 and acks=all are answered at the same point: once the batch is in
//! the log (and fsynced, when the topic's flush policy says so). acks=0 gets no response.

use super::{Ctx, str_bytes};
use crate::error::{fatal, is_fatal, storage_error_code};
use crate::state::{BrokerState, LEADER_EPOCH};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use std::sync::Arc;
use weir_model::Timestamp;
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
    for topic_data in req.topic_data {
        let topic = state.topic(topic_data.name.0.as_str());
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
            let Some(partition) = topic.as_ref().and_then(|t| t.partition(pd.index)) else {
                fail(
                    &mut pr,
                    ResponseError::UnknownTopicOrPartition,
                    format!("{}-{} does not exist", topic_data.name.0.as_str(), pd.index),
                );
                tr.partition_responses.push(pr);
                continue;
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
            let result = {
                let mut log = partition.log.write().unwrap_or_else(|e| e.into_inner());
                // An append that may fsync (flush.messages set) can take milliseconds: let the
                // runtime move other tasks off this worker meanwhile. Page-cache appends take
                // microseconds and run inline.
                if log.config().flush_messages.is_some() {
                    tokio::task::block_in_place(|| log.append(&mut batch, LEADER_EPOCH, now))
                } else {
                    log.append(&mut batch, LEADER_EPOCH, now)
                }
            };
            match result {
                Ok(AppendOutcome::Appended {
                    base_offset,
                    log_append_time,
                    log_start_offset,
                    ..
                }) => {
                    appended = true;
                    pr.base_offset = base_offset.get();
                    pr.log_append_time_ms = log_append_time.map_or(-1, |t| t.get());
                    pr.log_start_offset = log_start_offset.get();
                }
                Ok(AppendOutcome::Duplicate {
                    base_offset,
                    log_start_offset,
                    ..
                }) => {
                    pr.base_offset = base_offset.get();
                    pr.log_start_offset = log_start_offset.get();
                }
                Err(e) => {
                    if is_fatal(&e) {
                        fatal(
                            &format!("appending to {}-{}", partition.topic, partition.id),
                            &e,
                        );
                    }
                    tracing::debug!(
                        topic = %partition.topic, partition = partition.id.get(), error = %e,
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
