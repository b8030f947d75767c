//! SaslHandshake and SaslAuthenticate (KIP-152, KIP-368), and the gate that keeps every other
//! API from a SASL listener's connections until they have authenticated.
//!
//! A refusal is answered with its Kafka error code and then the connection is closed, as
//! Kafka does; a failed login is answered only after [`FAILED_AUTHENTICATION_DELAY_MS`], is
//! counted, and is logged with the mechanism and the reason, never with the client's bytes.

use super::{Ctx, Peer, WRITTEN, Written, str_bytes};
use crate::cluster::ClusterView;
use crate::frame::ConnectionError;
use crate::sasl::SaslError;
use crate::state::BrokerState;
use base64::Engine;
use bytes::{Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::*;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use weir_model::limits::{FAILED_AUTHENTICATION_DELAY_MS, SASL_MESSAGE_BYTES_MAX};
use weir_model::{ScramCredential, ScramMechanism};

/// The credentials in this broker's copy of the cluster metadata.
struct ViewUsers<'a>(&'a ClusterView);

impl weir_auth::Credentials for ViewUsers<'_> {
    fn scram(&self, user: &str, m: ScramMechanism) -> Option<ScramCredential> {
        self.0.scram(user, m).cloned()
    }
}

/// The server's part of a SCRAM nonce: 18 random bytes, base64 (printable, no comma).
fn nonce() -> String {
    let mut bytes = [0u8; 18];
    // The system's random source failing is not something to serve through: a fixed nonce
    // would let a recorded exchange be replayed.
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
        return String::new();
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `User:NAME` for a logged-in session.
fn principal_of(session: &crate::sasl::Session) -> Arc<str> {
    match session.user_name() {
        Some(u) => format!("User:{u}").into(),
        None => weir_auth::acl::ANONYMOUS.into(),
    }
}

fn code(e: &SaslError) -> ResponseError {
    match e {
        SaslError::UnsupportedMechanism { .. } => ResponseError::UnsupportedSaslMechanism,
        SaslError::IllegalState(_) => ResponseError::IllegalSaslState,
        SaslError::Failed(_) | SaslError::Reauthentication => {
            ResponseError::SaslAuthenticationFailed
        }
    }
}

/// Refuses a request other than ApiVersions, SaslHandshake and SaslAuthenticate from a SASL
/// listener's connection that has no live session: it is closed.
pub fn check_authenticated(
    state: &BrokerState,
    peer: &Peer,
    api: ApiKey,
) -> Result<(), ConnectionError> {
    let Some(session) = &peer.sasl else {
        return Ok(());
    };
    if matches!(
        api,
        ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
    ) || session.user(state.clock.mono_ms()).is_some()
    {
        return Ok(());
    }
    let why = if session.ever_authenticated() {
        "the SASL session expired (connections.max.reauth.ms) and was not renewed"
    } else {
        "it has not authenticated"
    };
    Err(ConnectionError::Protocol(format!(
        "{api:?} on listener {} refused: {why}",
        peer.listener
    )))
}

pub fn handshake(
    state: &BrokerState,
    ctx: &Ctx,
    req: SaslHandshakeRequest,
    out: &mut BytesMut,
    peer: &mut Peer,
) -> Result<Option<Written>, ConnectionError> {
    let Some(session) = peer.sasl.as_mut() else {
        return Err(ConnectionError::Protocol(format!(
            "SaslHandshake on listener {}, which does not use SASL",
            peer.listener
        )));
    };
    let enabled = &state.config.sasl.mechanisms;
    let mut resp = SaslHandshakeResponse::default()
        .with_mechanisms(enabled.iter().map(|m| str_bytes(m.name())).collect());
    if let Err(e) = session.handshake(&req.mechanism, enabled, nonce(), ctx.version == 0) {
        tracing::info!(listener = %peer.listener, error = %e, "SASL handshake refused");
        resp.error_code = code(&e).code();
        peer.close_after = Some(e.to_string());
    }
    ctx.write(out, &resp)?;
    WRITTEN
}

/// A raw SASL token after SaslHandshake v0: answered with a raw, size-prefixed token. A
/// refusal cannot be told in this framing: the connection is closed, as Kafka does.
pub async fn raw_token(
    state: &BrokerState,
    frame: Bytes,
    out: &mut BytesMut,
    peer: &mut Peer,
) -> Result<Option<Written>, ConnectionError> {
    let Some(session) = peer.sasl.as_mut() else {
        return Err(ConnectionError::Protocol(
            "a raw SASL token off a SASL listener".into(),
        ));
    };
    if frame.len() > SASL_MESSAGE_BYTES_MAX {
        return Err(ConnectionError::Protocol(format!(
            "a SASL message of {} bytes; at most {SASL_MESSAGE_BYTES_MAX}",
            frame.len()
        )));
    }
    let view = state.view();
    let now = state.clock.mono_ms();
    match session.authenticate(&frame, &ViewUsers(&view), now, state.config.sasl.reauth_ms) {
        Ok(a) => {
            if a.done {
                state.auth_counts.succeeded.fetch_add(1, Ordering::Relaxed);
                peer.authenticated.store(true, Ordering::Release);
                peer.principal = principal_of(session);
            }
            out.extend_from_slice(&(a.response.len() as i32).to_be_bytes());
            out.extend_from_slice(&a.response);
            WRITTEN
        }
        Err(e) => {
            state.auth_counts.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(listener = %peer.listener, client = %peer.client_host, error = %e, "SASL authentication failed");
            tokio::time::sleep(Duration::from_millis(FAILED_AUTHENTICATION_DELAY_MS)).await;
            Err(ConnectionError::Protocol(e.to_string()))
        }
    }
}

pub async fn authenticate(
    state: &BrokerState,
    ctx: &Ctx,
    req: SaslAuthenticateRequest,
    out: &mut BytesMut,
    peer: &mut Peer,
) -> Result<Option<Written>, ConnectionError> {
    let Some(session) = peer.sasl.as_mut().filter(|s| !s.expects_raw_token()) else {
        return Err(ConnectionError::Protocol(format!(
            "SaslAuthenticate on listener {}, which does not use SASL or expects raw tokens",
            peer.listener
        )));
    };
    if req.auth_bytes.len() > SASL_MESSAGE_BYTES_MAX {
        return Err(ConnectionError::Protocol(format!(
            "a SASL message of {} bytes; at most {SASL_MESSAGE_BYTES_MAX}",
            req.auth_bytes.len()
        )));
    }
    let lifetime = state.config.sasl.reauth_ms;
    let view = state.view();
    let now = state.clock.mono_ms();
    let mut resp = SaslAuthenticateResponse::default();
    match session.authenticate(&req.auth_bytes, &ViewUsers(&view), now, lifetime) {
        Ok(a) => {
            if a.done {
                state.auth_counts.succeeded.fetch_add(1, Ordering::Relaxed);
                peer.authenticated.store(true, Ordering::Release);
                peer.principal = principal_of(session);
                tracing::debug!(listener = %peer.listener, "SASL authentication succeeded");
                if ctx.version >= 1 {
                    resp.session_lifetime_ms = lifetime.map_or(0, |l| l as i64);
                }
            }
            resp.auth_bytes = Bytes::from(a.response);
        }
        Err(e) => {
            state.auth_counts.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(listener = %peer.listener, client = %peer.client_host, error = %e, "SASL authentication failed");
            // Guessing passwords costs time; the connection is closed after the answer.
            tokio::time::sleep(Duration::from_millis(FAILED_AUTHENTICATION_DELAY_MS)).await;
            resp.error_code = code(&e).code();
            resp.error_message = Some(str_bytes(e.to_string()));
            peer.close_after = Some(e.to_string());
        }
    }
    ctx.write(out, &resp)?;
    WRITTEN
}
