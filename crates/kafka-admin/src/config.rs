//! The client's settings and their limits.

use std::time::Duration;

/// Default for [`ClientConfig::response_bytes_max`]: 16 MiB, far above what the group APIs
/// answer for thousands of partitions, far below what would hurt a small operator pod.
pub const RESPONSE_BYTES_MAX_DEFAULT: usize = 16 * 1024 * 1024;
/// Default for [`ClientConfig::request_timeout`].
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// Default for [`ClientConfig::retries_max`].
pub const RETRIES_MAX_DEFAULT: u32 = 5;
/// Default for [`ClientConfig::retry_backoff`].
pub const RETRY_BACKOFF_DEFAULT: Duration = Duration::from_millis(100);
/// The backoff doubles from `retry_backoff` at each retry, up to this.
pub const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(1);
pub use weir_model::limits::KAFKA_ADMIN_RESPONSE_BYTES_MAX_MIN as RESPONSE_BYTES_MAX_MIN;

const _: () = assert!(RESPONSE_BYTES_MAX_MIN <= RESPONSE_BYTES_MAX_DEFAULT);
// The length prefix is an i32: a larger limit would never refuse anything.
const _: () = assert!(RESPONSE_BYTES_MAX_DEFAULT <= i32::MAX as usize);
const _: () = assert!(RETRY_BACKOFF_DEFAULT.as_millis() <= RETRY_BACKOFF_MAX.as_millis());

/// Which end of a partition's log ListOffsets reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Isolation {
    /// The high watermark: every replicated record, open transactions included. What
    /// `kafka-consumer-groups.sh` and `weir group describe` show.
    ReadUncommitted,
    /// The last stable offset: the high watermark, or the first record of the oldest open
    /// transaction. Lag against it is what a `read_committed` consumer can still read. A broker
    /// too old for ListOffsets v2 answers with the high watermark.
    #[default]
    ReadCommitted,
}

/// How to reach the cluster, and the limits the client keeps to.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// `host:port` of brokers to ask for metadata first. Brokers the metadata names are used
    /// after these, so one reachable address is enough.
    pub bootstrap: Vec<String>,
    /// Sent in every request header; brokers show it in logs and DescribeGroups.
    pub client_id: String,
    /// The longest wait for a connection, or for one response once its request is written.
    pub request_timeout: Duration,
    /// The largest response accepted, checked against the length prefix before anything is
    /// allocated. Clamped to at least [`RESPONSE_BYTES_MAX_MIN`].
    pub response_bytes_max: usize,
    /// How many times a call is retried after a retriable error (see
    /// [`crate::Error::is_retriable`]), refreshing metadata and the coordinator each time.
    pub retries_max: u32,
    /// The first retry's backoff; it doubles up to [`RETRY_BACKOFF_MAX`].
    pub retry_backoff: Duration,
    /// Which end offset lag is measured against.
    pub isolation: Isolation,
}

impl ClientConfig {
    /// A config with the defaults above and the client id `weir-kafka-admin`.
    pub fn new(bootstrap: impl IntoIterator<Item = impl Into<String>>) -> ClientConfig {
        ClientConfig {
            bootstrap: bootstrap.into_iter().map(Into::into).collect(),
            client_id: "weir-kafka-admin".to_string(),
            request_timeout: REQUEST_TIMEOUT_DEFAULT,
            response_bytes_max: RESPONSE_BYTES_MAX_DEFAULT,
            retries_max: RETRIES_MAX_DEFAULT,
            retry_backoff: RETRY_BACKOFF_DEFAULT,
            isolation: Isolation::default(),
        }
    }

    /// The backoff before retry number `retry` (0 for the first).
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(16)).unwrap_or(u32::MAX);
        self.retry_backoff
            .saturating_mul(factor)
            .min(RETRY_BACKOFF_MAX.max(self.retry_backoff))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let c = ClientConfig::new(["b:9092"]);
        let got: Vec<u128> = (0..6).map(|r| c.backoff(r).as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(c.backoff(u32::MAX), RETRY_BACKOFF_MAX);
    }
}
