//! SCRAM credentials as the cluster stores them (RFC 5802): never a password, only what
//! verifies one.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A SCRAM mechanism Weir serves. The numbers are Kafka's (`ScramMechanism` in
/// DescribeUserScramCredentials and AlterUserScramCredentials).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];

    /// Kafka's number for it on the wire.
    pub fn kafka_type(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    pub fn from_kafka_type(t: i8) -> Option<ScramMechanism> {
        ScramMechanism::ALL
            .into_iter()
            .find(|m| m.kafka_type() == t)
    }

    /// The SASL mechanism name (`SCRAM-SHA-256`).
    pub fn sasl_name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The hash's output length in bytes: a stored key, a server key and a proof are this long.
    pub fn hash_len(self) -> usize {
        match self {
            ScramMechanism::Sha256 => 32,
            ScramMechanism::Sha512 => 64,
        }
    }

    pub fn from_sasl_name(name: &str) -> Option<ScramMechanism> {
        ScramMechanism::ALL
            .into_iter()
            .find(|m| m.sasl_name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for ScramMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sasl_name())
    }
}

/// One user's credential for one mechanism: `StoredKey = H(HMAC(SaltedPassword, "Client Key"))`
/// and `ServerKey = HMAC(SaltedPassword, "Server Key")`. Neither gives the password back, and
/// neither lets a reader log in (that takes the client key).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: u32,
}

/// Shows the iterations only: keys stay out of logs.
impl fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCredential")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mechanisms_round_trip_kafka_numbers_and_names() {
        for m in ScramMechanism::ALL {
            assert_eq!(ScramMechanism::from_kafka_type(m.kafka_type()), Some(m));
            assert_eq!(ScramMechanism::from_sasl_name(m.sasl_name()), Some(m));
        }
        assert_eq!(ScramMechanism::from_kafka_type(0), None);
        assert_eq!(ScramMechanism::from_sasl_name("PLAIN"), None);
    }

    #[test]
    fn debug_shows_no_key() {
        let c = ScramCredential {
            salt: vec![1; 8],
            stored_key: vec![0xab; 32],
            server_key: vec![0xcd; 32],
            iterations: 4096,
        };
        let shown = format!("{c:?}");
        assert!(shown.contains("4096") && !shown.contains("171") && !shown.contains("ab"));
    }
}
