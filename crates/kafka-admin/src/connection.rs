//! One TCP connection to one broker: framing, correlation ids and version negotiation.
//!
//! A connection carries one request at a time ([`crate::Client`] holds it under a lock for the
//! whole exchange), so a response always answers the request just written; the correlation id
//! is still checked, to catch a broker (or a proxy) that mixes answers up.
//!
//! Frame: a 4-byte big-endian length, then the response header and body. The length is checked
//! against `response_bytes_max` before a buffer is allocated for it.

use crate::config::ClientConfig;
use crate::error::Error;
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, DescribeGroupsRequest, FindCoordinatorRequest,
    ListGroupsRequest, ListOffsetsRequest, MetadataRequest, OffsetFetchRequest, RequestHeader,
    ResponseHeader,
};
use kafka_protocol::protocol::{
    Decodable, Encodable, HeaderVersion, Message, Request, StrBytes, VersionRange,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The versions this client speaks, per API. Lower bounds: Metadata v1 is the first where an
/// empty topic list means "no topics"; OffsetFetch v2 the first where a null topic list means
/// "every topic"; ListOffsets v1 the first with a single offset per partition.
const API_VERSIONS: (i16, i16) = (0, 3);
const METADATA: (i16, i16) = (1, 13);
const FIND_COORDINATOR: (i16, i16) = (0, 6);
const DESCRIBE_GROUPS: (i16, i16) = (0, 6);
const OFFSET_FETCH: (i16, i16) = (2, 9);
const LIST_OFFSETS: (i16, i16) = (1, 10);
const LIST_GROUPS: (i16, i16) = (0, 5);

const fn within(ours: (i16, i16), crate_range: VersionRange) -> bool {
    crate_range.min <= ours.0 && ours.0 <= ours.1 && ours.1 <= crate_range.max
}
// kafka-protocol must be able to encode and decode every version we may pick.
const _: () = assert!(within(API_VERSIONS, ApiVersionsRequest::VERSIONS));
const _: () = assert!(within(METADATA, MetadataRequest::VERSIONS));
const _: () = assert!(within(FIND_COORDINATOR, FindCoordinatorRequest::VERSIONS));
const _: () = assert!(within(DESCRIBE_GROUPS, DescribeGroupsRequest::VERSIONS));
const _: () = assert!(within(OFFSET_FETCH, OffsetFetchRequest::VERSIONS));
const _: () = assert!(within(LIST_OFFSETS, ListOffsetsRequest::VERSIONS));
const _: () = assert!(within(LIST_GROUPS, ListGroupsRequest::VERSIONS));

/// The client's version range for `api`, `None` for an API it never sends.
pub(crate) fn client_range(api: ApiKey) -> Option<(i16, i16)> {
    match api {
        ApiKey::ApiVersions => Some(API_VERSIONS),
        ApiKey::Metadata => Some(METADATA),
        ApiKey::FindCoordinator => Some(FIND_COORDINATOR),
        ApiKey::DescribeGroups => Some(DESCRIBE_GROUPS),
        ApiKey::OffsetFetch => Some(OFFSET_FETCH),
        ApiKey::ListOffsets => Some(LIST_OFFSETS),
        ApiKey::ListGroups => Some(LIST_GROUPS),
        _ => None,
    }
}

/// The highest version both sides speak.
pub(crate) fn negotiate(client: (i16, i16), broker: (i16, i16)) -> Option<i16> {
    let lo = client.0.max(broker.0);
    let hi = client.1.min(broker.1);
    (lo <= hi).then_some(hi)
}

/// The API key of a request type. kafka-protocol generates `KEY` from the same table as
/// `ApiKey`, so a miss is a bug in that crate.
pub(crate) fn api_key<R: Request>() -> ApiKey {
    ApiKey::try_from(R::KEY).expect("kafka-protocol request types carry known API keys")
}

const UNSUPPORTED_VERSION: i16 = 35;

#[derive(Debug)]
pub(crate) struct Connection {
    broker: String,
    stream: TcpStream,
    /// The broker's version range for each API it listed in ApiVersions.
    broker_ranges: Vec<(i16, i16, i16)>,
    next_correlation_id: i32,
}

impl Connection {
    /// Connects and negotiates versions with ApiVersions.
    pub(crate) async fn open(broker: &str, config: &ClientConfig) -> Result<Connection, Error> {
        let stream = tokio::time::timeout(config.request_timeout, TcpStream::connect(broker))
            .await
            .map_err(|_elapsed| Error::ConnectTimeout {
                broker: broker.to_string(),
                timeout: config.request_timeout,
            })?
            .map_err(|source| Error::Connect {
                broker: broker.to_string(),
                source,
            })?;
        // Requests are small and each waits for its answer: Nagle would only add latency.
        stream.set_nodelay(true).map_err(|source| Error::Connect {
            broker: broker.to_string(),
            source,
        })?;
        let mut conn = Connection {
            broker: broker.to_string(),
            stream,
            broker_ranges: Vec::new(),
            next_correlation_id: 0,
        };
        conn.negotiate(config).await?;
        Ok(conn)
    }

    async fn negotiate(&mut self, config: &ClientConfig) -> Result<(), Error> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("weir-kafka-admin"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let api = ApiKey::ApiVersions;
        let mut version = API_VERSIONS.1;
        // At most two rounds: ours, then the one the broker's answer says it speaks.
        for _ in 0..2 {
            let mut body = self.exchange(api, version, &request, config).await?;
            // KIP-511: a broker that does not know our version answers in v0 format with
            // UNSUPPORTED_VERSION and its own ApiVersions range, so the client can pick again.
            // The error code is the body's first field in every version.
            let code = if body.len() >= 2 {
                i16::from_be_bytes([body[0], body[1]])
            } else {
                0
            };
            let read_as = if code == UNSUPPORTED_VERSION {
                0
            } else {
                version
            };
            let response =
                ApiVersionsResponse::decode(&mut body, read_as).map_err(|e| Error::Decode {
                    broker: self.broker.clone(),
                    api,
                    version: read_as,
                    source: e.into(),
                })?;
            if code == UNSUPPORTED_VERSION {
                let theirs = response
                    .api_keys
                    .iter()
                    .find(|k| k.api_key == api as i16)
                    .map(|k| (k.min_version, k.max_version));
                match theirs.and_then(|t| negotiate(API_VERSIONS, t)) {
                    Some(v) if v < version => {
                        version = v;
                        continue;
                    }
                    _ => {
                        return Err(Error::UnsupportedVersion {
                            broker: self.broker.clone(),
                            api,
                            client: API_VERSIONS,
                            broker_range: theirs,
                        });
                    }
                }
            }
            if response.error_code != 0 {
                return Err(Error::Kafka {
                    broker: self.broker.clone(),
                    api,
                    subject: "version negotiation".into(),
                    code: response.error_code,
                    message: None,
                });
            }
            self.broker_ranges = response
                .api_keys
                .iter()
                .map(|k| (k.api_key, k.min_version, k.max_version))
                .collect();
            return Ok(());
        }
        Err(Error::Protocol {
            broker: self.broker.clone(),
            api,
            reason: "UNSUPPORTED_VERSION for a version the broker itself listed".into(),
        })
    }

    /// The version to send `api` at: the highest both sides speak.
    pub(crate) fn version(&self, api: ApiKey) -> Result<i16, Error> {
        let client = client_range(api).expect("the client only sends APIs it lists");
        let broker = self
            .broker_ranges
            .iter()
            .find(|(k, _, _)| *k == api as i16)
            .map(|&(_, lo, hi)| (lo, hi));
        broker
            .and_then(|b| negotiate(client, b))
            .ok_or_else(|| Error::UnsupportedVersion {
                broker: self.broker.clone(),
                api,
                client,
                broker_range: broker,
            })
    }

    /// Sends `request` at `version` and decodes the response.
    pub(crate) async fn send<R: Request>(
        &mut self,
        version: i16,
        request: &R,
        config: &ClientConfig,
    ) -> Result<R::Response, Error> {
        let api = api_key::<R>();
        let mut body = self.exchange(api, version, request, config).await?;
        // Trailing bytes are not refused: tagged fields of a newer broker already decode into
        // `unknown_tagged_fields`, and anything else would only mean a field we do not read.
        R::Response::decode(&mut body, version).map_err(|e| Error::Decode {
            broker: self.broker.clone(),
            api,
            version,
            source: e.into(),
        })
    }

    /// Writes one request and reads its response; returns the body after the header.
    async fn exchange<R: Request>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &R,
        config: &ClientConfig,
    ) -> Result<Bytes, Error> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = correlation_id.wrapping_add(1);
        let frame = encode_frame(correlation_id, &config.client_id, version, request).map_err(
            |source| Error::Encode {
                broker: self.broker.clone(),
                api,
                version,
                source,
            },
        )?;
        let io = async {
            self.stream
                .write_all(&frame)
                .await
                .map_err(FrameError::Io)?;
            read_frame(&mut self.stream, config.response_bytes_max).await
        };
        let mut body = tokio::time::timeout(config.request_timeout, io)
            .await
            .map_err(|_elapsed| Error::Timeout {
                broker: self.broker.clone(),
                api,
                timeout: config.request_timeout,
            })?
            .map_err(|e| match e {
                FrameError::Io(source) => Error::Io {
                    broker: self.broker.clone(),
                    api,
                    source,
                },
                FrameError::TooLarge(len) => Error::ResponseTooLarge {
                    broker: self.broker.clone(),
                    api,
                    len: i64::from(len),
                    max: config.response_bytes_max,
                },
                FrameError::Negative(len) => Error::Protocol {
                    broker: self.broker.clone(),
                    api,
                    reason: format!("negative frame length {len}"),
                },
            })?;
        let header_version = R::Response::header_version(version);
        let header =
            ResponseHeader::decode(&mut body, header_version).map_err(|e| Error::Decode {
                broker: self.broker.clone(),
                api,
                version,
                source: e.into(),
            })?;
        if header.correlation_id != correlation_id {
            return Err(Error::CorrelationMismatch {
                broker: self.broker.clone(),
                api,
                expected: correlation_id,
                got: header.correlation_id,
            });
        }
        Ok(body)
    }
}

/// A request with its header and length prefix.
fn encode_frame<R: Request>(
    correlation_id: i32,
    client_id: &str,
    version: i16,
    request: &R,
) -> Result<BytesMut, Box<dyn std::error::Error + Send + Sync>> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_string(client_id.to_string())));
    let mut frame = BytesMut::with_capacity(64);
    frame.extend_from_slice(&[0; 4]);
    header.encode(&mut frame, R::header_version(version))?;
    request.encode(&mut frame, version)?;
    let len = i32::try_from(frame.len() - 4)?;
    frame[..4].copy_from_slice(&len.to_be_bytes());
    Ok(frame)
}

#[derive(Debug)]
enum FrameError {
    Io(std::io::Error),
    TooLarge(i32),
    Negative(i32),
}

/// Reads one length-prefixed frame, refusing a length above `max` before allocating.
async fn read_frame<S: AsyncRead + Unpin>(stream: &mut S, max: usize) -> Result<Bytes, FrameError> {
    let mut prefix = [0u8; 4];
    stream
        .read_exact(&mut prefix)
        .await
        .map_err(FrameError::Io)?;
    let len = i32::from_be_bytes(prefix);
    let size = usize::try_from(len).map_err(|_negative| FrameError::Negative(len))?;
    if size > max {
        return Err(FrameError::TooLarge(len));
    }
    let mut buf = BytesMut::zeroed(size);
    stream.read_exact(&mut buf).await.map_err(FrameError::Io)?;
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_picks_the_highest_common_version() {
        assert_eq!(negotiate((1, 13), (0, 12)), Some(12));
        assert_eq!(negotiate((1, 10), (1, 7)), Some(7));
        assert_eq!(negotiate((2, 9), (0, 1)), None);
        assert_eq!(negotiate((0, 3), (3, 4)), Some(3));
    }

    #[tokio::test]
    async fn a_frame_above_the_limit_is_refused_from_its_prefix() {
        // Only the prefix is there: reading the body would fail with EOF, not TooLarge.
        let mut input: &[u8] = &(1i32 << 30).to_be_bytes();
        match read_frame(&mut input, 1024).await {
            Err(FrameError::TooLarge(len)) => assert_eq!(len, 1 << 30),
            other => panic!("expected TooLarge, got {other:?}"),
        }
        let mut input: &[u8] = &(-5i32).to_be_bytes();
        assert!(matches!(
            read_frame(&mut input, 1024).await,
            Err(FrameError::Negative(-5))
        ));
    }

    #[tokio::test]
    async fn a_frame_at_the_limit_is_read() {
        let mut bytes = 3i32.to_be_bytes().to_vec();
        bytes.extend_from_slice(b"abc");
        let mut input: &[u8] = &bytes;
        let frame = read_frame(&mut input, 3).await.expect("a 3-byte frame");
        assert_eq!(&frame[..], b"abc");
    }

    #[test]
    fn frames_carry_their_length_and_header() {
        let req = DescribeGroupsRequest::default();
        let frame = encode_frame(7, "me", 5, &req).expect("encodes");
        let len = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        assert_eq!(len as usize, frame.len() - 4);
        let mut rest = Bytes::copy_from_slice(&frame[4..]);
        let header = RequestHeader::decode(&mut rest, DescribeGroupsRequest::header_version(5))
            .expect("header decodes");
        assert_eq!(header.request_api_key, ApiKey::DescribeGroups as i16);
        assert_eq!(header.correlation_id, 7);
        assert_eq!(header.client_id.as_deref(), Some("me"));
    }
}
