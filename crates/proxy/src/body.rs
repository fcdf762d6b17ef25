//! The response body the proxy hands to its clients: either the backend's body, decoded from the
//! backend connection as the client reads it (the connection returns to its pool when the body
//! ends), or a body the proxy has whole (its own 502s, and small backend bodies that arrived with
//! their head).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use crate::upstream::UpstreamBody;

/// A response body streamed to a client.
pub(crate) enum ProxyBody {
    /// The backend's body, still arriving.
    Upstream(UpstreamBody),
    /// A body already complete.
    Full(Option<Bytes>),
}

impl ProxyBody {
    pub(crate) fn text(s: &'static str) -> ProxyBody {
        ProxyBody::Full(Some(Bytes::from_static(s.as_bytes())))
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            ProxyBody::Upstream(body) => body.poll_data(cx).map(|d| d.map(|r| r.map(Frame::data))),
            ProxyBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream(body) => body.is_done(),
            ProxyBody::Full(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream(body) => body
                .remaining()
                .map_or_else(SizeHint::default, SizeHint::with_exact),
            ProxyBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ProxyBody::Full(None) => SizeHint::with_exact(0),
        }
    }
}
