//! The client: connections by broker address, metadata, coordinator lookup, retries.

use crate::config::{ClientConfig, RESPONSE_BYTES_MAX_MIN};
use crate::connection::{Connection, api_key};
use crate::error::Error;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, FindCoordinatorRequest, FindCoordinatorResponse, MetadataRequest, TopicName,
};
use kafka_protocol::protocol::{Request, StrBytes};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use weir_model::{BrokerId, PartitionId};

/// A broker: its id and the address it advertises.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BrokerRef {
    pub id: BrokerId,
    pub host: String,
    pub port: u16,
}

impl BrokerRef {
    /// `host:port`.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl fmt::Display for BrokerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}:{})", self.id, self.host, self.port)
    }
}

/// A Kafka client for consumer-group status. Cheap to clone: clones share connections.
///
/// Connects lazily, keeps one connection per broker address, and carries one request at a
/// time on each (requests to different brokers run concurrently). A connection that fails in
/// any way is dropped and the next request opens a new one. Every call is read-only, so every
/// call can be retried.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ClientConfig,
    /// Broker address → its connection slot. A slot's lock is held for a whole exchange, so
    /// responses cannot interleave. Bounded: only bootstrap addresses and the brokers of the
    /// newest metadata are kept (see [`Client::remember_brokers`]).
    connections: Mutex<HashMap<String, Slot>>,
    /// The brokers of the newest metadata, asked before the bootstrap list.
    brokers: Mutex<Vec<String>>,
}

type Slot = Arc<tokio::sync::Mutex<Option<Connection>>>;

/// What Metadata said about the cluster and the topics asked for.
#[derive(Debug)]
pub(crate) struct Cluster {
    pub brokers: BTreeMap<BrokerId, BrokerRef>,
    pub topics: HashMap<String, TopicMetadata>,
}

#[derive(Debug)]
pub(crate) struct TopicMetadata {
    pub error_code: i16,
    /// Partition → leader, `None` while it has none.
    pub leaders: HashMap<PartitionId, Option<BrokerId>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The maps stay consistent whatever panicked while holding them.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Client {
    /// A client; nothing is connected until the first call. A `response_bytes_max` below
    /// [`RESPONSE_BYTES_MAX_MIN`] is raised to it.
    pub fn new(mut config: ClientConfig) -> Client {
        config.response_bytes_max = config.response_bytes_max.max(RESPONSE_BYTES_MAX_MIN);
        Client {
            inner: Arc::new(Inner {
                config,
                connections: Mutex::new(HashMap::new()),
                brokers: Mutex::new(Vec::new()),
            }),
        }
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Runs `call` until it succeeds, fails with an error that is not retriable, or has been
    /// retried `retries_max` times, with a growing backoff in between.
    ///
    /// `call` is a closure returning a future rather than an async closure: the futures of
    /// async closures cannot yet be proven `Send` in generic code, and callers (the operator)
    /// run these futures on a multi-threaded runtime.
    pub(crate) async fn retrying<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let mut retry = 0;
        loop {
            match call().await {
                Err(e) if e.is_retriable() && retry < self.inner.config.retries_max => {
                    tracing::debug!(call = what, retry, error = %weir_model::Chain(&e), "retrying");
                    tokio::time::sleep(self.inner.config.backoff(retry)).await;
                    retry += 1;
                }
                result => return result,
            }
        }
    }

    /// Sends the request `build` makes for the negotiated version to `broker` (`host:port`);
    /// returns that version with the response.
    pub(crate) async fn request<R: Request>(
        &self,
        broker: &str,
        build: impl Fn(i16) -> R,
    ) -> Result<(i16, R::Response), Error> {
        let slot = lock(&self.inner.connections)
            .entry(broker.to_string())
            .or_default()
            .clone();
        let mut conn = slot.lock().await;
        let reused = conn.is_some();
        match self.request_on(&mut conn, broker, &build).await {
            // A connection that sat idle may have been closed by the broker (Kafka closes them
            // after connections.max.idle.ms, 10 minutes); resend once on a fresh one. Safe: no
            // request here changes anything.
            Err(Error::Io { .. }) if reused => self.request_on(&mut conn, broker, &build).await,
            result => result,
        }
    }

    async fn request_on<R: Request>(
        &self,
        conn: &mut Option<Connection>,
        broker: &str,
        build: &impl Fn(i16) -> R,
    ) -> Result<(i16, R::Response), Error> {
        let config = &self.inner.config;
        let c = match conn {
            Some(c) => c,
            None => conn.insert(Connection::open(broker, config).await?),
        };
        let version = c.version(api_key::<R>())?;
        let result = c.send(version, &build(version), config).await;
        match &result {
            // Nothing was sent: the connection is still in step.
            Err(Error::Encode { .. }) | Ok(_) => {}
            // Anything else may leave a response half read, or comes from a peer not to trust
            // further: start over on a new connection.
            Err(_) => *conn = None,
        }
        result.map(|r| (version, r))
    }

    /// Sends to any broker: those of the newest metadata first, then the bootstrap list. A
    /// broker that cannot be reached (or does not answer in time) is skipped.
    pub(crate) async fn request_any<R: Request>(
        &self,
        build: impl Fn(i16) -> R,
    ) -> Result<(String, i16, R::Response), Error> {
        let mut candidates: Vec<String> = lock(&self.inner.brokers).clone();
        for b in &self.inner.config.bootstrap {
            if !candidates.contains(b) {
                candidates.push(b.clone());
            }
        }
        let mut last = Error::NoBootstrap;
        for broker in candidates {
            match self.request(&broker, &build).await {
                Ok((version, response)) => return Ok((broker, version, response)),
                Err(
                    e @ (Error::Connect { .. }
                    | Error::ConnectTimeout { .. }
                    | Error::Io { .. }
                    | Error::Timeout { .. }),
                ) => {
                    tracing::debug!(broker, error = %weir_model::Chain(&e), "broker unreachable, trying the next");
                    last = e;
                }
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// Metadata for `topics` (none: brokers only). Remembers the brokers for later calls.
    pub(crate) async fn metadata(&self, topics: &[String]) -> Result<Cluster, Error> {
        let api = ApiKey::Metadata;
        let (broker, _, response) = self
            .request_any(|_version| {
                MetadataRequest::default()
                    .with_allow_auto_topic_creation(false)
                    .with_topics(Some(
                        topics
                            .iter()
                            .map(|t| {
                                MetadataRequestTopic::default()
                                    .with_name(Some(TopicName(StrBytes::from_string(t.clone()))))
                            })
                            .collect(),
                    ))
            })
            .await?;
        if response.error_code != 0 {
            return Err(Error::Kafka {
                broker,
                api,
                subject: "cluster metadata".into(),
                code: response.error_code,
                message: None,
            });
        }
        let mut brokers = BTreeMap::new();
        for b in response.brokers {
            let port = u16::try_from(b.port).map_err(|_| Error::Protocol {
                broker: broker.clone(),
                api,
                reason: format!("broker {} has port {}", b.node_id.0, b.port),
            })?;
            let id = BrokerId(b.node_id.0);
            brokers.insert(
                id,
                BrokerRef {
                    id,
                    host: b.host.to_string(),
                    port,
                },
            );
        }
        let mut topic_map = HashMap::new();
        for t in response.topics {
            let Some(name) = t.name else { continue };
            let leaders = t
                .partitions
                .iter()
                .map(|p| {
                    let leader = (p.leader_id.0 >= 0).then_some(BrokerId(p.leader_id.0));
                    (PartitionId(p.partition_index), leader)
                })
                .collect();
            topic_map.insert(
                name.0.to_string(),
                TopicMetadata {
                    error_code: t.error_code,
                    leaders,
                },
            );
        }
        self.remember_brokers(&brokers);
        Ok(Cluster {
            brokers,
            topics: topic_map,
        })
    }

    /// Keeps the brokers of the newest metadata as the first ones to ask, and closes
    /// connections to addresses that are neither in it nor in the bootstrap list.
    fn remember_brokers(&self, brokers: &BTreeMap<BrokerId, BrokerRef>) {
        if brokers.is_empty() {
            return;
        }
        let addresses: Vec<String> = brokers.values().map(BrokerRef::address).collect();
        let keep: HashSet<&String> = addresses
            .iter()
            .chain(self.inner.config.bootstrap.iter())
            .collect();
        lock(&self.inner.connections).retain(|addr, _| keep.contains(addr));
        *lock(&self.inner.brokers) = addresses;
    }

    /// The broker coordinating `group`.
    pub(crate) async fn find_coordinator(&self, group: &str) -> Result<BrokerRef, Error> {
        let api = ApiKey::FindCoordinator;
        let (broker, version, response) = self
            .request_any(|version| {
                let key = StrBytes::from_string(group.to_string());
                // v4 batched the keys (KIP-699); key type 0 is "group".
                if version >= 4 {
                    FindCoordinatorRequest::default().with_coordinator_keys(vec![key])
                } else {
                    FindCoordinatorRequest::default().with_key(key)
                }
            })
            .await?;
        let subject = format!("group {group}");
        let (code, message, node_id, host, port) = if version >= 4 {
            let c = single_coordinator(response, group).ok_or_else(|| Error::Protocol {
                broker: broker.clone(),
                api,
                reason: format!("no coordinator for group {group:?} in the response"),
            })?;
            (c.error_code, c.error_message, c.node_id, c.host, c.port)
        } else {
            (
                response.error_code,
                response.error_message,
                response.node_id,
                response.host,
                response.port,
            )
        };
        if code != 0 {
            return Err(Error::Kafka {
                broker,
                api,
                subject,
                code,
                message: message.map(|m| m.to_string()),
            });
        }
        let port = u16::try_from(port).map_err(|_| Error::Protocol {
            broker: broker.clone(),
            api,
            reason: format!("coordinator {} has port {port}", node_id.0),
        })?;
        Ok(BrokerRef {
            id: BrokerId(node_id.0),
            host: host.to_string(),
            port,
        })
    }
}

fn single_coordinator(
    response: FindCoordinatorResponse,
    group: &str,
) -> Option<kafka_protocol::messages::find_coordinator_response::Coordinator> {
    response
        .coordinators
        .into_iter()
        .find(|c| c.key.as_str() == group)
}
