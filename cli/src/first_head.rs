//! The first request head of each connection, read before hyper takes the connection over.
//!
//! hyper's own header read timeout closes a connection whose head trickles in without a word; a
//! client deserves an answer: a head that does not arrive whole within the header timeout gets
//! `408 Request Timeout`, one that grows past [`MAX_HEAD_BYTES`] gets `431`, both with the
//! connection closed. A connection that sends nothing at all is closed (there is no request to
//! answer). The bytes read are handed to hyper ahead of the rest of the stream ([`Prefixed`]).
//! Later requests on a kept-alive connection fall under hyper's header read timeout.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// The largest first request head accepted, in bytes (Keyfold's requests carry a few headers).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// How long a refused client gets to take its answer (and to stop sending) before the connection
/// is dropped anyway.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);

/// The length of the request head at the start of `bytes` (through its blank line), once whole.
fn head_length(bytes: &[u8]) -> Option<usize> {
    let crlf = bytes.windows(4).position(|w| w == b"\r\n\r\n").map(|at| at + 4);
    let lf = bytes.windows(2).position(|w| w == b"\n\n").map(|at| at + 2);
    crlf.into_iter().chain(lf).min()
}

/// Reads until the first request head is complete, within `timeout`. `None`: the connection was
/// answered (408, 431) or ended, and is done.
pub async fn read_first_head(stream: &mut TcpStream, timeout: Duration) -> Option<Vec<u8>> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut bytes = Vec::with_capacity(2048);
    loop {
        let head = head_length(&bytes);
        if head.unwrap_or(bytes.len()) > MAX_HEAD_BYTES {
            let message = format!("the request head is over {MAX_HEAD_BYTES} bytes");
            refuse(stream, "431 Request Header Fields Too Large", "header_fields_too_large", &message, "").await;
            return None;
        }
        if head.is_some() {
            return Some(bytes);
        }
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut bytes)).await {
            Ok(Ok(0) | Err(_)) => return None, // the client went away
            Ok(Ok(_)) => {}
            Err(_elapsed) if bytes.is_empty() => return None, // idle: nothing to answer
            Err(_elapsed) => {
                let message = format!(
                    "the request head did not arrive within {} ms; send it whole, then the body",
                    timeout.as_millis()
                );
                refuse(stream, "408 Request Timeout", "request_timeout", &message, "").await;
                return None;
            }
        }
    }
}

/// Answers `status` with the API's JSON error body (and `headers`, each ending in CRLF) and
/// closes the connection.
pub async fn refuse(stream: &mut TcpStream, status: &str, code: &str, message: &str, headers: &str) {
    let body = serde_json::json!({ "error": code, "message": message }).to_string();
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{headers}connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(ANSWER_TIMEOUT, async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?; // the client sees the end of the answer
        // A lingering close: closing with unread bytes would send a reset, which can destroy the
        // answer before the client reads it; read and drop what the client still sends.
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
}

/// A stream that yields `prefix` before the rest of `inner`.
#[derive(Debug)]
pub struct Prefixed {
    prefix: Vec<u8>,
    at: usize,
    inner: TcpStream,
}

impl Prefixed {
    pub fn new(prefix: Vec<u8>, inner: TcpStream) -> Prefixed {
        Prefixed { prefix, at: 0, inner }
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if self.at < self.prefix.len() {
            let n = buf.remaining().min(self.prefix.len() - self.at);
            buf.put_slice(&self.prefix[self.at..self.at + n]);
            self.at += n;
            if self.at == self.prefix.len() {
                self.prefix = Vec::new(); // served: free it
                self.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_ends_at_its_blank_line() {
        assert_eq!(head_length(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody"), Some(27));
        assert_eq!(head_length(b"GET / HTTP/1.1\nHost: a\n\nbody"), Some(24));
        assert_eq!(head_length(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
        assert_eq!(head_length(b""), None);
    }
}
