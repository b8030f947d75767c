//! The one client of the coordinator quorum, shared by the broker and the operator.
//!
//! Every call goes to one coordinator; any of them accepts any request (followers forward to
//! the Raft leader). When a coordinator is unreachable or answers UNAVAILABLE (no leader yet,
//! shutting down), the call moves on to the next one, round robin: until a deadline
//! ([`ControlClient::call`], the broker's registration, heartbeats and admin forwarding), or
//! once around the quorum ([`ControlClient::call_each_once`], the operator, whose reconcile
//! is retried by its controller anyway). The coordinator that answered last is asked first.
//! Item errors (a topic that exists, a stale epoch) are in the responses and are not retried
//! here.
//!
//! [`view`] is the cluster as both clients read it.

pub mod view;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use weir_proto::v1::admin_client::AdminClient;
use weir_proto::v1::broker_control_client::BrokerControlClient;

/// How long one attempt against one coordinator may take (Raft commits are milliseconds; a
/// paused or cut-off coordinator must not hold a request for long).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no coordinator answered within {waited:?} (tried {addrs}): {last}")]
    Unavailable {
        waited: Duration,
        addrs: String,
        last: String,
    },
    #[error("coordinator refused the request: {0}")]
    Refused(String),
    #[error("invalid coordinator address {addr:?}: {reason}")]
    BadAddress { addr: String, reason: String },
}

/// Connections to every coordinator, used round robin with failover.
#[derive(Debug)]
pub struct ControlClient {
    addrs: Vec<String>,
    channels: Vec<Channel>,
    next: AtomicUsize,
}

impl ControlClient {
    /// Prepares lazy connections to `addrs` (`host:port` each). Nothing is dialled yet.
    pub fn new(addrs: &[String]) -> Result<ControlClient, ControlError> {
        if addrs.is_empty() {
            return Err(ControlError::BadAddress {
                addr: String::new(),
                reason: "at least one coordinator address is needed".into(),
            });
        }
        let channels = addrs
            .iter()
            .map(|a| channel(a))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ControlClient {
            addrs: addrs.to_vec(),
            channels,
            next: AtomicUsize::new(0),
        })
    }

    pub fn addrs(&self) -> &[String] {
        &self.addrs
    }

    /// Runs `call` against coordinators in turn until one answers or `deadline` passes.
    pub async fn call<T, F, Fut>(&self, deadline: Duration, mut call: F) -> Result<T, ControlError>
    where
        F: FnMut(Channel) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let start = Instant::now();
        let mut last;
        let mut attempt = 0u32;
        loop {
            let i = self.next.load(Ordering::Relaxed) % self.channels.len();
            let result =
                tokio::time::timeout(ATTEMPT_TIMEOUT, call(self.channels[i].clone())).await;
            match result {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(status)) if retriable(&status) => {
                    last = format!("{}: {}", self.addrs[i], status.message());
                }
                Ok(Err(status)) => {
                    return Err(ControlError::Refused(format!(
                        "{}: {:?}: {}",
                        self.addrs[i],
                        status.code(),
                        status.message()
                    )));
                }
                Err(_) => last = format!("{}: timed out", self.addrs[i]),
            }
            // Move on to the next coordinator; after a full round, back off a little.
            self.next.fetch_add(1, Ordering::Relaxed);
            attempt += 1;
            if start.elapsed() >= deadline {
                return Err(ControlError::Unavailable {
                    waited: start.elapsed(),
                    addrs: self.addrs.join(","),
                    last,
                });
            }
            if (attempt as usize).is_multiple_of(self.channels.len()) {
                let pause = Duration::from_millis(50 * u64::from(attempt.min(10)));
                tokio::time::sleep(pause.min(deadline.saturating_sub(start.elapsed()))).await;
            }
        }
    }

    /// Runs `call` against each coordinator once, starting with the one that answered last,
    /// until one answers; each attempt may take `attempt`. Any failed call moves on: only an
    /// answer (even an error code inside it) is final.
    pub async fn call_each_once<T, F, Fut>(
        &self,
        attempt: Duration,
        mut call: F,
    ) -> Result<T, ControlError>
    where
        F: FnMut(Channel) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let start = Instant::now();
        let mut last = String::new();
        for _ in 0..self.channels.len() {
            let i = self.next.load(Ordering::Relaxed) % self.channels.len();
            match tokio::time::timeout(attempt, call(self.channels[i].clone())).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(status)) => last = format!("{}: {}", self.addrs[i], status.message()),
                Err(_) => last = format!("{}: timed out", self.addrs[i]),
            }
            tracing::debug!(addr = %self.addrs[i], error = %last, "coordinator call failed");
            self.next.fetch_add(1, Ordering::Relaxed);
        }
        Err(ControlError::Unavailable {
            waited: start.elapsed(),
            addrs: self.addrs.join(","),
            last,
        })
    }

    pub fn broker(channel: Channel) -> BrokerControlClient<Channel> {
        BrokerControlClient::new(channel)
            .max_decoding_message_size(weir_model::limits::METADATA_MESSAGE_BYTES_MAX)
    }

    pub fn admin(channel: Channel) -> AdminClient<Channel> {
        AdminClient::new(channel)
            .max_decoding_message_size(weir_model::limits::METADATA_MESSAGE_BYTES_MAX)
    }
}

fn channel(addr: &str) -> Result<Channel, ControlError> {
    let uri = if addr.starts_with("http://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    let endpoint = Endpoint::from_shared(uri).map_err(|e| ControlError::BadAddress {
        addr: addr.to_string(),
        reason: e.to_string(),
    })?;
    Ok(endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        // The metadata watch is a long-lived stream: a paused or cut-off coordinator must be
        // noticed within seconds, so the broker moves to another one and keeps following.
        .http2_keep_alive_interval(Duration::from_secs(1))
        .keep_alive_timeout(Duration::from_secs(2))
        .keep_alive_while_idle(true)
        .connect_lazy())
}

/// Whether another coordinator (or a later attempt) may succeed.
fn retriable(status: &tonic::Status) -> bool {
    use tonic::Code;
    matches!(
        status.code(),
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Unknown
            | Code::Cancelled
            | Code::Aborted
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    fn client() -> ControlClient {
        let addrs = [
            "127.0.0.1:1".to_string(),
            "127.0.0.1:2".to_string(),
            "127.0.0.1:3".to_string(),
        ];
        ControlClient::new(&addrs).expect("valid addresses")
    }

    /// Proves: `call_each_once` asks every coordinator once and then gives up, naming the last
    /// failure; the one that answered is asked first next time.
    #[tokio::test]
    async fn each_coordinator_is_asked_once_and_the_answering_one_first_next_time() {
        let c = client();
        let calls = AtomicU32::new(0);
        let all_down = c
            .call_each_once(Duration::from_secs(1), |_| {
                calls.fetch_add(1, Ordering::Relaxed);
                async { Err::<(), _>(tonic::Status::unavailable("down")) }
            })
            .await;
        assert_eq!(calls.load(Ordering::Relaxed), 3);
        assert!(
            matches!(&all_down, Err(ControlError::Unavailable { last, .. }) if last.ends_with("down")),
            "{all_down:?}"
        );
        // The second one asked answers; the next call starts there.
        let attempt = AtomicU32::new(0);
        let answered = c
            .call_each_once(Duration::from_secs(1), |_| {
                let n = attempt.fetch_add(1, Ordering::Relaxed);
                async move {
                    if n == 0 {
                        Err(tonic::Status::unavailable("down"))
                    } else {
                        Ok(n)
                    }
                }
            })
            .await;
        assert_eq!(answered.expect("the second answers"), 1);
        let first = AtomicU32::new(0);
        let again = c
            .call_each_once(Duration::from_secs(1), |_| {
                first.fetch_add(1, Ordering::Relaxed);
                async { Ok::<_, tonic::Status>(()) }
            })
            .await;
        assert!(again.is_ok());
        assert_eq!(
            first.load(Ordering::Relaxed),
            1,
            "answered at the first try"
        );
    }
}
