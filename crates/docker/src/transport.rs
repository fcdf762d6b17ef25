//! HTTP/1.1 over the daemon's unix socket: one connection per request (cheap on a local
//! socket, and a restarted daemon never leaves a stale pooled connection behind), the
//! answer's head bounded by the client's timeout, error statuses turned into
//! [`DockerError::Api`] with the daemon's own message.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use crate::{API_VERSION, ByteStream, CONNECT_TIMEOUT, Docker, DockerError};

/// Request bodies: a whole buffer or a stream (a tar produced while it is sent).
pub(crate) type ReqBody = BoxBody<Bytes, std::io::Error>;

/// Largest answer read whole (inspect, list, ...); streams are not limited.
const MAX_BODY: usize = 64 << 20;

/// Characters escaped in a path segment (ids, names, image references keep `/` and `:`).
const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/')
    .remove(b':')
    .remove(b'@');

/// Escapes `s` for use inside a request path.
pub(crate) fn seg(s: &str) -> String {
    utf8_percent_encode(s, PATH).to_string()
}

/// One request to the Engine API.
pub(crate) struct Call {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    body: Option<(ReqBody, &'static str)>,
    versioned: bool,
    timeout: Option<Duration>,
}

impl Call {
    fn new(method: Method, path: impl Into<String>) -> Call {
        Call {
            method,
            path: path.into(),
            query: Vec::new(),
            body: None,
            versioned: true,
            timeout: None,
        }
    }

    pub(crate) fn get(path: impl Into<String>) -> Call {
        Call::new(Method::GET, path)
    }

    pub(crate) fn post(path: impl Into<String>) -> Call {
        Call::new(Method::POST, path)
    }

    pub(crate) fn delete(path: impl Into<String>) -> Call {
        Call::new(Method::DELETE, path)
    }

    /// Adds `name=value` to the query string.
    pub(crate) fn query(mut self, name: &str, value: impl ToString) -> Call {
        self.query.push((name.to_owned(), value.to_string()));
        self
    }

    /// A JSON body.
    pub(crate) fn json(mut self, value: &impl Serialize) -> Result<Call, DockerError> {
        let bytes = serde_json::to_vec(value).map_err(|e| {
            DockerError::Invalid(format!("cannot encode the body of {}: {e}", self.context()))
        })?;
        self.body = Some((full(Bytes::from(bytes)), "application/json"));
        Ok(self)
    }

    /// Any body with its content type.
    pub(crate) fn body(mut self, body: ReqBody, content_type: &'static str) -> Call {
        self.body = Some((body, content_type));
        self
    }

    /// Without the `/v1.41` prefix (for `/_ping`).
    pub(crate) fn unversioned(mut self) -> Call {
        self.versioned = false;
        self
    }

    /// Another limit for the answer's head than the client's.
    pub(crate) fn timeout(mut self, timeout: Duration) -> Call {
        self.timeout = Some(timeout);
        self
    }

    /// `METHOD /path`, for messages.
    pub(crate) fn context(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    fn uri(&self) -> String {
        let mut uri = if self.versioned {
            format!("/{API_VERSION}{}", self.path)
        } else {
            self.path.clone()
        };
        for (i, (name, value)) in self.query.iter().enumerate() {
            uri.push(if i == 0 { '?' } else { '&' });
            uri.push_str(&utf8_percent_encode(name, NON_ALPHANUMERIC).to_string());
            uri.push('=');
            uri.push_str(&utf8_percent_encode(value, NON_ALPHANUMERIC).to_string());
        }
        uri
    }
}

/// A whole-buffer request body.
pub(crate) fn full(bytes: Bytes) -> ReqBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// A streamed request body fed from a channel of chunks.
pub(crate) fn channel_body(
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> ReqBody {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item.map(Frame::data), rx))
    });
    http_body_util::BodyExt::boxed(StreamBody::new(stream))
}

impl Docker {
    /// Sends `call`; returns the answer once its head arrived with a success status.
    pub(crate) async fn send(&self, call: Call) -> Result<Response<Incoming>, DockerError> {
        let context = call.context();
        let limit = call.timeout.unwrap_or(self.timeout);
        match tokio::time::timeout(limit, self.send_unbounded(call, &context)).await {
            Ok(result) => result,
            Err(_) => Err(DockerError::Timeout {
                socket: self.socket.clone(),
                context,
                after: limit,
            }),
        }
    }

    async fn send_unbounded(
        &self,
        call: Call,
        context: &str,
    ) -> Result<Response<Incoming>, DockerError> {
        let unreachable = |source| DockerError::Unreachable {
            socket: self.socket.clone(),
            source,
        };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, UnixStream::connect(&self.socket))
            .await
            .map_err(|_| {
                unreachable(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connecting took longer than {CONNECT_TIMEOUT:?}"),
                ))
            })?
            .map_err(unreachable)?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.broken(context, e))?;
        // The connection task ends when the answer's body is read or dropped.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let uri = call.uri();
        let (body, content_type) = match call.body {
            Some((body, ct)) => (body, Some(ct)),
            None => (full(Bytes::new()), None),
        };
        let mut request = Request::builder()
            .method(call.method)
            .uri(uri)
            .header(hyper::header::HOST, "docker")
            .header(hyper::header::USER_AGENT, "sluice-docker");
        if let Some(ct) = content_type {
            request = request.header(hyper::header::CONTENT_TYPE, ct);
        }
        let request = request.body(body).map_err(|e| {
            DockerError::Invalid(format!("cannot build the request {context}: {e}"))
        })?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| self.broken(context, e))?;
        let status = response.status();
        if status.is_success() || status == hyper::StatusCode::NOT_MODIFIED {
            return Ok(response);
        }
        let body = read_limited(response.into_body(), 64 * 1024)
            .await
            .unwrap_or_default();
        let message = serde_json::from_slice::<ApiMessage>(&body)
            .map(|m| m.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).trim().to_owned());
        Err(DockerError::Api {
            context: context.to_owned(),
            status: status.as_u16(),
            message,
        })
    }

    /// Sends `call` and reads the whole answer (bounded by the client's timeout too).
    pub(crate) async fn call(&self, call: Call) -> Result<Bytes, DockerError> {
        let context = call.context();
        let limit = call.timeout.unwrap_or(self.timeout);
        let work = async {
            let response = self.send(call).await?;
            read_limited(response.into_body(), MAX_BODY)
                .await
                .map_err(|e| self.broken(&context, e))
        };
        match tokio::time::timeout(limit, work).await {
            Ok(result) => result,
            Err(_) => Err(DockerError::Timeout {
                socket: self.socket.clone(),
                context,
                after: limit,
            }),
        }
    }

    /// Sends `call` and decodes the answer as JSON.
    pub(crate) async fn call_json<T: DeserializeOwned>(
        &self,
        call: Call,
    ) -> Result<T, DockerError> {
        let context = call.context();
        let body = self.call(call).await?;
        serde_json::from_slice(&body).map_err(|e| DockerError::Protocol {
            context,
            reason: format!("cannot decode the JSON answer: {e}"),
        })
    }

    /// The body of an answer as a stream of chunks; a broken connection ends it with
    /// [`DockerError::Connection`].
    pub(crate) fn body_stream(&self, response: Response<Incoming>, context: String) -> ByteStream {
        let socket = self.socket.clone();
        let state = Some((response.into_body(), socket, context));
        futures_util::stream::unfold(state, |state| async move {
            let (mut body, socket, context) = state?;
            loop {
                match body.frame().await {
                    None => return None,
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) if data.is_empty() => {}
                        Ok(data) => return Some((Ok(data), Some((body, socket, context)))),
                        // Trailers carry nothing we use.
                        Err(_) => {}
                    },
                    Some(Err(e)) => {
                        let err = DockerError::Connection {
                            socket,
                            context,
                            source: std::io::Error::other(e),
                        };
                        return Some((Err(err), None));
                    }
                }
            }
        })
        .boxed()
    }

    fn broken(&self, context: &str, e: hyper::Error) -> DockerError {
        DockerError::Connection {
            socket: self.socket.clone(),
            context: context.to_owned(),
            source: std::io::Error::other(e),
        }
    }
}

/// The error body of the Engine API.
#[derive(serde::Deserialize)]
struct ApiMessage {
    message: String,
}

/// Reads a whole body, refusing more than `limit` bytes.
async fn read_limited(mut body: Incoming, limit: usize) -> Result<Bytes, hyper::Error> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            out.extend_from_slice(&data);
            if out.len() > limit {
                out.truncate(limit);
                break;
            }
        }
    }
    Ok(Bytes::from(out))
}

/// Splits a stream of JSON messages (the build, import and pull progress formats) into
/// values as they complete; keeps an incomplete tail for the next chunk.
#[derive(Default)]
pub(crate) struct JsonMessages {
    buf: Vec<u8>,
}

impl JsonMessages {
    /// Feeds a chunk; returns the complete values it finished, or an error for bytes that
    /// can never become JSON.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Result<Vec<serde_json::Value>, String> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut consumed = 0;
        let mut stream =
            serde_json::Deserializer::from_slice(&self.buf).into_iter::<serde_json::Value>();
        loop {
            match stream.next() {
                Some(Ok(value)) => {
                    consumed = stream.byte_offset();
                    out.push(value);
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(e)) => return Err(e.to_string()),
                None => {
                    consumed = stream.byte_offset();
                    break;
                }
            }
        }
        self.buf.drain(..consumed);
        Ok(out)
    }

    /// Whether nothing but whitespace is left over.
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.iter().all(u8::is_ascii_whitespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_messages_split_across_chunks() {
        let mut m = JsonMessages::default();
        assert!(m.push(br#"{"stream":"Step 1/2"#).unwrap().is_empty());
        let v = m
            .push(b"\"}\r\n{\"aux\":{\"ID\":\"sha256:1\"}}\r\n{")
            .unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0]["stream"], "Step 1/2");
        assert_eq!(v[1]["aux"]["ID"], "sha256:1");
        assert!(!m.is_empty());
        assert_eq!(m.push(b"}").unwrap().len(), 1);
        assert!(m.is_empty());
        assert!(m.push(b"]garbage").is_err());
    }

    #[test]
    fn uris_are_escaped() {
        let call = Call::get(format!("/images/{}/json", seg("localhost:5000/a b")))
            .query("filters", r#"{"label":["a=b"]}"#)
            .query("all", true);
        assert_eq!(
            call.uri(),
            "/v1.41/images/localhost:5000/a%20b/json?filters=%7B%22label%22%3A%5B%22a%3Db%22%5D%7D&all=true"
        );
    }
}
