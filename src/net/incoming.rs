//! The gRPC listener's connections as tonic takes them: accepted with `TCP_NODELAY`, through a
//! TLS handshake when configured (each in a task of its own, so a slow caller never holds up
//! the others), and guarded (`GuardedIo`). Dropping the stream closes the listener.

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures_util::Stream;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    task::JoinSet,
    time::Sleep,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tonic::transport::server::{Connected, TcpConnectInfo};

use super::io::{GuardedIo, Lingering};

/// A TLS handshake not finished by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One accepted connection, plain or TLS.
pub(crate) enum Connection {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connection {
    fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(stream) => stream,
            Self::Tls(stream) => stream.get_ref().0,
        }
    }
}

impl Connected for GuardedIo<Connection> {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        match self.get_ref() {
            Some(connection) => connection.tcp().connect_info(),
            None => TcpConnectInfo {
                local_addr: None,
                remote_addr: None,
            },
        }
    }
}

/// The accepted, guarded connections of one listener.
pub(crate) struct Connections {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handshakes: JoinSet<Option<Connection>>,
    /// After an accept error other than a caller's reset, a pause before the next accept.
    backoff: Option<Pin<Box<Sleep>>>,
    lingering: Lingering,
}

impl Connections {
    pub(crate) fn new(
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        lingering: Lingering,
    ) -> Self {
        Self {
            listener,
            tls: tls.map(TlsAcceptor::from),
            handshakes: JoinSet::new(),
            backoff: None,
            lingering,
        }
    }
}

impl Stream for Connections {
    type Item = io::Result<GuardedIo<Connection>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        while let Poll::Ready(Some(done)) = this.handshakes.poll_join_next(cx) {
            if let Ok(Some(connection)) = done {
                return Poll::Ready(Some(Ok(GuardedIo::new(connection, this.lingering.clone()))));
            }
        }
        if let Some(backoff) = &mut this.backoff {
            if backoff.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.backoff = None;
        }
        loop {
            let stream = match this.listener.poll_accept(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok((stream, _))) => stream,
                Poll::Ready(Err(err)) if is_callers_business(&err) => continue,
                Poll::Ready(Err(err)) => {
                    // Out of file descriptors, say: it would fail again at once.
                    tracing::error!(error = %err, "gRPC accept failed; retrying in 1 s");
                    this.backoff = Some(Box::pin(tokio::time::sleep(Duration::from_secs(1))));
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
            };
            // Small answers go out at once rather than waiting on Nagle and delayed ACKs.
            if let Err(err) = stream.set_nodelay(true) {
                tracing::debug!(error = %err, "TCP_NODELAY not set");
            }
            let Some(tls) = &this.tls else {
                return Poll::Ready(Some(Ok(GuardedIo::new(
                    Connection::Plain(stream),
                    this.lingering.clone(),
                ))));
            };
            let accept = tls.accept(stream);
            this.handshakes.spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept).await {
                    Ok(Ok(stream)) => Some(Connection::Tls(Box::new(stream))),
                    Ok(Err(err)) => {
                        tracing::debug!(error = %err, "TLS handshake failed");
                        None
                    }
                    Err(_) => {
                        tracing::debug!("TLS handshake timed out");
                        None
                    }
                }
            });
            // The new task registers this waker when it is polled for completion below.
            if let Poll::Ready(Some(Ok(Some(connection)))) = this.handshakes.poll_join_next(cx) {
                return Poll::Ready(Some(Ok(GuardedIo::new(connection, this.lingering.clone()))));
            }
        }
    }
}

/// Refused or reset connections end there; accepting goes on at once.
fn is_callers_business(err: &io::Error) -> bool {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        err.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    )
}

impl AsyncRead for Connection {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(stream) => stream.is_write_vectored(),
            Self::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}
