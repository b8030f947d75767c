//! Raft storage: the log on disk ([`log`]) and the state machine with its snapshots
//! ([`state_machine`]).

pub mod log;
pub mod state_machine;
