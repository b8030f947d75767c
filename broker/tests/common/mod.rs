//! An in-process broker on a loopback port and a minimal Kafka client for tests.
#![allow(dead_code, clippy::unwrap_used)]

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir_broker::{Broker, BrokerConfig};

pub struct TestBroker {
    /// The first listener's address.
    pub addr: SocketAddr,
    /// Every listener's address, by name.
    pub listeners: std::collections::BTreeMap<String, SocketAddr>,
    pub dir: tempfile::TempDir,
    /// The one-voter coordinator quorum this broker registers with.
    coordinator: Option<weir_coordinator::CoordinatorHandle>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestBroker {
    pub async fn start() -> TestBroker {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(f: impl FnOnce(&mut BrokerConfig)) -> TestBroker {
        Self::start_with_clock(f, std::sync::Arc::new(weir_model::SystemClock::new())).await
    }

    /// A broker that reads `clock` for all its time (a test's [`weir_model::ManualClock`]).
    pub async fn start_with_clock(
        f: impl FnOnce(&mut BrokerConfig),
        clock: std::sync::Arc<dyn weir_model::Clock>,
    ) -> TestBroker {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("WEIR_LOG"))
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().expect("tempdir");
        let coordinator = weir_coordinator::start(weir_coordinator::CoordinatorConfig {
            data_dir: dir.path().join("coordinator"),
            ..Default::default()
        })
        .await
        .expect("coordinator starts");
        let mut config =
            BrokerConfig::new(dir.path().join("broker"), "127.0.0.1:0".parse().unwrap());
        config.coordinators = vec![coordinator.local_addr().to_string()];
        // A new group's first rebalance is not held back for more members in tests.
        config.groups.initial_rebalance_delay_ms = 0;
        f(&mut config);
        let names: Vec<String> = config.listeners.iter().map(|l| l.name.clone()).collect();
        let broker = Broker::start_with_clock(config, clock)
            .await
            .expect("broker starts");
        let addr = broker.local_addr();
        let listeners = names
            .into_iter()
            .filter_map(|n| Some((n.clone(), broker.listener_addr(&n)?)))
            .collect();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            broker
                .serve(async {
                    let _ = rx.await;
                })
                .await
                .expect("broker serves");
        });
        TestBroker {
            addr,
            listeners,
            dir,
            coordinator: Some(coordinator),
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("broker task");
        }
        if let Some(c) = self.coordinator.take() {
            c.shutdown().await;
        }
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.addr).await
    }
}

/// A connection's byte stream: plain TCP or TLS.
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

pub struct Client {
    pub stream: Box<dyn Io>,
    next_id: i32,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect");
        Client {
            stream: Box::new(stream),
            next_id: 1,
        }
    }

    /// A TLS connection trusting `ca_pem`, presenting `identity` (certificate chain and key,
    /// PEM) when given. The server may still refuse the client after this returns (TLS 1.3
    /// sends its verdict on the client's certificate later): the first request then fails.
    pub async fn connect_tls(
        addr: SocketAddr,
        ca_pem: &str,
        identity: Option<(&str, &str)>,
    ) -> std::io::Result<Client> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap();
                let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
                builder.with_client_auth_cert(chain, key).unwrap()
            }
        };
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::IpAddress(addr.ip().into());
        let stream = connector.connect(name, tcp).await?;
        Ok(Client {
            stream: Box::new(stream),
            next_id: 1,
        })
    }

    pub async fn send_raw(&mut self, frame: &[u8]) {
        self.stream.write_all(frame).await.expect("write");
    }

    /// Sends a request and returns the response body bytes (after the header).
    pub async fn request_bytes<R: Encodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &R,
    ) -> std::io::Result<Bytes> {
        let id = self.next_id;
        self.next_id += 1;
        let frame = encode_frame(id, api, version, req);
        self.stream.write_all(&frame).await?;
        let mut resp = self.read_frame().await?;
        let rh = ResponseHeader::decode(&mut resp, api.response_header_version(version)).unwrap();
        assert_eq!(rh.correlation_id, id, "responses come in request order");
        Ok(resp)
    }

    /// A request frame (size prefix included) with correlation id 1_000_000 + n, for tests that
    /// write raw bytes.
    pub fn stream_frame<R: Encodable>(&mut self, api: ApiKey, version: i16, req: &R) -> Vec<u8> {
        let id = 1_000_000 + self.next_id;
        self.next_id += 1;
        encode_frame(id, api, version, req)
    }

    pub async fn read_frame(&mut self) -> std::io::Result<Bytes> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).await?;
        let len = i32::from_be_bytes(len) as usize;
        let mut buf = vec![0u8; len];
        self.stream.read_exact(&mut buf).await?;
        Ok(Bytes::from(buf))
    }

    pub async fn request<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &Req,
    ) -> Resp {
        let mut bytes = self
            .request_bytes(api, version, req)
            .await
            .expect("response");
        let resp = Resp::decode(&mut bytes, version).expect("response decodes");
        assert_eq!(
            bytes.remaining(),
            0,
            "{api:?} v{version} response fully consumed"
        );
        resp
    }

    pub async fn create_topic(&mut self, name: &str, partitions: i32) {
        self.create_topic_with(name, partitions, &[]).await
    }

    /// Creates a topic with `configs` set on it.
    pub async fn create_topic_with(
        &mut self,
        name: &str,
        partitions: i32,
        configs: &[(&str, &str)],
    ) {
        use kafka_protocol::messages::create_topics_request::{
            CreatableTopic, CreatableTopicConfig,
        };
        let configs = configs
            .iter()
            .map(|(k, v)| {
                CreatableTopicConfig::default()
                    .with_name(StrBytes::from_string(k.to_string()))
                    .with_value(Some(StrBytes::from_string(v.to_string())))
            })
            .collect();
        let req = CreateTopicsRequest::default().with_topics(vec![
            CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(name.into())))
                .with_num_partitions(partitions)
                .with_replication_factor(1)
                .with_configs(configs),
        ]);
        let resp: CreateTopicsResponse = self.request(ApiKey::CreateTopics, 7, &req).await;
        assert_eq!(
            resp.topics[0].error_code, 0,
            "{:?}",
            resp.topics[0].error_message
        );
    }

    pub async fn produce(&mut self, topic: &str, partition: i32, batch: Bytes) -> (i16, i64) {
        use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string(topic.into())))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(partition)
                            .with_records(Some(batch)),
                    ]),
            ]);
        let resp: ProduceResponse = self.request(ApiKey::Produce, 9, &req).await;
        let p = &resp.responses[0].partition_responses[0];
        (p.error_code, p.base_offset)
    }

    pub async fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait_ms: i32,
        min_bytes: i32,
    ) -> fetch_response::PartitionData {
        use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
        let req = FetchRequest::default()
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(min_bytes)
            .with_max_bytes(50 * 1024 * 1024)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.into())))
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(partition)
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(1024 * 1024),
                    ]),
            ]);
        let mut resp: FetchResponse = self.request(ApiKey::Fetch, 12, &req).await;
        resp.responses.remove(0).partitions.remove(0)
    }
}

/// A size-prefixed request frame.
pub fn encode_frame<R: Encodable>(id: i32, api: ApiKey, version: i16, req: &R) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(id)
        .with_client_id(Some(StrBytes::from_static_str("weir-test")));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, api.request_header_version(version))
        .unwrap();
    req.encode(&mut body, version).unwrap();
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// A RecordBatch v2 with `n` records `value-<i>`, keys `key-<i>`, created at `ts`.
pub fn batch(n: usize, ts: i64, compression: Compression) -> Bytes {
    batch_with_producer(n, ts, compression, -1, -1, -1)
}

pub fn batch_with_producer(
    n: usize,
    ts: i64,
    compression: Compression,
    pid: i64,
    epoch: i16,
    seq: i32,
) -> Bytes {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: pid,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch when offset - sequence changes; a base sequence of -1
            // (no producer) with sequences counting up from it keeps all records in one batch.
            sequence: if seq < 0 {
                i as i32 - 1
            } else {
                seq + i as i32
            },
            timestamp: ts + i as i64,
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(format!("value-{i}"))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encode batch");
    buf.freeze()
}

/// A throwaway certificate authority for TLS tests.
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    /// Its certificate (PEM).
    pub pem: String,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let issuer =
            rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        TestCa {
            pem: issuer.pem(),
            issuer,
        }
    }

    /// A certificate for `names` (DNS names or IP addresses) signed by this CA, and its key:
    /// (certificate PEM, key PEM).
    pub fn leaf(&self, names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}
