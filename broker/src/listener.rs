//! Kafka listeners, as Kafka names them: each has a name, a security protocol, the address it
//! binds and the address clients are told (`advertised.listeners`). A client that connects
//! through listener `L` is given every broker's `L` address in Metadata, so one broker can
//! serve, say, plaintext inside a Kubernetes cluster and TLS outside it.
//!
//! Flags: `--listener NAME=PROTOCOL://HOST:PORT` (or `PROTOCOL://HOST:PORT`, named after its
//! protocol, as Kafka's default `listener.security.protocol.map` does) and
//! `--advertised-listener NAME=HOST:PORT`.

use crate::tls::TlsFiles;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use weir_model::limits::{LISTENER_NAME_BYTES_MAX, LISTENERS_MAX};

/// Kafka's `security.protocol` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    const ALL: [SecurityProtocol; 4] = [
        SecurityProtocol::Plaintext,
        SecurityProtocol::Ssl,
        SecurityProtocol::SaslPlaintext,
        SecurityProtocol::SaslSsl,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// Whether clients authenticate with SASL.
    pub fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }

    /// Whether connections are TLS.
    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    fn parse(s: &str) -> Result<SecurityProtocol, String> {
        Self::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("unknown security protocol {s:?}; one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL")
            })
    }
}

/// One Kafka listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerConfig {
    pub name: String,
    pub protocol: SecurityProtocol,
    /// Where it binds (port 0: any free port).
    pub addr: SocketAddr,
    /// The `host:port` clients are told; the bound address when unset.
    pub advertised: Option<String>,
}

impl ListenerConfig {
    /// The one listener of a broker configured without `--listener`: `PLAINTEXT` on `addr`.
    pub fn plaintext(addr: SocketAddr) -> ListenerConfig {
        ListenerConfig {
            name: "PLAINTEXT".to_string(),
            protocol: SecurityProtocol::Plaintext,
            addr,
            advertised: None,
        }
    }

    /// Parses `NAME=PROTOCOL://HOST:PORT` or `PROTOCOL://HOST:PORT`. HOST is an IP address, or
    /// empty for every interface.
    pub fn parse(s: &str) -> Result<ListenerConfig, String> {
        let usage = "expected NAME=PROTOCOL://HOST:PORT, e.g. CLIENT=SSL://0.0.0.0:9094";
        let (name, rest) = match s.split_once('=') {
            Some((name, rest)) => (Some(name), rest),
            None => (None, s),
        };
        let (protocol, hostport) = rest
            .split_once("://")
            .ok_or_else(|| format!("listener {s:?}: {usage}"))?;
        let protocol =
            SecurityProtocol::parse(protocol).map_err(|e| format!("listener {s:?}: {e}"))?;
        let name = name.unwrap_or(protocol.name()).to_string();
        check_name(&name).map_err(|e| format!("listener {s:?}: {e}"))?;
        let addr = bind_addr(hostport).map_err(|e| format!("listener {s:?}: {e}"))?;
        Ok(ListenerConfig {
            name,
            protocol,
            addr,
            advertised: None,
        })
    }
}

/// Parses `NAME=HOST:PORT` (an `--advertised-listener`).
pub fn parse_advertised(s: &str) -> Result<(String, String), String> {
    let (name, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("advertised listener {s:?}: expected NAME=HOST:PORT"))?;
    check_name(name).map_err(|e| format!("advertised listener {s:?}: {e}"))?;
    let port = addr.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>()));
    match port {
        Some((host, Ok(_))) if !host.is_empty() => Ok((name.to_string(), addr.to_string())),
        _ => Err(format!(
            "advertised listener {s:?}: expected NAME=HOST:PORT with a host and a port from 0 to 65535"
        )),
    }
}

/// Checks a broker's listeners as a whole and attaches the advertised addresses: at least one
/// and at most [`LISTENERS_MAX`], names unique, every advertised name a listener's, and TLS
/// files when a listener needs them.
pub fn assemble(
    mut listeners: Vec<ListenerConfig>,
    advertised: Vec<(String, String)>,
    tls: Option<&TlsFiles>,
) -> Result<Vec<ListenerConfig>, String> {
    if listeners.is_empty() || listeners.len() > LISTENERS_MAX {
        return Err(format!(
            "{} listeners; from 1 to {LISTENERS_MAX}",
            listeners.len()
        ));
    }
    for (i, l) in listeners.iter().enumerate() {
        if listeners[..i].iter().any(|o| o.name == l.name) {
            return Err(format!("listener {} is named twice", l.name));
        }
        if l.protocol.tls() && tls.is_none() {
            return Err(format!(
                "listener {} is {}: it needs --tls-cert and --tls-key",
                l.name,
                l.protocol.name()
            ));
        }
    }
    for (name, addr) in advertised {
        let Some(l) = listeners.iter_mut().find(|l| l.name == name) else {
            let names: Vec<&str> = listeners.iter().map(|l| l.name.as_str()).collect();
            return Err(format!(
                "advertised listener {name} is not a listener; the listeners are {}",
                names.join(", ")
            ));
        };
        l.advertised = Some(addr);
    }
    Ok(listeners)
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= LISTENER_NAME_BYTES_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "listener name {name:?}: 1 to {LISTENER_NAME_BYTES_MAX} letters, digits, '_' or '-'"
        ))
    }
}

/// `HOST:PORT` to bind: HOST an IP address (`[..]` around IPv6) or empty for every interface.
fn bind_addr(hostport: &str) -> Result<SocketAddr, String> {
    let (host, port) = hostport
        .rsplit_once(':')
        .ok_or_else(|| "no port".to_string())?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("port {port:?}: a number from 0 to 65535"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = if host.is_empty() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        host.parse().map_err(|_| {
            format!("bind host {host:?}: an IP address, or empty for every interface (advertise names with --advertised-listener)")
        })?
    };
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> TlsFiles {
        TlsFiles {
            cert: "c.pem".into(),
            key: "k.pem".into(),
            client_ca: None,
        }
    }

    #[test]
    fn listeners_parse_as_kafka_writes_them() {
        let l = ListenerConfig::parse("CLIENT=SSL://127.0.0.1:9094").unwrap();
        assert_eq!(
            (l.name.as_str(), l.protocol, l.addr),
            (
                "CLIENT",
                SecurityProtocol::Ssl,
                "127.0.0.1:9094".parse().unwrap()
            )
        );
        let l = ListenerConfig::parse("PLAINTEXT://:9092").unwrap();
        assert_eq!(
            (l.name.as_str(), l.addr),
            ("PLAINTEXT", "0.0.0.0:9092".parse().unwrap())
        );
        let l = ListenerConfig::parse("V6=plaintext://[::1]:0").unwrap();
        assert_eq!(l.addr, "[::1]:0".parse().unwrap());
    }

    #[test]
    fn bad_listeners_are_refused_with_what_is_allowed() {
        for (bad, says) in [
            ("CLIENT=9092", "NAME=PROTOCOL://HOST:PORT"),
            ("CLIENT=TLS://:9092", "one of PLAINTEXT, SSL"),
            ("CLIENT=SSL://:99999", "from 0 to 65535"),
            ("CLIENT=SSL://broker-0:9094", "an IP address"),
            ("BAD NAME=SSL://:9094", "letters, digits"),
            ("=SSL://:9094", "letters, digits"),
        ] {
            let e = ListenerConfig::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        for (bad, says) in [
            ("CLIENT", "NAME=HOST:PORT"),
            ("CLIENT=:9094", "a host"),
            ("CLIENT=h:x", "a port"),
        ] {
            let e = parse_advertised(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn a_set_of_listeners_is_checked_as_a_whole() {
        let plain = ListenerConfig::parse("PLAINTEXT://:9092").unwrap();
        let ssl = ListenerConfig::parse("CLIENT=SSL://:9094").unwrap();
        let sasl = ListenerConfig::parse("SASL_SSL://:9095").unwrap();
        let both = vec![plain.clone(), ssl.clone()];
        let ok = assemble(
            both.clone(),
            vec![("CLIENT".into(), "kafka.example:9094".into())],
            Some(&files()),
        )
        .unwrap();
        assert_eq!(ok[1].advertised.as_deref(), Some("kafka.example:9094"));
        let e = assemble(both.clone(), vec![], None).unwrap_err();
        assert!(e.contains("needs --tls-cert and --tls-key"), "{e}");
        let e = assemble(vec![plain.clone(), plain.clone()], vec![], None).unwrap_err();
        assert!(e.contains("named twice"), "{e}");
        let e = assemble(both, vec![("OTHER".into(), "h:1".into())], Some(&files())).unwrap_err();
        assert!(e.contains("the listeners are PLAINTEXT, CLIENT"), "{e}");
        let e = assemble(vec![sasl.clone()], vec![], None).unwrap_err();
        assert!(e.contains("SASL_SSL: it needs --tls-cert"), "{e}");
        assert!(assemble(vec![sasl], vec![], Some(&files())).is_ok());
        let e = assemble(vec![], vec![], None).unwrap_err();
        assert!(e.contains("from 1 to"), "{e}");
    }
}
