//! The gRPC services. Generated `pb` types and `tonic::Status` stop here.

pub mod admin;
pub mod broker_control;
pub mod raft;
