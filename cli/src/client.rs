//! Connecting to a cluster through librdkafka: the shared client settings, a context that
//! notices when no broker can be reached, and bounded admin and metadata calls.

use crate::config::{Brokers, KeyValue};
use crate::error::{Error, Result};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic};
use rdkafka::client::{Client, ClientContext};
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::metadata::Metadata;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A metadata fetch waits at most this long per attempt, so transport failures are seen early.
const METADATA_POLL_SLICE: Duration = Duration::from_millis(500);
/// How long every bootstrap broker may refuse connections before we call the cluster
/// unreachable instead of waiting out the whole request timeout.
const TRANSPORT_FAILURE_GRACE: Duration = Duration::from_millis(1500);
/// Pause between metadata attempts after a transport failure (librdkafka itself backs off
/// reconnects by `reconnect.backoff.ms`, 100 ms by default).
const METADATA_RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// What every command needs to talk to a cluster.
#[derive(Clone, Debug)]
pub struct Connection {
    pub brokers: Brokers,
    /// The bound on each admin or metadata call.
    pub request_timeout: Duration,
    /// librdkafka properties from `-X`, applied last so they override ours.
    pub properties: Vec<KeyValue>,
}

impl Connection {
    /// Client settings shared by admin clients, producers and consumers.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", self.brokers.as_str())
            .set("client.id", "weir-cli")
            // librdkafka logs every failed connection attempt; our errors say it once.
            .set("log.connection.close", "false");
        config
    }

    /// Applies the `-X` overrides; call after the command's own settings.
    pub fn apply_overrides(&self, config: &mut ClientConfig) {
        for kv in &self.properties {
            config.set(&kv.key, &kv.value);
        }
    }

    pub fn timeout_ms(&self) -> u64 {
        u64::try_from(self.request_timeout.as_millis()).unwrap_or(u64::MAX)
    }

    /// An admin client; it never asks the broker to auto-create a topic it looks up.
    pub fn admin(&self) -> Result<Admin> {
        let mut config = self.client_config();
        config.set("allow.auto.create.topics", "false");
        self.apply_overrides(&mut config);
        let client: AdminClient<CliContext> = config
            .create_with_context(CliContext)
            .map_err(|e| Error::kafka("creating the admin client", e))?;
        Ok(Admin {
            client,
            connection: self.clone(),
        })
    }

    /// Options for admin requests: the broker gets the same bound as we do.
    pub fn admin_options(&self) -> AdminOptions {
        AdminOptions::new()
            .request_timeout(Some(self.request_timeout))
            .operation_timeout(Some(self.request_timeout))
    }

    pub fn timed_out(&self, what: impl Into<String>) -> Error {
        Error::TimedOut {
            what: what.into(),
            brokers: self.brokers.to_string(),
            timeout_ms: self.timeout_ms(),
        }
    }
}

/// The client context of admin clients and consumers: librdkafka's errors go to tracing at
/// debug level (`WEIR_LOG=librdkafka=debug`); the commands report failures themselves.
#[derive(Debug, Default)]
pub struct CliContext;

impl ClientContext for CliContext {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", %error, reason, "client error");
    }
}

impl ConsumerContext for CliContext {}

/// Fetches metadata (of one topic, or of all), bounded by the request timeout. A broker that
/// refuses connections fails in [`TRANSPORT_FAILURE_GRACE`] with [`Error::Unreachable`].
pub fn fetch_metadata<C: ClientContext>(
    client: &Client<C>,
    connection: &Connection,
    topic: Option<&str>,
) -> Result<Metadata> {
    let start = Instant::now();
    let deadline = start + connection.request_timeout;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let result = client.fetch_metadata(topic, remaining.min(METADATA_POLL_SLICE));
        let now = Instant::now();
        match result {
            Ok(metadata) => return Ok(metadata),
            Err(KafkaError::MetadataFetch(RDKafkaErrorCode::OperationTimedOut))
                if now < deadline => {}
            Err(KafkaError::MetadataFetch(
                RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown,
            )) if now < deadline && now - start < TRANSPORT_FAILURE_GRACE => {
                // Another bootstrap broker may answer; librdkafka tries them in turn.
                std::thread::sleep(METADATA_RETRY_BACKOFF);
            }
            Err(
                source @ KafkaError::MetadataFetch(
                    RDKafkaErrorCode::OperationTimedOut
                    | RDKafkaErrorCode::BrokerTransportFailure
                    | RDKafkaErrorCode::AllBrokersDown,
                ),
            ) => {
                return Err(Error::Unreachable {
                    brokers: connection.brokers.to_string(),
                    source,
                });
            }
            Err(source) => return Err(Error::kafka("fetching metadata", source)),
        }
    }
}

/// An admin client with its connection settings.
pub struct Admin {
    pub client: AdminClient<CliContext>,
    pub connection: Connection,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("brokers", &self.connection.brokers)
            .finish_non_exhaustive()
    }
}

impl Admin {
    /// Metadata of one topic or all topics. Blocks the calling thread, so it runs on tokio's
    /// blocking pool slot of this worker.
    pub fn metadata(&self, topic: Option<&str>) -> Result<Metadata> {
        tokio::task::block_in_place(|| fetch_metadata(self.client.inner(), &self.connection, topic))
    }

    /// Runs one admin request with the request timeout (plus a little, so the broker's own
    /// timeout answer arrives first when it can).
    pub async fn call<T>(
        &self,
        what: &str,
        request: impl Future<Output = KafkaResult<T>>,
    ) -> Result<T> {
        let bound = self.connection.request_timeout + Duration::from_secs(1);
        match tokio::time::timeout(bound, request).await {
            Err(_elapsed) => Err(self.connection.timed_out(what)),
            Ok(Err(KafkaError::AdminOp(RDKafkaErrorCode::OperationTimedOut))) => {
                Err(self.connection.timed_out(what))
            }
            Ok(Err(source)) => Err(Error::kafka(what, source)),
            Ok(Ok(value)) => Ok(value),
        }
    }

    /// Creates one topic. The outer error is a failed request; the inner one is the broker's
    /// answer for the topic (for example TOPIC_ALREADY_EXISTS), for the caller to judge.
    pub async fn create_topic(
        &self,
        new_topic: &NewTopic<'_>,
        what: &str,
    ) -> Result<std::result::Result<(), RDKafkaErrorCode>> {
        let results = self
            .call(
                what,
                self.client
                    .create_topics([new_topic], &self.connection.admin_options()),
            )
            .await?;
        one_result(results, what)
    }
}

/// The outcome for the single topic of a one-topic admin request.
pub fn one_result(
    results: Vec<rdkafka::admin::TopicResult>,
    what: &str,
) -> Result<std::result::Result<(), RDKafkaErrorCode>> {
    match results.into_iter().next() {
        Some(Ok(_)) => Ok(Ok(())),
        Some(Err((_, code))) => Ok(Err(code)),
        None => Err(Error::invalid(what, "the broker returned no result")),
    }
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM. Once this has run, SIGTERM no longer kills the
/// process by default, so every long-running command must select on it.
pub use weir_process::shutdown_signal;

/// A flag raised by Ctrl-C (SIGINT) or SIGTERM, for loops on blocking threads that stop
/// cleanly: flush output, print a summary. Must be called inside the tokio runtime.
pub fn stop_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let raised = Arc::clone(&flag);
    tokio::spawn(async move {
        shutdown_signal().await;
        raised.store(true, Ordering::Relaxed);
    });
    flag
}
