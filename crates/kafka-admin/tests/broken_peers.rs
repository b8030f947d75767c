//! The client against fake brokers on loopback that misbehave: it must fail with a typed
//! error, promptly, and never allocate what a peer claims.
#![allow(clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weir_kafka_admin::{Client, ClientConfig, Error};

/// Far above any test's expected duration, so a test that passes did not hit it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a call may take before the test calls it a hang.
const HANG: Duration = Duration::from_secs(5);

fn client(addr: &str) -> Client {
    let mut config = ClientConfig::new([addr]);
    config.request_timeout = REQUEST_TIMEOUT;
    config.retries_max = 0;
    Client::new(config)
}

/// A fake broker: accepts one connection after another and runs `serve` on each.
async fn fake_broker<F, Fut>(serve: F) -> String
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream));
        }
    });
    addr
}

/// Reads one request frame; returns its header and body.
async fn read_request(stream: &mut TcpStream) -> Option<(RequestHeader, Bytes)> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.ok()?;
    let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
    stream.read_exact(&mut buf).await.ok()?;
    let mut buf = Bytes::from(buf);
    // Request header v2 (flexible) for ApiVersions v3+, v1 below: the only API these brokers
    // see.
    let version = i16::from_be_bytes([buf[2], buf[3]]);
    let header_version = ApiKey::ApiVersions.request_header_version(version);
    let header = RequestHeader::decode(&mut buf, header_version).ok()?;
    Some((header, buf))
}

async fn write_api_versions(
    stream: &mut TcpStream,
    correlation_id: i32,
    version: i16,
    response: &ApiVersionsResponse,
) {
    let mut body = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut body, 0)
        .unwrap();
    response.encode(&mut body, version).unwrap();
    stream
        .write_all(&(body.len() as i32).to_be_bytes())
        .await
        .unwrap();
    stream.write_all(&body).await.unwrap();
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    let started = Instant::now();
    let out = tokio::time::timeout(HANG, f)
        .await
        .expect("the call returns instead of hanging");
    assert!(started.elapsed() < HANG);
    out
}

/// Proves the length prefix is checked before the body is read or allocated: the peer claims
/// 1 GiB and sends nothing more; the call fails at once instead of waiting for the bytes.
#[tokio::test]
async fn a_response_claiming_a_gibibyte_is_refused() {
    let addr = fake_broker(|mut s| async move {
        while read_request(&mut s).await.is_some() {
            s.write_all(&(1i32 << 30).to_be_bytes()).await.unwrap();
        }
    })
    .await;
    let c = client(&addr);
    for result in [
        within(c.describe_group("g")).await.map(|_| ()),
        within(c.list_groups()).await.map(|_| ()),
    ] {
        match result {
            Err(Error::ResponseTooLarge {
                broker, len, max, ..
            }) => {
                assert_eq!(
                    (broker.as_str(), len, max),
                    (addr.as_str(), 1 << 30, 16 << 20)
                );
            }
            other => panic!("expected ResponseTooLarge, got {other:?}"),
        }
    }
}

/// Proves correlation ids are checked.
#[tokio::test]
async fn a_response_to_another_request_is_refused() {
    let addr = fake_broker(|mut s| async move {
        while let Some((header, _)) = read_request(&mut s).await {
            let response = ApiVersionsResponse::default();
            let version = header.request_api_version;
            write_api_versions(&mut s, header.correlation_id + 1, version, &response).await;
        }
    })
    .await;
    let result = within(client(&addr).describe_group("g")).await;
    assert!(
        matches!(
            result,
            Err(Error::CorrelationMismatch {
                expected: 0,
                got: 1,
                ..
            })
        ),
        "{result:?}"
    );
}

/// Proves a peer that never answers costs one request timeout, not a hang.
#[tokio::test]
async fn a_silent_broker_times_out() {
    let addr =
        fake_broker(|mut s| async move { while read_request(&mut s).await.is_some() {} }).await;
    let mut config = ClientConfig::new([addr.as_str()]);
    config.request_timeout = Duration::from_millis(300);
    let result = within(Client::new(config).describe_group("g")).await;
    assert!(
        matches!(
            result,
            Err(Error::Timeout {
                api: weir_kafka_admin::ApiKey::ApiVersions,
                ..
            })
        ),
        "{result:?}"
    );
}

/// Proves KIP-511 negotiation: a broker that answers ApiVersions v3 with UNSUPPORTED_VERSION
/// (in v0 format, listing v0..=2) is asked again at v2; an API the broker then does not list
/// is a typed UnsupportedVersion, sent nowhere.
#[tokio::test]
async fn versions_are_negotiated_down_and_missing_apis_refused() {
    let addr = fake_broker(|mut s| async move {
        while let Some((header, _)) = read_request(&mut s).await {
            let v = header.request_api_version;
            let listing = vec![
                ApiVersion::default()
                    .with_api_key(ApiKey::ApiVersions as i16)
                    .with_min_version(0)
                    .with_max_version(2),
                ApiVersion::default()
                    .with_api_key(ApiKey::Metadata as i16)
                    .with_min_version(0)
                    .with_max_version(9),
            ];
            let (version, response) = if v > 2 {
                (0, ApiVersionsResponse::default().with_error_code(35))
            } else {
                (v, ApiVersionsResponse::default())
            };
            let response = response.with_api_keys(listing);
            write_api_versions(&mut s, header.correlation_id, version, &response).await;
        }
    })
    .await;
    let result = within(client(&addr).describe_group("g")).await;
    match result {
        Err(Error::UnsupportedVersion {
            api, broker_range, ..
        }) => {
            assert_eq!(api, weir_kafka_admin::ApiKey::FindCoordinator);
            assert_eq!(broker_range, None);
        }
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
}

/// Proves an unreachable bootstrap broker is a retriable connect error, retried a bounded
/// number of times.
#[tokio::test]
async fn an_unreachable_broker_is_retried_then_reported() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let mut config = ClientConfig::new([addr.as_str()]);
    config.retries_max = 2;
    config.retry_backoff = Duration::from_millis(10);
    let result = within(Client::new(config).list_groups()).await;
    match result {
        Err(e @ Error::Connect { .. }) => assert!(e.is_retriable()),
        other => panic!("expected Connect, got {other:?}"),
    }
}
