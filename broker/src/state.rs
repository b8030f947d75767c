//! The broker's shared state: topics, their partitions' logs, and producer ids.
//!
//! Reads (Metadata, Fetch, ListOffsets) take the topic map's read lock only long enough to clone
//! an `Arc<Topic>`; admin changes (create, delete, alter) are serialised by `admin` and swap
//! entries in the map, so a fetch that holds an `Arc<Partition>` of a topic being deleted
//! finishes on the old log and never sees a half-built one.

use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::metadata_store::{MetadataStore, TopicRecord};
use crate::topic_config;
use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::watch;
use weir_model::{LeaderEpoch, PartitionId, Timestamp, TopicId, TopicName};
use weir_storage::{LogConfig, PartitionLog};

/// Producer ids are reserved from the metadata store in blocks, so InitProducerId does not
/// write the metadata file every time.
const PRODUCER_ID_BLOCK: i64 = 1000;

/// One partition this broker leads.
#[derive(Debug)]
pub struct Partition {
    pub topic: TopicName,
    pub id: PartitionId,
    /// Appends take the write lock, reads the read lock; storage calls are synchronous and
    /// short (page-cache writes, positional reads), so a std lock is right here.
    pub log: RwLock<PartitionLog>,
}

/// A topic and its partitions.
#[derive(Debug)]
pub struct Topic {
    pub record: TopicRecord,
    pub partitions: Vec<Arc<Partition>>,
}

impl Topic {
    pub fn partition(&self, index: i32) -> Option<&Arc<Partition>> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }
}

/// Everything the request handlers share.
#[derive(Debug)]
pub struct BrokerState {
    pub config: BrokerConfig,
    pub store: Arc<dyn MetadataStore>,
    pub cluster_id: String,
    /// The `host:port` given to clients in Metadata.
    pub advertised_host: String,
    pub advertised_port: i32,
    topics: RwLock<HashMap<TopicName, Arc<Topic>>>,
    /// Serialises admin changes (create, delete, alter, auto-create).
    pub admin: tokio::sync::Mutex<()>,
    /// Bytes of requests read and not yet answered, over all connections.
    pub request_memory: Arc<tokio::sync::Semaphore>,
    /// Bumped after every append; long-polling fetches wait on it.
    appended: watch::Sender<u64>,
    producer_ids: Mutex<Range<i64>>,
}

/// The epoch a single broker leads every partition with. Leader epochs start to move when the
/// coordinator assigns leaders (the replication issue).
pub const LEADER_EPOCH: LeaderEpoch = LeaderEpoch::INITIAL;

impl BrokerState {
    /// Opens every topic's partition logs (recovering them) and removes the leftovers of
    /// deletions interrupted by a crash.
    pub fn open(
        config: BrokerConfig,
        store: Arc<dyn MetadataStore>,
        advertised_host: String,
        advertised_port: i32,
    ) -> Result<BrokerState, BrokerError> {
        let logs = logs_dir(&config.data_dir);
        std::fs::create_dir_all(&logs).map_err(|source| BrokerError::DataDir {
            path: logs.clone(),
            source,
        })?;
        remove_deleted_dirs(&logs)?;
        let now = Timestamp::now();
        let mut topics = HashMap::new();
        for record in store.topics() {
            let topic = open_topic(&config, record, now)?;
            topics.insert(topic.record.name.clone(), Arc::new(topic));
        }
        let (appended, _) = watch::channel(0);
        // A single request must fit in the shared budget, or its reader would wait for ever.
        let queued = config
            .queued_request_bytes_max
            .max(u64::from(config.request_bytes_max));
        let queued = usize::try_from(queued)
            .unwrap_or(usize::MAX)
            .min(tokio::sync::Semaphore::MAX_PERMITS);
        Ok(BrokerState {
            request_memory: Arc::new(tokio::sync::Semaphore::new(queued)),
            cluster_id: store.cluster_id(),
            config,
            store,
            advertised_host,
            advertised_port,
            topics: RwLock::new(topics),
            admin: tokio::sync::Mutex::new(()),
            appended,
            producer_ids: Mutex::new(0..0),
        })
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        let map = self.topics.read().unwrap_or_else(|p| p.into_inner());
        // Topic names are validated on creation, so a lookup by an invalid name finds nothing.
        TopicName::new(name).ok().and_then(|n| map.get(&n).cloned())
    }

    pub fn topic_by_id(&self, id: TopicId) -> Option<Arc<Topic>> {
        let map = self.topics.read().unwrap_or_else(|p| p.into_inner());
        map.values().find(|t| t.record.id == id).cloned()
    }

    /// All topics, sorted by name.
    pub fn all_topics(&self) -> Vec<Arc<Topic>> {
        let map = self.topics.read().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = map.values().cloned().collect();
        v.sort_by(|a, b| a.record.name.cmp(&b.record.name));
        v
    }

    pub fn topic_count(&self) -> usize {
        self.topics.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Records a new or changed topic durably, then opens its logs and publishes it.
    /// The caller holds `admin`.
    pub fn install_topic(&self, record: TopicRecord) -> Result<Arc<Topic>, BrokerError> {
        self.store.put_topic(record.clone())?;
        let topic = Arc::new(open_topic(&self.config, record, Timestamp::now())?);
        let mut map = self.topics.write().unwrap_or_else(|p| p.into_inner());
        map.insert(topic.record.name.clone(), topic.clone());
        Ok(topic)
    }

    /// Applies changed configs to a topic's open logs and stores them. The caller holds `admin`.
    pub fn update_topic_configs(
        &self,
        topic: &Topic,
        configs: std::collections::BTreeMap<String, String>,
    ) -> Result<(), BrokerError> {
        let mut record = topic.record.clone();
        record.configs = configs;
        self.store.put_topic(record.clone())?;
        let log_config = topic_config::log_config(&self.config.log_defaults, &record.configs);
        for p in &topic.partitions {
            p.log
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .set_config(log_config.clone());
        }
        let updated = Arc::new(Topic {
            record,
            partitions: topic.partitions.clone(),
        });
        let mut map = self.topics.write().unwrap_or_else(|p| p.into_inner());
        map.insert(updated.record.name.clone(), updated);
        Ok(())
    }

    /// Adds partitions to a topic. The caller holds `admin` and has checked `count` grows.
    pub fn grow_topic(&self, topic: &Topic, count: i32) -> Result<(), BrokerError> {
        let mut record = topic.record.clone();
        record.partitions = count;
        self.store.put_topic(record.clone())?;
        let log_config = topic_config::log_config(&self.config.log_defaults, &record.configs);
        let mut partitions = topic.partitions.clone();
        for index in topic.partitions.len() as i32..count {
            partitions.push(Arc::new(open_partition(
                &self.config.data_dir,
                &record.name,
                PartitionId(index),
                log_config.clone(),
                Timestamp::now(),
            )?));
        }
        let updated = Arc::new(Topic { record, partitions });
        let mut map = self.topics.write().unwrap_or_else(|p| p.into_inner());
        map.insert(updated.record.name.clone(), updated);
        Ok(())
    }

    /// Deletes a topic: unpublish, rename its directories out of the way (atomic, so a new
    /// topic of the same name starts empty), forget it in the metadata store, then remove the
    /// files. A crash anywhere leaves `*-delete` directories that the next start removes.
    pub fn delete_topic(&self, name: &TopicName) -> Result<(), BrokerError> {
        let removed = {
            let mut map = self.topics.write().unwrap_or_else(|p| p.into_inner());
            map.remove(name)
        };
        let logs = logs_dir(&self.config.data_dir);
        let mut doomed = Vec::new();
        if let Some(topic) = &removed {
            // Retire every log first: a request or housekeeping pass that still holds the old
            // partition gets StorageError::Closed from here on, and can never write into the
            // directories of a topic created later under the same name.
            for p in &topic.partitions {
                p.log.write().unwrap_or_else(|e| e.into_inner()).retire();
            }
            for p in &topic.partitions {
                let dir = partition_dir(&self.config.data_dir, name, p.id);
                let to = logs.join(format!("{}-{}.{}-delete", name, p.id, topic.record.id));
                if dir.exists() {
                    std::fs::rename(&dir, &to).map_err(|source| BrokerError::DataDir {
                        path: dir.clone(),
                        source,
                    })?;
                    doomed.push(to);
                }
            }
        }
        self.store.remove_topic(name)?;
        for dir in doomed {
            std::fs::remove_dir_all(&dir).map_err(|source| BrokerError::DataDir {
                path: dir.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// Wakes long-polling fetches after an append.
    pub fn notify_appended(&self) {
        self.appended.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn subscribe_appends(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    /// Hands out a producer id never given before.
    pub fn next_producer_id(&self) -> Result<i64, BrokerError> {
        let mut ids = self.producer_ids.lock().unwrap_or_else(|p| p.into_inner());
        if ids.is_empty() {
            *ids = self.store.allocate_producer_ids(PRODUCER_ID_BLOCK)?;
        }
        let id = ids.start;
        ids.start += 1;
        Ok(id)
    }

    /// Runs time-based flushing, and retention when `retention` is set, on every partition. A
    /// failing partition does not stop the others; every failure is returned (a fatal one is
    /// for the caller to act on).
    pub fn housekeeping(&self, now: Timestamp, retention: bool) -> Vec<BrokerError> {
        let mut errors = Vec::new();
        for topic in self.all_topics() {
            for p in &topic.partitions {
                let mut log = p.log.write().unwrap_or_else(|e| e.into_inner());
                let result = if retention {
                    log.apply_retention(now).map(|_| ())
                } else {
                    Ok(())
                }
                .and_then(|()| log.maybe_flush(now));
                match result {
                    Ok(()) => {}
                    // Deleted while this pass ran.
                    Err(weir_storage::StorageError::Closed { .. }) => {}
                    Err(source) => errors.push(BrokerError::Storage {
                        topic: p.topic.to_string(),
                        partition: p.id.get(),
                        source,
                    }),
                }
            }
        }
        errors
    }

    /// Flushes and closes every log (the clean-shutdown path: the next start can skip
    /// verifying active segments). Carries on past a failing partition and returns the first
    /// failure.
    pub fn close(&self) -> Result<(), BrokerError> {
        let topics: Vec<_> = {
            let mut map = self.topics.write().unwrap_or_else(|p| p.into_inner());
            map.drain().map(|(_, t)| t).collect()
        };
        let mut first = None;
        for topic in topics {
            for p in &topic.partitions {
                let mut log = p.log.write().unwrap_or_else(|e| e.into_inner());
                if let Err(source) = log.close() {
                    let e = BrokerError::Storage {
                        topic: p.topic.to_string(),
                        partition: p.id.get(),
                        source,
                    };
                    tracing::error!(error = %e, "closing a partition log");
                    first.get_or_insert(e);
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Partitions hosted now, over all topics.
    pub fn partition_count(&self) -> usize {
        let map = self.topics.read().unwrap_or_else(|p| p.into_inner());
        map.values().map(|t| t.partitions.len()).sum()
    }
}

pub fn logs_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("logs")
}

/// `<data-dir>/logs/<topic>-<partition>`, as Kafka lays out its log directories.
pub fn partition_dir(data_dir: &Path, topic: &TopicName, partition: PartitionId) -> PathBuf {
    logs_dir(data_dir).join(format!("{topic}-{partition}"))
}

fn open_topic(
    config: &BrokerConfig,
    record: TopicRecord,
    now: Timestamp,
) -> Result<Topic, BrokerError> {
    let log_config = topic_config::log_config(&config.log_defaults, &record.configs);
    let partitions = (0..record.partitions)
        .map(|i| {
            open_partition(
                &config.data_dir,
                &record.name,
                PartitionId(i),
                log_config.clone(),
                now,
            )
            .map(Arc::new)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Topic { record, partitions })
}

fn open_partition(
    data_dir: &Path,
    topic: &TopicName,
    id: PartitionId,
    config: LogConfig,
    now: Timestamp,
) -> Result<Partition, BrokerError> {
    let dir = partition_dir(data_dir, topic, id);
    let log = PartitionLog::open(&dir, config, now).map_err(|source| BrokerError::Storage {
        topic: topic.to_string(),
        partition: id.get(),
        source,
    })?;
    Ok(Partition {
        topic: topic.clone(),
        id,
        log: RwLock::new(log),
    })
}

fn remove_deleted_dirs(logs: &Path) -> Result<(), BrokerError> {
    let entries = std::fs::read_dir(logs).map_err(|source| BrokerError::DataDir {
        path: logs.into(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| BrokerError::DataDir {
            path: logs.into(),
            source,
        })?;
        let path = entry.path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with("-delete"))
        {
            std::fs::remove_dir_all(&path).map_err(|source| BrokerError::DataDir {
                path: path.clone(),
                source,
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata_store::LocalMetadataStore;
    use std::collections::BTreeMap;
    use weir_storage::testing::{BatchSpec, encode_batch};

    fn record(name: &str, id: u8) -> TopicRecord {
        TopicRecord {
            name: TopicName::new(name).unwrap(),
            id: TopicId([id; 16]),
            partitions: 1,
            configs: BTreeMap::new(),
        }
    }

    /// Proves: a handle to a deleted topic's partition (a request or housekeeping pass in
    /// flight) can neither append to nor run retention on the topic re-created under the same
    /// name; the new topic's data is untouched.
    #[test]
    fn a_deleted_topics_old_handle_cannot_touch_its_successor() {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig::new(dir.path().into(), "127.0.0.1:0".parse().unwrap());
        let store = Arc::new(LocalMetadataStore::open(dir.path()).unwrap());
        let state = BrokerState::open(config, store, "127.0.0.1".into(), 9092).unwrap();
        let old = state.install_topic(record("t", 1)).unwrap();
        let old_partition = old.partitions[0].clone();

        state.delete_topic(&TopicName::new("t").unwrap()).unwrap();
        let new = state.install_topic(record("t", 2)).unwrap();
        let mut b = encode_batch(&BatchSpec::default(), &[b"new"]);
        new.partitions[0]
            .log
            .write()
            .unwrap()
            .append(&mut b, LEADER_EPOCH, Timestamp::now())
            .unwrap();

        let mut late = encode_batch(&BatchSpec::default(), &[b"late"]);
        let mut old_log = old_partition.log.write().unwrap();
        assert!(matches!(
            old_log.append(&mut late, LEADER_EPOCH, Timestamp::now()),
            Err(weir_storage::StorageError::Closed { .. })
        ));
        assert!(old_log.apply_retention(Timestamp(i64::MAX)).is_err());
        drop(old_log);
        assert!(state.housekeeping(Timestamp::now(), true).is_empty());

        let log = new.partitions[0].log.read().unwrap();
        assert_eq!(
            log.log_end_offset().get(),
            1,
            "the new topic keeps its record"
        );
    }
}
