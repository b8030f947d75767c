//! TLS for the Kafka listeners (rustls, ring): the server configuration from PEM files, with
//! mutual TLS when a client CA is given, reloaded when the files change so certificates rotate
//! without a restart.
//!
//! The files are looked at (modification time and length) at most every
//! [`TLS_RELOAD_CHECK_MS`], when a connection is accepted. A change is loaded for the
//! connections accepted after it; connections already up keep their session. A change that
//! does not load (a certificate replaced before its key) keeps the last good configuration
//! and is tried again at the next check, so a rotation written file by file never leaves the
//! listener without one.

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use weir_model::limits::TLS_RELOAD_CHECK_MS;

/// Where a broker's TLS material is (`--tls-cert`, `--tls-key`, `--tls-client-ca`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first (PEM).
    pub cert: PathBuf,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates client certificates must chain to (PEM). When set, a client without
    /// such a certificate is refused (Kafka's `ssl.client.auth=required`).
    pub client_ca: Option<PathBuf>,
}

/// A TLS material problem, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("TLS: {0}")]
pub struct TlsError(String);

/// The TLS configuration in force, reloaded when its files change.
#[derive(Debug)]
pub struct TlsReloader {
    files: TlsFiles,
    current: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    config: Arc<ServerConfig>,
    stamps: Vec<Stamp>,
    checked_ms: u64,
}

/// A file's modification time and length; None when it cannot be read.
type Stamp = Option<(SystemTime, u64)>;

impl TlsReloader {
    /// Loads the files; an error here stops the broker from starting.
    pub fn load(files: TlsFiles, mono_ms: u64) -> Result<TlsReloader, TlsError> {
        let stamps = stamps(&files);
        let config = Arc::new(build(&files)?);
        Ok(TlsReloader {
            files,
            current: Mutex::new(Loaded {
                config,
                stamps,
                checked_ms: mono_ms,
            }),
        })
    }

    /// The configuration to accept a connection with, reloaded first if the files changed.
    /// `mono_ms` is the broker clock's monotonic time.
    pub fn config(&self, mono_ms: u64) -> Arc<ServerConfig> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if mono_ms.saturating_sub(current.checked_ms) < TLS_RELOAD_CHECK_MS {
            return current.config.clone();
        }
        current.checked_ms = mono_ms;
        let now = stamps(&self.files);
        if now == current.stamps {
            return current.config.clone();
        }
        match build(&self.files) {
            Ok(config) => {
                tracing::info!(cert = %self.files.cert.display(), "TLS files changed; new connections use them");
                current.config = Arc::new(config);
                current.stamps = now;
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS files changed but do not load; keeping the previous ones until they do");
            }
        }
        current.config.clone()
    }
}

fn stamps(files: &TlsFiles) -> Vec<Stamp> {
    let stamp = |p: &Path| {
        let m = std::fs::metadata(p).ok()?;
        Some((m.modified().ok()?, m.len()))
    };
    let mut out = vec![stamp(&files.cert), stamp(&files.key)];
    if let Some(ca) = &files.client_ca {
        out.push(stamp(ca));
    }
    out
}

fn build(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = read_certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| TlsError(format!("private key {}: {e}", files.key.display())))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("protocol versions: {e}")))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certs(ca)? {
                roots
                    .add(c)
                    .map_err(|e| TlsError(format!("client CA {}: {e}", ca.display())))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError(format!("client CA {}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    builder.with_single_cert(certs, key).map_err(|e| {
        TlsError(format!(
            "certificate {} with key {}: {e}",
            files.cert.display(),
            files.key.display()
        ))
    })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError(format!("certificates {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "certificates {}: no PEM certificate in the file",
            path.display()
        )));
    }
    Ok(certs)
}
