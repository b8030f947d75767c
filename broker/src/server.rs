//! The Kafka listener: accepting connections, framing, and answering requests in order.
//!
//! ```text
//! socket ──read frames──▶ reader task ──bounded queue──▶ handler ──responses in order──▶ socket
//!          (size-checked)               (in-flight cap)   (api::dispatch)
//! ```
//!
//! A connection's requests are answered one at a time, in the order they came, as Kafka
//! requires; the reader runs ahead by at most [`CONNECTION_IN_FLIGHT_MAX`] frames so socket
//! reads overlap with work. A frame larger than `request_bytes_max`, a header that does not
//! parse, an unknown API or an unsupported version closes the connection (what Kafka does);
//! other connections are not affected.
//!
//! Read budget is taken as a frame's bytes arrive, never for the size it announces, and a frame
//! that has begun must be whole within [`FRAME_READ_MS_MAX`]: a client that announces large
//! frames and stalls can neither hold the shared budget nor make the broker allocate for it.

use crate::api;
use crate::frame::{ConnectionError, read_frame_size};
use crate::services::Services;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tracing::{Instrument, debug, info_span};
use weir_model::limits::{
    CONNECTION_IDLE_MS_MAX, CONNECTION_IN_FLIGHT_MAX, FRAME_READ_AHEAD_BYTES, FRAME_READ_MS_MAX,
};

/// Serves one client connection until it closes or misbehaves.
pub async fn serve_connection(svc: Services, stream: TcpStream) {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let span = info_span!("connection", peer = %peer);
    async move {
        if let Err(e) = connection(svc, stream, &peer).await {
            debug!(error = %e, "connection closed");
        }
    }
    .instrument(span)
    .await
}

async fn connection(svc: Services, stream: TcpStream, peer: &str) -> Result<(), ConnectionError> {
    // Kafka's client host as groups report it: "/" and the peer's IP.
    let client_host: Arc<str> = match peer.rsplit_once(':') {
        Some((ip, _)) => format!("/{}", ip.trim_matches(|c| c == '[' || c == ']')).into(),
        None => format!("/{peer}").into(),
    };
    stream.set_nodelay(true)?;
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Queued>(CONNECTION_IN_FLIGHT_MAX);
    let max = svc.state.config.request_bytes_max;
    // Bytes read ahead of the handler are bounded per connection (one maximum-size request)
    // and across connections (`queued_request_bytes_max`), as well as by count: a client that
    // pipelines large requests behind a long poll waits instead of filling memory.
    let budgets = Budgets {
        connection: Arc::new(Semaphore::new(max as usize)),
        global: svc.state.request_memory.clone(),
    };
    // Set when the client has closed (or broken) its side: handlers stop optional work such as
    // auto-creating topics, whose answer nobody may read.
    let (gone_tx, gone) = watch::channel(false);
    let peer_info = api::Peer { client_host, gone };

    let reader = async move {
        let result = read_requests(&mut rd, max, &budgets, &tx).await;
        let _ = gone_tx.send(true);
        result
    };

    let handler = async move {
        let mut out = BytesMut::with_capacity(64 * 1024);
        while let Some(Queued { frame, _permits }) = rx.recv().await {
            out.clear();
            match api::dispatch(&svc, frame, &mut out, &peer_info).await {
                // A client that stops reading is closed after the idle limit rather than
                // pinning this connection and its response buffer for ever. A fetch's share of
                // the response memory is held until its bytes are written.
                Ok(Some(_memory)) => tokio::time::timeout(
                    Duration::from_millis(CONNECTION_IDLE_MS_MAX),
                    wr.write_all(&out),
                )
                .await
                .map_err(|_| ConnectionError::Idle)??,
                // acks=0 produce: Kafka sends no response.
                Ok(None) => {}
                Err(e) => return Err(e),
            }
            // Don't hold a large fetch response's buffer while idle.
            if out.capacity() > 4 * 1024 * 1024 {
                out = BytesMut::with_capacity(64 * 1024);
            }
        }
        Ok::<(), ConnectionError>(())
    };

    // Either side ending ends the connection: a protocol error on the handler side drops the
    // reader, and the client closing its side ends the handler once the queue drains.
    tokio::pin!(reader);
    tokio::pin!(handler);
    tokio::select! {
        r = &mut reader => {
            r?;
            handler.await
        }
        r = &mut handler => r,
    }
}

/// A request read off the socket, holding its share of the read-ahead budgets until answered.
struct Queued {
    frame: Bytes,
    _permits: Held,
}

/// The read-ahead budgets a connection's reader draws from.
struct Budgets {
    connection: Arc<Semaphore>,
    global: Arc<Semaphore>,
}

/// Budget taken for one frame, from both [`Budgets`]; returned when dropped.
#[derive(Default)]
struct Held {
    connection: Option<OwnedSemaphorePermit>,
    global: Option<OwnedSemaphorePermit>,
}

impl Held {
    /// Takes `n` more bytes of both budgets. `None` when a budget is closed (shutting down).
    async fn grow(&mut self, budgets: &Budgets, n: usize) -> Option<()> {
        let n = u32::try_from(n).ok()?;
        let own = budgets
            .connection
            .clone()
            .acquire_many_owned(n)
            .await
            .ok()?;
        let shared = budgets.global.clone().acquire_many_owned(n).await.ok()?;
        for (slot, permit) in [(&mut self.connection, own), (&mut self.global, shared)] {
            match slot {
                Some(p) => p.merge(permit),
                None => *slot = Some(permit),
            }
        }
        Some(())
    }
}

/// Reads frames into the handler's queue until the client closes, breaks a rule, or the
/// handler is gone.
async fn read_requests(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    max: u32,
    budgets: &Budgets,
    tx: &mpsc::Sender<Queued>,
) -> Result<(), ConnectionError> {
    loop {
        let Some(size) = read_frame_size(rd, max).await? else {
            return Ok(());
        };
        // The deadline covers waiting for budget as well as for bytes: readers that each hold
        // part of the shared budget and wait for more are freed, oldest frame first, instead
        // of waiting on each other for ever.
        let read = tokio::time::timeout(
            Duration::from_millis(FRAME_READ_MS_MAX),
            read_frame_body_budgeted(rd, size, budgets),
        )
        .await
        .map_err(|_| ConnectionError::SlowFrame { size })??;
        let Some((frame, permits)) = read else {
            return Ok(());
        };
        if tx
            .send(Queued {
                frame,
                _permits: permits,
            })
            .await
            .is_err()
        {
            return Ok(());
        }
    }
}

/// Reads a frame's body of `size` bytes (already checked against the limit), taking budget
/// for each buffer growth before the bytes that fill it are read: a frame holds budget and
/// memory for at most [`FRAME_READ_AHEAD_BYTES`] or its size so far (the buffer doubles)
/// beyond what has arrived. `None` when a budget is closed.
async fn read_frame_body_budgeted(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    size: usize,
    budgets: &Budgets,
) -> Result<Option<(Bytes, Held)>, ConnectionError> {
    let mut held = Held::default();
    let mut buf = BytesMut::new();
    while buf.len() < size {
        if buf.capacity() == buf.len() {
            let grow = (size - buf.len()).min(FRAME_READ_AHEAD_BYTES.max(buf.len()));
            if held.grow(budgets, grow).await.is_none() {
                return Ok(None);
            }
            // Exact capacity: `reserve` may round a growth up past what the budget covers.
            let mut bigger = BytesMut::with_capacity(buf.len() + grow);
            bigger.extend_from_slice(&buf);
            buf = bigger;
        }
        let want = buf.capacity() - buf.len();
        let n = (&mut *rd).take(want as u64).read_buf(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
    }
    Ok(Some((buf.freeze(), held)))
}
