//! One partition this broker is a replica of: its log, its replication role, and the
//! operations on it that request handlers and the group runtime share — appending as leader and
//! waiting for acks=all — with their domain errors. Kafka's codes for them are given in
//! [`crate::error`]; nothing here knows the wire.
//!
//! Lock order, everywhere: a partition's `replica` mutex, then its `log` lock.
//!
//! ```text
//! append_as_leader ─▶ (log directory online? leader at the expected epoch? ISR ≥ min.insync
//!                      for acks=all?) ─▶ PartitionLog::append ─▶ LeaderState::on_append
//! wait_for_isr ─────▶ watch progress until HW > last offset at the same epoch, ISR re-checked
//! ```

use crate::log_dir::LogDirHealth;
use std::sync::{Mutex, RwLock};
use tokio::sync::watch;
use weir_model::{BrokerId, LeaderEpoch, Offset, PartitionId, Timestamp, TopicId, TopicName};
use weir_replication::acks::{self, Shortfall};
use weir_storage::{AppendOutcome, PartitionLog, StorageError};

/// A replica's role and watermark: the pure machine of `weir_replication::replica`, which this
/// shell holds under the partition's `replica` mutex and whose decisions it executes.
pub use weir_replication::replica::{Replica, Role};

/// What acks=all waiters and fetches watch (the pure predicate is in `weir_replication::acks`).
pub use weir_replication::acks::Progress;

/// One partition this broker is a replica of.
#[derive(Debug)]
pub struct Partition {
    pub topic: TopicName,
    pub topic_id: TopicId,
    pub id: PartitionId,
    /// Appends take the write lock, reads the read lock; storage calls are synchronous and
    /// short (page-cache writes, positional reads), so a std lock is right here.
    pub log: RwLock<PartitionLog>,
    pub replica: Mutex<Replica>,
    pub progress: watch::Sender<Progress>,
}

impl Partition {
    pub fn replica(&self) -> std::sync::MutexGuard<'_, Replica> {
        self.replica.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes the replica's progress to waiters (after a change under the replica lock).
    pub fn publish(&self, r: &Replica) {
        let p = r.progress();
        self.progress.send_if_modified(|cur| {
            if *cur == p {
                false
            } else {
                *cur = p;
                true
            }
        });
    }

    /// The high watermark, for reads.
    pub fn high_watermark(&self) -> Offset {
        self.progress.borrow().high_watermark
    }
}

/// Why a partition cannot be served here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotServed {
    UnknownTopicOrPartition,
    NotLeader,
    /// This broker is a replica, but the partition's files could not be opened (damaged,
    /// unreadable): KAFKA_STORAGE_ERROR, as Kafka answers for a partition on an offline log
    /// directory, rather than a silent NOT_LEADER that clients retry for ever.
    Offline,
}

/// How many replicas must have a batch before its producer is answered (Kafka's `acks`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acks {
    /// acks=0: no answer at all.
    None,
    /// acks=1: in the leader's log.
    Leader,
    /// acks=all: in the log of every ISR member, with at least `min.insync.replicas` of them.
    All,
}

/// Why an append as leader was refused.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("the log directory of broker {broker} is offline: {reason}")]
    LogDirOffline { broker: BrokerId, reason: String },
    #[error("{topic}-{partition} is at leader epoch {epoch}, not the one expected")]
    EpochMoved {
        topic: TopicName,
        partition: PartitionId,
        epoch: LeaderEpoch,
    },
    #[error("broker {broker} no longer leads {topic}-{partition}")]
    NotLeader {
        broker: BrokerId,
        topic: TopicName,
        partition: PartitionId,
    },
    #[error("{topic}-{partition} has {isr} in-sync replicas; min.insync.replicas is {min_insync}")]
    NotEnoughReplicas {
        topic: TopicName,
        partition: PartitionId,
        isr: usize,
        min_insync: usize,
    },
    /// The log refused the batch (or failed to write it): its own message, unwrapped, is
    /// what the producer reads.
    #[error("{0}")]
    Storage(StorageError),
}

/// Why an acks=all wait ended without the batch being acknowledged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WaitError {
    #[error("leadership of {topic}-{partition} moved before the record was replicated")]
    LeadershipMoved {
        topic: TopicName,
        partition: PartitionId,
    },
    #[error(
        "written, but {topic}-{partition} has {isr} in-sync replicas; min.insync.replicas is {min_insync}"
    )]
    NotEnoughReplicasAfterAppend {
        topic: TopicName,
        partition: PartitionId,
        isr: usize,
        min_insync: usize,
    },
    #[error("{topic}-{partition} is no longer hosted here")]
    NoLongerHosted {
        topic: TopicName,
        partition: PartitionId,
    },
    #[error("the in-sync replicas of {topic}-{partition} did not confirm the record in time")]
    TimedOut {
        topic: TopicName,
        partition: PartitionId,
    },
}

impl Partition {
    /// Appends as this partition's leader, at its epoch, under the replica lock so that a
    /// change of role cannot interleave. acks=all is refused up front when the ISR is too
    /// small. Returns the leader epoch the batch was appended at (what an acks=all wait must
    /// still see); with `expected`, refuses unless the epoch is that one. A failed write takes
    /// the log directory offline (`log_dir`).
    pub fn append_as_leader(
        &self,
        log_dir: &LogDirHealth,
        me: BrokerId,
        batch: &mut [u8],
        acks: Acks,
        now: Timestamp,
        expected: Option<LeaderEpoch>,
    ) -> Result<(AppendOutcome, LeaderEpoch), AppendError> {
        if let Some(reason) = log_dir.offline_reason() {
            return Err(AppendError::LogDirOffline { broker: me, reason });
        }
        let mut r = self.replica();
        let epoch = r.epoch;
        if expected.is_some_and(|e| e != epoch) {
            return Err(AppendError::EpochMoved {
                topic: self.topic.clone(),
                partition: self.id,
                epoch,
            });
        }
        let min_insync = r.min_insync;
        let Role::Leader(leader) = &mut r.role else {
            return Err(AppendError::NotLeader {
                broker: me,
                topic: self.topic.clone(),
                partition: self.id,
            });
        };
        if acks == Acks::All && leader.isr().len() < min_insync {
            return Err(AppendError::NotEnoughReplicas {
                topic: self.topic.clone(),
                partition: self.id,
                isr: leader.isr().len(),
                min_insync,
            });
        }
        let mut log = self.log.write().unwrap_or_else(|e| e.into_inner());
        // An append that may fsync (flush.messages set) can take milliseconds: let the
        // runtime move other tasks off this worker meanwhile. Page-cache appends take
        // microseconds and run inline.
        let outcome = if log.config().flush_messages.is_some() {
            tokio::task::block_in_place(|| log.append(batch, epoch, now))
        } else {
            log.append(batch, epoch, now)
        };
        let end = log.log_end_offset();
        drop(log);
        if leader.on_append(end) {
            self.publish(&r);
        }
        drop(r);
        if let Err(e) = &outcome {
            log_dir.record(&format!("appending to {}-{}", self.topic, self.id), e);
        }
        outcome.map(|o| (o, epoch)).map_err(AppendError::Storage)
    }

    /// Waits until the high watermark passes `last` at `epoch`, the leader epoch the batch
    /// was appended at (see [`acks::outcome`]), or `deadline` passes.
    pub async fn wait_for_isr(
        &self,
        last: Offset,
        epoch: LeaderEpoch,
        deadline: tokio::time::Instant,
    ) -> Result<(), WaitError> {
        // The topic name is copied into an error only: the wait itself allocates nothing.
        let (topic, partition) = (|| self.topic.clone(), self.id);
        let mut rx = self.progress.subscribe();
        loop {
            let now = *rx.borrow_and_update();
            let mut min_insync = 0;
            let read_min_insync = || {
                min_insync = self.replica().min_insync;
                min_insync
            };
            match acks::outcome(&now, last, epoch, read_min_insync) {
                Some(Ok(())) => return Ok(()),
                Some(Err(Shortfall::LeadershipMoved)) => {
                    return Err(WaitError::LeadershipMoved {
                        topic: topic(),
                        partition,
                    });
                }
                Some(Err(Shortfall::NotEnoughReplicas { isr })) => {
                    return Err(WaitError::NotEnoughReplicasAfterAppend {
                        topic: topic(),
                        partition,
                        isr,
                        min_insync,
                    });
                }
                None => {}
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => {
                    return Err(WaitError::NoLongerHosted {
                        topic: topic(),
                        partition,
                    });
                }
                Err(_) => {
                    return Err(WaitError::TimedOut {
                        topic: topic(),
                        partition,
                    });
                }
            }
        }
    }
}
