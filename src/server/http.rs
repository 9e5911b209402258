//! Plain HTTP on the listening port: `/ws` upgrades (see [`super::handshake`]),
//! `/healthz`, `/metrics`, and the configured web root's files. hyper parses
//! every request; tower-http serves the files, refusing paths that climb out
//! of the root.

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tower_http::services::ServeDir;
use tower_service::Service;

use super::metrics;

/// The body of every response the server writes.
pub(crate) type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// Where liveness probes look.
pub(crate) const HEALTH_PATH: &str = "/healthz";

/// Where Prometheus scrapes.
pub(crate) const METRICS_PATH: &str = "/metrics";

/// The most bytes of request line and headers a request may have; hyper
/// answers a larger one with 431.
pub(crate) const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Whether `request` may be answered under `allowed` host names (none: any).
/// A DNS-rebinding page reaches the server under a name of its own; listing
/// the server's real names turns such requests away.
pub(crate) fn host_allowed<B>(request: &Request<B>, allowed: &[String]) -> bool {
    allowed.is_empty() || host_name(request).is_some_and(|name| allowed.iter().any(|a| a.eq_ignore_ascii_case(name)))
}

/// The request's `Host` header without its port.
fn host_name<B>(request: &Request<B>) -> Option<&str> {
    let host = request.headers().get(header::HOST)?.to_str().ok()?;
    let name = match host.rsplit_once(':') {
        // An IPv6 literal keeps its brackets; only a trailing :port is cut.
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    Some(name)
}

/// The headers every plain HTTP answer carries: the page runs only its own
/// scripts and styles, talks only to this server, is never framed, and no
/// file is sniffed into another type.
pub(crate) fn security_headers<B>(request: &Request<B>) -> HeaderMap {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)));
    let sockets = host.map_or(String::new(), |h| format!(" ws://{h} wss://{h}"));
    let policy = format!(
        "default-src 'self'; connect-src 'self'{sockets}; img-src 'self' data: blob:; media-src 'self' blob:; \
         frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
    );
    let mut headers = HeaderMap::new();
    if let Ok(policy) = HeaderValue::from_str(&policy) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers
}

/// A short text response.
pub(crate) fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    text_response(status, "text/plain; charset=utf-8", format!("{text}\n"))
}

/// A JSON response.
pub(crate) fn json_response(status: StatusCode, json: String) -> Response<Body> {
    text_response(status, "application/json", json)
}

fn text_response(status: StatusCode, content_type: &'static str, text: String) -> Response<Body> {
    let body = Full::new(Bytes::from(text))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Answers `/healthz` and `/metrics`; `None` for any other path. Health is
/// `ok`; or, while a dependency fails, `degraded: ` and why, with 503 when
/// the failure is `critical` (the node cannot store messages) and 200 when
/// the node still serves (a load balancer keeps sending it clients).
pub(crate) fn probe<B>(
    request: &Request<B>,
    degraded: Option<(bool, String)>,
    metrics_text: impl FnOnce() -> String,
) -> Option<Response<Body>> {
    let path = request.uri().path();
    if path != HEALTH_PATH && path != METRICS_PATH {
        return None;
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return Some(plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"));
    }
    Some(if path == HEALTH_PATH {
        match degraded {
            None => plain(StatusCode::OK, "ok"),
            Some((critical, why)) => text_response(
                if critical {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                },
                "text/plain; charset=utf-8",
                format!("degraded: {why}"),
            ),
        }
    } else {
        text_response(StatusCode::OK, metrics::CONTENT_TYPE, metrics_text())
    })
}

/// Serves a file of `files` (GET and HEAD), or 404 when there is no web root.
/// Paths that climb out of the root (`..`) are 404 too.
pub(crate) async fn serve_file<B>(files: Option<&ServeDir>, request: Request<B>) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Some(files) = files else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    // tower-http's `Service` answers a missing file with 404 and other I/O errors with 500.
    let Ok(response) = files.clone().call(request).await;
    response.map(BodyExt::boxed_unsync)
}
