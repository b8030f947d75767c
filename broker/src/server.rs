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
use crate::error::BrokerError;
use crate::frame::{ConnectionError, read_frame_size};
use crate::listener::{ListenerConfig, SecurityProtocol};
use crate::services::Services;
use crate::tls::TlsReloader;
use bytes::{Bytes, BytesMut};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tracing::{Instrument, debug, info_span, warn};
use weir_model::limits::{
    CONNECTION_IDLE_MS_MAX, CONNECTION_IN_FLIGHT_MAX, FRAME_READ_AHEAD_BYTES, FRAME_READ_MS_MAX,
    SASL_AUTHENTICATE_MS_MAX, TLS_HANDSHAKE_MS_MAX, UNAUTHENTICATED_FRAME_BYTES_MAX,
};

/// Turns off Nagle's algorithm on a connection's socket: responses are written whole.
pub trait Nodelay {
    fn nodelay(&self) -> std::io::Result<()>;
}

impl Nodelay for TcpStream {
    fn nodelay(&self) -> std::io::Result<()> {
        self.set_nodelay(true)
    }
}

impl Nodelay for tokio_rustls::server::TlsStream<TcpStream> {
    fn nodelay(&self) -> std::io::Result<()> {
        self.get_ref().0.set_nodelay(true)
    }
}

/// A bound Kafka listener.
#[derive(Debug)]
pub struct Bound {
    pub name: String,
    pub protocol: SecurityProtocol,
    pub listener: TcpListener,
    pub local_addr: SocketAddr,
    /// The `host:port` its clients are told.
    pub advertised: String,
    /// The TLS configuration, on a TLS listener.
    pub tls: Option<Arc<TlsReloader>>,
}

impl Bound {
    pub async fn bind(
        l: &ListenerConfig,
        tls: Option<Arc<TlsReloader>>,
    ) -> Result<Bound, BrokerError> {
        let bind_err = |source| BrokerError::Bind {
            listener: l.name.clone(),
            addr: l.addr,
            source,
        };
        let listener = TcpListener::bind(l.addr).await.map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;
        Ok(Bound {
            name: l.name.clone(),
            protocol: l.protocol,
            listener,
            local_addr,
            advertised: l
                .advertised
                .clone()
                .unwrap_or_else(|| local_addr.to_string()),
            tls: tls.filter(|_| l.protocol.tls()),
        })
    }
}

/// What a connection was accepted on.
#[derive(Debug)]
pub struct ListenerInfo {
    pub name: Arc<str>,
    pub tls: Option<Arc<TlsReloader>>,
    /// Whether clients must authenticate with SASL first.
    pub sasl: bool,
}

/// A connection accepted on a listener.
#[derive(Debug)]
pub struct Accepted {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub listener: Arc<ListenerInfo>,
}

/// Accepts connections on `bound` and hands them to the serving loop until it is gone.
pub async fn accept(bound: Bound, to: mpsc::Sender<Accepted>) {
    let info = Arc::new(ListenerInfo {
        name: bound.name.as_str().into(),
        tls: bound.tls.clone(),
        sasl: bound.protocol.sasl(),
    });
    loop {
        match bound.listener.accept().await {
            Ok((stream, peer)) => {
                let accepted = Accepted {
                    stream,
                    peer,
                    listener: info.clone(),
                };
                if to.send(accepted).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                // EMFILE and friends: keep serving the connections we have.
                warn!(listener = %bound.name, error = %weir_model::Chain(&e), "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves one client connection until it closes or misbehaves: the TLS handshake first on a
/// TLS listener (within [`TLS_HANDSHAKE_MS_MAX`]; a failed one closes the connection).
pub async fn serve_connection(svc: Services, stream: TcpStream, listener: Arc<ListenerInfo>) {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let span = info_span!("connection", peer = %peer, listener = %listener.name);
    async move {
        let result = match &listener.tls {
            None => connection(svc, stream, &peer, &listener).await,
            Some(tls) => match handshake(&svc, tls, stream).await {
                Ok(tls_stream) => connection(svc, tls_stream, &peer, &listener).await,
                Err(e) => Err(e),
            },
        };
        if let Err(e) = result {
            debug!(error = %e, "connection closed");
        }
    }
    .instrument(span)
    .await
}

async fn handshake(
    svc: &Services,
    tls: &TlsReloader,
    stream: TcpStream,
) -> Result<tokio_rustls::server::TlsStream<TcpStream>, ConnectionError> {
    stream.set_nodelay(true)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config(svc.state.clock.mono_ms()));
    tokio::time::timeout(
        Duration::from_millis(TLS_HANDSHAKE_MS_MAX),
        acceptor.accept(stream),
    )
    .await
    .map_err(|_| ConnectionError::Protocol("TLS handshake timed out".into()))?
    .map_err(|e| ConnectionError::Protocol(format!("TLS handshake: {e}")))
}

async fn connection<S>(
    svc: Services,
    stream: S,
    peer: &str,
    listener: &ListenerInfo,
) -> Result<(), ConnectionError>
where
    S: AsyncRead + AsyncWrite + Nodelay + Send + Unpin,
{
    // Kafka's client host as groups report it: "/" and the peer's IP.
    let client_host: Arc<str> = match peer.rsplit_once(':') {
        Some((ip, _)) => format!("/{}", ip.trim_matches(|c| c == '[' || c == ']')).into(),
        None => format!("/{peer}").into(),
    };
    stream.nodelay()?;
    let (mut rd, wr) = tokio::io::split(stream);
    let (tx, rx) = mpsc::channel::<Queued>(CONNECTION_IN_FLIGHT_MAX);
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
    // A SASL listener's connection sends small frames until it has authenticated.
    let authenticated = Arc::new(AtomicBool::new(!listener.sasl));
    let peer_info = api::Peer {
        client_host,
        gone,
        listener: listener.name.clone(),
        sasl: listener.sasl.then(crate::sasl::Session::default),
        authenticated: authenticated.clone(),
        close_after: None,
        principal: weir_auth::acl::ANONYMOUS.into(),
    };

    let reader = async move {
        let limits = FrameLimits { max, authenticated };
        let result = read_requests(&mut rd, &limits, &budgets, &tx).await;
        let _ = gone_tx.send(true);
        result
    };

    let handler = answer_requests(svc, rx, wr, peer_info);

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

/// Answers a connection's queued requests in order until the queue ends or a request closes
/// the connection.
async fn answer_requests(
    svc: Services,
    mut rx: mpsc::Receiver<Queued>,
    mut wr: impl AsyncWrite + Unpin,
    mut peer: api::Peer,
) -> Result<(), ConnectionError> {
    let mut out = BytesMut::with_capacity(64 * 1024);
    let auth_deadline =
        tokio::time::Instant::now() + Duration::from_millis(SASL_AUTHENTICATE_MS_MAX);
    while let Some(Queued { frame, _permits }) = next_request(&mut rx, &peer, auth_deadline).await?
    {
        out.clear();
        match api::dispatch(&svc, frame, &mut out, &mut peer).await {
            // A client that stops reading is closed after the idle limit rather than pinning
            // this connection and its response buffer for ever. A fetch's share of the
            // response memory is held until its bytes are written.
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
        // A failed login: answered, then closed.
        if let Some(why) = peer.close_after.take() {
            return Err(ConnectionError::Protocol(why));
        }
        // Don't hold a large fetch response's buffer while idle.
        if out.capacity() > 4 * 1024 * 1024 {
            out = BytesMut::with_capacity(64 * 1024);
        }
    }
    Ok(())
}

/// The next queued request; on a SASL listener's connection that has not authenticated, only
/// until [`SASL_AUTHENTICATE_MS_MAX`] after it began (a client that never logs in holds no
/// connection for long).
async fn next_request(
    rx: &mut mpsc::Receiver<Queued>,
    peer: &api::Peer,
    auth_deadline: tokio::time::Instant,
) -> Result<Option<Queued>, ConnectionError> {
    if peer.authenticated.load(Ordering::Acquire) {
        return Ok(rx.recv().await);
    }
    tokio::time::timeout_at(auth_deadline, rx.recv())
        .await
        .map_err(|_| {
            ConnectionError::Protocol(format!(
                "no SASL authentication within {SASL_AUTHENTICATE_MS_MAX} ms"
            ))
        })
}

/// The largest frame a connection's reader takes: the broker's limit once authenticated,
/// [`UNAUTHENTICATED_FRAME_BYTES_MAX`] before.
struct FrameLimits {
    max: u32,
    authenticated: Arc<AtomicBool>,
}

impl FrameLimits {
    fn now(&self) -> u32 {
        if self.authenticated.load(Ordering::Acquire) {
            self.max
        } else {
            self.max.min(UNAUTHENTICATED_FRAME_BYTES_MAX)
        }
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
    rd: &mut (impl AsyncRead + Unpin),
    limits: &FrameLimits,
    budgets: &Budgets,
    tx: &mpsc::Sender<Queued>,
) -> Result<(), ConnectionError> {
    loop {
        let Some(size) = read_frame_size(rd, limits.now()).await? else {
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
    rd: &mut (impl AsyncRead + Unpin),
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
