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

/// Which partition-level Kafka error code means "no error".
pub const NO_ERROR: i32 = 0;
