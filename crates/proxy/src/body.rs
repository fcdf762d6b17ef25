//! The response body the proxy hands to its clients: either the backend's body, streamed frame by
//! frame and returning its connection to the pool when it ends, or a small body the proxy made
//! itself (502s).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::pool::Pooled;

/// A response body streamed to a client.
pub(crate) enum ProxyBody {
    /// The backend's body; `pooled` goes back to its pool once the body has ended.
    Upstream {
        inner: Incoming,
        pooled: Option<Pooled>,
    },
    /// A body the proxy produced.
    Full(Option<Bytes>),
}

impl ProxyBody {
    pub(crate) fn upstream(inner: Incoming, pooled: Pooled) -> ProxyBody {
        let mut pooled = Some(pooled);
        if inner.is_end_stream() {
            // No body at all (204, 304, HEAD, Content-Length: 0): the connection is free now.
            if let Some(p) = pooled.take() {
                p.release();
            }
        }
        ProxyBody::Upstream { inner, pooled }
    }

    pub(crate) fn text(s: &'static str) -> ProxyBody {
        ProxyBody::Full(Some(Bytes::from_static(s.as_bytes())))
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ProxyBody::Upstream { inner, pooled } => {
                let res = Pin::new(&mut *inner).poll_frame(cx);
                match &res {
                    Poll::Ready(None) => {
                        if let Some(p) = pooled.take() {
                            p.release();
                        }
                    }
                    Poll::Ready(Some(Ok(_))) => {
                        if inner.is_end_stream()
                            && let Some(p) = pooled.take()
                        {
                            p.release();
                        }
                    }
                    // A broken body leaves the connection in an unknown state: never reuse it.
                    Poll::Ready(Some(Err(_))) => drop(pooled.take()),
                    Poll::Pending => {}
                }
                res
            }
            ProxyBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream { inner, .. } => inner.is_end_stream(),
            ProxyBody::Full(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream { inner, .. } => inner.size_hint(),
            ProxyBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ProxyBody::Full(None) => SizeHint::with_exact(0),
        }
    }
}
