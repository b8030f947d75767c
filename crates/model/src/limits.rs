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
/// Longest a broker waits in one step of an admin request: the call to the coordinators, then
/// seeing its effect in its own metadata (a topic of thousands of partitions takes this broker
/// seconds to open). CreateTopics and friends answer within twice this.
pub const ADMIN_WAIT_MS_MAX: u64 = 15_000;
/// Longest a produce waits for its ISR (acks=all), whatever `timeout.ms` the client asks for.
pub const PRODUCE_TIMEOUT_MS_MAX: i32 = 300_000;
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
/// A connection with nothing to say for this long is closed (Kafka's `connections.max.idle.ms`).
pub const CONNECTION_IDLE_MS_MAX: u64 = 10 * 60 * 1000;
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
/// Largest a batch's records may decompress to when Weir looks inside a compressed batch: a
/// client's batch that expands further is refused at produce (a decompression bomb);
/// timestamp lookups and the cleaner treat a stored one as opaque.
pub const DECOMPRESSED_BATCH_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Sequence windows kept per idempotent producer and partition (Kafka keeps 5 batches).
pub const PRODUCER_BATCHES_RETAINED: usize = 5;

/// Highest Raft term a coordinator accepts from a peer or from its own store. openraft
/// computes `term + 1` when it starts an election, so a vote at `u64::MAX` (one forged
/// message) would overflow and panic at the next election, and again after every restart
/// because the vote is persisted. Real elections take at least a millisecond each, so 2^62
/// terms are never reached honestly, and the 3 * 2^62 terms left above the ceiling can never be
/// used up either.
pub const RAFT_TERM_MAX: u64 = 1 << 62;
/// Most terms a request may claim above the receiver's own. Each accepted message moves the
/// receiver's term at most this far, so walking it up to [`RAFT_TERM_MAX`] takes 2^38 forged
/// messages. An honest node partitioned away runs one election per election timeout
/// (>= 300 ms in practice), so it needs weeks of isolation to exceed this; even then the
/// quorum learns its term from its answers (which are only held to [`RAFT_TERM_MAX`]).
pub const RAFT_TERM_STEP_MAX: u64 = 1 << 24;
/// Highest Raft log index a coordinator accepts from a peer or from its own store; openraft
/// computes `index + 1` freely. A log of 2^62 entries is as unreachable as the term.
pub const RAFT_LOG_INDEX_MAX: u64 = 1 << 62;
/// Coordinators (voters and learners) one Raft membership may name: at most five voters, plus
/// learners being added.
pub const RAFT_MEMBERS_MAX: usize = 16;
/// Longest short string a Raft peer names: a coordinator's address, a snapshot's id.
pub const RAFT_NAME_BYTES_MAX: usize = 512;
/// Largest Raft snapshot a coordinator receives. The receiver buffers it in memory, and a chunk
/// names the offset it is written at, so an unchecked offset would allocate that many bytes.
pub const RAFT_SNAPSHOT_BYTES_MAX: u64 = 1024 * 1024 * 1024;

/// Largest reply to one replica fetch (Kafka's `replica.fetch.response.max.bytes` plays this
/// part); a follower asking for more gets this.
pub const REPLICA_FETCH_BYTES_MAX: i32 = 16 * 1024 * 1024;
/// Largest share of one replica fetch reply for one partition (Kafka's `replica.fetch.max.bytes`);
/// a first batch larger than this is still sent whole, so a follower always progresses.
pub const REPLICA_FETCH_PARTITION_BYTES_MAX: i32 = 4 * 1024 * 1024;
/// Largest message on the brokers' replication gRPC service, either way: a fetch reply of
/// [`REPLICA_FETCH_BYTES_MAX`] plus a first batch of up to [`MESSAGE_BYTES_MAX_DEFAULT`] and
/// framing fits.
pub const REPLICATION_MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Partitions answered per Watermarks call; a caller with more asks again.
pub const WATERMARKS_MAX: usize = 10_000;
/// Largest gRPC message a coordinator accepts or sends (a full metadata update for
/// [`TOPICS_MAX`] topics fits).
pub const COORDINATOR_MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Largest metadata message a broker accepts from the coordinators: at least what they send.
/// (tonic's default of 4 MiB would cut a cluster of tens of thousands of partitions off.)
pub const METADATA_MESSAGE_BYTES_MAX: usize = 256 * 1024 * 1024;
/// The largest block of producer ids one AllocateProducerIds may reserve.
pub const PRODUCER_ID_BLOCK_MAX: i32 = 100_000;
/// Longest file name the file systems Weir runs on accept (NAME_MAX).
pub const FILE_NAME_BYTES_MAX: usize = 255;
/// Longest config value a `Cluster` resource may give (the CRD's `maxLength`).
pub const CONFIG_VALUE_BYTES_MAX: usize = 1024;
/// gRPC clients the operator keeps cached; a reconcile of a cluster whose coordinator list
/// changed drops the oldest.
pub const OPERATOR_CLIENTS_MAX: usize = 256;

/// The longest stdin line we read; librdkafka's `message.max.bytes` (1 MB by default) refuses
/// far less, but this keeps a stray binary file from filling memory.
/// Used in `cli/src/produce.rs`.
pub const LINE_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// The longest `--request-timeout-ms` we accept: an admin call that needs more is a broken call.
/// Used in `cli/src/config.rs`.
pub const CLI_REQUEST_TIMEOUT_MS_MAX: u64 = 10 * 60 * 1000;
/// The largest bench record value; larger ones exceed Kafka's default `message.max.bytes`.
/// Used in `cli/src/config.rs`.
pub const BENCH_RECORD_BYTES_MAX: usize = 1_000_000;
/// The most brokers `weir dev --brokers N` runs in one process.
/// Used in `cli/src/config.rs`.
pub const DEV_BROKERS_MAX: u16 = 9;
/// The longest consumer group id we accept. Kafka itself only bounds it by the protocol's
/// 16-bit string length; a longer id is a mistake, not a group.
/// Used in `cli/src/config.rs`.
pub const GROUP_ID_BYTES_MAX: usize = 1024;
/// Highest latency the histogram tracks exactly (one hour, in microseconds); above it,
/// values are clamped.
/// Used in `cli/src/bench.rs`.
pub const LATENCY_MICROS_MAX: u64 = 3_600_000_000;
/// Reassignments started per reconcile while spreading after a scale-up: each copies a whole
/// partition log, so they go a few at a time.
/// Used in `operator/src/controller/cluster.rs`.
pub const SPREAD_MOVES_MAX: usize = 8;
/// Reassignments in flight at once while draining: each copies a whole partition log onto a
/// staying broker, so a large drain goes in waves rather than all at once.
/// Used in `operator/src/controller/cluster.rs`.
pub const DRAIN_MOVES_MAX: usize = 16;
/// Replies larger than this are refused; a DescribeCluster of 10 000 partitions is ~1 MiB.
/// Used in `operator/src/admin.rs`.
pub const OPERATOR_RESPONSE_BYTES_MAX: usize = 64 << 20;
/// The map is allocated in one piece; this keeps a typo from asking for the whole machine.
/// Used in `crates/storage/src/cleaner.rs`.
pub const CLEANER_DEDUPE_BUFFER_BYTES_MAX: usize = 16 * 1024 * 1024 * 1024;
/// Small enough for tests to make the reader refill within a segment.
/// Used in `crates/storage/src/cleaner.rs`.
pub const CLEANER_IO_BUFFER_BYTES_MIN: usize = 512;
/// The cleaner's read and write buffers, at most: a segment is streamed, never loaded whole.
/// Used in `crates/storage/src/cleaner.rs`.
pub const CLEANER_IO_BUFFER_BYTES_MAX: usize = 64 * 1024 * 1024;
/// A throttle below this would take hours over one segment.
/// Used in `crates/storage/src/cleaner.rs`.
pub const CLEANER_IO_BYTES_PER_SECOND_MIN: u64 = 1024;
/// The smallest `response_bytes_max` accepted: a Metadata response of a small cluster must fit.
/// Used in `crates/kafka-admin/src/config.rs`.
pub const KAFKA_ADMIN_RESPONSE_BYTES_MAX_MIN: usize = 64 * 1024;
/// The longest a SyncGroup waits for its leader (a leader that never syncs is removed when its
/// session expires, which answers the waiters; this bound is only a backstop).
/// Used in `broker/src/api/groups.rs`.
pub const SYNC_WAIT_MS_MAX: u64 = 300000;
/// Kafka listeners per broker (`--listener`), and so endpoints per broker registration.
/// Used in `broker/src/listener.rs` and `crates/metadata/src/apply.rs`.
pub const LISTENERS_MAX: usize = 16;
/// A listener's name, at most (Kafka's names are short identifiers such as `CLIENT`).
/// Used in `broker/src/listener.rs` and `crates/metadata/src/apply.rs`.
pub const LISTENER_NAME_BYTES_MAX: usize = 64;
/// How often a TLS listener looks at its certificate, key and client CA files for a change
/// (rotation without a restart), at most.
/// Used in `broker/src/tls.rs`.
pub const TLS_RELOAD_CHECK_MS: u64 = 1_000;
/// How long a client has to complete a TLS handshake; a silent or slow one is closed so it
/// holds no connection slot.
/// Used in `broker/src/server.rs`.
pub const TLS_HANDSHAKE_MS_MAX: u64 = 10_000;
/// Partitions one replica fetch or epoch-end request is answered for; a follower asks for
/// the partitions it copies from one leader, so more is a broken or hostile caller.
/// Used in `broker/src/replication.rs`.
pub const REPLICA_FETCH_PARTITIONS_MAX: usize = 4096;
/// SCRAM iterations a credential may have: Kafka's bounds (RFC 7677 asks for at least 4096;
/// more than 16384 makes every login a CPU cost a client chooses).
/// Used in `crates/auth/src/scram.rs` and `crates/metadata/src/users.rs`.
pub const SCRAM_ITERATIONS_MIN: u32 = 4096;
/// See [`SCRAM_ITERATIONS_MIN`].
pub const SCRAM_ITERATIONS_MAX: u32 = 16384;
/// A SCRAM salt's bytes, at most (Kafka's tools make 32 or 64).
/// Used in `crates/metadata/src/users.rs`.
pub const SCRAM_SALT_BYTES_MAX: usize = 128;
/// A SASL user name's bytes, at most.
/// Used in `crates/auth/src/lib.rs` and `crates/metadata/src/users.rs`.
pub const USER_NAME_BYTES_MAX: usize = 256;
/// Users with SCRAM credentials in one cluster: each is in every broker's memory.
/// Used in `crates/metadata/src/users.rs`.
pub const SCRAM_USERS_MAX: usize = 100_000;
/// Credentials one AlterUserScramCredentials request changes, at most.
/// Used in `broker/src/api/users.rs` and `crates/metadata/src/users.rs`.
pub const SCRAM_ALTERATIONS_MAX: usize = 1_000;
/// One SASL message (a SaslAuthenticate's bytes) at most; SCRAM and PLAIN messages are a few
/// hundred bytes, and an unauthenticated client may not send more.
/// Used in `broker/src/sasl.rs`.
pub const SASL_MESSAGE_BYTES_MAX: usize = 8 * 1024;
/// The largest frame a connection that has not authenticated may send: ApiVersions,
/// SaslHandshake and SaslAuthenticate are all small.
/// Used in `broker/src/server.rs`.
pub const UNAUTHENTICATED_FRAME_BYTES_MAX: u32 = 16 * 1024;
/// How long a connection has to authenticate after it is accepted (and, on a TLS listener,
/// after its handshake).
/// Used in `broker/src/server.rs`.
pub const SASL_AUTHENTICATE_MS_MAX: u64 = 10_000;
/// The delay before a failed login is answered (Kafka's
/// `connection.failed.authentication.delay.ms` default): guessing passwords costs time.
/// Used in `broker/src/sasl.rs`.
pub const FAILED_AUTHENTICATION_DELAY_MS: u64 = 100;
/// An ACL's resource name, principal or host, at most.
/// Used in `crates/model/src/acl.rs`.
pub const ACL_FIELD_BYTES_MAX: usize = 1024;
/// ACLs in one cluster: every broker holds them all and checks them on every request.
/// Used in `crates/metadata/src/acls.rs`.
pub const ACLS_MAX: usize = 100_000;
/// ACLs one CreateAcls creates, or filters one DeleteAcls applies, at most.
/// Used in `broker/src/api/acls.rs` and `crates/metadata/src/acls.rs`.
pub const ACL_CHANGES_MAX: usize = 1_000;

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
const _: () = assert!(RAFT_TERM_STEP_MAX < RAFT_TERM_MAX);
const _: () = assert!(RAFT_TERM_MAX < u64::MAX / 2);
const _: () = assert!(RAFT_LOG_INDEX_MAX < u64::MAX / 2);
const _: () = assert!(RAFT_SNAPSHOT_BYTES_MAX < RAFT_LOG_INDEX_MAX);
const _: () = assert!(REPLICA_FETCH_PARTITION_BYTES_MAX <= REPLICA_FETCH_BYTES_MAX);
const _: () = assert!(
    REPLICA_FETCH_BYTES_MAX as usize + MESSAGE_BYTES_MAX_DEFAULT as usize + (1 << 20)
        <= REPLICATION_MESSAGE_BYTES_MAX
);
const _: () = assert!(COORDINATOR_MESSAGE_BYTES_MAX <= METADATA_MESSAGE_BYTES_MAX);
const _: () = assert!(CLEANER_IO_BUFFER_BYTES_MIN < CLEANER_IO_BUFFER_BYTES_MAX);
// A stdin line can carry the largest record a topic accepts by default.
const _: () = assert!(LINE_BYTES_MAX >= MESSAGE_BYTES_MAX_DEFAULT as u64);
const _: () = assert!(KAFKA_ADMIN_RESPONSE_BYTES_MAX_MIN <= OPERATOR_RESPONSE_BYTES_MAX);
const _: () = assert!(REPLICA_FETCH_PARTITIONS_MAX <= BROKER_PARTITIONS_MAX);
const _: () = assert!(SCRAM_ITERATIONS_MIN < SCRAM_ITERATIONS_MAX);
const _: () = assert!(SASL_MESSAGE_BYTES_MAX < UNAUTHENTICATED_FRAME_BYTES_MAX as usize);
const _: () = assert!(FAILED_AUTHENTICATION_DELAY_MS < SASL_AUTHENTICATE_MS_MAX);
