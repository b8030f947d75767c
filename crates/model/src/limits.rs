//! Every bound Weir enforces, in one place, named qualifier-last.
//!
//! A length read off the wire or the disk is checked against one of these before anything is
//! allocated for it. Their relations are asserted at compile time below.

/// Largest Kafka request frame the broker reads (Kafka's `socket.request.max.bytes`).
pub const REQUEST_BYTES_MAX_DEFAULT: u32 = 100 * 1024 * 1024;
/// Largest record batch a topic accepts (Kafka's `message.max.bytes`, default 1 MiB + overhead).
pub const MESSAGE_BYTES_MAX_DEFAULT: u32 = 1024 * 1024 + 12;
/// Connections the broker serves at once; more are closed on accept.
pub const CONNECTIONS_MAX_DEFAULT: usize = 10_000;
/// Requests one connection may have in flight before the broker stops reading from it.
pub const CONNECTION_IN_FLIGHT_MAX: usize = 64;
/// Longest a fetch may wait for data (`max.wait.ms` from the client is capped here).
pub const FETCH_WAIT_MS_MAX: i32 = 30_000;
/// Segment size at which a partition's log rolls (Kafka's `segment.bytes`, 1 GiB).
pub const SEGMENT_BYTES_DEFAULT: u64 = 1024 * 1024 * 1024;
/// Smallest `segment.bytes` a topic may set; anything smaller would roll on every batch.
pub const SEGMENT_BYTES_MIN: u64 = 14;
/// Largest `segment.bytes`: offsets within a segment are stored as 32-bit positions.
pub const SEGMENT_BYTES_MAX: u64 = i32::MAX as u64;
/// Bytes between sparse index entries (Kafka's `index.interval.bytes`).
pub const INDEX_INTERVAL_BYTES_DEFAULT: u32 = 4096;
/// Retention by time, 7 days (Kafka's `retention.ms`).
pub const RETENTION_MS_DEFAULT: i64 = 7 * 24 * 60 * 60 * 1000;
/// Partitions one topic may have.
pub const PARTITIONS_PER_TOPIC_MAX: i32 = 10_000;
/// Topics one broker hosts.
pub const TOPICS_MAX: usize = 10_000;
/// Partitions one broker hosts, over all topics. Each holds open files (the active segment at
/// least), so this also bounds file descriptors.
pub const BROKER_PARTITIONS_MAX: usize = 20_000;
/// Largest fetch response (Kafka's `fetch.max.bytes`); a client asking for more gets this.
pub const FETCH_BYTES_MAX: i32 = 55 * 1024 * 1024;
/// Bytes of requests read but not yet answered, over all connections (Kafka's
/// `queued.max.request.bytes`); readers wait when it is used up.
pub const QUEUED_REQUEST_BYTES_MAX_DEFAULT: u64 = 1024 * 1024 * 1024;
/// A frame whose size prefix has arrived must arrive whole (and find read budget) within this,
/// or its connection is closed: a client that announces a large frame and stalls holds budget
/// for at most this long (Kafka bounds the same with `request.timeout.ms` on its clients).
pub const FRAME_READ_MS_MAX: u64 = 30_000;
/// Read budget a frame takes ahead of its bytes: budget (and memory) grows as bytes arrive, not
/// by the size a frame announces.
pub const FRAME_READ_AHEAD_BYTES: usize = 64 * 1024;
/// Bytes of Fetch responses being read, encoded or written, over all connections. A fetch
/// reserves its worst case (twice: the records and their encoded copy) before reading and keeps
/// what it used until its response is written; others wait.
pub const FETCH_RESPONSE_BYTES_IN_FLIGHT_MAX: u64 = 512 * 1024 * 1024;
/// Topics one Metadata request may name; past it, names are answered INVALID_REQUEST without
/// being looked up.
pub const METADATA_REQUEST_TOPICS_MAX: usize = TOPICS_MAX;
/// Topics one Metadata request may auto-create; the rest answer UNKNOWN_TOPIC_OR_PARTITION, as
/// Kafka does when it cannot create, and the client asks again.
pub const AUTO_CREATE_TOPICS_PER_REQUEST_MAX: usize = 100;
/// Records in one batch: a batch's header says how many, and we never trust it past this.
pub const BATCH_RECORDS_MAX: i32 = 1 << 20;
/// Largest a batch's records may decompress to when Weir looks inside a compressed batch
/// (timestamp lookups); past it the lookup answers at batch level instead.
pub const DECOMPRESSED_BATCH_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Sequence windows kept per idempotent producer and partition (Kafka keeps 5 batches).
pub const PRODUCER_BATCHES_RETAINED: usize = 5;

const _: () = assert!(MESSAGE_BYTES_MAX_DEFAULT < REQUEST_BYTES_MAX_DEFAULT);
const _: () = assert!(SEGMENT_BYTES_DEFAULT <= SEGMENT_BYTES_MAX);
const _: () = assert!((MESSAGE_BYTES_MAX_DEFAULT as u64) < SEGMENT_BYTES_MAX);
const _: () = assert!(FETCH_WAIT_MS_MAX > 0);
const _: () = assert!(REQUEST_BYTES_MAX_DEFAULT as u64 <= QUEUED_REQUEST_BYTES_MAX_DEFAULT);
const _: () = assert!((MESSAGE_BYTES_MAX_DEFAULT as i32) < FETCH_BYTES_MAX);
const _: () = assert!(PARTITIONS_PER_TOPIC_MAX as usize <= BROKER_PARTITIONS_MAX);
const _: () = assert!(FRAME_READ_AHEAD_BYTES as u64 <= QUEUED_REQUEST_BYTES_MAX_DEFAULT);
// One fetch of the largest size, whose first batch is the largest a topic may allow, fits twice.
const _: () = assert!(
    2 * (FETCH_BYTES_MAX as u64 + REQUEST_BYTES_MAX_DEFAULT as u64)
        <= FETCH_RESPONSE_BYTES_IN_FLIGHT_MAX
);
const _: () = assert!(FETCH_RESPONSE_BYTES_IN_FLIGHT_MAX <= u32::MAX as u64);
const _: () = assert!(AUTO_CREATE_TOPICS_PER_REQUEST_MAX <= METADATA_REQUEST_TOPICS_MAX);
const _: () = assert!(METADATA_REQUEST_TOPICS_MAX <= TOPICS_MAX);
