//! Fetch: serve stored batches, waiting up to `max.wait.ms` for `min.bytes`.
//!
//! ```text
//! FetchRequest ─▶ plan: each partition once, sizes clamped ─▶ reserve worst-case memory
//!   ─▶ read every partition (whole batches, byte limits) ─▶ enough bytes, an error,
//!      or the deadline? ─yes─▶ FetchResponse (holding the memory it used until written)
//!                      ▲ no (memory returned)
//!                      └── wait for the next append (or the deadline, or the client leaving)
//! ```
//! Batches are served exactly as they were stored: no decoding, no re-encoding. A fetch offset
//! inside a batch returns that whole batch; the client skips the records before its offset.
//!
//! Sizes are clamped at this edge: the request's `max_bytes` and every `partition_max_bytes`
//! to [`FETCH_BYTES_MAX`], and a response holds at most the request's `max_bytes` of batches,
//! except that the first partition with data returns one whole batch even past it (KIP-74), a
//! batch the topic's `max.message.bytes` bounds. A partition listed more than once is read once,
//! where it was first listed, with the last listing's offset and size: Kafka builds its fetch
//! map the same way (a `LinkedHashMap` keyed by topic-partition), so a client that repeats a
//! partition cannot multiply what one request reads. Responses being read, encoded or written
//! share [`FETCH_RESPONSE_BYTES_IN_FLIGHT_MAX`] over the whole broker process.

use super::Ctx;
use crate::state::BrokerState;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_request::FetchPartition;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::*;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use weir_model::acl::{Operation, ResourceType};
use weir_model::limits::{FETCH_BYTES_MAX, FETCH_RESPONSE_BYTES_IN_FLIGHT_MAX};
use weir_model::{Offset, PartitionId};
use weir_storage::StorageError;

/// Encoded bytes a partition adds to a response besides its records (index, error code,
/// offsets, empty aborted-transaction list), rounded up.
const PARTITION_RESPONSE_OVERHEAD_BYTES: usize = 64;

/// The broker's fetch-response memory. One per process, which is one per broker outside
/// tests; brokers sharing a test process share it, which only makes them stricter.
static FETCH_MEMORY: LazyLock<Arc<Semaphore>> = LazyLock::new(|| {
    // The limits module asserts this fits in a u32, so it fits in a usize.
    Arc::new(Semaphore::new(FETCH_RESPONSE_BYTES_IN_FLIGHT_MAX as usize))
});

/// A fetch's partitions, each once, in the order first listed, with sizes clamped.
struct Plan {
    max_bytes: usize,
    topics: Vec<(TopicName, Vec<FetchPartition>)>,
    partitions: usize,
}

impl Plan {
    fn new(req: &FetchRequest) -> Plan {
        let mut topics: Vec<(TopicName, Vec<FetchPartition>)> = Vec::new();
        let mut topic_at: HashMap<&str, usize> = HashMap::new();
        let mut partition_at: HashMap<(usize, i32), usize> = HashMap::new();
        for ft in &req.topics {
            let t = *topic_at.entry(ft.topic.0.as_str()).or_insert_with(|| {
                topics.push((ft.topic.clone(), Vec::new()));
                topics.len() - 1
            });
            for fp in &ft.partitions {
                let mut fp = fp.clone();
                fp.partition_max_bytes = fp.partition_max_bytes.clamp(0, FETCH_BYTES_MAX);
                let listed = &mut topics[t].1;
                match partition_at.entry((t, fp.partition)) {
                    std::collections::hash_map::Entry::Occupied(at) => listed[*at.get()] = fp,
                    std::collections::hash_map::Entry::Vacant(at) => {
                        at.insert(listed.len());
                        listed.push(fp);
                    }
                }
            }
        }
        Plan {
            max_bytes: req.max_bytes.clamp(0, FETCH_BYTES_MAX) as usize,
            partitions: partition_at.len(),
            topics,
        }
    }

    /// The most memory one read pass can need: the records (at most `max_bytes`, plus the
    /// largest batch a requested topic accepts, for KIP-74's first batch), their encoded copy,
    /// and the per-partition framing.
    fn worst_case_bytes(&self, state: &BrokerState) -> usize {
        let mut asked = 0usize;
        let mut batch = 0usize;
        for (topic, partitions) in &self.topics {
            for fp in partitions {
                asked = asked.saturating_add(fp.partition_max_bytes as usize);
                if let Ok(p) = state.leader_partition(topic.0.as_str(), PartitionId(fp.partition)) {
                    let log = p.log.read().unwrap_or_else(|e| e.into_inner());
                    batch = batch.max(log.config().max_message_bytes as usize);
                }
            }
        }
        self.used_bytes(asked.min(self.max_bytes).saturating_add(batch))
    }

    /// Memory a response with `records` bytes of batches holds: the batches, and their copy
    /// in the encoded response.
    fn used_bytes(&self, records: usize) -> usize {
        records.saturating_mul(2).saturating_add(
            self.partitions
                .saturating_mul(PARTITION_RESPONSE_OVERHEAD_BYTES),
        )
    }
}

/// Takes `bytes` (capped at the whole budget, so it can always be granted) of fetch memory.
async fn reserve(bytes: usize) -> Option<OwnedSemaphorePermit> {
    let n = bytes.min(FETCH_RESPONSE_BYTES_IN_FLIGHT_MAX as usize);
    // The semaphore is never closed; `None` would only mean an unbounded response.
    FETCH_MEMORY
        .clone()
        .acquire_many_owned(u32::try_from(n).unwrap_or(u32::MAX))
        .await
        .ok()
}

/// Returns all but `bytes` of `memory` to the broker.
pub fn keep_only(memory: &mut Option<OwnedSemaphorePermit>, bytes: usize) {
    if let Some(m) = memory
        && m.num_permits() > bytes
    {
        drop(m.split(m.num_permits() - bytes));
    }
}

/// Answers a fetch, with the fetch memory its response holds.
pub async fn fetch(
    state: &Arc<BrokerState>,
    ctx: &Ctx,
    req: FetchRequest,
) -> (FetchResponse, Option<OwnedSemaphorePermit>) {
    // Fetch sessions (KIP-227) are not kept: session id 0 tells the client to send full
    // requests. A client that names a session we never gave gets the error that resets it.
    if ctx.version >= 7 && req.session_id != 0 {
        let mut r = FetchResponse::default();
        r.error_code = ResponseError::FetchSessionIdNotFound.code();
        return (r, None);
    }
    let wait_ms = req
        .max_wait_ms
        .clamp(0, state.config.fetch_wait_ms_max.max(0));
    let deadline = Instant::now() + Duration::from_millis(wait_ms as u64);
    let min_bytes = req.min_bytes.max(0) as usize;
    let plan = Plan::new(&req);
    let read_committed = req.isolation_level != 0;
    drop(req);
    let mut appends = state.subscribe_appends();
    let mut last = false;
    loop {
        appends.borrow_and_update();
        // Reserved whole before reading, never grown while held: fetches cannot each hold
        // part of the budget and wait for more.
        let mut memory = reserve(plan.worst_case_bytes(state)).await;
        let (resp, bytes, errored) = read_all(state, ctx, &plan, read_committed);
        if last || bytes >= min_bytes || errored || Instant::now() >= deadline {
            keep_only(&mut memory, plan.used_bytes(bytes));
            return (resp, memory);
        }
        drop((resp, memory));
        // Appends after `borrow_and_update` mark the channel changed, so none is missed between
        // the read above and this wait. At the deadline, shutdown or the client leaving, one
        // last read answers with what there is now.
        last = tokio::select! {
            r = tokio::time::timeout_at(deadline, appends.changed()) => !matches!(r, Ok(Ok(()))),
            () = ctx.closed() => true,
        };
    }
}

/// Bytes of batches a response has, and may still take.
struct Sizes {
    total: usize,
    remaining: usize,
}

/// Reads every planned partition once. Returns the response, its record bytes, and whether
/// any partition has an error (which answers the fetch at once, as in Kafka).
fn read_all(
    state: &BrokerState,
    ctx: &Ctx,
    plan: &Plan,
    read_committed: bool,
) -> (FetchResponse, usize, bool) {
    let mut r = FetchResponse::default();
    let mut sizes = Sizes {
        total: 0,
        remaining: plan.max_bytes,
    };
    let mut errored = false;
    for (topic, partitions) in &plan.topics {
        let mut tr = FetchableTopicResponse::default().with_topic(topic.clone());
        let readable = super::allowed(state, ctx, Operation::Read, ResourceType::Topic, topic);
        for fp in partitions {
            let mut pd = PartitionData::default().with_partition_index(fp.partition);
            if !read_committed {
                pd.aborted_transactions = None;
            }
            let read = if readable {
                read_partition(state, ctx, topic, fp, &mut sizes, &mut pd)
            } else {
                pd.high_watermark = -1;
                Err(ResponseError::TopicAuthorizationFailed)
            };
            if let Err(code) = read {
                pd.error_code = code.code();
                errored = true;
            }
            tr.partitions.push(pd);
        }
        r.responses.push(tr);
    }
    (r, sizes.total, errored)
}

/// Reads one partition into `pd`, within `sizes`.
fn read_partition(
    state: &BrokerState,
    ctx: &Ctx,
    topic: &TopicName,
    fp: &FetchPartition,
    sizes: &mut Sizes,
    pd: &mut PartitionData,
) -> Result<(), ResponseError> {
    let partition = state
        .leader_partition(topic.0.as_str(), PartitionId(fp.partition))
        .map_err(|e| {
            pd.high_watermark = -1;
            crate::error::not_served_code(e)
        })?;
    let progress = *partition.progress.borrow();
    if ctx.version >= 9 && fp.current_leader_epoch >= 0 {
        let code = match fp.current_leader_epoch.cmp(&progress.epoch.get()) {
            std::cmp::Ordering::Less => Some(ResponseError::FencedLeaderEpoch),
            std::cmp::Ordering::Greater => Some(ResponseError::UnknownLeaderEpoch),
            std::cmp::Ordering::Equal => None,
        };
        if let Some(code) = code {
            pd.high_watermark = -1;
            return Err(code);
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
    pd.records = Some(Default::default());
    let max = (fp.partition_max_bytes as usize).min(sizes.remaining);
    // KIP-74: the first partition with data returns at least one whole batch, even
    // past the byte limits, so a batch larger than max.bytes cannot stall a consumer.
    let min_one = sizes.total == 0;
    if fp.fetch_offset < 0 || fp.fetch_offset > log_end.get() {
        return Err(ResponseError::OffsetOutOfRange);
    }
    if fp.fetch_offset >= end.get() || (max == 0 && !min_one) {
        return Ok(());
    }
    match log.read(Offset(fp.fetch_offset), max, end, min_one) {
        Ok(out) => {
            sizes.total += out.bytes.len();
            sizes.remaining = sizes.remaining.saturating_sub(out.bytes.len());
            pd.records = Some(out.bytes);
            Ok(())
        }
        Err(StorageError::OffsetOutOfRange { .. }) => Err(ResponseError::OffsetOutOfRange),
        Err(e) => {
            tracing::error!(
                topic = %partition.topic, partition = partition.id.get(),
                offset = fp.fetch_offset, error = %e, "fetch read failed"
            );
            Err(crate::error::storage_error_code(&e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_request::FetchTopic;
    use kafka_protocol::protocol::StrBytes;

    /// Partition, fetch offset, partition max bytes.
    type Listing = (i32, i64, i32);

    fn topic(name: &'static str, partitions: &[Listing]) -> FetchTopic {
        FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str(name)))
            .with_partitions(
                partitions
                    .iter()
                    .map(|&(p, offset, max)| {
                        FetchPartition::default()
                            .with_partition(p)
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(max)
                    })
                    .collect(),
            )
    }

    /// Proves: a partition listed again (in the same or a repeated topic) is planned once,
    /// where first listed, with the last listing's offset and size, and every size is clamped.
    #[test]
    fn a_plan_lists_each_partition_once_with_clamped_sizes() {
        let req = FetchRequest::default()
            .with_max_bytes(i32::MAX)
            .with_topics(vec![
                topic("a", &[(0, 1, 10), (1, 1, i32::MAX), (0, 2, 20)]),
                topic("b", &[(0, 5, -7)]),
                topic("a", &[(0, 3, 30), (2, 4, 40)]),
            ]);
        let plan = Plan::new(&req);
        assert_eq!(plan.max_bytes, FETCH_BYTES_MAX as usize);
        assert_eq!(plan.partitions, 4);
        let got: Vec<(&str, Vec<Listing>)> = plan
            .topics
            .iter()
            .map(|(t, ps)| {
                let ps = ps
                    .iter()
                    .map(|p| (p.partition, p.fetch_offset, p.partition_max_bytes))
                    .collect();
                (t.0.as_str(), ps)
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", vec![(0, 3, 30), (1, 1, FETCH_BYTES_MAX), (2, 4, 40)]),
                ("b", vec![(0, 5, 0)]),
            ]
        );
        let negative = FetchRequest::default().with_max_bytes(-1);
        assert_eq!(Plan::new(&negative).max_bytes, 0);
    }
}
