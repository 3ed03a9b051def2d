//! The end of the shutdown grace, for every gRPC service (health and reflection included): a
//! call not answered by then gets UNAVAILABLE, and a stream still open (a health Watch) ends
//! with UNAVAILABLE trailers, so callers read a status instead of a cut connection.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use axum::http::{HeaderMap, HeaderValue, Request, Response};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::{Status, body::Body, codegen::BoxFuture};
use tower::{Layer, Service};

/// What callers read when the grace runs out.
const MESSAGE: &str = "server shutting down; retry";

/// Ends calls and streams when `ended` fires.
#[derive(Clone)]
pub(crate) struct GraceLayer {
    ended: CancellationToken,
}

impl GraceLayer {
    pub(crate) fn new(ended: CancellationToken) -> Self {
        Self { ended }
    }
}

impl<S> Layer<S> for GraceLayer {
    type Service = Grace<S>;

    fn layer(&self, inner: S) -> Grace<S> {
        Grace {
            inner,
            ended: self.ended.clone(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Grace<S> {
    inner: S,
    ended: CancellationToken,
}

impl<S, B> Service<Request<B>> for Grace<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Send,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let ended = self.ended.clone();
        let answer = self.inner.call(request);
        Box::pin(async move {
            tokio::select! {
                biased;
                response = answer => Ok(response?.map(|body| {
                    Body::new(GraceBody {
                        inner: body,
                        ended: Box::pin(ended.cancelled_owned()),
                        done: false,
                    })
                })),
                () = ended.cancelled() => Ok(Status::unavailable(MESSAGE).into_http()),
            }
        })
    }
}

/// A response body that, once the grace has ended, stops and sends UNAVAILABLE trailers.
struct GraceBody {
    inner: Body,
    ended: Pin<Box<WaitForCancellationFutureOwned>>,
    done: bool,
}

impl HttpBody for GraceBody {
    type Data = axum::body::Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Status>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if this.ended.as_mut().poll(cx).is_ready() {
            this.done = true;
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from(tonic::Code::Unavailable as i32));
            trailers.insert("grpc-message", HeaderValue::from_static(MESSAGE));
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        let frame = std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if frame
            .as_ref()
            .is_none_or(|f| f.as_ref().is_ok_and(Frame::is_trailers))
        {
            this.done = true;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
