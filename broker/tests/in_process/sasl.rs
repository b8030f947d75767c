//! SASL on a Kafka listener: SCRAM-SHA-256/512 and PLAIN logins against credentials in the
//! coordinators' metadata, the gate before authentication, failed logins, re-authentication
//! (KIP-368), Describe/AlterUserScramCredentials, and hostile SASL exchanges.
#![allow(clippy::unwrap_used)] // test helpers panic on purpose

use crate::common::*;
use bytes::Bytes;
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_auth::Mechanism;
use weir_auth::scram::ScramClient;
use weir_broker::listener::ListenerConfig;
use weir_broker::sasl::ScramUser;
use weir_model::{Clock, ManualClock, ScramMechanism};

const SASL_AUTHENTICATION_FAILED: i16 = 58;
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
const ILLEGAL_SASL_STATE: i16 = 34;

/// A broker with `PLAINTEXT` and `SASL` (SASL_PLAINTEXT), user `alice` (password `secret`)
/// made by `--scram-user`, PLAIN and both SCRAM mechanisms offered.
async fn broker(clock: Arc<dyn Clock>, reauth_ms: Option<u64>) -> TestBroker {
    TestBroker::start_with_clock(
        move |c| {
            c.listeners
                .push(ListenerConfig::parse("SASL=SASL_PLAINTEXT://127.0.0.1:0").unwrap());
            c.sasl.mechanisms = Mechanism::ALL.to_vec();
            c.sasl.reauth_ms = reauth_ms;
            c.sasl.scram_users = vec![ScramUser::parse("alice=secret").unwrap()];
        },
        clock,
    )
    .await
}

pub(crate) fn system() -> Arc<dyn Clock> {
    Arc::new(weir_model::SystemClock::new())
}

pub(crate) async fn sasl_client(b: &TestBroker) -> Client {
    Client::connect(b.listeners["SASL"]).await
}

pub(crate) async fn handshake(c: &mut Client, mechanism: &str) -> SaslHandshakeResponse {
    let req =
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(mechanism.into()));
    c.request(ApiKey::SaslHandshake, 1, &req).await
}

pub(crate) async fn authenticate(c: &mut Client, bytes: Vec<u8>) -> SaslAuthenticateResponse {
    let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes));
    c.request(ApiKey::SaslAuthenticate, 2, &req).await
}

/// A whole SCRAM login; the last answer.
pub(crate) async fn scram_login(
    c: &mut Client,
    m: ScramMechanism,
    user: &str,
    password: &str,
) -> SaslAuthenticateResponse {
    let h = handshake(c, m.sasl_name()).await;
    assert_eq!(h.error_code, 0, "{m} is offered");
    let mut client = ScramClient::new(m, user, password, "fyko+d2lbbFgONRv9qkxdawL");
    let first = authenticate(c, client.first()).await;
    if first.error_code != 0 {
        return first;
    }
    let last = authenticate(c, client.last(&first.auth_bytes).unwrap()).await;
    if last.error_code == 0 {
        assert!(
            client.verify(&last.auth_bytes),
            "the broker proves it holds the credential"
        );
    }
    last
}

pub(crate) async fn plain_login(
    c: &mut Client,
    user: &str,
    password: &str,
) -> SaslAuthenticateResponse {
    assert_eq!(handshake(c, "PLAIN").await.error_code, 0);
    authenticate(c, format!("\0{user}\0{password}").into_bytes()).await
}

pub(crate) async fn metadata(c: &mut Client) -> std::io::Result<Bytes> {
    c.request_bytes(ApiKey::Metadata, 12, &MetadataRequest::default())
        .await
}

/// Whether the broker has closed the connection: the next read ends.
async fn closed(c: &mut Client) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(10), c.read_frame()).await,
        Ok(Err(_))
    )
}

/// Proves: `--scram-user` makes a user that logs in with SCRAM-SHA-256, SCRAM-SHA-512 and
/// PLAIN; the broker proves its side of SCRAM; an authenticated connection is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_and_plain_logins_are_served() {
    let b = broker(system(), None).await;
    for m in ScramMechanism::ALL {
        let mut c = sasl_client(&b).await;
        let r = scram_login(&mut c, m, "alice", "secret").await;
        assert_eq!((r.error_code, r.session_lifetime_ms), (0, 0), "{m}");
        assert!(metadata(&mut c).await.is_ok(), "served after {m}");
    }
    let mut c = sasl_client(&b).await;
    assert_eq!(plain_login(&mut c, "alice", "secret").await.error_code, 0);
    c.create_topic("after-plain", 1).await;
    // Every SaslAuthenticate version logs in.
    for v in 0..=2 {
        let mut c = sasl_client(&b).await;
        assert_eq!(handshake(&mut c, "PLAIN").await.error_code, 0);
        let req = SaslAuthenticateRequest::default()
            .with_auth_bytes(Bytes::from_static(b"\0alice\0secret"));
        let r: SaslAuthenticateResponse = c.request(ApiKey::SaslAuthenticate, v, &req).await;
        assert_eq!(r.error_code, 0, "SaslAuthenticate v{v}");
        assert!(metadata(&mut c).await.is_ok());
    }
    // The PLAINTEXT listener beside it needs no login.
    assert!(metadata(&mut b.client().await).await.is_ok());
    b.stop().await;
}

/// Proves: a wrong password and an unknown user get SASL_AUTHENTICATION_FAILED, the same
/// message naming no secret, after the failed-login delay, and a closed connection; every
/// API but ApiVersions and the SASL ones closes an unauthenticated connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_logins_and_early_requests_are_refused() {
    let b = broker(system(), None).await;
    for (user, password) in [("alice", "wrong"), ("mallory", "secret")] {
        for m in ScramMechanism::ALL {
            let mut c = sasl_client(&b).await;
            let started = Instant::now();
            let r = scram_login(&mut c, m, user, password).await;
            assert_eq!(r.error_code, SASL_AUTHENTICATION_FAILED, "{user} {m}");
            assert!(
                started.elapsed() >= Duration::from_millis(100),
                "answered after the delay"
            );
            let msg = r.error_message.unwrap().to_string();
            assert!(
                msg.contains("invalid credentials") && !msg.contains(password),
                "{msg}"
            );
            assert!(closed(&mut c).await, "closed after a failed login");
        }
        let mut c = sasl_client(&b).await;
        assert_eq!(
            plain_login(&mut c, user, password).await.error_code,
            SASL_AUTHENTICATION_FAILED
        );
        assert!(closed(&mut c).await);
    }
    // ApiVersions before logging in is fine, and lists the SASL APIs; Metadata is not.
    let mut c = sasl_client(&b).await;
    let v: ApiVersionsResponse = c
        .request(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    assert!(
        v.api_keys
            .iter()
            .any(|k| k.api_key == ApiKey::SaslAuthenticate as i16)
    );
    assert!(
        metadata(&mut c).await.is_err(),
        "Metadata before login closes the connection"
    );
    // A mechanism not offered: UNSUPPORTED_SASL_MECHANISM with the list, then closed.
    let mut c = sasl_client(&b).await;
    let h = handshake(&mut c, "GSSAPI").await;
    assert_eq!(h.error_code, UNSUPPORTED_SASL_MECHANISM);
    let offered: Vec<String> = h.mechanisms.iter().map(|m| m.to_string()).collect();
    assert_eq!(offered, ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]);
    assert!(closed(&mut c).await);
    // SaslAuthenticate without a handshake: ILLEGAL_SASL_STATE, then closed.
    let mut c = sasl_client(&b).await;
    assert_eq!(
        authenticate(&mut c, b"n,,n=alice,r=x".to_vec())
            .await
            .error_code,
        ILLEGAL_SASL_STATE
    );
    assert!(closed(&mut c).await);
    // The broker still serves logins.
    let mut c = sasl_client(&b).await;
    assert_eq!(plain_login(&mut c, "alice", "secret").await.error_code, 0);
    b.stop().await;
}

/// Proves (KIP-368): with connections.max.reauth.ms a session says its lifetime; a request
/// after it ends closes the connection; re-authenticating on the same connection before the
/// end renews it; re-authenticating as another user is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_unless_renewed() {
    let clock = Arc::new(ManualClock::new(weir_model::Timestamp(1_700_000_000_000)));
    let b = broker(clock.clone(), Some(1_000)).await;
    let mut expires = sasl_client(&b).await;
    let r = scram_login(&mut expires, ScramMechanism::Sha512, "alice", "secret").await;
    assert_eq!((r.error_code, r.session_lifetime_ms), (0, 1_000));
    let mut renews = sasl_client(&b).await;
    assert_eq!(
        plain_login(&mut renews, "alice", "secret")
            .await
            .session_lifetime_ms,
        1_000
    );

    clock.advance(600);
    assert!(metadata(&mut expires).await.is_ok(), "still live");
    assert_eq!(
        plain_login(&mut renews, "alice", "secret").await.error_code,
        0,
        "renewed at 600 ms"
    );
    clock.advance(600);
    assert!(
        metadata(&mut renews).await.is_ok(),
        "renewed: lives until 1600 ms"
    );
    assert!(
        metadata(&mut expires).await.is_err(),
        "expired at 1000 ms: closed"
    );

    // Re-authenticating as someone else is refused and closes the connection.
    let alter = AlterUserScramCredentialsRequest::default().with_upsertions(vec![upsertion(
        "bob",
        ScramMechanism::Sha256,
        "pw",
        4096,
    )]);
    let _: AlterUserScramCredentialsResponse = b
        .client()
        .await
        .request(ApiKey::AlterUserScramCredentials, 0, &alter)
        .await;
    let mut c = sasl_client(&b).await;
    assert_eq!(plain_login(&mut c, "alice", "secret").await.error_code, 0);
    assert_eq!(
        plain_login(&mut c, "bob", "pw").await.error_code,
        SASL_AUTHENTICATION_FAILED
    );
    assert!(closed(&mut c).await);
    b.stop().await;
}

/// An AlterUserScramCredentials upsertion as Kafka's admin client makes it.
fn upsertion(
    user: &str,
    m: ScramMechanism,
    password: &str,
    iterations: i32,
) -> ScramCredentialUpsertion {
    let salt = b"a salt of sixteen".to_vec();
    let salted =
        weir_auth::scram::salted_password(m, password.as_bytes(), &salt, iterations.max(1) as u32);
    ScramCredentialUpsertion::default()
        .with_name(StrBytes::from_string(user.into()))
        .with_mechanism(m.kafka_type())
        .with_iterations(iterations)
        .with_salt(Bytes::from(salt))
        .with_salted_password(Bytes::from(salted))
}

fn deletion(user: &str, m: i8) -> ScramCredentialDeletion {
    ScramCredentialDeletion::default()
        .with_name(StrBytes::from_string(user.into()))
        .with_mechanism(m)
}

async fn describe(c: &mut Client, users: Option<&[&str]>) -> Vec<(String, i16, Vec<(i8, i32)>)> {
    let req = DescribeUserScramCredentialsRequest::default().with_users(users.map(|u| {
        u.iter()
            .map(|n| UserName::default().with_name(StrBytes::from_string(n.to_string())))
            .collect()
    }));
    let r: DescribeUserScramCredentialsResponse = c
        .request(ApiKey::DescribeUserScramCredentials, 0, &req)
        .await;
    r.results
        .iter()
        .map(|u| {
            let creds = u
                .credential_infos
                .iter()
                .map(|i| (i.mechanism, i.iterations))
                .collect();
            (u.user.to_string(), u.error_code, creds)
        })
        .collect()
}

async fn alter(c: &mut Client, req: AlterUserScramCredentialsRequest) -> Vec<(String, i16)> {
    let r: AlterUserScramCredentialsResponse =
        c.request(ApiKey::AlterUserScramCredentials, 0, &req).await;
    r.results
        .iter()
        .map(|u| (u.user.to_string(), u.error_code))
        .collect()
}

/// Proves: users made and removed through AlterUserScramCredentials log in (and stop logging
/// in) at once through this broker; Describe lists mechanisms and iterations; refusals carry
/// Kafka's codes per user, and a refused user's other changes are not made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_altered_and_described_as_kafka_does() {
    let b = broker(system(), None).await;
    let mut admin = b.client().await;
    let req = AlterUserScramCredentialsRequest::default()
        .with_upsertions(vec![
            upsertion("bob", ScramMechanism::Sha256, "bob-pw", 8192),
            upsertion("carol", ScramMechanism::Sha512, "carol-pw", 100),
            upsertion("dave", ScramMechanism::Sha512, "dave-pw", 4096),
        ])
        .with_deletions(vec![
            deletion("dave", 2),
            deletion("erin", 1),
            deletion("frank", 7),
        ]);
    assert_eq!(
        alter(&mut admin, req).await,
        [
            ("bob".into(), 0),
            ("carol".into(), 93),
            ("dave".into(), 92),
            ("erin".into(), 91),
            ("frank".into(), 33)
        ]
    );
    assert_eq!(
        describe(&mut admin, None).await,
        [
            ("alice".into(), 0, vec![(1, 4096), (2, 4096)]),
            ("bob".into(), 0, vec![(1, 8192)])
        ]
    );
    assert_eq!(
        describe(&mut admin, Some(&["bob", "zed", "bob"])).await,
        [("bob".into(), 92, vec![]), ("zed".into(), 91, vec![])]
    );
    let mut c = sasl_client(&b).await;
    assert_eq!(
        scram_login(&mut c, ScramMechanism::Sha256, "bob", "bob-pw")
            .await
            .error_code,
        0
    );
    // Deleted: bob can no longer log in.
    let req = AlterUserScramCredentialsRequest::default().with_deletions(vec![deletion("bob", 1)]);
    assert_eq!(alter(&mut admin, req).await, [("bob".into(), 0)]);
    let mut c = sasl_client(&b).await;
    assert_eq!(
        scram_login(&mut c, ScramMechanism::Sha256, "bob", "bob-pw")
            .await
            .error_code,
        SASL_AUTHENTICATION_FAILED
    );
    b.stop().await;
}

/// Proves: hostile SASL input (random, truncated and oversized messages, requests out of
/// order, a frame too large for an unauthenticated connection) gets an error or a closed
/// connection, never a crash or a hang, and the broker keeps serving logins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sasl_exchanges_close_the_connection() {
    let b = broker(system(), None).await;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..60 {
        let mut c = sasl_client(&b).await;
        let mechanism = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"][round % 3];
        assert_eq!(handshake(&mut c, mechanism).await.error_code, 0);
        let len = (next() % 300) as usize;
        let mut junk: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if round % 4 == 0 {
            // A valid start, cut short.
            junk = b"n,,n=alice,r=abc"[..(len % 16)].to_vec();
        }
        let r = authenticate(&mut c, junk).await;
        if r.error_code == 0 {
            // Random bytes that happen to start a SCRAM exchange: the next message fails.
            let r = authenticate(&mut c, b"c=biws,r=x,p=AAAA".to_vec()).await;
            assert_ne!(r.error_code, 0, "round {round}");
        }
        assert!(closed(&mut c).await, "round {round}");
    }
    // A SaslAuthenticate whose body is cut short: the frame does not decode, and is closed.
    let mut c = sasl_client(&b).await;
    handshake(&mut c, "PLAIN").await;
    let mut frame = c.stream_frame(
        ApiKey::SaslAuthenticate,
        2,
        &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"\0alice\0secret")),
    );
    frame.truncate(frame.len() - 6);
    let size = (frame.len() - 4) as i32;
    frame[..4].copy_from_slice(&size.to_be_bytes());
    c.send_raw(&frame).await;
    assert!(closed(&mut c).await);
    // A SASL message over the limit, and a frame over the unauthenticated limit.
    let mut c = sasl_client(&b).await;
    handshake(&mut c, "PLAIN").await;
    let big =
        SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(vec![b'a'; 12 * 1024]));
    assert!(
        c.request_bytes(ApiKey::SaslAuthenticate, 2, &big)
            .await
            .is_err()
    );
    let mut c = sasl_client(&b).await;
    let huge =
        SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(vec![b'a'; 64 * 1024]));
    assert!(
        c.request_bytes(ApiKey::SaslAuthenticate, 2, &huge)
            .await
            .is_err()
    );
    // A second handshake mid-exchange.
    let mut c = sasl_client(&b).await;
    handshake(&mut c, "SCRAM-SHA-256").await;
    assert_eq!(
        handshake(&mut c, "SCRAM-SHA-256").await.error_code,
        ILLEGAL_SASL_STATE
    );
    assert!(closed(&mut c).await);

    let mut c = sasl_client(&b).await;
    assert_eq!(
        scram_login(&mut c, ScramMechanism::Sha512, "alice", "secret")
            .await
            .error_code,
        0
    );
    b.stop().await;
}

/// Sends one raw SASL token (size-prefixed, no Kafka header), as after SaslHandshake v0.
async fn raw_token(c: &mut Client, token: &[u8]) -> std::io::Result<Bytes> {
    let mut frame = (token.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(token);
    c.send_raw(&frame).await;
    c.read_frame().await
}

/// Proves: SaslHandshake v0 (clients before KIP-152) runs the exchange in raw SASL frames,
/// for PLAIN and SCRAM; a wrong password in that framing closes the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_v0_takes_raw_sasl_tokens() {
    let b = broker(system(), None).await;
    let v0 =
        |m: &str| SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(m.into()));
    let mut c = sasl_client(&b).await;
    let h: SaslHandshakeResponse = c.request(ApiKey::SaslHandshake, 0, &v0("PLAIN")).await;
    assert_eq!(h.error_code, 0);
    assert_eq!(
        raw_token(&mut c, b"\0alice\0secret").await.unwrap().len(),
        0,
        "PLAIN answers an empty token"
    );
    assert!(metadata(&mut c).await.is_ok());

    let mut c = sasl_client(&b).await;
    let _: SaslHandshakeResponse = c
        .request(ApiKey::SaslHandshake, 0, &v0("SCRAM-SHA-256"))
        .await;
    let mut client = ScramClient::new(ScramMechanism::Sha256, "alice", "secret", "rawnonce");
    let first = raw_token(&mut c, &client.first()).await.unwrap();
    let last = raw_token(&mut c, &client.last(&first).unwrap())
        .await
        .unwrap();
    assert!(client.verify(&last));
    assert!(metadata(&mut c).await.is_ok());

    let mut c = sasl_client(&b).await;
    let _: SaslHandshakeResponse = c.request(ApiKey::SaslHandshake, 0, &v0("PLAIN")).await;
    assert!(
        raw_token(&mut c, b"\0alice\0wrong").await.is_err(),
        "closed"
    );
    b.stop().await;
}
