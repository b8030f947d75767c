//! SCRAM-SHA-256 and SCRAM-SHA-512, the server's side (RFC 5802, RFC 7677), as Kafka speaks
//! them: no channel binding, and the `tokenauth` extension (delegation tokens) refused.
//!
//! ```text
//! client-first   n,,n=USER,r=CNONCE
//! server-first   r=CNONCE SNONCE,s=SALT,i=ITERATIONS
//! client-final   c=biws,r=CNONCE SNONCE,p=PROOF
//! server-final   v=SERVER_SIGNATURE
//! ```

use crate::{AuthError, Credentials, Mechanism, Step};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::{digest, hmac, pbkdf2};
use std::num::NonZeroU32;
use subtle::ConstantTimeEq;
use weir_model::{ScramCredential, ScramMechanism};

fn algorithms(
    m: ScramMechanism,
) -> (
    &'static digest::Algorithm,
    hmac::Algorithm,
    pbkdf2::Algorithm,
) {
    match m {
        ScramMechanism::Sha256 => (
            &digest::SHA256,
            hmac::HMAC_SHA256,
            pbkdf2::PBKDF2_HMAC_SHA256,
        ),
        ScramMechanism::Sha512 => (
            &digest::SHA512,
            hmac::HMAC_SHA512,
            pbkdf2::PBKDF2_HMAC_SHA512,
        ),
    }
}

/// The hash's output length: a proof, a key and a signature are this long.
pub fn hash_len(m: ScramMechanism) -> usize {
    algorithms(m).0.output_len()
}

fn hmac(m: ScramMechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
    let key = hmac::Key::new(algorithms(m).1, key);
    hmac::sign(&key, data).as_ref().to_vec()
}

/// `Hi(password, salt, iterations)`: what a client sends AlterUserScramCredentials.
/// `iterations` of 0 is taken as 1 (callers check the bounds first).
pub fn salted_password(
    m: ScramMechanism,
    password: &[u8],
    salt: &[u8],
    iterations: u32,
) -> Vec<u8> {
    let mut out = vec![0; hash_len(m)];
    let n = NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN);
    pbkdf2::derive(algorithms(m).2, n, salt, password, &mut out);
    out
}

/// The stored credential for a salted password.
pub fn credential_from_salted(
    m: ScramMechanism,
    salted: &[u8],
    salt: Vec<u8>,
    iterations: u32,
) -> ScramCredential {
    let client_key = hmac(m, salted, b"Client Key");
    ScramCredential {
        salt,
        stored_key: digest::digest(algorithms(m).0, &client_key)
            .as_ref()
            .to_vec(),
        server_key: hmac(m, salted, b"Server Key"),
        iterations,
    }
}

/// The stored credential for a password.
pub fn credential(
    m: ScramMechanism,
    password: &[u8],
    salt: Vec<u8>,
    iterations: u32,
) -> ScramCredential {
    let salted = salted_password(m, password, &salt, iterations);
    credential_from_salted(m, &salted, salt, iterations)
}

/// Whether `password` is the one `stored` was made from (PLAIN's check), in constant time.
pub fn verify_password(m: ScramMechanism, stored: &ScramCredential, password: &[u8]) -> bool {
    let derived = credential(m, password, stored.salt.clone(), stored.iterations);
    bool::from(derived.stored_key.ct_eq(&stored.stored_key))
}

/// A SCRAM client, for tests and tools that speak to a broker directly.
#[derive(Debug)]
pub struct ScramClient {
    mechanism: ScramMechanism,
    password: Vec<u8>,
    first_bare: String,
    server_signature: Option<Vec<u8>>,
}

impl ScramClient {
    /// A client for `user` (escaped here) with its random `nonce`.
    pub fn new(mechanism: ScramMechanism, user: &str, password: &str, nonce: &str) -> ScramClient {
        let user = user.replace('=', "=3D").replace(',', "=2C");
        ScramClient {
            mechanism,
            password: password.as_bytes().to_vec(),
            first_bare: format!("n={user},r={nonce}"),
            server_signature: None,
        }
    }

    /// client-first.
    pub fn first(&self) -> Vec<u8> {
        format!("n,,{}", self.first_bare).into_bytes()
    }

    /// client-final for the server's first message; `None` if that message is malformed.
    pub fn last(&mut self, server_first: &[u8]) -> Option<Vec<u8>> {
        let server_first = std::str::from_utf8(server_first).ok()?;
        let attr = |k: &str| {
            server_first
                .split(',')
                .find_map(|a| a.strip_prefix(k)?.strip_prefix('='))
        };
        let nonce = attr("r")?;
        let salt = B64.decode(attr("s")?).ok()?;
        let iterations: u32 = attr("i")?.parse().ok()?;
        let m = self.mechanism;
        let salted = salted_password(m, &self.password, &salt, iterations);
        let client_key = hmac(m, &salted, b"Client Key");
        let stored = digest::digest(algorithms(m).0, &client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{},{server_first},{without_proof}", self.first_bare);
        let signature = hmac(m, stored.as_ref(), auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = hmac(m, &salted, b"Server Key");
        self.server_signature = Some(hmac(m, &server_key, auth.as_bytes()));
        Some(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Whether the server's final message proves it knows the credential.
    pub fn verify(&self, server_final: &[u8]) -> bool {
        let given = std::str::from_utf8(server_final)
            .ok()
            .and_then(|s| s.strip_prefix("v="))
            .and_then(|v| B64.decode(v).ok());
        matches!((given, &self.server_signature), (Some(g), Some(s)) if bool::from(g.ct_eq(s)))
    }
}

/// Where a SCRAM exchange is.
#[derive(Debug)]
enum State {
    /// Waiting for client-first.
    Start {
        nonce: String,
    },
    /// server-first sent; waiting for client-final.
    SentFirst {
        user: String,
        credential: ScramCredential,
        gs2_header: String,
        nonce: String,
        /// client-first-bare "," server-first, the start of the AuthMessage.
        auth_start: String,
    },
    Over,
}

/// One SCRAM authentication, server side.
#[derive(Debug)]
pub struct ScramServer {
    mechanism: ScramMechanism,
    state: State,
}

impl ScramServer {
    pub fn new(mechanism: ScramMechanism, server_nonce: String) -> ScramServer {
        ScramServer {
            mechanism,
            state: State::Start {
                nonce: server_nonce,
            },
        }
    }

    pub fn mechanism(&self) -> ScramMechanism {
        self.mechanism
    }

    fn malformed(&self, why: &'static str) -> AuthError {
        AuthError::Malformed {
            mechanism: Mechanism::Scram(self.mechanism),
            why,
        }
    }

    fn invalid(&self) -> AuthError {
        AuthError::InvalidCredentials(Mechanism::Scram(self.mechanism))
    }

    /// Takes the next client message; any error ends the exchange.
    pub fn step(&mut self, message: &[u8], users: &dyn Credentials) -> Result<Step, AuthError> {
        let state = std::mem::replace(&mut self.state, State::Over);
        let text = std::str::from_utf8(message).map_err(|_| self.malformed("not UTF-8"))?;
        match state {
            State::Start { nonce } => self.client_first(text, nonce, users),
            State::SentFirst {
                user,
                credential,
                gs2_header,
                nonce,
                auth_start,
            } => self.client_final(text, &user, &credential, &gs2_header, &nonce, &auth_start),
            State::Over => Err(self.malformed("the exchange is already over")),
        }
    }

    fn client_first(
        &mut self,
        text: &str,
        server_nonce: String,
        users: &dyn Credentials,
    ) -> Result<Step, AuthError> {
        let first = parse_client_first(text).map_err(|why| self.malformed(why))?;
        if first.token_auth {
            return Err(AuthError::Unsupported(
                "delegation tokens (the tokenauth extension) are not served",
            ));
        }
        let credential = users
            .scram(&first.user, self.mechanism)
            .ok_or_else(|| self.invalid())?;
        let nonce = format!("{}{server_nonce}", first.nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credential.salt),
            credential.iterations
        );
        let auth_start = format!("{},{server_first}", first.bare);
        self.state = State::SentFirst {
            user: first.user,
            credential,
            gs2_header: first.gs2_header,
            nonce,
            auth_start,
        };
        Ok(Step::Continue(server_first.into_bytes()))
    }

    fn client_final(
        &mut self,
        text: &str,
        user: &str,
        credential: &ScramCredential,
        gs2_header: &str,
        nonce: &str,
        auth_start: &str,
    ) -> Result<Step, AuthError> {
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or_else(|| self.malformed("client-final has no proof"))?;
        let mut attrs = without_proof.split(',');
        let binding = attrs
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .and_then(|c| B64.decode(c).ok())
            .ok_or_else(|| self.malformed("client-final has no channel binding"))?;
        if binding != gs2_header.as_bytes() {
            return Err(self.malformed("the channel binding differs from client-first's header"));
        }
        if attrs.next().and_then(|a| a.strip_prefix("r=")) != Some(nonce) {
            return Err(self.malformed("the nonce differs from the one agreed"));
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| self.malformed("the proof is not base64"))?;
        if proof.len() != hash_len(self.mechanism) {
            return Err(self.invalid());
        }
        let auth_message = format!("{auth_start},{without_proof}");
        let signature = hmac(
            self.mechanism,
            &credential.stored_key,
            auth_message.as_bytes(),
        );
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        let stored = digest::digest(algorithms(self.mechanism).0, &client_key);
        if !bool::from(stored.as_ref().ct_eq(&credential.stored_key)) {
            return Err(self.invalid());
        }
        let server_signature = hmac(
            self.mechanism,
            &credential.server_key,
            auth_message.as_bytes(),
        );
        Ok(Step::Done {
            user: user.to_string(),
            response: format!("v={}", B64.encode(server_signature)).into_bytes(),
        })
    }
}

/// A parsed client-first message.
#[derive(Debug, PartialEq, Eq)]
struct ClientFirst {
    gs2_header: String,
    bare: String,
    user: String,
    nonce: String,
    token_auth: bool,
}

fn parse_client_first(text: &str) -> Result<ClientFirst, &'static str> {
    let (flag, rest) = text.split_once(',').ok_or("no GS2 header")?;
    match flag {
        "n" | "y" => {}
        f if f.starts_with("p=") => return Err("channel binding is not served"),
        _ => return Err("a bad channel-binding flag"),
    }
    let (authzid, bare) = rest.split_once(',').ok_or("no GS2 header")?;
    let gs2_header = format!("{flag},{authzid},");
    let mut attrs = bare.split(',');
    let user = attrs
        .next()
        .and_then(|a| a.strip_prefix("n="))
        .ok_or("no user name")
        .and_then(unescape_name)?;
    if !authzid.is_empty()
        && authzid.strip_prefix("a=").map(unescape_name) != Some(Ok(user.clone()))
    {
        return Err("the authorization id differs from the user name");
    }
    let nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .filter(|n| !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b)))
        .ok_or("no valid client nonce")?;
    let mut token_auth = false;
    for ext in attrs {
        let (key, value) = ext.split_once('=').ok_or("a malformed extension")?;
        if key == "tokenauth" && value.eq_ignore_ascii_case("true") {
            token_auth = true;
        }
    }
    crate::check_user_name(&user).map_err(|_| "a user name out of bounds")?;
    Ok(ClientFirst {
        gs2_header,
        bare: bare.to_string(),
        user,
        nonce: nonce.to_string(),
        token_auth,
    })
}

/// A `saslname`: `=2C` is a comma and `=3D` an equals sign; any other `=` is malformed.
fn unescape_name(s: &str) -> Result<String, &'static str> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 3)
            .ok_or("a bad escape in the user name")?;
        out.push(match code {
            "2C" => ',',
            "3D" => '=',
            _ => return Err("a bad escape in the user name"),
        });
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    if out.is_empty() {
        return Err("an empty user name");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    struct Users(BTreeMap<(String, ScramMechanism), ScramCredential>);

    impl Credentials for Users {
        fn scram(&self, user: &str, m: ScramMechanism) -> Option<ScramCredential> {
            self.0.get(&(user.to_string(), m)).cloned()
        }
    }

    fn users(m: ScramMechanism, user: &str, password: &str, salt: &[u8]) -> Users {
        let c = credential(m, password.as_bytes(), salt.to_vec(), 4096);
        Users(BTreeMap::from([((user.to_string(), m), c)]))
    }

    /// RFC 7677's example exchange, byte for byte.
    #[test]
    fn rfc7677_example() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("salt");
        let users = users(ScramMechanism::Sha256, "user", "pencil", &salt);
        let mut s = ScramServer::new(
            ScramMechanism::Sha256,
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into(),
        );
        let first = s
            .step(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO", &users)
            .expect("first");
        assert_eq!(
            first,
            Step::Continue(
                b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
                    .to_vec()
            )
        );
        let last = s
            .step(
                b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                &users,
            )
            .expect("final");
        assert_eq!(
            last,
            Step::Done {
                user: "user".into(),
                response: b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec()
            }
        );
        assert!(
            s.step(b"again", &users).is_err(),
            "an ended exchange takes nothing more"
        );
    }

    fn login(m: ScramMechanism, stored_password: &str, given: &str) -> Result<Step, AuthError> {
        let users = users(m, "al,ice", stored_password, b"salty");
        let mut s = ScramServer::new(m, "servernonce".into());
        let mut client = ScramClient::new(m, "al,ice", given, "clientnonce");
        let Step::Continue(first) = s.step(&client.first(), &users)? else {
            panic!("SCRAM has two rounds");
        };
        let last = client.last(&first).expect("server-first parses");
        let done = s.step(&last, &users)?;
        if let Step::Done { response, .. } = &done {
            assert!(
                client.verify(response),
                "the server proves it knows the credential"
            );
        }
        Ok(done)
    }

    #[test]
    fn both_mechanisms_accept_the_password_and_refuse_others() {
        for m in ScramMechanism::ALL {
            let done = login(m, "secret", "secret").expect("right password");
            assert!(matches!(done, Step::Done { ref user, .. } if user == "al,ice"));
            assert_eq!(
                login(m, "secret", "guess"),
                Err(AuthError::InvalidCredentials(Mechanism::Scram(m)))
            );
        }
    }

    #[test]
    fn unknown_users_read_as_bad_credentials() {
        let users = Users(BTreeMap::new());
        let mut s = ScramServer::new(ScramMechanism::Sha512, "x".into());
        let e = s.step(b"n,,n=nobody,r=abc", &users).expect_err("unknown");
        assert_eq!(
            e,
            AuthError::InvalidCredentials(Mechanism::Scram(ScramMechanism::Sha512))
        );
        assert!(e.to_string().contains("invalid credentials"));
    }

    #[test]
    fn malformed_and_unserved_messages_are_refused() {
        let users = users(ScramMechanism::Sha256, "u", "p", b"s");
        for bad in [
            &b""[..],
            b"n",
            b"x,,n=u,r=a",
            b"n,,r=a",
            b"n,,n=u",
            b"n,,n=u,r=",
            b"n,,n=u=XY,r=a",
            b"n,,n=,r=a",
            b"n,a=v,n=u,r=a",
            b"n,,n=u,r=a,bad",
            b"\xff\xfe",
        ] {
            let mut s = ScramServer::new(ScramMechanism::Sha256, "x".into());
            assert!(
                matches!(s.step(bad, &users), Err(AuthError::Malformed { .. })),
                "{bad:?}"
            );
        }
        let mut s = ScramServer::new(ScramMechanism::Sha256, "x".into());
        assert!(matches!(
            s.step(b"p=tls-unique,,n=u,r=a", &users),
            Err(AuthError::Malformed { .. })
        ));
        let mut s = ScramServer::new(ScramMechanism::Sha256, "x".into());
        assert!(matches!(
            s.step(b"n,,n=u,r=a,tokenauth=true", &users),
            Err(AuthError::Unsupported(_))
        ));
    }

    #[test]
    fn a_final_message_must_keep_the_nonce_and_binding() {
        let users = users(ScramMechanism::Sha256, "u", "p", b"s");
        for bad in [
            "c=biws,r=wrong,p=AAAA",
            "c=eSws,r=anonceserver,p=AAAA",
            "c=biws,r=anonceserver",
            "c=biws,r=anonceserver,p=!!",
        ] {
            let mut s = ScramServer::new(ScramMechanism::Sha256, "server".into());
            s.step(b"n,,n=u,r=anonce", &users).expect("first");
            assert!(s.step(bad.as_bytes(), &users).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_verify_in_plain() {
        let c = credential(ScramMechanism::Sha512, b"pw", b"salt".to_vec(), 4096);
        assert!(verify_password(ScramMechanism::Sha512, &c, b"pw"));
        assert!(!verify_password(ScramMechanism::Sha512, &c, b"pW"));
    }
}
