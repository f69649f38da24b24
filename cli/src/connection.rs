//! Bounds on connections: how many are served at once, and how long a response may wait for a
//! client that stops reading it.

use keyfold_api::LogLimiter;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Connections over the cap that may be answered at once; beyond that they are closed unanswered
/// (an answer takes a file descriptor for up to a second: a flood must not spend them all).
const REFUSING_MAX: usize = 64;

/// Seconds a refused client is told to wait.
const RETRY_AFTER_SECS: u64 = 1;

/// At most `max` connections open at once (each holds its permit until it closes, including the
/// wait for its first head); the next ones are answered 503 + `Retry-After` and closed.
#[derive(Debug)]
pub struct ConnectionCap {
    max: usize,
    open: Arc<Semaphore>,
    refusing: Arc<Semaphore>,
    log: LogLimiter,
}

impl ConnectionCap {
    pub fn new(max: usize) -> ConnectionCap {
        ConnectionCap {
            max,
            open: Arc::new(Semaphore::new(max)),
            refusing: Arc::new(Semaphore::new(REFUSING_MAX)),
            log: LogLimiter::new(Duration::from_secs(1)),
        }
    }

    /// A permit for one more connection, or `None` when `max` are open.
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.open).try_acquire_owned().ok()
    }

    /// Answers a connection over the cap with 503 and closes it, on a task of its own (the accept
    /// loop never waits for a client); logged at most once a second.
    pub fn refuse(&self, stream: TcpStream) {
        if let Some(suppressed) = self.log.admit() {
            tracing::warn!(
                max_connections = self.max,
                suppressed,
                "connection refused: the --max-connections limit is reached"
            );
        }
        let Ok(permit) = Arc::clone(&self.refusing).try_acquire_owned() else {
            return; // dropped: closed unanswered
        };
        let message = format!("the server has its limit of {} connections open; retry in a moment", self.max);
        tokio::spawn(async move {
            let _permit = permit;
            let mut stream = stream;
            let retry_after = format!("retry-after: {RETRY_AFTER_SECS}\r\n");
            crate::first_head::refuse(&mut stream, "503 Service Unavailable", "unavailable", &message, &retry_after)
                .await;
        });
    }
}

/// The connection's IO, ending the connection when a write makes no progress for `timeout`: a
/// client that stops reading a response (a large archive, say) does not hold its connection and
/// the response's buffers forever.
#[derive(Debug)]
pub struct WriteTimeout<T> {
    inner: T,
    timeout: Duration,
    /// Started when a write first could not proceed; cleared by any progress.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> WriteTimeout<T> {
    pub fn new(inner: T, timeout: Duration) -> WriteTimeout<T> {
        WriteTimeout { inner, timeout, stalled: None }
    }

    /// `polled`, or a timeout error once writes have been pending for the timeout.
    fn watch<R>(&mut self, cx: &mut Context<'_>, polled: Poll<std::io::Result<R>>) -> Poll<std::io::Result<R>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let timeout = self.timeout;
        let stalled = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the client read nothing of the response for {} ms", timeout.as_millis()),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteTimeout<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        self.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, polled)
    }
}

/// File descriptors kept for everything but connections: the stores' files, archives being
/// written, the runtime's own.
const RESERVED_FDS: u64 = 256;

/// Raises the soft open-file limit to the hard limit (a server holding many connections needs
/// more than the usual 1,024) and returns how many connections it leaves room for.
pub fn raise_fd_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            tracing::info!(open_files_limit = limit, "open file limit raised to the hard limit");
            Some(limit.saturating_sub(RESERVED_FDS).max(1))
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open file limit");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A peer that never reads: writes stall once the socket buffers are full, and the write
    /// timeout ends them; while the peer reads, the same writes proceed.
    #[tokio::test]
    async fn a_stalled_write_ends_after_the_timeout() {
        let (client, server) = tokio::io::duplex(1024);
        let mut server = WriteTimeout::new(server, Duration::from_millis(50));
        let chunk = vec![7u8; 4096];
        let err = server.write_all(&chunk).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
        drop(client);

        let (mut client, server) = tokio::io::duplex(1024);
        let reader = tokio::spawn(async move {
            let mut sink = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut client, &mut sink).await.map(|_| sink.len())
        });
        let mut server = WriteTimeout::new(server, Duration::from_secs(30));
        server.write_all(&chunk).await.unwrap();
        server.shutdown().await.unwrap();
        drop(server);
        assert_eq!(reader.await.unwrap().unwrap(), 4096);
    }
}
