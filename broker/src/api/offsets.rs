//! ListOffsets, OffsetForLeaderEpoch and DeleteRecords.

use super::Ctx;
use crate::error::storage_error_code;
use crate::partition::Partition;
use crate::state::BrokerState;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::*;
use std::sync::Arc;
use weir_model::acl::{Operation, ResourceType};
use weir_model::{LeaderEpoch, Offset, PartitionId, Timestamp};

/// What a ListOffsets timestamp asks for, with Kafka's negative sentinels decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetQuery {
    Latest,
    Earliest,
    MaxTimestamp,
    AtOrAfter(Timestamp),
}

impl OffsetQuery {
    pub fn from_wire(ts: i64) -> Option<OffsetQuery> {
        match ts {
            -1 => Some(OffsetQuery::Latest),
            -2 => Some(OffsetQuery::Earliest),
            -3 => Some(OffsetQuery::MaxTimestamp),
            t if t >= 0 => Some(OffsetQuery::AtOrAfter(Timestamp(t))),
            _ => None,
        }
    }
}

fn check_epoch(current: i32, leader: LeaderEpoch) -> Option<ResponseError> {
    match current {
        e if e < 0 => None,
        e if e < leader.get() => Some(ResponseError::FencedLeaderEpoch),
        e if e > leader.get() => Some(ResponseError::UnknownLeaderEpoch),
        _ => None,
    }
}

/// The partition if this broker leads it, else the error code the client should see.
/// The partition this broker leads, if the client may do `op` to its topic.
fn find(
    state: &BrokerState,
    (ctx, op): (&Ctx, Operation),
    topic: &str,
    partition: i32,
) -> Result<Arc<Partition>, ResponseError> {
    if !super::allowed(state, ctx, op, ResourceType::Topic, topic) {
        return Err(ResponseError::TopicAuthorizationFailed);
    }
    state
        .leader_partition(topic, PartitionId(partition))
        .map_err(crate::error::not_served_code)
}

pub async fn list_offsets(
    state: &Arc<BrokerState>,
    ctx: &Ctx,
    req: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let mut r = ListOffsetsResponse::default();
    for t in req.topics {
        let mut tr = ListOffsetsTopicResponse::default().with_name(t.name.clone());
        for p in t.partitions {
            let mut pr = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_timestamp(-1)
                .with_offset(-1);
            let partition = match find(
                state,
                (ctx, Operation::Describe),
                t.name.0.as_str(),
                p.partition_index,
            ) {
                Ok(p) => p,
                Err(code) => {
                    pr.error_code = code.code();
                    tr.partitions.push(pr);
                    continue;
                }
            };
            let progress = *partition.progress.borrow();
            if ctx.version >= 4 {
                pr.leader_epoch = progress.epoch.get();
            }
            let hw = progress.high_watermark;
            if let Some(code) = check_epoch(p.current_leader_epoch, progress.epoch) {
                pr.error_code = code.code();
                tr.partitions.push(pr);
                continue;
            }
            let log = partition.log.read().unwrap_or_else(|e| e.into_inner());
            match OffsetQuery::from_wire(p.timestamp) {
                // Consumers see up to the high watermark, so "latest" is the watermark.
                Some(OffsetQuery::Latest) => pr.offset = hw.min(log.log_end_offset()).get(),
                Some(OffsetQuery::Earliest) => pr.offset = log.log_start_offset().get(),
                Some(OffsetQuery::MaxTimestamp) => match log.max_timestamp() {
                    Ok(Some((offset, ts))) if offset < hw => {
                        pr.offset = offset.get();
                        pr.timestamp = ts.get();
                    }
                    Ok(_) => {}
                    Err(e) => pr.error_code = storage_error_code(&e).code(),
                },
                Some(OffsetQuery::AtOrAfter(ts)) => match log.offset_for_timestamp(ts) {
                    Ok(Some((offset, ts))) if offset < hw => {
                        pr.offset = offset.get();
                        pr.timestamp = ts.get();
                    }
                    Ok(_) => {}
                    Err(e) => pr.error_code = storage_error_code(&e).code(),
                },
                None => pr.error_code = ResponseError::InvalidRequest.code(),
            }
            tr.partitions.push(pr);
        }
        r.topics.push(tr);
    }
    r
}

pub async fn offset_for_leader_epoch(
    state: &Arc<BrokerState>,
    ctx: &Ctx,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let mut r = OffsetForLeaderEpochResponse::default();
    for t in req.topics {
        let mut tr = OffsetForLeaderTopicResult::default().with_topic(t.topic.clone());
        for p in t.partitions {
            let mut pr = EpochEndOffset::default()
                .with_partition(p.partition)
                .with_leader_epoch(-1)
                .with_end_offset(-1);
            match find(
                state,
                (ctx, Operation::Describe),
                t.topic.0.as_str(),
                p.partition,
            ) {
                Err(code) => pr.error_code = code.code(),
                Ok(partition) => {
                    let epoch = partition.progress.borrow().epoch;
                    if let Some(code) = check_epoch(p.current_leader_epoch, epoch) {
                        pr.error_code = code.code();
                    } else if p.leader_epoch < 0 {
                        // No epoch asked about: Kafka answers (-1, -1), as already set.
                    } else {
                        let log = partition.log.read().unwrap_or_else(|e| e.into_inner());
                        if let Some((epoch, end)) =
                            log.end_offset_for_epoch(LeaderEpoch(p.leader_epoch))
                        {
                            pr.leader_epoch = epoch.get();
                            pr.end_offset = end.get();
                        }
                    }
                }
            }
            tr.partitions.push(pr);
        }
        r.topics.push(tr);
    }
    r
}

pub async fn delete_records(
    state: &Arc<BrokerState>,
    ctx: &Ctx,
    req: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let mut r = DeleteRecordsResponse::default();
    for t in req.topics {
        let mut tr = DeleteRecordsTopicResult::default().with_name(t.name.clone());
        for p in t.partitions {
            let mut pr = DeleteRecordsPartitionResult::default()
                .with_partition_index(p.partition_index)
                .with_low_watermark(-1);
            if t.name.0.as_str() == crate::groups::OFFSETS_TOPIC {
                // Deleting from the offsets topic would lose committed offsets on the next load.
                pr.error_code = ResponseError::InvalidTopicException.code();
                tr.partitions.push(pr);
                continue;
            }
            let partition = match find(
                state,
                (ctx, Operation::Delete),
                t.name.0.as_str(),
                p.partition_index,
            ) {
                Ok(p) => p,
                Err(code) => {
                    pr.error_code = code.code();
                    tr.partitions.push(pr);
                    continue;
                }
            };
            let hw = partition.high_watermark();
            let mut log = partition.log.write().unwrap_or_else(|e| e.into_inner());
            // Only committed records can be deleted; followers follow the new log start.
            let end = hw.min(log.log_end_offset());
            // -1 means "up to the high watermark".
            let target = if p.offset == -1 { end.get() } else { p.offset };
            if target < 0 || target > end.get() {
                pr.error_code = ResponseError::OffsetOutOfRange.code();
            } else {
                match log.delete_records_before(Offset(target)) {
                    Ok(low) => pr.low_watermark = low.get(),
                    Err(e) => pr.error_code = storage_error_code(&e).code(),
                }
            }
            tr.partitions.push(pr);
        }
        r.topics.push(tr);
    }
    r
}
