//! Named listeners and TLS: a broker with a PLAINTEXT and an SSL listener, mutual TLS, refusals
//! (plaintext to the TLS port, no or a foreign client certificate) and certificate rotation
//! without a restart.
#![allow(clippy::unwrap_used)] // test helpers panic on purpose

use crate::common::*;
use kafka_protocol::messages::*;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use weir_broker::listener::ListenerConfig;
use weir_broker::tls::TlsFiles;
use weir_model::{Clock, ManualClock, Timestamp};

/// Writes `cert` and `key` where `files` says.
fn write(files: &TlsFiles, (cert, key): &(String, String)) {
    std::fs::write(&files.cert, cert).unwrap();
    std::fs::write(&files.key, key).unwrap();
}

fn files_in(dir: &Path, client_ca: Option<&str>) -> TlsFiles {
    let client_ca = client_ca.map(|pem| {
        let p = dir.join("client-ca.pem");
        std::fs::write(&p, pem).unwrap();
        p
    });
    TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
        client_ca,
    }
}

/// A broker with `PLAINTEXT` and `CLIENT` (SSL, advertised as `tls.example:9094`).
async fn broker(files: TlsFiles, clock: Arc<dyn Clock>) -> TestBroker {
    TestBroker::start_with_clock(
        move |c| {
            let mut ssl = ListenerConfig::parse("CLIENT=SSL://127.0.0.1:0").unwrap();
            ssl.advertised = Some("tls.example:9094".into());
            c.listeners.push(ssl);
            c.tls = Some(files);
        },
        clock,
    )
    .await
}

/// The brokers' addresses a Metadata answer gives, as `host:port`.
async fn advertised(c: &mut Client) -> std::io::Result<Vec<String>> {
    let r: MetadataResponse = decode(
        c.request_bytes(ApiKey::Metadata, 12, &MetadataRequest::default())
            .await?,
        12,
    );
    Ok(r.brokers
        .iter()
        .map(|b| format!("{}:{}", b.host.as_str(), b.port))
        .collect())
}

fn decode<R: kafka_protocol::protocol::Decodable>(mut b: bytes::Bytes, version: i16) -> R {
    R::decode(&mut b, version).unwrap()
}

fn ssl_addr(b: &TestBroker) -> SocketAddr {
    b.listeners["CLIENT"]
}

/// Proves: one broker serves PLAINTEXT and SSL side by side, and a client is told the
/// addresses of the listener it came through (Kafka's advertised.listeners), in Metadata and
/// in DescribeCluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_listener_advertises_its_own_address() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("weir test CA");
    let files = files_in(dir.path(), None);
    write(&files, &ca.leaf(&["127.0.0.1"]));
    let b = broker(files, Arc::new(weir_model::SystemClock::new())).await;
    let mut tls = Client::connect_tls(ssl_addr(&b), &ca.pem, None)
        .await
        .unwrap();
    assert_eq!(
        advertised(&mut tls).await.unwrap(),
        vec!["tls.example:9094"]
    );
    // DescribeCluster (the admin client's) names the same address.
    let r: DescribeClusterResponse = decode(
        tls.request_bytes(
            ApiKey::DescribeCluster,
            0,
            &DescribeClusterRequest::default(),
        )
        .await
        .unwrap(),
        0,
    );
    let described: Vec<String> = r
        .brokers
        .iter()
        .map(|b| format!("{}:{}", b.host.as_str(), b.port))
        .collect();
    assert_eq!(described, vec!["tls.example:9094"]);
    let mut plain = b.client().await;
    assert_eq!(
        advertised(&mut plain).await.unwrap(),
        vec![b.addr.to_string()]
    );
    b.stop().await;
}

/// Proves: plaintext Kafka bytes sent to the TLS port get a closed connection, not an answer
/// and not a hang; a client that does not trust the broker's CA cannot connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_and_untrusting_clients_are_refused_on_the_tls_port() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("weir test CA");
    let files = files_in(dir.path(), None);
    write(&files, &ca.leaf(&["127.0.0.1"]));
    let b = broker(files, Arc::new(weir_model::SystemClock::new())).await;
    let mut plain = Client::connect(ssl_addr(&b)).await;
    let answered = tokio::time::timeout(Duration::from_secs(20), advertised(&mut plain))
        .await
        .expect("the broker closes the connection instead of waiting");
    assert!(answered.is_err(), "plaintext got an answer on the TLS port");
    let other = TestCa::new("another CA");
    let e = Client::connect_tls(ssl_addr(&b), &other.pem, None).await;
    assert!(e.is_err(), "a client trusting another CA connected");
    b.stop().await;
}

/// Proves: with a client CA, only clients with a certificate it signed are served; none, or
/// one from another CA, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_serves_only_clients_the_client_ca_signed() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("weir test CA");
    let clients = TestCa::new("client CA");
    let files = files_in(dir.path(), Some(&clients.pem));
    write(&files, &ca.leaf(&["127.0.0.1"]));
    let b = broker(files, Arc::new(weir_model::SystemClock::new())).await;
    let (cert, key) = clients.leaf(&["app.example"]);
    let mut ok = Client::connect_tls(ssl_addr(&b), &ca.pem, Some((&cert, &key)))
        .await
        .unwrap();
    assert_eq!(advertised(&mut ok).await.unwrap(), vec!["tls.example:9094"]);
    let refused = |c: std::io::Result<Client>| async move {
        match c {
            Err(_) => true,
            Ok(mut c) => advertised(&mut c).await.is_err(),
        }
    };
    let none = Client::connect_tls(ssl_addr(&b), &ca.pem, None).await;
    assert!(
        refused(none).await,
        "a client without a certificate was served"
    );
    let (cert, key) = TestCa::new("foreign CA").leaf(&["app.example"]);
    let foreign = Client::connect_tls(ssl_addr(&b), &ca.pem, Some((&cert, &key))).await;
    assert!(
        refused(foreign).await,
        "a foreign client certificate was served"
    );
    b.stop().await;
}

/// Proves: certificate files replaced on disk are served to new connections once the broker's
/// clock passes the reload check, with no restart; a connection made before keeps working; a
/// half-written rotation (a certificate without its key) keeps the old pair in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let old_ca = TestCa::new("old CA");
    let new_ca = TestCa::new("new CA");
    let files = files_in(dir.path(), None);
    write(&files, &old_ca.leaf(&["127.0.0.1"]));
    let clock = Arc::new(ManualClock::new(Timestamp::now()));
    let b = broker(files.clone(), clock.clone()).await;
    let mut before = Client::connect_tls(ssl_addr(&b), &old_ca.pem, None)
        .await
        .unwrap();
    let (new_cert, new_key) = new_ca.leaf(&["127.0.0.1"]);
    // Half a rotation: the new certificate with the old key does not load.
    std::fs::write(&files.cert, &new_cert).unwrap();
    clock.advance(weir_model::limits::TLS_RELOAD_CHECK_MS);
    let mut still_old = Client::connect_tls(ssl_addr(&b), &old_ca.pem, None)
        .await
        .unwrap();
    assert!(advertised(&mut still_old).await.is_ok());
    // The key follows: the new pair is served from the next check on.
    std::fs::write(&files.key, &new_key).unwrap();
    clock.advance(weir_model::limits::TLS_RELOAD_CHECK_MS);
    let mut after = Client::connect_tls(ssl_addr(&b), &new_ca.pem, None)
        .await
        .unwrap();
    assert_eq!(
        advertised(&mut after).await.unwrap(),
        vec!["tls.example:9094"]
    );
    let old = Client::connect_tls(ssl_addr(&b), &old_ca.pem, None).await;
    assert!(old.is_err(), "the old certificate is still served");
    assert!(
        advertised(&mut before).await.is_ok(),
        "a connection made before the rotation was dropped"
    );
    b.stop().await;
}
