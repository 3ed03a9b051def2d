//! A connection whose inbound bytes pass through an [`InboundGuard`], and which closes with a
//! lingering close when the server ends it.
//!
//! Why linger: the server closes a connection (after its last GOAWAY, or an HTTP/1.1 `close`)
//! while the caller may still be writing (a WINDOW_UPDATE for the answer it just read, a PING).
//! Closing a socket with unread bytes makes the kernel send RST instead of FIN, and a caller's
//! kernel that gets RST may throw away the last answer before the caller reads it. So once the
//! server has shut its side down, what the caller still sends is read and discarded until it
//! closes too, for at most [`LINGER`], in a task the application waits for before it exits.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio_util::task::TaskTracker;

use super::h2_guard::InboundGuard;

/// How much is read from the socket at a time while the guard follows frames.
const READ_CHUNK: usize = 16 * 1024;
/// How long a closed connection keeps reading what the caller still sends.
pub(crate) const LINGER: Duration = Duration::from_secs(1);

/// The lingering closes of one server, so shutdown can wait for them.
#[derive(Clone, Default)]
pub(crate) struct Lingering(TaskTracker);

impl Lingering {
    /// Waits for every lingering close started so far, and any started meanwhile.
    pub(crate) async fn wait(&self) {
        self.0.close();
        self.0.wait().await;
    }
}

/// Wraps a stream (plain TCP or TLS) under the HTTP server.
pub(crate) struct GuardedIo<T: AsyncRead + Unpin + Send + 'static> {
    /// `None` only once dropped (handed to the lingering close).
    inner: Option<T>,
    guard: InboundGuard,
    /// Bytes read from `inner` that the guard has not seen yet.
    scratch: Vec<u8>,
    /// Guarded bytes not yet handed to the server.
    ready: Vec<u8>,
    handed: usize,
    /// The server shut its side down: the close lingers.
    shut_down: bool,
    lingering: Lingering,
}

impl<T: AsyncRead + Unpin + Send + 'static> GuardedIo<T> {
    pub(crate) fn new(inner: T, lingering: Lingering) -> Self {
        Self {
            inner: Some(inner),
            guard: InboundGuard::default(),
            scratch: Vec::new(),
            ready: Vec::new(),
            handed: 0,
            shut_down: false,
            lingering,
        }
    }

    pub(crate) fn get_ref(&self) -> Option<&T> {
        self.inner.as_ref()
    }

    fn inner(&mut self) -> io::Result<&mut T> {
        self.inner
            .as_mut()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }
}

impl<T: AsyncRead + Unpin + Send + 'static> Drop for GuardedIo<T> {
    fn drop(&mut self) {
        let Some(mut inner) = self.inner.take().filter(|_| self.shut_down) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        self.lingering.0.spawn_on(
            async move {
                let mut discard = [0u8; 4096];
                let _ = tokio::time::timeout(LINGER, async {
                    while matches!(inner.read(&mut discard).await, Ok(n) if n > 0) {}
                })
                .await;
            },
            &runtime,
        );
    }
}

impl<T: AsyncRead + Unpin + Send + 'static> AsyncRead for GuardedIo<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.handed < this.ready.len() {
                let take = buf.remaining().min(this.ready.len() - this.handed);
                buf.put_slice(&this.ready[this.handed..this.handed + take]);
                this.handed += take;
                return Poll::Ready(Ok(()));
            }
            if this.guard.passes_everything() {
                return Pin::new(this.inner()?).poll_read(cx, buf);
            }
            this.ready.clear();
            this.handed = 0;
            this.scratch.resize(READ_CHUNK, 0);
            let mut read = ReadBuf::new(&mut this.scratch);
            let inner = this.inner.as_mut().ok_or(io::ErrorKind::NotConnected)?;
            ready!(Pin::new(inner).poll_read(cx, &mut read))?;
            let filled = read.filled().len();
            if filled == 0 {
                // End of stream; a frame header cut short stays unsent, as the server would
                // fail on it anyway.
                return Poll::Ready(Ok(()));
            }
            this.guard.filter(&this.scratch[..filled], &mut this.ready);
            // Nothing to hand over yet (a dropped frame, or half a header): read on, because
            // an empty read would mean the end of the stream.
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncWrite for GuardedIo<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(self.get_mut().inner()?).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.get_mut().inner()?).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(AsyncWrite::is_write_vectored)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().inner()?).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.shut_down = true;
        Pin::new(this.inner()?).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn bytes_pass_through_in_order_across_small_reads() {
        let (mut caller, server) = tokio::io::duplex(7);
        let mut guarded = GuardedIo::new(server, Lingering::default());
        let input: Vec<u8> = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
            .iter()
            .copied()
            .chain([0, 0, 0, 4, 0, 0, 0, 0, 0])
            .collect();
        let expected = input.clone();
        let writer = tokio::spawn(async move {
            caller.write_all(&input).await.expect("write");
            caller.shutdown().await.expect("close");
        });
        let mut out = Vec::new();
        guarded.read_to_end(&mut out).await.expect("read");
        writer.await.expect("writer");
        assert_eq!(out, expected);
    }
}
