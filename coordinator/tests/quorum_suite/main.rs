//! The coordinator quorum: in one process (forwarding, leases, the watch stream, membership),
//! as real processes killed and restarted, paused, and fed forged Raft messages. One test
//! binary for them all: each binary links the whole coordinator again, about 40 s of a cold
//! build apiece (docs/ci.md).

#[path = "../common/mod.rs"]
mod common;

mod forged_raft;
mod pause;
mod quorum;
mod restart;
