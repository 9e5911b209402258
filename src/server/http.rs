//! Plain HTTP on the listening port: `/ws` upgrades (see [`super::handshake`]),
//! `/healthz`, `/metrics`, and the configured web root's files. hyper parses
//! every request; tower-http serves the files, refusing paths that climb out
//! of the root.

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderValue};
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

/// A short text response.
pub(crate) fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    text_response(status, "text/plain; charset=utf-8", format!("{text}\n"))
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

/// Answers `/healthz` and `/metrics`; `None` for any other path.
pub(crate) fn probe<B>(request: &Request<B>, metrics_text: impl FnOnce() -> String) -> Option<Response<Body>> {
    let path = request.uri().path();
    if path != HEALTH_PATH && path != METRICS_PATH {
        return None;
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return Some(plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"));
    }
    Some(if path == HEALTH_PATH {
        plain(StatusCode::OK, "ok")
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
