//! The broker's data directory: its identity file, and small checksummed files in it.
//!
//! `<data-dir>/meta.properties` (Kafka's file of the same name) says which broker the directory
//! belongs to and carries a random `directory.id`, made when the directory was first used.
//! The broker sends the id when it registers. A broker that comes back with a new id (its disk
//! was lost or replaced) holds none of the records it held, and the coordinators must not count
//! it as holding them: it leaves every ISR and is not elected until it has caught up.
//!
//! Format (text, one `key=value` a line; `#` lines are comments):
//!
//! ```text
//! version=1
//! node.id=<broker id>
//! directory.id=<UUID>
//! crc32c=<8 hex digits: CRC-32C of every line above, newlines included>
//! ```

use crate::error::BrokerError;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const META_FILE: &str = "meta.properties";
const VERSION: u32 = 1;

/// What `meta.properties` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryMeta {
    pub node_id: i32,
    pub directory_id: String,
}

/// Reads the directory's identity, or writes a new one if the directory has none. Refuses a
/// directory that belongs to another broker, or whose file is damaged: guessing would either
/// mix two brokers' logs or hide a lost disk.
pub fn load_or_create(data_dir: &Path, node_id: i32) -> Result<DirectoryMeta, BrokerError> {
    let path = data_dir.join(META_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let meta = parse(&bytes).map_err(|reason| BrokerError::DataDirMeta {
                path: path.clone(),
                reason,
            })?;
            if meta.node_id != node_id {
                return Err(BrokerError::DataDirMeta {
                    path,
                    reason: format!(
                        "the directory belongs to broker {}, not {node_id}; give each broker its own",
                        meta.node_id
                    ),
                });
            }
            Ok(meta)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let meta = DirectoryMeta {
                node_id,
                directory_id: uuid::Uuid::new_v4().to_string(),
            };
            write_atomically(&path, &render(&meta))?;
            tracing::info!(path = %path.display(), directory_id = %meta.directory_id,
                "new data directory");
            Ok(meta)
        }
        Err(source) => Err(BrokerError::DataDir { path, source }),
    }
}

fn render(meta: &DirectoryMeta) -> Vec<u8> {
    let body = format!(
        "version={VERSION}\nnode.id={}\ndirectory.id={}\n",
        meta.node_id, meta.directory_id
    );
    with_crc(body)
}

/// `body` followed by its `crc32c=` line.
pub fn with_crc(body: String) -> Vec<u8> {
    let crc = crc32c::crc32c(body.as_bytes());
    format!("{body}crc32c={crc:08x}\n").into_bytes()
}

/// The lines before a valid `crc32c=` line, or why there are none.
pub fn checked_body(bytes: &[u8]) -> Result<&str, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    let at = text
        .rfind("crc32c=")
        .ok_or_else(|| "no crc32c line".to_string())?;
    let (body, line) = text.split_at(at);
    let stored = line
        .trim_end()
        .strip_prefix("crc32c=")
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or_else(|| format!("bad checksum line {:?}", line.trim_end()))?;
    let actual = crc32c::crc32c(body.as_bytes());
    if stored != actual {
        return Err(format!(
            "checksum mismatch: stored {stored:08x}, computed {actual:08x}"
        ));
    }
    Ok(body)
}

fn parse(bytes: &[u8]) -> Result<DirectoryMeta, String> {
    let body = checked_body(bytes)?;
    let mut version = None;
    let mut node_id = None;
    let mut directory_id = None;
    for line in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| format!("not key=value: {line:?}"))?;
        match k {
            "version" => version = v.parse::<u32>().ok(),
            "node.id" => node_id = v.parse::<i32>().ok(),
            "directory.id" => directory_id = uuid::Uuid::parse_str(v).ok().map(|u| u.to_string()),
            _ => {}
        }
    }
    match version {
        Some(VERSION) => {}
        Some(v) => {
            return Err(format!(
                "version {v} is not supported (this build reads {VERSION})"
            ));
        }
        None => return Err("no valid version".into()),
    }
    Ok(DirectoryMeta {
        node_id: node_id.ok_or("no valid node.id")?,
        directory_id: directory_id.ok_or("no valid directory.id")?,
    })
}

/// Writes `path` so that a crash leaves either the old file or the new one: a temporary file,
/// fsynced, renamed over, and the directory fsynced.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), BrokerError> {
    let err = |path: &Path| {
        let path: PathBuf = path.to_path_buf();
        move |source| BrokerError::DataDir { path, source }
    };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(err(&tmp))?;
    f.write_all(bytes).map_err(err(&tmp))?;
    f.sync_all().map_err(err(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err(path))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(err(dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves: the identity is made once and read back the same; another broker's directory and
    /// a damaged file are refused, not replaced.
    #[test]
    fn the_identity_is_stable_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path(), 3).unwrap();
        assert_eq!(load_or_create(dir.path(), 3).unwrap(), first);
        let e = load_or_create(dir.path(), 4).unwrap_err();
        assert!(e.to_string().contains("belongs to broker 3"), "{e}");
        let path = dir.path().join(META_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[12] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let e = load_or_create(dir.path(), 3).unwrap_err();
        assert!(e.to_string().contains("checksum mismatch"), "{e}");
        // Refused, not rewritten.
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        // An empty directory (a lost disk) gets a new id.
        let other = tempfile::tempdir().unwrap();
        assert_ne!(load_or_create(other.path(), 3).unwrap(), first);
    }
}
