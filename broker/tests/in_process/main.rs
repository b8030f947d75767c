//! The broker in the test process: the Kafka protocol over real sockets, bad input, log
//! compaction, and replication between brokers. One test binary for them all: each binary
//! links the whole broker again, about 80 s of a cold build apiece (docs/ci.md).
//! `hostile.rs` stays a binary of its own: it measures the process's peak memory, which other
//! tests' brokers in the same process would add to.

#[path = "../common/mod.rs"]
mod common;

mod acls;
mod compaction;
mod malformed;
mod protocol;
mod replication;
mod sasl;
mod tls;
