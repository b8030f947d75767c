//! SASL on the Kafka listeners (KIP-152, KIP-368): which mechanisms are offered, the users
//! made at start (`--scram-user`), and each connection's authentication state.
//!
//! A connection on a SASL listener may send ApiVersions, SaslHandshake and SaslAuthenticate
//! until it has authenticated, and nothing else: any other request closes it. With
//! `--connections-max-reauth-ms` a session lasts that long; the client re-authenticates on the
//! same connection (same mechanism, same user) before it ends, and a request after the end
//! closes the connection, as Kafka does.

use std::fmt;
use weir_auth::{AuthError, Exchange, Mechanism, Step};
use weir_model::ScramMechanism;

/// The mechanisms a listener offers when `--sasl-mechanisms` is not given: SCRAM only, since
/// PLAIN sends the password itself (over TLS that is Kafka's common setup; ask for it).
pub const DEFAULT_MECHANISMS: [Mechanism; 2] = [
    Mechanism::Scram(ScramMechanism::Sha256),
    Mechanism::Scram(ScramMechanism::Sha512),
];

/// SASL settings shared by a broker's SASL listeners.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaslSettings {
    pub mechanisms: Vec<Mechanism>,
    /// `connections.max.reauth.ms`: how long an authenticated session lasts; `None`, for ever.
    pub reauth_ms: Option<u64>,
    /// Users made at the first start (`--scram-user`); existing credentials are kept.
    pub scram_users: Vec<ScramUser>,
}

impl Default for SaslSettings {
    fn default() -> SaslSettings {
        SaslSettings {
            mechanisms: DEFAULT_MECHANISMS.to_vec(),
            reauth_ms: None,
            scram_users: Vec::new(),
        }
    }
}

/// A `--scram-user NAME=PASSWORD[:MECHANISM]`: without a mechanism, both SCRAM ones.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramUser {
    pub name: String,
    pub password: String,
    pub mechanisms: Vec<ScramMechanism>,
}

/// The password stays out of logs and error messages.
impl fmt::Debug for ScramUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramUser")
            .field("name", &self.name)
            .field("mechanisms", &self.mechanisms)
            .finish_non_exhaustive()
    }
}

impl ScramUser {
    /// Parses `NAME=PASSWORD[:MECHANISM]`. A password may hold `:`; only a known mechanism
    /// name after the last one is taken as the mechanism.
    pub fn parse(s: &str) -> Result<ScramUser, String> {
        let usage = "a --scram-user is NAME=PASSWORD[:SCRAM-SHA-256|SCRAM-SHA-512]";
        let (name, rest) = s.split_once('=').ok_or_else(|| usage.to_string())?;
        weir_auth::check_user_name(name).map_err(|e| format!("{usage}: {e}"))?;
        let (password, mechanisms) = match rest.rsplit_once(':') {
            Some((p, m)) => match ScramMechanism::from_sasl_name(m) {
                Some(m) => (p, vec![m]),
                None => (rest, ScramMechanism::ALL.to_vec()),
            },
            None => (rest, ScramMechanism::ALL.to_vec()),
        };
        if password.is_empty() {
            return Err(format!("{usage}: user {name} has an empty password"));
        }
        Ok(ScramUser {
            name: name.to_string(),
            password: password.to_string(),
            mechanisms,
        })
    }
}

/// Parses `--sasl-mechanisms`.
pub fn parse_mechanisms(names: &[String]) -> Result<Vec<Mechanism>, String> {
    if names.is_empty() {
        return Ok(DEFAULT_MECHANISMS.to_vec());
    }
    let mut out = Vec::new();
    for n in names {
        let m = Mechanism::parse(n.trim()).ok_or_else(|| {
            format!("SASL mechanism {n:?} is not served; PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
        })?;
        if !out.contains(&m) {
            out.push(m);
        }
    }
    Ok(out)
}

/// What a connection on a SASL listener has done so far.
#[derive(Debug, Default)]
pub struct Session {
    /// The authenticated user, once there is one.
    user: Option<String>,
    /// The mechanism it authenticated with: a re-authentication must use it again.
    mechanism: Option<Mechanism>,
    /// When the session ends (the broker clock's monotonic ms); `None`, never.
    expires_at_ms: Option<u64>,
    /// An authentication in progress (after SaslHandshake).
    exchange: Option<Exchange>,
    /// The exchange runs in raw SASL frames, without Kafka headers (after SaslHandshake v0,
    /// as clients before KIP-152 speak).
    raw: bool,
}

/// Why a SASL step ends the connection. The text is what the client is told.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SaslError {
    #[error("SASL mechanism {requested:?} is not enabled; enabled: {enabled}")]
    UnsupportedMechanism { requested: String, enabled: String },
    #[error("{0}")]
    IllegalState(&'static str),
    #[error(transparent)]
    Failed(#[from] AuthError),
    #[error("re-authentication must keep the mechanism and the user of the session")]
    Reauthentication,
}

/// A successful SaslAuthenticate: the bytes to send and, when the exchange ended, the
/// session's lifetime.
#[derive(Debug, PartialEq, Eq)]
pub struct Authenticated {
    pub response: Vec<u8>,
    pub done: bool,
}

impl Session {
    /// The authenticated user, if the session is live at `now_ms`.
    pub fn user(&self, now_ms: u64) -> Option<&str> {
        match self.expires_at_ms {
            Some(at) if now_ms >= at => None,
            _ => self.user.as_deref(),
        }
    }

    /// The user the connection last authenticated as, live or not.
    pub fn user_name(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Whether the connection ever authenticated (its frames may then be full-sized).
    pub fn ever_authenticated(&self) -> bool {
        self.user.is_some()
    }

    /// Whether the next frame is a raw SASL token rather than a Kafka request.
    pub fn expects_raw_token(&self) -> bool {
        self.raw && self.exchange.is_some()
    }

    /// SaslHandshake: starts an exchange with `mechanism`, if `enabled` offers it; with `raw`
    /// (version 0) its messages come as raw frames.
    pub fn handshake(
        &mut self,
        mechanism: &str,
        enabled: &[Mechanism],
        nonce: String,
        raw: bool,
    ) -> Result<(), SaslError> {
        if self.exchange.is_some() {
            return Err(SaslError::IllegalState(
                "SaslHandshake during an authentication in progress",
            ));
        }
        let Some(m) = Mechanism::parse(mechanism).filter(|m| enabled.contains(m)) else {
            return Err(SaslError::UnsupportedMechanism {
                requested: mechanism.to_string(),
                enabled: names(enabled),
            });
        };
        if self.mechanism.is_some_and(|was| was != m) {
            return Err(SaslError::Reauthentication);
        }
        self.exchange = Some(Exchange::start(m, nonce));
        self.raw = raw;
        Ok(())
    }

    /// SaslAuthenticate: one message of the exchange. On the last, the session is (re)started
    /// at `now_ms` for `lifetime_ms`.
    pub fn authenticate(
        &mut self,
        message: &[u8],
        users: &dyn weir_auth::Credentials,
        now_ms: u64,
        lifetime_ms: Option<u64>,
    ) -> Result<Authenticated, SaslError> {
        let exchange = self.exchange.as_mut().ok_or(SaslError::IllegalState(
            "SaslAuthenticate without a SaslHandshake first",
        ))?;
        let mechanism = exchange.mechanism();
        let step = exchange.step(message, users);
        let (user, response) = match step {
            Ok(Step::Continue(response)) => {
                return Ok(Authenticated {
                    response,
                    done: false,
                });
            }
            Ok(Step::Done { user, response }) => (user, response),
            Err(e) => {
                self.exchange = None;
                return Err(e.into());
            }
        };
        self.exchange = None;
        if self.user.as_ref().is_some_and(|was| *was != user) {
            return Err(SaslError::Reauthentication);
        }
        self.user = Some(user);
        self.mechanism = Some(mechanism);
        self.expires_at_ms = lifetime_ms.map(|l| now_ms.saturating_add(l));
        Ok(Authenticated {
            response,
            done: true,
        })
    }
}

/// Mechanism names as SaslHandshake lists them.
pub fn names(mechanisms: &[Mechanism]) -> String {
    let names: Vec<&str> = mechanisms.iter().map(|m| m.name()).collect();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_model::ScramCredential;

    struct Alice(ScramCredential);

    impl weir_auth::Credentials for Alice {
        fn scram(&self, user: &str, m: ScramMechanism) -> Option<ScramCredential> {
            (user == "alice" && m == ScramMechanism::Sha256).then(|| self.0.clone())
        }
    }

    fn alice() -> Alice {
        Alice(weir_auth::scram::credential(
            ScramMechanism::Sha256,
            b"pw",
            b"salt".to_vec(),
            4096,
        ))
    }

    const ALL: [Mechanism; 3] = Mechanism::ALL;

    #[test]
    fn scram_users_parse_with_passwords_that_hold_colons() {
        let u = ScramUser::parse("admin=a:b:SCRAM-SHA-512").unwrap();
        assert_eq!(
            (u.password.as_str(), u.mechanisms.as_slice()),
            ("a:b", &[ScramMechanism::Sha512][..])
        );
        let u = ScramUser::parse("admin=a:b").unwrap();
        assert_eq!((u.password.as_str(), u.mechanisms.len()), ("a:b", 2));
        for bad in ["admin", "=pw", "admin="] {
            assert!(ScramUser::parse(bad).is_err(), "{bad}");
        }
        assert!(!format!("{:?}", ScramUser::parse("u=secret").unwrap()).contains("secret"));
    }

    #[test]
    fn mechanisms_parse_with_what_is_allowed() {
        assert_eq!(parse_mechanisms(&[]).unwrap(), DEFAULT_MECHANISMS.to_vec());
        assert_eq!(
            parse_mechanisms(&["plain".into()]).unwrap(),
            vec![Mechanism::Plain]
        );
        let e = parse_mechanisms(&["GSSAPI".into()]).unwrap_err();
        assert!(e.contains("PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"), "{e}");
    }

    #[test]
    fn plain_login_then_expiry_then_reauthentication() {
        let mut s = Session::default();
        assert_eq!(s.user(0), None);
        s.handshake("PLAIN", &ALL, String::new(), false).unwrap();
        let a = s
            .authenticate(b"\0alice\0pw", &alice(), 1_000, Some(500))
            .unwrap();
        assert!(a.done);
        assert_eq!(s.user(1_499), Some("alice"));
        assert_eq!(s.user(1_500), None, "expired");
        // Re-authenticating with the same user and mechanism renews the session.
        s.handshake("PLAIN", &ALL, String::new(), false).unwrap();
        s.authenticate(b"\0alice\0pw", &alice(), 2_000, Some(500))
            .unwrap();
        assert_eq!(s.user(2_400), Some("alice"));
        // Another mechanism is refused.
        assert_eq!(
            s.handshake("SCRAM-SHA-256", &ALL, "n".into(), false),
            Err(SaslError::Reauthentication)
        );
    }

    #[test]
    fn refusals_end_the_exchange() {
        let mut s = Session::default();
        assert!(matches!(
            s.handshake("PLAIN", &DEFAULT_MECHANISMS, String::new(), false),
            Err(SaslError::UnsupportedMechanism { .. })
        ));
        assert!(matches!(
            s.authenticate(b"\0alice\0pw", &alice(), 0, None),
            Err(SaslError::IllegalState(_))
        ));
        s.handshake("PLAIN", &ALL, String::new(), false).unwrap();
        assert!(matches!(
            s.handshake("PLAIN", &ALL, String::new(), false),
            Err(SaslError::IllegalState(_))
        ));
        let e = s
            .authenticate(b"\0alice\0wrong", &alice(), 0, None)
            .unwrap_err();
        assert!(e.to_string().contains("invalid credentials"), "{e}");
        assert_eq!(s.user(0), None);
    }
}
