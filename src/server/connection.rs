//! One accepted socket: TLS when configured, then HTTP/1.1 through hyper,
//! until the connection either closes or upgrades to a WebSocket session.
//!
//! The handshake deadline covers, from accept, the TLS handshake, the first
//! request, and for a WebSocket the authentication that follows the upgrade.
//! Later requests on a kept-alive connection get the same time each for
//! their headers (hyper's header timeout), so a slow sender never holds a
//! connection open for free.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until, timeout_at};
use tokio_rustls::TlsAcceptor;
use tower_http::services::ServeDir;

use super::core::Core;
use super::files;
use super::handshake::{self, Admission, Credentials, WS_PATH};
use super::http::{self, Body};
use super::session::{self, Admitted, Wire};

/// What every connection on the listening port goes through.
pub(crate) struct Frontend {
    /// The server's shared state.
    pub(crate) core: Arc<Core>,
    /// Set when the server speaks `wss://`.
    pub(crate) tls: Option<TlsAcceptor>,
    /// The web root, when the configuration has one.
    pub(crate) files: Option<ServeDir>,
}

/// A WebSocket upgrade answered with 101, waiting for hyper to hand over the socket.
struct PendingUpgrade {
    socket: OnUpgrade,
    credentials: Credentials,
    /// When authentication must be done by.
    deadline: Instant,
}

/// What the request handler tells the connection task.
struct Exchange {
    first_request_seen: AtomicBool,
    upgrade: Mutex<Option<PendingUpgrade>>,
}

/// An accepted connection, counted in [`Core::open_connections`] until it
/// is dropped; it holds a clone of the server's `alive` sender, so the
/// server knows when the last connection has ended.
pub(crate) struct OpenConnection {
    core: Arc<Core>,
    _alive: Sender<()>,
}

impl OpenConnection {
    /// Counts a connection as open, with a clone of the server's `alive`
    /// sender; returns its guard and how many are open with it.
    pub(crate) fn count(core: Arc<Core>, alive: Sender<()>) -> (OpenConnection, usize) {
        let open_now = core.open_connections.fetch_add(1, Ordering::Relaxed) + 1;
        (OpenConnection { core, _alive: alive }, open_now)
    }

    /// The server's shared state.
    fn core(&self) -> Arc<Core> {
        self.core.clone()
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.core.open_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one accepted TCP connection until it ends. `full` says the server
/// was at its connection limit when it was accepted.
///
/// Not an `async fn`: one would keep room for its arguments, the socket
/// among them, for the whole session. The handshake is boxed, so hyper's
/// and TLS's state is freed once the session starts instead of sizing every
/// idle session's task; the session's future is made before it is awaited,
/// so the `Admitted` it is made of is not kept beside it.
pub(crate) fn serve(
    frontend: Arc<Frontend>,
    tcp: TcpStream,
    full: bool,
    open: OpenConnection,
) -> impl Future<Output = ()> + Send {
    let mut stopping = frontend.core.stopping.clone();
    let handshake = Box::pin(handshake(frontend, tcp, full));
    async move {
        // A connection still in its handshake when the server stops is
        // dropped; a session closes itself with 1001 when asked.
        let session = match tokio::select! {
            admitted = handshake => admitted,
            _ = stopping.wait_for(|s| *s) => None,
        } {
            Some(admitted) => session::run(open.core(), admitted),
            None => return,
        };
        session.await;
    }
}

/// TLS, HTTP requests, and when one upgrades, the WebSocket and its user.
async fn handshake(frontend: Arc<Frontend>, tcp: TcpStream, full: bool) -> Option<Admitted> {
    let deadline = Instant::now() + frontend.core.config.limits.handshake_timeout();
    let exchange = Arc::new(Exchange {
        first_request_seen: AtomicBool::new(false),
        upgrade: Mutex::new(None),
    });
    match &frontend.tls {
        None => serve_http(&frontend, tcp, full, deadline, &exchange).await,
        Some(tls) => match timeout_at(deadline, tls.accept(tcp)).await {
            Ok(Ok(tls_stream)) => serve_http(&frontend, tls_stream, full, deadline, &exchange).await,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                return None;
            }
            Err(_) => {
                tracing::debug!("TLS handshake timed out");
                return None;
            }
        },
    }
    let pending = exchange.upgrade.lock().expect("never poisoned").take()?;
    let Ok(Ok(upgraded)) = timeout_at(pending.deadline, pending.socket).await else {
        return None;
    };
    let wire = Wire::new(upgraded, frontend.core.config.limits.max_frame_bytes);
    session::admit(&frontend.core, wire, pending.credentials, pending.deadline).await
}

/// Runs hyper on `io` until the connection closes or upgrades.
async fn serve_http<I>(frontend: &Arc<Frontend>, io: I, full: bool, deadline: Instant, exchange: &Arc<Exchange>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let handler = {
        let frontend = frontend.clone();
        let exchange = exchange.clone();
        service_fn(move |request| {
            let frontend = frontend.clone();
            let exchange = exchange.clone();
            async move { Ok::<_, Infallible>(respond(&frontend, &exchange, request, full, deadline).await) }
        })
    };
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .max_buf_size(http::MAX_HEADER_BYTES)
        .header_read_timeout(frontend.core.config.limits.handshake_timeout())
        .serve_connection(TokioIo::new(io), handler)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        _ = &mut connection => return,
        _ = sleep_until(deadline) => {}
    }
    // The deadline passed: a connection that never sent its first request goes.
    if exchange.first_request_seen.load(Ordering::Acquire) {
        let _ = connection.await;
    }
}

/// Routes one request.
async fn respond(
    frontend: &Frontend,
    exchange: &Exchange,
    mut request: Request<Incoming>,
    full: bool,
    connection_deadline: Instant,
) -> Response<Body> {
    let first = !exchange.first_request_seen.swap(true, Ordering::AcqRel);
    let core = &frontend.core;
    if !http::host_allowed(&request, &core.config.http.allowed_hosts) {
        return http::plain(hyper::StatusCode::MISDIRECTED_REQUEST, "unknown host");
    }
    if request.uri().path() == WS_PATH {
        let admission = Admission {
            full,
            origins: &core.config.origins,
        };
        return match handshake::accept(&request, admission) {
            Ok(accepted) => {
                // A later request on a kept-alive connection gets a deadline of its own.
                let deadline = if first {
                    connection_deadline
                } else {
                    Instant::now() + core.config.limits.handshake_timeout()
                };
                *exchange.upgrade.lock().expect("never poisoned") = Some(PendingUpgrade {
                    socket: hyper::upgrade::on(&mut request),
                    credentials: accepted.credentials,
                    deadline,
                });
                accepted.response
            }
            Err(refusal) => refusal.into_response(),
        };
    }
    let security = http::security_headers(&request);
    let mut response = if full {
        http::plain(hyper::StatusCode::SERVICE_UNAVAILABLE, "too many connections")
    } else if let Some(response) = http::probe(&request, core.degraded(), || core.render_metrics()) {
        response
    } else {
        match files::respond(core, request).await {
            Ok(response) => response,
            Err(request) => http::serve_file(frontend.files.as_ref(), request).await,
        }
    };
    response.headers_mut().extend(security);
    response
}
