//! Authentication and authorization without I/O: the server's side of SASL PLAIN and
//! SCRAM-SHA-256/512, and Kafka's ACL rule ([`acl`]).
//!
//! The broker feeds each SaslAuthenticate's bytes to an [`Exchange`] and sends back what it
//! answers; the exchange looks credentials up through a [`Credentials`] it is given, so it runs
//! the same against the broker's copy of the cluster metadata as in a unit test. Randomness
//! (the server's nonce) is passed in for the same reason.
//!
//! PLAIN checks the password against the user's SCRAM credential (as Redpanda does): one store
//! of salted, iterated credentials serves both mechanisms, and no password is kept anywhere.

pub mod acl;
pub mod plain;
pub mod scram;

use std::fmt;
use weir_model::{ScramCredential, ScramMechanism};

/// A SASL mechanism a listener may offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mechanism {
    Plain,
    Scram(ScramMechanism),
}

impl Mechanism {
    pub const ALL: [Mechanism; 3] = [
        Mechanism::Plain,
        Mechanism::Scram(ScramMechanism::Sha256),
        Mechanism::Scram(ScramMechanism::Sha512),
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Scram(m) => m.sasl_name(),
        }
    }

    /// Parses a mechanism name as clients send it (case-sensitive in Kafka; accepted in any
    /// case on flags).
    pub fn parse(name: &str) -> Option<Mechanism> {
        Mechanism::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where an exchange finds a user's stored credential.
pub trait Credentials {
    fn scram(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential>;
}

/// Why an exchange failed. The `Display` text is what the client is told: it names no secret,
/// and an unknown user reads the same as a wrong password.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// The message does not follow the mechanism's grammar, or came out of order.
    #[error("malformed {mechanism} message: {why}")]
    Malformed {
        mechanism: Mechanism,
        why: &'static str,
    },
    /// An unknown user, a wrong password or a bad proof.
    #[error(
        "Authentication failed during authentication due to invalid credentials with SASL mechanism {0}"
    )]
    InvalidCredentials(Mechanism),
    /// Something Weir does not serve (channel binding, delegation tokens).
    #[error("{0}")]
    Unsupported(&'static str),
}

/// What one step of an exchange gives back.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send these bytes and wait for the client's next message.
    Continue(Vec<u8>),
    /// Authenticated as `user`; send these (possibly empty) bytes.
    Done { user: String, response: Vec<u8> },
}

/// One authentication in progress, on one connection.
#[derive(Debug)]
pub enum Exchange {
    Plain,
    Scram(scram::ScramServer),
}

impl Exchange {
    /// Starts an exchange; `nonce` is the server's random part of a SCRAM nonce (printable,
    /// without commas), unused by PLAIN.
    pub fn start(mechanism: Mechanism, nonce: String) -> Exchange {
        match mechanism {
            Mechanism::Plain => Exchange::Plain,
            Mechanism::Scram(m) => Exchange::Scram(scram::ScramServer::new(m, nonce)),
        }
    }

    pub fn mechanism(&self) -> Mechanism {
        match self {
            Exchange::Plain => Mechanism::Plain,
            Exchange::Scram(s) => Mechanism::Scram(s.mechanism()),
        }
    }

    /// Takes the client's next message. After an error or `Done` the exchange is over.
    pub fn step(&mut self, message: &[u8], users: &dyn Credentials) -> Result<Step, AuthError> {
        match self {
            Exchange::Plain => plain::authenticate(message, users).map(|user| Step::Done {
                user,
                response: Vec::new(),
            }),
            Exchange::Scram(s) => s.step(message, users),
        }
    }
}

/// A user name's rules: 1 to [`weir_model::limits::USER_NAME_BYTES_MAX`] bytes, no control
/// characters (they would forge log lines and principals).
pub fn check_user_name(name: &str) -> Result<(), String> {
    use weir_model::limits::USER_NAME_BYTES_MAX;
    if name.is_empty() || name.len() > USER_NAME_BYTES_MAX {
        return Err(format!(
            "a user name has 1 to {USER_NAME_BYTES_MAX} bytes; this one has {}",
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("a user name may not hold control characters".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mechanism_names_parse_back() {
        for m in Mechanism::ALL {
            assert_eq!(Mechanism::parse(m.name()), Some(m));
        }
        assert_eq!(Mechanism::parse("GSSAPI"), None);
    }

    #[test]
    fn user_names_are_bounded_and_printable() {
        assert!(check_user_name("alice").is_ok());
        assert!(check_user_name("").is_err());
        assert!(check_user_name("a\nb").is_err());
        assert!(check_user_name(&"x".repeat(300)).is_err());
    }
}
