//! A small client for the sluice HTTP API, shared by the CLI subcommands: JSON requests,
//! the API's error shape turned into a CLI error with its exit code, and a Server-Sent
//! Events reader for `-f`/`--watch`.

use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::exit::{CliError, Exit};

/// An API client bound to one server URL.
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    /// A client for `base` (e.g. `http://127.0.0.1:7878`) that sends the API token from
    /// `SLUICE_TOKEN`, else the one `sluice login` saved for this server.
    pub fn new(base: &str) -> Client {
        let base = base.trim_end_matches('/').to_string();
        let token = std::env::var("SLUICE_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .or_else(|| crate::login::saved_token(&base));
        Client::with_token(&base, token.as_deref())
    }

    /// A client for `base` that sends `token` (if any).
    pub fn with_token(base: &str, token: Option<&str>) -> Client {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(v) =
            token.and_then(|t| reqwest::header::HeaderValue::from_str(&format!("Bearer {t}")).ok())
        {
            let mut v = v;
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        Client {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .pool_idle_timeout(None)
                .default_headers(headers)
                .build()
                .unwrap_or_default(),
        }
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{}", self.base, path)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, CliError> {
        let resp = req.send().await.map_err(|e| {
            CliError::new(
                Exit::Unreachable,
                format!(
                    "cannot reach the sluice server at {}: {}",
                    self.base,
                    root_cause(&e)
                ),
            )
            .hint("start it with `sluice server`, or point --server / SLUICE_SERVER at it")
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let msg = body["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("the server answered {status}"));
        let mut err = CliError::new(
            match status.as_u16() {
                404 => Exit::NotFound,
                401 | 403 => Exit::Denied,
                400 | 409 | 413 | 422 => Exit::Failed,
                _ => Exit::Server,
            },
            msg,
        );
        if let Some(h) = body["error"]["hint"].as_str() {
            err = err.hint(h);
        }
        if status.as_u16() == 429 {
            err = err.hint("too many failed attempts; wait and try again");
        }
        Err(err)
    }

    /// GET a JSON document.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, CliError> {
        let resp = self.send(self.http.get(self.url(path))).await?;
        decode(resp).await
    }

    /// POST a JSON body, decode the answer.
    pub async fn post<T: DeserializeOwned>(&self, path: &str, body: &Value) -> Result<T, CliError> {
        let resp = self.send(self.http.post(self.url(path)).json(body)).await?;
        decode(resp).await
    }

    /// DELETE.
    pub async fn delete(&self, path: &str) -> Result<(), CliError> {
        self.send(self.http.delete(self.url(path)))
            .await
            .map(|_| ())
    }

    /// DELETE with a JSON body.
    pub async fn delete_json(&self, path: &str, body: &Value) -> Result<(), CliError> {
        self.send(self.http.delete(self.url(path)).json(body))
            .await
            .map(|_| ())
    }

    /// PATCH a JSON body, decode the answer.
    pub async fn patch<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<T, CliError> {
        let resp = self
            .send(self.http.patch(self.url(path)).json(body))
            .await?;
        decode(resp).await
    }

    /// PUT a JSON body, decode the answer.
    pub async fn put<T: DeserializeOwned>(&self, path: &str, body: &Value) -> Result<T, CliError> {
        let resp = self.send(self.http.put(self.url(path)).json(body)).await?;
        decode(resp).await
    }

    /// Follows an SSE endpoint, calling `on_event(event, data)` until it returns false or
    /// the server closes the stream.
    pub async fn follow(
        &self,
        path: &str,
        mut on_event: impl FnMut(&str, &str) -> bool,
    ) -> Result<(), CliError> {
        let resp = self
            .send(
                self.http
                    .get(self.url(path))
                    .header("accept", "text/event-stream"),
            )
            .await?;
        let mut stream = resp.bytes_stream();
        let mut buf = String::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                CliError::new(
                    Exit::Unreachable,
                    format!("the stream broke: {}", root_cause(&e)),
                )
            })?;
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let mut event = "message".to_string();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        if !data.is_empty() {
                            data.push('\n');
                        }
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if data.is_empty() {
                    continue;
                }
                if !on_event(&event, &data) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

async fn decode<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T, CliError> {
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| CliError::new(Exit::Server, format!("reading the answer failed: {e}")))?;
    let bytes = if bytes.is_empty() {
        &b"null"[..]
    } else {
        &bytes[..]
    };
    serde_json::from_slice(bytes).map_err(|e| {
        CliError::new(
            Exit::Server,
            format!("the server's answer is not what this CLI expects: {e}"),
        )
    })
}

/// Percent-encodes a path segment or query value.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A query string (`?k=v&...`, encoded) of the pairs that have a value; empty if none has.
pub fn query(pairs: &[(&str, Option<String>)]) -> String {
    let q: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", enc(v))))
        .collect();
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
