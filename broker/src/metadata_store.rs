//! Where the cluster's metadata lives: topics, their ids, partition counts and configs, the
//! cluster id, and blocks of producer ids.
//!
//! The protocol handlers only see the [`MetadataStore`] trait. In local mode it is
//! [`LocalMetadataStore`], a JSON file in the data directory; the coordinator quorum takes the
//! same role in a cluster without the handlers changing.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use weir_model::{TopicId, TopicName};

/// A topic as the metadata store keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub name: TopicName,
    pub id: TopicId,
    pub partitions: i32,
    /// Only the keys a user set; defaults come from the broker.
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("reading metadata file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing metadata file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("metadata file {path} is not valid: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("metadata file {path} has format version {found}; this Weir reads version {supported}")]
    Version {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
}

/// The contract every metadata backend keeps.
///
/// - Every mutation is durable when it returns: after a crash, `topics()` returns it.
/// - Mutations are not concurrent: the broker serialises them behind one lock.
/// - Producer id blocks never overlap, across restarts too.
pub trait MetadataStore: Send + Sync + std::fmt::Debug {
    fn cluster_id(&self) -> String;
    fn topics(&self) -> Vec<TopicRecord>;
    /// Creates or replaces a topic.
    fn put_topic(&self, topic: TopicRecord) -> Result<(), MetadataError>;
    fn remove_topic(&self, name: &TopicName) -> Result<(), MetadataError>;
    /// Reserves `count` producer ids that no one has been given before.
    fn allocate_producer_ids(&self, count: i64) -> Result<Range<i64>, MetadataError>;
}

/// The on-disk form of [`LocalMetadataStore`], `<data-dir>/metadata.json`.
///
/// Format version 1: a JSON object `{format_version, cluster_id, next_producer_id, topics}`.
/// Written whole to `metadata.json.tmp`, fsynced, renamed over `metadata.json`, and the
/// directory fsynced, so a crash leaves either the old file or the new one.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct MetadataFile {
    format_version: u32,
    cluster_id: String,
    next_producer_id: i64,
    topics: BTreeMap<String, TopicRecord>,
}

const FORMAT_VERSION: u32 = 1;
const FILE_NAME: &str = "metadata.json";

/// Topic metadata in a JSON file in the data directory: the single-node backend.
#[derive(Debug)]
pub struct LocalMetadataStore {
    path: PathBuf,
    state: Mutex<MetadataFile>,
}

impl LocalMetadataStore {
    /// Opens the store in `dir`, creating it with a fresh cluster id when absent.
    pub fn open(dir: &Path) -> Result<LocalMetadataStore, MetadataError> {
        let path = dir.join(FILE_NAME);
        let state = match fs::read(&path) {
            Ok(bytes) => {
                let file: MetadataFile =
                    serde_json::from_slice(&bytes).map_err(|e| MetadataError::Corrupt {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                if file.format_version != FORMAT_VERSION {
                    return Err(MetadataError::Version {
                        path,
                        found: file.format_version,
                        supported: FORMAT_VERSION,
                    });
                }
                file
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let file = MetadataFile {
                    format_version: FORMAT_VERSION,
                    cluster_id: new_cluster_id(),
                    next_producer_id: 0,
                    topics: BTreeMap::new(),
                };
                write_atomically(&path, &file)?;
                file
            }
            Err(source) => return Err(MetadataError::Read { path, source }),
        };
        Ok(LocalMetadataStore {
            path,
            state: Mutex::new(state),
        })
    }

    fn mutate<T>(&self, f: impl FnOnce(&mut MetadataFile) -> T) -> Result<T, MetadataError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = state.clone();
        let out = f(&mut next);
        write_atomically(&self.path, &next)?;
        *state = next;
        Ok(out)
    }
}

impl MetadataStore for LocalMetadataStore {
    fn cluster_id(&self) -> String {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .cluster_id
            .clone()
    }

    fn topics(&self) -> Vec<TopicRecord> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .topics
            .values()
            .cloned()
            .collect()
    }

    fn put_topic(&self, topic: TopicRecord) -> Result<(), MetadataError> {
        self.mutate(|s| {
            s.topics.insert(topic.name.to_string(), topic);
        })
    }

    fn remove_topic(&self, name: &TopicName) -> Result<(), MetadataError> {
        self.mutate(|s| {
            s.topics.remove(name.as_str());
        })
    }

    fn allocate_producer_ids(&self, count: i64) -> Result<Range<i64>, MetadataError> {
        assert!(count > 0, "producer id block must not be empty");
        self.mutate(|s| {
            let start = s.next_producer_id;
            s.next_producer_id += count;
            start..start + count
        })
    }
}

fn write_atomically(path: &Path, file: &MetadataFile) -> Result<(), MetadataError> {
    let write_err = |source| MetadataError::Write {
        path: path.to_path_buf(),
        source,
    };
    let bytes = serde_json::to_vec_pretty(file).map_err(|e| write_err(std::io::Error::other(e)))?;
    let tmp = path.with_extension("json.tmp");
    let mut f = fs::File::create(&tmp).map_err(write_err)?;
    f.write_all(&bytes).map_err(write_err)?;
    f.sync_all().map_err(write_err)?;
    fs::rename(&tmp, path).map_err(write_err)?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(write_err)?;
    }
    Ok(())
}

/// A Kafka-style cluster id: 16 random bytes, URL-safe base64 without padding (22 chars).
fn new_cluster_id() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str) -> TopicRecord {
        TopicRecord {
            name: TopicName::new(name).unwrap(),
            id: TopicId([7; 16]),
            partitions: 3,
            configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
        }
    }

    #[test]
    fn topics_and_producer_ids_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalMetadataStore::open(dir.path()).unwrap();
        let cluster = store.cluster_id();
        assert_eq!(cluster.len(), 22);
        store.put_topic(topic("a")).unwrap();
        store.put_topic(topic("b")).unwrap();
        store.remove_topic(&TopicName::new("a").unwrap()).unwrap();
        let first = store.allocate_producer_ids(100).unwrap();
        drop(store);

        let store = LocalMetadataStore::open(dir.path()).unwrap();
        assert_eq!(store.cluster_id(), cluster);
        assert_eq!(store.topics(), vec![topic("b")]);
        let second = store.allocate_producer_ids(100).unwrap();
        assert!(second.start >= first.end, "{first:?} then {second:?}");
    }

    #[test]
    fn an_unknown_format_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join(FILE_NAME),
            r#"{"format_version":9,"cluster_id":"x","next_producer_id":0,"topics":{}}"#,
        )
        .unwrap();
        let err = LocalMetadataStore::open(dir.path()).unwrap_err();
        assert!(
            matches!(err, MetadataError::Version { found: 9, .. }),
            "{err}"
        );
    }
}
