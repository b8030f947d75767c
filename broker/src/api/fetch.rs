//! Fetch: serve stored batches, waiting up to `max.wait.ms` for `min.bytes`.
//!
//! ```text
//! FetchRequest ─▶ read every partition (whole batches, byte limits) ─▶ enough bytes, an error,
//!                 or the deadline? ─yes─▶ FetchResponse
//!                      ▲ no
//!                      └── wait for the next append (or the deadline)
//! ```
//! Batches are served exactly as they were stored: no decoding, no re-encoding. A fetch offset
//! inside a batch returns that whole batch; the client skips the records before its offset.

use super::Ctx;
use crate::state::{BrokerState, NotServed};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::*;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use weir_model::Offset;
use weir_model::limits::FETCH_BYTES_MAX;
use weir_storage::StorageError;

pub async fn fetch(state: &Arc<BrokerState>, ctx: &Ctx, req: FetchRequest) -> FetchResponse {
    // Fetch sessions (KIP-227) are not kept: session id 0 tells the client to send full
    // requests. A client that names a session we never gave gets the error that resets it.
    if ctx.version >= 7 && req.session_id != 0 {
        let mut r = FetchResponse::default();
        r.error_code = ResponseError::FetchSessionIdNotFound.code();
        return r;
    }
    let wait_ms = req
        .max_wait_ms
        .clamp(0, state.config.fetch_wait_ms_max.max(0));
    let deadline = Instant::now() + Duration::from_millis(wait_ms as u64);
    let min_bytes = req.min_bytes.max(0) as usize;
    let mut appends = state.subscribe_appends();
    loop {
        appends.borrow_and_update();
        let (resp, bytes, errored) = read_all(state, ctx, &req);
        if bytes >= min_bytes || errored || Instant::now() >= deadline {
            return resp;
        }
        // Appends after `borrow_and_update` mark the channel changed, so none is missed between
        // the read above and this wait.
        match tokio::time::timeout_at(deadline, appends.changed()).await {
            Ok(Ok(())) => continue,
            // Deadline reached (or the broker is shutting down): answer with what there is now.
            _ => return read_all(state, ctx, &req).0,
        }
    }
}

/// Reads every requested partition once. Returns the response, its record bytes, and whether
/// any partition has an error (which answers the fetch at once, as in Kafka).
fn read_all(state: &BrokerState, ctx: &Ctx, req: &FetchRequest) -> (FetchResponse, usize, bool) {
    let mut r = FetchResponse::default();
    let mut remaining = if req.max_bytes > 0 {
        req.max_bytes as usize
    } else {
        usize::MAX
    };
    let mut total = 0usize;
    let mut errored = false;
    for ft in &req.topics {
        let mut tr = FetchableTopicResponse::default().with_topic(ft.topic.clone());
        for fp in &ft.partitions {
            let mut pd = PartitionData::default().with_partition_index(fp.partition);
            if req.isolation_level == 0 {
                pd.aborted_transactions = None;
            }
            let partition = match state.leader_partition(ft.topic.0.as_str(), fp.partition) {
                Ok(p) => p,
                Err(e) => {
                    pd.error_code = match e {
                        NotServed::UnknownTopicOrPartition => {
                            ResponseError::UnknownTopicOrPartition
                        }
                        NotServed::NotLeader => ResponseError::NotLeaderOrFollower,
                    }
                    .code();
                    pd.high_watermark = -1;
                    errored = true;
                    tr.partitions.push(pd);
                    continue;
                }
            };
            let progress = *partition.progress.borrow();
            if ctx.version >= 9 && fp.current_leader_epoch >= 0 {
                let code = match fp.current_leader_epoch.cmp(&progress.epoch.get()) {
                    std::cmp::Ordering::Less => Some(ResponseError::FencedLeaderEpoch),
                    std::cmp::Ordering::Greater => Some(ResponseError::UnknownLeaderEpoch),
                    std::cmp::Ordering::Equal => None,
                };
                if let Some(code) = code {
                    pd.error_code = code.code();
                    pd.high_watermark = -1;
                    errored = true;
                    tr.partitions.push(pd);
                    continue;
                }
            }
            let log = partition.log.read().unwrap_or_else(|e| e.into_inner());
            let log_end = log.log_end_offset();
            // Consumers see records up to the high watermark only: below it, every in-sync
            // replica has them, so no leader change can take them back.
            let end = progress.high_watermark.min(log_end);
            pd.high_watermark = end.get();
            pd.last_stable_offset = end.get();
            pd.log_start_offset = log.log_start_offset().get();
            let max = (fp.partition_max_bytes.clamp(0, FETCH_BYTES_MAX) as usize).min(remaining);
            // KIP-74: the first partition with data returns at least one whole batch, even
            // past the byte limits, so a batch larger than max.bytes cannot stall a consumer.
            let min_one = total == 0;
            if fp.fetch_offset < 0 || fp.fetch_offset > log_end.get() {
                pd.error_code = ResponseError::OffsetOutOfRange.code();
                pd.records = Some(Default::default());
                errored = true;
            } else if fp.fetch_offset >= end.get() || (max == 0 && !min_one) {
                pd.records = Some(Default::default());
            } else {
                match log.read(Offset(fp.fetch_offset), max, end, min_one) {
                    Ok(out) => {
                        total += out.bytes.len();
                        remaining = remaining.saturating_sub(out.bytes.len());
                        pd.records = Some(out.bytes);
                    }
                    Err(StorageError::OffsetOutOfRange { .. }) => {
                        pd.error_code = ResponseError::OffsetOutOfRange.code();
                        pd.records = Some(Default::default());
                        errored = true;
                    }
                    Err(e) => {
                        tracing::error!(
                            topic = %partition.topic, partition = partition.id.get(),
                            offset = fp.fetch_offset, error = %e, "fetch read failed"
                        );
                        pd.error_code = crate::error::storage_error_code(&e).code();
                        pd.records = Some(Default::default());
                        errored = true;
                    }
                }
            }
            tr.partitions.push(pd);
        }
        r.responses.push(tr);
    }
    (r, total, errored)
}
