//! The gRPC contracts between coordinators, brokers, the CLI and the operator.
//!
//! The `.proto` files in `proto/weir/v1` are the source of truth. The Rust code in `src/gen` is
//! generated from them and committed, so building Weir needs neither `protoc` nor a build
//! script; the `generated_code_is_current` test fails when the two drift. To regenerate after
//! editing a `.proto` file:
//!
//! ```text
//! WEIR_REGENERATE_PROTO=1 cargo test -p weir-proto --test generated
//! ```

#![allow(missing_debug_implementations)] // generated clients and servers

/// Everything in the `weir.v1` protobuf package.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, unused_qualifications)]
    include!("gen/weir.v1.rs");
}

pub mod convert;

/// Which partition-level Kafka error code means "no error".
pub const NO_ERROR: i32 = 0;

/// The Kafka error codes Weir's own gRPC carries (`error_code` fields and `weir.v1.Error`), in
/// Kafka's numbering, so a broker can hand them to Kafka clients unchanged. The one list every
/// side names them from; `broker/src/error.rs` checks each against `kafka-protocol`'s table.
pub mod codes {
    pub const NONE: i32 = super::NO_ERROR;
    pub const OFFSET_OUT_OF_RANGE: i32 = 1;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i32 = 3;
    pub const NOT_LEADER_OR_FOLLOWER: i32 = 6;
    pub const INVALID_TOPIC_EXCEPTION: i32 = 17;
    pub const TOPIC_ALREADY_EXISTS: i32 = 36;
    pub const INVALID_PARTITIONS: i32 = 37;
    pub const INVALID_REPLICATION_FACTOR: i32 = 38;
    pub const UNSUPPORTED_SASL_MECHANISM: i32 = 33;
    pub const INVALID_CONFIG: i32 = 40;
    pub const INVALID_REQUEST: i32 = 42;
    pub const POLICY_VIOLATION: i32 = 44;
    pub const KAFKA_STORAGE_ERROR: i32 = 56;
    pub const FENCED_LEADER_EPOCH: i32 = 74;
    pub const UNKNOWN_LEADER_EPOCH: i32 = 75;
    pub const STALE_BROKER_EPOCH: i32 = 77;
    pub const NO_REASSIGNMENT_IN_PROGRESS: i32 = 85;
    pub const INVALID_UPDATE_VERSION: i32 = 95;
    pub const UNKNOWN_TOPIC_ID: i32 = 100;
    pub const BROKER_ID_NOT_REGISTERED: i32 = 102;

    /// Every code above with Kafka's name for it, for the check against Kafka's table.
    pub const ALL: &[(&str, i32)] = &[
        ("NONE", NONE),
        ("OFFSET_OUT_OF_RANGE", OFFSET_OUT_OF_RANGE),
        ("UNKNOWN_TOPIC_OR_PARTITION", UNKNOWN_TOPIC_OR_PARTITION),
        ("NOT_LEADER_OR_FOLLOWER", NOT_LEADER_OR_FOLLOWER),
        ("INVALID_TOPIC_EXCEPTION", INVALID_TOPIC_EXCEPTION),
        ("TOPIC_ALREADY_EXISTS", TOPIC_ALREADY_EXISTS),
        ("INVALID_PARTITIONS", INVALID_PARTITIONS),
        ("INVALID_REPLICATION_FACTOR", INVALID_REPLICATION_FACTOR),
        ("UNSUPPORTED_SASL_MECHANISM", UNSUPPORTED_SASL_MECHANISM),
        ("INVALID_CONFIG", INVALID_CONFIG),
        ("INVALID_REQUEST", INVALID_REQUEST),
        ("POLICY_VIOLATION", POLICY_VIOLATION),
        ("KAFKA_STORAGE_ERROR", KAFKA_STORAGE_ERROR),
        ("FENCED_LEADER_EPOCH", FENCED_LEADER_EPOCH),
        ("UNKNOWN_LEADER_EPOCH", UNKNOWN_LEADER_EPOCH),
        ("STALE_BROKER_EPOCH", STALE_BROKER_EPOCH),
        ("NO_REASSIGNMENT_IN_PROGRESS", NO_REASSIGNMENT_IN_PROGRESS),
        ("INVALID_UPDATE_VERSION", INVALID_UPDATE_VERSION),
        ("UNKNOWN_TOPIC_ID", UNKNOWN_TOPIC_ID),
        ("BROKER_ID_NOT_REGISTERED", BROKER_ID_NOT_REGISTERED),
    ];
}
