//! The HTTP API (spec/api.md) over a Unix socket, and optionally TCP with a bearer token.
//!
//! The socket is the trust boundary: mode 0600, owned by root, so only root talks to the
//! agent. TCP has no such boundary, so it is refused unless a token file is given, and then
//! every TCP request must carry `Authorization: Bearer <token>`. Bodies are read up to a limit
//! and refused past it, before anything is parsed. Every error is one JSON shape
//! ([`ErrorBody`]).

use crate::api::{ErrorBody, ErrorKind, PREFIX};
use crate::engine::{AgentError, Engine, EngineConfig};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::Mutex;

/// Default request body limit: far above any policy file, far below memory trouble.
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;

/// Everything `sluice agent` was told.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub engine: EngineConfig,
    /// redb lives here (`agent.redb`).
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    /// (name, text) of an inventory to import at startup.
    pub inventory: Option<(String, String)>,
    pub tcp: Option<SocketAddr>,
    pub token_file: Option<PathBuf>,
    pub body_limit: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Start(#[from] AgentError),
    #[error("socket {path}: {source}")]
    Socket {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("another agent is serving {0}")]
    InUse(String),
    #[error("TCP needs a bearer token: give --token-file FILE (refusing to serve TCP without one)")]
    TcpWithoutToken,
    #[error("token file {path}: {reason}")]
    Token { path: String, reason: String },
    #[error("TCP {addr}: {source}")]
    Tcp {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("state directory {path}: {source}")]
    StateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// An error response: the status and the JSON body.
#[derive(Debug)]
pub struct ApiError(StatusCode, ErrorBody);

impl ApiError {
    fn new(kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError(
            status_of(kind),
            ErrorBody {
                kind,
                message: message.into(),
                diagnostics: Vec::new(),
                step: None,
            },
        )
    }
}

fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Rejected => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Swap | ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::NoInventory => StatusCode::CONFLICT,
    }
}

impl From<AgentError> for ApiError {
    fn from(e: AgentError) -> ApiError {
        let body = e.body();
        ApiError(status_of(body.kind), body)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(self.1)).into_response()
    }
}

struct AppState {
    engine: Arc<Mutex<Engine>>,
    body_limit: usize,
}

type Shared = Arc<AppState>;

/// Runs `f` on the engine on the blocking pool: one change at a time, in arrival order
/// (tokio's mutex is fair).
async fn with_engine<T: Send + 'static>(
    st: &Shared,
    f: impl FnOnce(&mut Engine) -> Result<T, AgentError> + Send + 'static,
) -> Result<T, ApiError> {
    let mut guard = st.engine.clone().lock_owned().await;
    tokio::task::spawn_blocking(move || f(&mut guard))
        .await
        .map_err(|e| ApiError::new(ErrorKind::Internal, format!("engine task: {e}")))?
        .map_err(ApiError::from)
}

fn json<T: serde::Serialize>(v: T) -> Response {
    axum::Json(v).into_response()
}

/// The body as UTF-8 text, refused past the limit (by `Content-Length` at once, else while
/// reading).
async fn text_body(st: &Shared, headers: &HeaderMap, body: Body) -> Result<String, ApiError> {
    let limit = st.body_limit;
    let too_large = || {
        ApiError::new(
            ErrorKind::TooLarge,
            format!("the request body is over the agent's limit of {limit} bytes"),
        )
    };
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limit as u64
    {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        let over = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if over {
            too_large()
        } else {
            ApiError::new(ErrorKind::BadRequest, format!("reading the body: {e}"))
        }
    })?;
    String::from_utf8(bytes.to_vec())
        .map_err(|e| ApiError::new(ErrorKind::BadRequest, format!("the body is not UTF-8: {e}")))
}

async fn status(State(st): State<Shared>) -> Result<Response, ApiError> {
    Ok(json(with_engine(&st, |e| e.status()).await?))
}

async fn list_policies(State(st): State<Shared>) -> Result<Response, ApiError> {
    Ok(json(with_engine(&st, |e| Ok(e.policies())).await?))
}

async fn get_policy(
    State(st): State<Shared>,
    UrlPath(name): UrlPath<String>,
) -> Result<Response, ApiError> {
    Ok(json(with_engine(&st, move |e| e.policy(&name)).await?))
}

async fn put_policy(
    State(st): State<Shared>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let text = text_body(&st, &headers, body).await?;
    Ok(json(
        with_engine(&st, move |e| e.change(&name, Some(text))).await?,
    ))
}

async fn delete_policy(
    State(st): State<Shared>,
    UrlPath(name): UrlPath<String>,
) -> Result<Response, ApiError> {
    Ok(json(
        with_engine(&st, move |e| e.change(&name, None)).await?,
    ))
}

async fn list_endpoints(State(st): State<Shared>) -> Result<Response, ApiError> {
    Ok(json(with_engine(&st, |e| Ok(e.endpoints())).await?))
}

async fn get_endpoint(
    State(st): State<Shared>,
    UrlPath((namespace, name)): UrlPath<(String, String)>,
) -> Result<Response, ApiError> {
    let ep = with_engine(&st, move |e| {
        e.endpoints()
            .into_iter()
            .find(|x| x.namespace == namespace && x.name == name)
            .ok_or_else(|| AgentError::NotFound(format!("{namespace}/{name}")))
    })
    .await?;
    Ok(json(ep))
}

async fn generations(State(st): State<Shared>) -> Result<Response, ApiError> {
    Ok(json(with_engine(&st, |e| e.generations()).await?))
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        format!(
            "no route {} {} (spec/api.md)",
            req.method(),
            req.uri().path()
        ),
    )
}

/// The API's routes (Wasm modules, IPAM, metrics and events will be more `/v1/...` routes here).
fn router(st: Shared) -> Router {
    let api = Router::new()
        .route("/status", get(status))
        .route("/policies", get(list_policies))
        .route(
            "/policies/{name}",
            get(get_policy).put(put_policy).delete(delete_policy),
        )
        .route("/endpoints", get(list_endpoints))
        .route("/endpoints/{namespace}/{name}", get(get_endpoint))
        .route("/generations", get(generations));
    Router::new()
        .nest(PREFIX, api)
        .fallback(not_found)
        .with_state(st)
}

/// Refuses a TCP request without the bearer token (compared in constant time).
async fn require_token(
    State(token): State<Arc<String>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let (a, b) = (given.as_bytes(), token.as_bytes());
    let same = a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0;
    if !same {
        return Err(ApiError::new(
            ErrorKind::Unauthorized,
            "TCP requests need `Authorization: Bearer <token>` with the agent's token",
        ));
    }
    Ok(next.run(req).await)
}

fn read_token(path: &Path) -> Result<String, RunError> {
    let err = |reason: String| RunError::Token {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let token = text.trim().to_string();
    if token.len() < 16 {
        return Err(err("the token must be at least 16 characters".into()));
    }
    Ok(token)
}

/// Binds the socket with mode 0600, owned by root. A socket file left by a dead agent is
/// replaced; one a live agent answers on is not.
fn bind_socket(path: &Path) -> Result<tokio::net::UnixListener, RunError> {
    let err = |source| RunError::Socket {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "exists and is not a socket",
            )));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(RunError::InUse(path.display().to_string()));
        }
        std::fs::remove_file(path).map_err(err)?;
    }
    // No moment with a wider mode: the umask applies at bind, the chmod makes it explicit.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let listener = std::os::unix::net::UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = listener.map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    std::os::unix::fs::chown(path, Some(0), Some(0)).map_err(err)?;
    listener.set_nonblocking(true).map_err(err)?;
    tokio::net::UnixListener::from_std(listener).map_err(err)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the agent still serves; it stops when killed.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
    }
}

/// Runs the agent until SIGTERM or SIGINT. The generation stays in the kernel when the agent
/// stops: hooks keep enforcing, and the next start adopts them.
pub fn run(cfg: AgentConfig) -> Result<(), RunError> {
    // Checked before anything else, so a refused configuration changes nothing.
    let token = match (&cfg.tcp, &cfg.token_file) {
        (Some(_), None) => return Err(RunError::TcpWithoutToken),
        (Some(_), Some(p)) => Some(read_token(p)?),
        (None, _) => None,
    };
    std::fs::create_dir_all(&cfg.state_dir).map_err(|source| RunError::StateDir {
        path: cfg.state_dir.display().to_string(),
        source,
    })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    rt.block_on(async move {
        let engine = {
            let (ecfg, dir, inv) = (
                cfg.engine.clone(),
                cfg.state_dir.clone(),
                cfg.inventory.clone(),
            );
            tokio::task::spawn_blocking(move || Engine::start(ecfg, &dir, inv))
                .await
                .map_err(|e| RunError::Runtime(std::io::Error::other(e)))??
        };
        let st: Shared = Arc::new(AppState {
            engine: Arc::new(Mutex::new(engine)),
            body_limit: cfg.body_limit,
        });
        // Bound last: a client that can connect talks to a ready agent.
        let unix = bind_socket(&cfg.socket)?;
        tracing::info!(socket = %cfg.socket.display(), "serving");
        let app = router(st.clone());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let tcp_task = match (cfg.tcp, token) {
            (Some(addr), Some(token)) => {
                let l = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| RunError::Tcp { addr, source })?;
                tracing::info!(%addr, "serving TCP (bearer token required)");
                let app = app.clone().layer(middleware::from_fn_with_state(
                    Arc::new(token),
                    require_token,
                ));
                let mut rx = stop_rx.clone();
                Some(tokio::spawn(async move {
                    let _ = axum::serve(l, app)
                        .with_graceful_shutdown(async move {
                            let _ = rx.wait_for(|s| *s).await;
                        })
                        .await;
                }))
            }
            _ => None,
        };
        let served = axum::serve(unix, app)
            .with_graceful_shutdown(async move {
                shutdown_signal().await;
                let _ = stop_tx.send(true);
            })
            .await;
        if let Some(t) = tcp_task {
            let _ = t.await;
        }
        let _ = std::fs::remove_file(&cfg.socket);
        drop(stop_rx);
        served.map_err(RunError::Runtime)
    })
}
