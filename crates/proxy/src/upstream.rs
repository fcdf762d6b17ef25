//! The proxy's own HTTP/1.1 client for talking to backends, written for the proxy's one job so
//! that a request costs no extra task, channel or copy: the request head is serialised straight
//! from the client's parsed request, the response head is parsed with `httparse` from the
//! connection's read buffer, and the response body is decoded (length, chunked or
//! close-delimited) by the response body itself while the client connection's task polls it.
//!
//! A request without a body (nearly all of them) is written and answered within the request's
//! own task. A request with a body is written by a spawned task on the connection's write half
//! while the response is read, so a backend that answers (or echoes) before it has read the
//! whole body cannot deadlock the exchange; the connection is pooled again only if that writer
//! finished.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Method, StatusCode, Version};
use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::task::JoinHandle;

use crate::pool::{BackendPool, killed};

/// Largest response head accepted from a backend.
const MAX_HEAD: usize = 64 * 1024;
/// Most headers accepted in one response.
const MAX_HEADERS: usize = 128;
/// Longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4096;
/// Read buffer growth step.
const READ_CHUNK: usize = 8 * 1024;

/// An open connection to a backend with the bytes read from it but not yet consumed.
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    pub(crate) buf: BytesMut,
    head: Vec<u8>,
}

impl Conn {
    pub(crate) fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK),
            head: Vec::with_capacity(1024),
        }
    }

    /// True if the connection can no longer carry a request: the backend closed it, sent bytes
    /// nobody asked for, or it failed. Never blocks.
    pub(crate) fn is_stale(&self) -> bool {
        if !self.buf.is_empty() {
            return true;
        }
        let mut probe = [0u8; 1];
        !matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

/// How the request body travels to the backend.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReqFraming {
    /// No body.
    None,
    /// The client's `Content-Length` is forwarded and the body sent as is.
    Length,
    /// Sent chunked (the client's length is unknown).
    Chunked,
}

impl ReqFraming {
    pub(crate) fn of(headers: &HeaderMap, body: &Incoming) -> ReqFraming {
        use hyper::body::Body as _;
        if body.is_end_stream() {
            ReqFraming::None
        } else if headers.contains_key(header::CONTENT_LENGTH) {
            ReqFraming::Length
        } else {
            ReqFraming::Chunked
        }
    }
}

/// Serialises a request head (request line and headers) for the backend.
pub(crate) fn encode_head(out: &mut Vec<u8>, parts: &Parts, framing: ReqFraming) {
    out.clear();
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    out.extend_from_slice(if target.is_empty() {
        b"/"
    } else {
        target.as_bytes()
    });
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if framing == ReqFraming::Chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// A parsed response head and how its body is framed.
pub(crate) struct ResponseHead {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) framing: Framing,
    /// Whether the connection may carry another request once the body is read.
    pub(crate) keep_alive: bool,
}

/// Why an exchange with a backend failed.
#[derive(Debug)]
pub(crate) enum ExchangeError {
    /// Nothing came back (closed, reset or failed write) and no byte of a response was read.
    NoResponse(io::Error),
    /// The backend answered something that is not HTTP/1.x, or too much of it.
    Invalid(&'static str),
    /// The connection failed after part of the response head arrived.
    Broken(io::Error),
}

impl std::fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExchangeError::NoResponse(e) => write!(f, "backend sent no response: {e}"),
            ExchangeError::Invalid(what) => write!(f, "backend sent an invalid response: {what}"),
            ExchangeError::Broken(e) => write!(f, "backend connection failed mid-response: {e}"),
        }
    }
}

/// The I/O a response is read from: the whole stream, or the read half while a spawned task
/// writes the request body on the other half.
pub(crate) enum ReadSide {
    Whole(Conn),
    Split {
        read: OwnedReadHalf,
        buf: BytesMut,
        writer: Writer,
    },
}

/// The task writing a request body; aborted when dropped (the exchange was abandoned).
pub(crate) struct Writer(JoinHandle<io::Result<OwnedWriteHalf>>);

impl Drop for Writer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl ReadSide {
    fn buf(&mut self) -> &mut BytesMut {
        match self {
            ReadSide::Whole(c) => &mut c.buf,
            ReadSide::Split { buf, .. } => buf,
        }
    }

    /// Reads more bytes into the buffer; `Ok(0)` at end of stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let (io, buf): (&mut (dyn AsyncRead + Unpin), &mut BytesMut) = match self {
            ReadSide::Whole(c) => (&mut c.stream, &mut c.buf),
            ReadSide::Split { read, buf, .. } => (read, buf),
        };
        if buf.capacity() - buf.len() < READ_CHUNK / 2 {
            buf.reserve(READ_CHUNK);
        }
        tokio_util::io::poll_read_buf(Pin::new(io), cx, buf)
    }

    async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }

    /// Gives the whole connection back if it can carry another request: the request body (if
    /// any) was written completely and nothing unread is left.
    fn reclaim(self, cx: &mut Context<'_>) -> Option<Conn> {
        match self {
            ReadSide::Whole(c) => c.buf.is_empty().then_some(c),
            ReadSide::Split {
                read,
                buf,
                mut writer,
            } => {
                if !buf.is_empty() {
                    return None;
                }
                match Pin::new(&mut writer.0).poll(cx) {
                    Poll::Ready(Ok(Ok(write))) => read.reunite(write).ok().map(|stream| Conn {
                        stream,
                        buf,
                        head: Vec::with_capacity(1024),
                    }),
                    _ => None,
                }
            }
        }
    }
}

/// Sends the request and reads the response head. `body` is taken only when the request has
/// one (so a failed exchange of a body-less request can be retried).
pub(crate) async fn exchange(
    mut conn: Conn,
    parts: &Parts,
    framing: ReqFraming,
    body: &mut Option<Incoming>,
) -> Result<(ResponseHead, ReadSide), ExchangeError> {
    let mut head = std::mem::take(&mut conn.head);
    encode_head(&mut head, parts, framing);
    let mut side = match (framing, body.take()) {
        (ReqFraming::None, _) | (_, None) => {
            if let Err(e) = conn.stream.write_all(&head).await {
                return Err(ExchangeError::NoResponse(e));
            }
            conn.head = head;
            ReadSide::Whole(conn)
        }
        (framing, Some(body)) => {
            let Conn { stream, buf, .. } = conn;
            let (read, write) = stream.into_split();
            let writer = Writer(tokio::spawn(write_request(write, head, body, framing)));
            ReadSide::Split { read, buf, writer }
        }
    };
    let head_only = parts.method == Method::HEAD;
    let res = read_head(&mut side, head_only).await?;
    Ok((res, side))
}

async fn write_request(
    mut w: OwnedWriteHalf,
    head: Vec<u8>,
    mut body: Incoming,
    framing: ReqFraming,
) -> io::Result<OwnedWriteHalf> {
    w.write_all(&head).await?;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(io::Error::other)?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers are not forwarded
        };
        if data.is_empty() {
            continue;
        }
        if framing == ReqFraming::Chunked {
            w.write_all(format!("{:x}\r\n", data.len()).as_bytes())
                .await?;
            w.write_all(&data).await?;
            w.write_all(b"\r\n").await?;
        } else {
            w.write_all(&data).await?;
        }
    }
    if framing == ReqFraming::Chunked {
        w.write_all(b"0\r\n\r\n").await?;
    }
    w.flush().await?;
    Ok(w)
}

/// Reads until a final (non-1xx, or 101) response head is complete.
async fn read_head(side: &mut ReadSide, head_only: bool) -> Result<ResponseHead, ExchangeError> {
    let mut received = false;
    loop {
        if !side.buf().is_empty() {
            received = true;
            match parse_head(side.buf(), head_only)? {
                Some(ParsedHead::Final(h)) => return Ok(h),
                Some(ParsedHead::Informational) => continue,
                None => {}
            }
        }
        match side.fill().await {
            Ok(0) if !received => {
                return Err(ExchangeError::NoResponse(
                    io::ErrorKind::UnexpectedEof.into(),
                ));
            }
            Ok(0) => {
                return Err(ExchangeError::Broken(io::ErrorKind::UnexpectedEof.into()));
            }
            Ok(_) => {}
            Err(e) if !received => return Err(ExchangeError::NoResponse(e)),
            Err(e) => return Err(ExchangeError::Broken(e)),
        }
    }
}

enum ParsedHead {
    Final(ResponseHead),
    /// A 1xx other than 101, consumed from the buffer.
    Informational,
}

/// Parses a response head from the front of `buf`, consuming it; `None` if incomplete.
fn parse_head(buf: &mut BytesMut, head_only: bool) -> Result<Option<ParsedHead>, ExchangeError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut slots);
    let len = match res.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(ExchangeError::Invalid("response head too large"));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ExchangeError::Invalid("too many headers"));
        }
        Err(_) => return Err(ExchangeError::Invalid("malformed response head")),
    };
    let code = res.code.unwrap_or(0);
    let status = StatusCode::from_u16(code).map_err(|_| ExchangeError::Invalid("bad status"))?;
    if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
        buf.advance(len);
        return Ok(Some(ParsedHead::Informational));
    }
    let version = if res.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let mut headers = HeaderMap::with_capacity(res.headers.len());
    for h in res.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| ExchangeError::Invalid("bad header name"))?;
        let value =
            HeaderValue::from_bytes(h.value).map_err(|_| ExchangeError::Invalid("bad header"))?;
        headers.append(name, value);
    }
    buf.advance(len);
    let framing = response_framing(status, &headers, head_only)?;
    let keep_alive = keeps_alive(version, &headers) && !matches!(framing, Framing::Close);
    Ok(Some(ParsedHead::Final(ResponseHead {
        status,
        headers,
        framing,
        keep_alive,
    })))
}

/// True if a comma-separated header (`Connection`, ...) lists `token`, in any case.
pub(crate) fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

fn keeps_alive(version: Version, headers: &HeaderMap) -> bool {
    if version == Version::HTTP_10 {
        has_token(headers, header::CONNECTION, "keep-alive")
    } else {
        !has_token(headers, header::CONNECTION, "close")
    }
}

/// RFC 9112 section 6.3: how long the response body is.
fn response_framing(
    status: StatusCode,
    headers: &HeaderMap,
    head_only: bool,
) -> Result<Framing, ExchangeError> {
    if head_only
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status == StatusCode::SWITCHING_PROTOCOLS
    {
        return Ok(Framing::Length(0));
    }
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return Ok(
            if headers
                .get_all(header::TRANSFER_ENCODING)
                .iter()
                .next_back()
                .and_then(|v| v.as_bytes().rsplit(|b| *b == b',').next())
                .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"))
            {
                Framing::Chunked(Chunk::Size)
            } else {
                Framing::Close
            },
        );
    }
    let mut lengths = headers.get_all(header::CONTENT_LENGTH).iter();
    match (lengths.next(), lengths.next()) {
        (None, _) => Ok(Framing::Close),
        (Some(v), None) => std::str::from_utf8(v.as_bytes())
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Framing::Length)
            .ok_or(ExchangeError::Invalid("bad content-length")),
        (Some(_), Some(_)) => Err(ExchangeError::Invalid("several content-length headers")),
    }
}

/// How a response body ends.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Framing {
    /// This many bytes remain.
    Length(u64),
    /// Chunked transfer coding, at this point of the chunk grammar.
    Chunked(Chunk),
    /// Until the backend closes the connection.
    Close,
}

/// Where a chunked decoder is.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

/// One step of body decoding over the buffered bytes.
pub(crate) enum Decoded {
    Data(Bytes),
    NeedMore,
    End,
}

fn bad(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Takes one line (without its line end) off the front of `buf`; `None` if incomplete.
fn take_line(buf: &mut BytesMut) -> io::Result<Option<BytesMut>> {
    match buf.iter().position(|b| *b == b'\n') {
        Some(i) => {
            let mut line = buf.split_to(i + 1);
            line.truncate(i);
            if line.last() == Some(&b'\r') {
                line.truncate(i - 1);
            }
            Ok(Some(line))
        }
        None if buf.len() > MAX_LINE => Err(bad("chunk line too long")),
        None => Ok(None),
    }
}

impl Framing {
    /// Decodes what the buffer holds. `End` means the body is complete.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Decoded> {
        loop {
            match self {
                Framing::Length(0) => return Ok(Decoded::End),
                Framing::Length(n) | Framing::Chunked(Chunk::Data(n)) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = usize::try_from(*n).unwrap_or(usize::MAX).min(buf.len());
                    *n -= take as u64;
                    if let Framing::Chunked(c) = self
                        && let Chunk::Data(0) = c
                    {
                        *c = Chunk::DataEnd;
                    }
                    return Ok(Decoded::Data(buf.split_to(take).freeze()));
                }
                Framing::Close => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    return Ok(Decoded::Data(buf.split().freeze()));
                }
                Framing::Chunked(Chunk::Size) => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    let digits = line[..]
                        .split(|b| *b == b';')
                        .next()
                        .map(<[u8]>::trim_ascii)
                        .unwrap_or_default();
                    let size = std::str::from_utf8(digits)
                        .ok()
                        .filter(|s| !s.is_empty() && s.len() <= 16)
                        .and_then(|s| u64::from_str_radix(s, 16).ok())
                        .ok_or_else(|| bad("bad chunk size"))?;
                    *self = Framing::Chunked(if size == 0 {
                        Chunk::Trailers
                    } else {
                        Chunk::Data(size)
                    });
                }
                Framing::Chunked(Chunk::DataEnd) => {
                    let end = match (buf.first(), buf.get(1)) {
                        (Some(b'\n'), _) => 1,
                        (Some(b'\r'), Some(b'\n')) => 2,
                        (None, _) | (Some(b'\r'), None) => return Ok(Decoded::NeedMore),
                        _ => return Err(bad("chunk not followed by a line end")),
                    };
                    buf.advance(end);
                    *self = Framing::Chunked(Chunk::Size);
                }
                Framing::Chunked(Chunk::Trailers) => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    if line.is_empty() {
                        *self = Framing::Length(0);
                    }
                }
            }
        }
    }
}

/// A response body read straight from the backend connection.
pub(crate) struct UpstreamBody {
    side: Option<ReadSide>,
    framing: Framing,
    keep_alive: bool,
    /// Where the connection goes back when the body is complete.
    pool: Arc<BackendPool>,
    /// Resolves when the backend's drain timed out; made on the first wait for the backend.
    kill: Option<Pin<Box<dyn Future<Output = ()> + Send + Sync>>>,
}

impl UpstreamBody {
    pub(crate) fn new(
        side: ReadSide,
        framing: Framing,
        keep_alive: bool,
        pool: Arc<BackendPool>,
    ) -> UpstreamBody {
        UpstreamBody {
            side: Some(side),
            framing,
            keep_alive,
            pool,
            kill: None,
        }
    }

    /// Hands the connection back to its pool if it can carry another request.
    fn finish(&mut self, cx: &mut Context<'_>) {
        if let Some(side) = self.side.take()
            && self.keep_alive
            && let Some(conn) = side.reclaim(cx)
        {
            self.pool.put(conn);
        }
    }

    pub(crate) fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        loop {
            let Some(side) = self.side.as_mut() else {
                return Poll::Ready(None);
            };
            match self.framing.decode(side.buf()) {
                Ok(Decoded::Data(b)) => {
                    if matches!(self.framing, Framing::Length(0)) {
                        self.finish(cx);
                    }
                    return Poll::Ready(Some(Ok(b)));
                }
                Ok(Decoded::End) => {
                    self.finish(cx);
                    return Poll::Ready(None);
                }
                Ok(Decoded::NeedMore) => {}
                Err(e) => {
                    self.side = None;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            match side.poll_fill(cx) {
                Poll::Ready(Ok(0)) => {
                    self.side = None;
                    return Poll::Ready(if matches!(self.framing, Framing::Close) {
                        None
                    } else {
                        Some(Err(io::ErrorKind::UnexpectedEof.into()))
                    });
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    self.side = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Pending => {
                    let pool = &self.pool;
                    let kill = self
                        .kill
                        .get_or_insert_with(|| Box::pin(killed(pool.kill_signal())));
                    if kill.as_mut().poll(cx).is_ready() {
                        self.side = None;
                        return Poll::Ready(Some(Err(io::Error::other("backend drained"))));
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    /// True once the whole body was handed out.
    pub(crate) fn is_done(&self) -> bool {
        self.side.is_none() || matches!(self.framing, Framing::Length(0))
    }

    /// The exact remaining length, when known.
    pub(crate) fn remaining(&self) -> Option<u64> {
        match self.framing {
            Framing::Length(n) => Some(n),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(framing: Framing, input: &[u8]) -> io::Result<(Vec<u8>, bool)> {
        let mut f = framing;
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        // Feed one byte at a time: every split point must work.
        for b in input {
            buf.extend_from_slice(&[*b]);
            loop {
                match f.decode(&mut buf)? {
                    Decoded::Data(d) => out.extend_from_slice(&d),
                    Decoded::NeedMore => break,
                    Decoded::End => return Ok((out, true)),
                }
            }
        }
        Ok((out, false))
    }

    #[test]
    fn chunked_bodies_decode_at_every_split() {
        let (out, done) = decode_all(
            Framing::Chunked(Chunk::Size),
            b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nx-trailer: 1\r\n\r\n",
        )
        .unwrap();
        assert!(done);
        assert_eq!(out, b"hello world");
    }

    #[test]
    fn malformed_chunks_are_errors() {
        for bad in [&b"zz\r\n"[..], b"5\r\nhelloXX", b"\r\n"] {
            assert!(
                decode_all(Framing::Chunked(Chunk::Size), bad).is_err(),
                "{bad:?}"
            );
        }
        let long = vec![b'1'; MAX_LINE + 2];
        assert!(decode_all(Framing::Chunked(Chunk::Size), &long).is_err());
    }

    #[test]
    fn length_bodies_stop_at_their_length() {
        let (out, done) = decode_all(Framing::Length(3), b"abc").unwrap();
        assert!(done);
        assert_eq!(out, b"abc");
    }

    #[test]
    fn response_heads_parse_with_their_framing() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"[..],
        );
        assert!(matches!(
            parse_head(&mut buf, false),
            Ok(Some(ParsedHead::Informational))
        ));
        let Ok(Some(ParsedHead::Final(h))) = parse_head(&mut buf, false) else {
            panic!("no head");
        };
        assert_eq!(h.status, StatusCode::OK);
        assert!(h.keep_alive);
        assert!(matches!(h.framing, Framing::Length(2)));
        assert_eq!(&buf[..], b"ok");

        let mut buf = BytesMut::from(&b"HTTP/1.0 200 OK\r\n\r\nrest"[..]);
        let Ok(Some(ParsedHead::Final(h))) = parse_head(&mut buf, false) else {
            panic!("no head");
        };
        assert!(!h.keep_alive);
        assert!(matches!(h.framing, Framing::Close));

        for garbage in [
            &b"SSH-2.0-OpenSSH\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
        ] {
            let mut buf = BytesMut::from(garbage);
            assert!(parse_head(&mut buf, false).is_err(), "{garbage:?}");
        }
    }

    proptest::proptest! {
        /// Whatever a backend sends, parsing and decoding return a value or an error: no panic,
        /// no endless loop, and never more body bytes than were received.
        #[test]
        fn any_backend_bytes_are_handled(
            head in 0usize..4,
            tail in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
            split in 0usize..700,
        ) {
            // Random bytes, or random bytes after a valid head of each framing.
            let heads: [&[u8]; 4] = [
                b"",
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
                b"HTTP/1.1 200 OK\r\ncontent-length: 40\r\n\r\n",
                b"HTTP/1.0 200 OK\r\n\r\n",
            ];
            let mut input = heads[head].to_vec();
            input.extend_from_slice(&tail);
            let mut buf = BytesMut::from(&input[..split.min(input.len())]);
            let rest = &input[split.min(input.len())..];
            if let Ok(Some(ParsedHead::Final(h))) = parse_head(&mut buf, false) {
                buf.extend_from_slice(rest);
                let mut f = h.framing;
                let mut total = 0usize;
                for _ in 0..1000 {
                    match f.decode(&mut buf) {
                        Ok(Decoded::Data(d)) => total += d.len(),
                        Ok(Decoded::NeedMore | Decoded::End) | Err(_) => break,
                    }
                }
                proptest::prop_assert!(total <= input.len());
            }
        }
    }
}
