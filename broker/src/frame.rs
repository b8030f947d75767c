//! Kafka's framing: a 4-byte big-endian size, then the request, whose header starts with the
//! API key, version and correlation id. Shared by the broker's listener and `weir bench sink`.
//!
//! A frame's size is checked against the limit before any of it is read, and the buffer grows
//! with the bytes that arrive, never to the size a client announces.

use bytes::{Buf, Bytes, BytesMut};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use weir_model::limits::{CONNECTION_IDLE_MS_MAX, FRAME_READ_AHEAD_BYTES, FRAME_READ_MS_MAX};

/// Why a connection was closed by the broker.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("socket")]
    Io(#[from] std::io::Error),
    #[error("frame of {size} bytes is outside 1..={max}")]
    FrameSize { size: i64, max: u32 },
    #[error("idle for {CONNECTION_IDLE_MS_MAX} ms")]
    Idle,
    #[error("a frame of {size} bytes did not arrive within {FRAME_READ_MS_MAX} ms")]
    SlowFrame { size: usize },
    #[error("bad request: {0}")]
    Protocol(String),
}

/// Reads one size-prefixed frame. `None` on a clean close between frames.
pub async fn read_frame(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    max: u32,
) -> Result<Option<Bytes>, ConnectionError> {
    match read_frame_size(rd, max).await? {
        Some(size) => Ok(Some(read_frame_body(rd, size).await?)),
        None => Ok(None),
    }
}

/// Reads a frame's size prefix and checks it against `max`. `None` on a clean close.
pub(crate) async fn read_frame_size(
    rd: &mut (impl tokio::io::AsyncRead + Unpin),
    max: u32,
) -> Result<Option<usize>, ConnectionError> {
    let idle = Duration::from_millis(CONNECTION_IDLE_MS_MAX);
    let mut len = [0u8; 4];
    match tokio::time::timeout(idle, rd.read_exact(&mut len)).await {
        Err(_) => return Err(ConnectionError::Idle),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Ok(Err(e)) => return Err(e.into()),
        Ok(Ok(_)) => {}
    }
    let size = i32::from_be_bytes(len);
    if size <= 0 || size as u32 > max {
        return Err(ConnectionError::FrameSize {
            size: size.into(),
            max,
        });
    }
    Ok(Some(size as usize))
}

/// Reads a frame's body of `size` bytes (already checked against the limit).
async fn read_frame_body(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    size: usize,
) -> Result<Bytes, ConnectionError> {
    let idle = Duration::from_millis(CONNECTION_IDLE_MS_MAX);
    let mut buf = BytesMut::with_capacity(size.min(FRAME_READ_AHEAD_BYTES));
    while buf.len() < size {
        if buf.capacity() == buf.len() {
            buf.reserve((size - buf.len()).min(FRAME_READ_AHEAD_BYTES.max(buf.len())));
        }
        let want = size - buf.len();
        let mut limited = (&mut *rd).take(want as u64);
        let n = tokio::time::timeout(idle, limited.read_buf(&mut buf))
            .await
            .map_err(|_| ConnectionError::Idle)??;
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
    }
    Ok(buf.freeze())
}

/// The first 8 bytes of every request: API key, version, correlation id.
pub fn peek_header(frame: &Bytes) -> Result<(i16, i16, i32), ConnectionError> {
    if frame.len() < 8 {
        return Err(ConnectionError::Protocol(format!(
            "request of {} bytes is shorter than a request header",
            frame.len()
        )));
    }
    let mut b = &frame[..8];
    Ok((b.get_i16(), b.get_i16(), b.get_i32()))
}
