//! ListOffsets, OffsetForLeaderEpoch and DeleteRecords.

use super::Ctx;
use crate::error::storage_error_code;
use crate::state::{BrokerState, LEADER_EPOCH, Partition};
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
use weir_model::{LeaderEpoch, Offset, Timestamp};

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

fn check_epoch(current: i32) -> Option<ResponseError> {
    match current {
        e if e < 0 => None,
        e if e < LEADER_EPOCH.get() => Some(ResponseError::FencedLeaderEpoch),
        e if e > LEADER_EPOCH.get() => Some(ResponseError::UnknownLeaderEpoch),
        _ => None,
    }
}

fn find(state: &BrokerState, topic: &str, partition: i32) -> Option<Arc<Partition>> {
    state
        .topic(topic)
        .and_then(|t| t.partition(partition).cloned())
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
            if ctx.version >= 4 {
                pr.leader_epoch = LEADER_EPOCH.get();
            }
            let Some(partition) = find(state, t.name.0.as_str(), p.partition_index) else {
                pr.error_code = ResponseError::UnknownTopicOrPartition.code();
                tr.partitions.push(pr);
                continue;
            };
            if let Some(code) = check_epoch(p.current_leader_epoch) {
                pr.error_code = code.code();
                tr.partitions.push(pr);
                continue;
            }
            let log = partition.log.read().unwrap_or_else(|e| e.into_inner());
            match OffsetQuery::from_wire(p.timestamp) {
                Some(OffsetQuery::Latest) => pr.offset = log.log_end_offset().get(),
                Some(OffsetQuery::Earliest) => pr.offset = log.log_start_offset().get(),
                Some(OffsetQuery::MaxTimestamp) => match log.max_timestamp() {
                    Ok(Some((offset, ts))) => {
                        pr.offset = offset.get();
                        pr.timestamp = ts.get();
                    }
                    Ok(None) => {}
                    Err(e) => pr.error_code = storage_error_code(&e).code(),
                },
                Some(OffsetQuery::AtOrAfter(ts)) => match log.offset_for_timestamp(ts) {
                    Ok(Some((offset, ts))) => {
                        pr.offset = offset.get();
                        pr.timestamp = ts.get();
                    }
                    Ok(None) => {}
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
    _ctx: &Ctx,
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
            match find(state, t.topic.0.as_str(), p.partition) {
                None => pr.error_code = ResponseError::UnknownTopicOrPartition.code(),
                Some(partition) => {
                    if let Some(code) = check_epoch(p.current_leader_epoch) {
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
    _ctx: &Ctx,
    req: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let mut r = DeleteRecordsResponse::default();
    for t in req.topics {
        let mut tr = DeleteRecordsTopicResult::default().with_name(t.name.clone());
        for p in t.partitions {
            let mut pr = DeleteRecordsPartitionResult::default()
                .with_partition_index(p.partition_index)
                .with_low_watermark(-1);
            let Some(partition) = find(state, t.name.0.as_str(), p.partition_index) else {
                pr.error_code = ResponseError::UnknownTopicOrPartition.code();
                tr.partitions.push(pr);
                continue;
            };
            let mut log = partition.log.write().unwrap_or_else(|e| e.into_inner());
            let end = log.log_end_offset();
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
