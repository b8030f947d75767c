//! SASL PLAIN (RFC 4616): `[authzid] NUL authcid NUL password`, checked against the user's
//! SCRAM credential. Only over TLS is this safe; the broker does not refuse it on a plaintext
//! listener, as Kafka does not.

use crate::{AuthError, Credentials, Mechanism};
use weir_model::ScramMechanism;

fn malformed(why: &'static str) -> AuthError {
    AuthError::Malformed {
        mechanism: Mechanism::Plain,
        why,
    }
}

/// Checks one PLAIN message; the authenticated user on success.
pub fn authenticate(message: &[u8], users: &dyn Credentials) -> Result<String, AuthError> {
    let mut parts = message.split(|b| *b == 0);
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed(
            "expected authzid, user and password separated by NUL",
        ));
    };
    let user = std::str::from_utf8(user).map_err(|_| malformed("the user is not UTF-8"))?;
    crate::check_user_name(user).map_err(|_| malformed("a user name out of bounds"))?;
    if !authzid.is_empty() && authzid != user.as_bytes() {
        return Err(malformed("the authorization id differs from the user name"));
    }
    // The strongest credential the user has; both were made from the same password.
    let verified = [ScramMechanism::Sha512, ScramMechanism::Sha256]
        .into_iter()
        .find_map(|m| users.scram(user, m).map(|c| (m, c)))
        .is_some_and(|(m, c)| crate::scram::verify_password(m, &c, password));
    if verified {
        Ok(user.to_string())
    } else {
        Err(AuthError::InvalidCredentials(Mechanism::Plain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_model::ScramCredential;

    struct One(ScramMechanism, ScramCredential);

    impl Credentials for One {
        fn scram(&self, user: &str, m: ScramMechanism) -> Option<ScramCredential> {
            (user == "alice" && m == self.0).then(|| self.1.clone())
        }
    }

    #[test]
    fn checks_the_password_against_either_scram_credential() {
        for m in ScramMechanism::ALL {
            let users = One(
                m,
                crate::scram::credential(m, b"pw", b"salt".to_vec(), 4096),
            );
            assert_eq!(authenticate(b"\0alice\0pw", &users), Ok("alice".into()));
            assert_eq!(
                authenticate(b"alice\0alice\0pw", &users),
                Ok("alice".into())
            );
            assert_eq!(
                authenticate(b"\0alice\0no", &users),
                Err(AuthError::InvalidCredentials(Mechanism::Plain))
            );
            assert_eq!(
                authenticate(b"\0bob\0pw", &users),
                Err(AuthError::InvalidCredentials(Mechanism::Plain))
            );
        }
    }

    #[test]
    fn malformed_messages_are_refused() {
        let users = One(
            ScramMechanism::Sha256,
            crate::scram::credential(ScramMechanism::Sha256, b"pw", b"s".to_vec(), 4096),
        );
        for bad in [
            &b""[..],
            b"alice",
            b"\0alice",
            b"\0alice\0pw\0",
            b"bob\0alice\0pw",
            b"\0\0pw",
            b"\0\xff\0pw",
        ] {
            assert!(
                matches!(authenticate(bad, &users), Err(AuthError::Malformed { .. })),
                "{bad:?}"
            );
        }
    }
}
