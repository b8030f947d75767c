//! The operator against a real Kubernetes control plane and a real Weir cluster: the Cluster
//! controller (`cluster`), the Topic and ConsumerGroup controllers (`topic`). One test binary
//! for both: each binary links the operator and kube-rs again, about 80 s of a cold build
//! apiece (docs/ci.md).

#[path = "../support/mod.rs"]
mod support;

mod cluster;
mod topic;
