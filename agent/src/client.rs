//! The CLI's side of the API: one request per call over the Unix socket, blocking.
//!
//! A socket that is missing or refuses connections is [`ClientError::AgentDown`], so every
//! command says the same thing when no agent runs; an error answer is the agent's
//! [`ErrorBody`], diagnostics included, for the CLI to render.

use crate::api::{ErrorBody, PREFIX};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// Where the agent listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/sluice/agent.sock";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("agent not running at {socket}: start it with `sluice agent`")]
    AgentDown { socket: String },
    #[error("talking to the agent at {socket}: {detail}")]
    Transport { socket: String, detail: String },
    /// The agent answered with an error.
    #[error("{}", .body.message)]
    Api { status: u16, body: ErrorBody },
    #[error("the agent's answer is not what this CLI expects ({0}); are both the same version?")]
    Decode(String),
}

pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Client {
        Client {
            socket: socket.into(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends one request to `/v1{path}` and decodes a 2xx answer as `T`.
    pub fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<T, ClientError> {
        let (status, bytes) = self.raw(method, path, body)?;
        if !status.is_success() {
            let body: ErrorBody = serde_json::from_slice(&bytes).map_err(|e| {
                ClientError::Decode(format!(
                    "status {status}, body {:?}: {e}",
                    String::from_utf8_lossy(&bytes)
                ))
            })?;
            return Err(ClientError::Api {
                status: status.as_u16(),
                body,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// The status and body of one request, whatever the status.
    pub fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let socket = self.socket.display().to_string();
        let transport = |detail: String| ClientError::Transport {
            socket: socket.clone(),
            detail,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| transport(e.to_string()))?;
        rt.block_on(async {
            let stream = match tokio::net::UnixStream::connect(&self.socket).await {
                Ok(s) => s,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                    ) =>
                {
                    return Err(ClientError::AgentDown {
                        socket: socket.clone(),
                    });
                }
                Err(e) => return Err(transport(e.to_string())),
            };
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| transport(e.to_string()))?;
            let conn = tokio::spawn(conn);
            let req = Request::builder()
                .method(method)
                .uri(format!("{PREFIX}{path}"))
                .header(hyper::header::HOST, "sluice-agent")
                .body(Full::new(Bytes::from(body.unwrap_or_default())))
                .map_err(|e| transport(e.to_string()))?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| transport(e.to_string()))?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| transport(e.to_string()))?
                .to_bytes();
            drop(sender);
            let _ = conn.await;
            Ok((status, bytes))
        })
    }
}
