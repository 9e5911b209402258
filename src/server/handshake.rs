//! The WebSocket upgrade on `/ws`: what it checks, what it answers, and the
//! token it may carry. hyper reads the request; this decides the response.

use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::http::{Body, plain};
use crate::config::OriginsConfig;

/// The one path the server upgrades.
pub(crate) const WS_PATH: &str = "/ws";

/// What the handshake checks besides the request itself.
pub(crate) struct Admission<'a> {
    /// The server is at its connection limit: refuse with 503.
    pub(crate) full: bool,
    /// Which browser origins may connect.
    pub(crate) origins: &'a OriginsConfig,
}

/// An upgrade the server agreed to.
pub(crate) struct Accepted {
    /// The `101 Switching Protocols` response.
    pub(crate) response: Response<Body>,
    /// What the request said about who it is.
    pub(crate) credentials: Credentials,
}

/// The token and device an upgrade request carries, if any.
pub(crate) struct Credentials {
    /// From `Authorization: Bearer` or `?token=`.
    pub(crate) token: Option<String>,
    /// From `?device=`; a device the token names wins.
    pub(crate) device: Option<String>,
}

/// An upgrade the server turned down, and why.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The HTTP status of the answer.
    pub(crate) status: StatusCode,
    /// The answer's text.
    pub(crate) why: &'static str,
}

impl Refusal {
    /// The response to send; a 426 names the version the server speaks.
    pub(crate) fn into_response(self) -> Response<Body> {
        let mut response = plain(self.status, self.why);
        if self.status == StatusCode::UPGRADE_REQUIRED {
            let headers = response.headers_mut();
            headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            headers.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        }
        response
    }
}

/// Checks an upgrade request to [`WS_PATH`]: 503 when the server is full,
/// 403 for an origin the configuration does not allow, 405 for a method but
/// `GET`, 426 for a request that is not a version-13 WebSocket upgrade, 400
/// without a key.
pub(crate) fn accept<B>(request: &Request<B>, admission: Admission<'_>) -> Result<Accepted, Refusal> {
    let refuse = |status, why| Err(Refusal { status, why });
    if admission.full {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "too many connections");
    }
    let headers = request.headers();
    if !origin_allowed(headers, admission.origins) {
        return refuse(StatusCode::FORBIDDEN, "origin not allowed");
    }
    if request.method() != Method::GET {
        return refuse(StatusCode::METHOD_NOT_ALLOWED, "a WebSocket upgrade is a GET");
    }
    let upgrading =
        has_token(headers, header::CONNECTION, "upgrade") && has_token(headers, header::UPGRADE, "websocket");
    let version_13 = headers.get(header::SEC_WEBSOCKET_VERSION).is_some_and(|v| v == "13");
    if !upgrading || !version_13 {
        return refuse(
            StatusCode::UPGRADE_REQUIRED,
            "expected a WebSocket (version 13) upgrade",
        );
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return refuse(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key");
    };
    let response = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, derive_accept_key(key.as_bytes()))
        .body(Body::default())
        .expect("a static response is valid");
    Ok(Accepted {
        response,
        credentials: Credentials {
            token: token_of(request),
            device: query_param(request, "device"),
        },
    })
}

/// Whether the comma-separated header `name` lists `token` (case-insensitively).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Whether the request's `Origin` passes the allow-list.
fn origin_allowed(headers: &HeaderMap, origins: &OriginsConfig) -> bool {
    match headers.get(header::ORIGIN).map(|o| o.to_str().unwrap_or("")) {
        Some(origin) => origins.allowed.is_empty() || origins.allowed.iter().any(|allowed| allowed == origin),
        None => !origins.required,
    }
}

/// The bearer token of the `Authorization` header, else the `token` query parameter.
pub(crate) fn token_of<B>(request: &Request<B>) -> Option<String> {
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned());
    bearer.or_else(|| query_param(request, "token"))
}

/// The query parameter `name`, decoded.
fn query_param<B>(request: &Request<B>, name: &str) -> Option<String> {
    form_urlencoded::parse(request.uri().query()?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str, extra: &[(header::HeaderName, &str)]) -> Request<()> {
        let mut builder = Request::builder()
            .uri(uri)
            .header(header::CONNECTION, "keep-alive, Upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_VERSION, "13")
            .header(header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ==");
        for (name, value) in extra {
            builder = builder.header(name, *value);
        }
        builder.body(()).unwrap()
    }

    fn status(request: &Request<()>, admission: Admission<'_>) -> StatusCode {
        match accept(request, admission) {
            Ok(accepted) => accepted.response.status(),
            Err(refusal) => refusal.status,
        }
    }

    fn open(origins: &OriginsConfig) -> Admission<'_> {
        Admission { full: false, origins }
    }

    #[test]
    fn a_valid_upgrade_gets_the_rfc_accept_key() {
        let origins = OriginsConfig::default();
        let accepted = accept(&request("/ws", &[]), open(&origins)).ok().unwrap();
        assert_eq!(accepted.response.status(), StatusCode::SWITCHING_PROTOCOLS);
        // The example of RFC 6455, section 1.3.
        assert_eq!(
            accepted.response.headers()[header::SEC_WEBSOCKET_ACCEPT],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn refusals_say_why_with_their_status() {
        let origins = OriginsConfig::default();
        let full = Admission {
            full: true,
            origins: &origins,
        };
        assert_eq!(status(&request("/ws", &[]), full), StatusCode::SERVICE_UNAVAILABLE);
        let mut post = request("/ws", &[]);
        *post.method_mut() = Method::POST;
        assert_eq!(status(&post, open(&origins)), StatusCode::METHOD_NOT_ALLOWED);
        let plain_get = Request::builder().uri("/ws").body(()).unwrap();
        assert_eq!(status(&plain_get, open(&origins)), StatusCode::UPGRADE_REQUIRED);
        let mut old = request("/ws", &[]);
        old.headers_mut()
            .insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("8"));
        assert_eq!(status(&old, open(&origins)), StatusCode::UPGRADE_REQUIRED);
        let mut keyless = request("/ws", &[]);
        keyless.headers_mut().remove(header::SEC_WEBSOCKET_KEY);
        assert_eq!(status(&keyless, open(&origins)), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn origins_pass_the_allow_list_and_native_clients_pass_unless_required() {
        let listed = OriginsConfig {
            allowed: vec!["https://good.example".into()],
            required: false,
        };
        let strict = OriginsConfig {
            allowed: listed.allowed.clone(),
            required: true,
        };
        let from = |origin: &str| request("/ws", &[(header::ORIGIN, origin)]);
        let forbidden = StatusCode::FORBIDDEN;
        let switching = StatusCode::SWITCHING_PROTOCOLS;
        assert_eq!(
            status(&from("https://evil.example"), open(&OriginsConfig::default())),
            switching
        );
        assert_eq!(status(&from("https://good.example"), open(&listed)), switching);
        assert_eq!(status(&from("https://evil.example"), open(&listed)), forbidden);
        assert_eq!(status(&from("https://good.example.evil"), open(&listed)), forbidden);
        assert_eq!(status(&request("/ws", &[]), open(&listed)), switching);
        assert_eq!(status(&request("/ws", &[]), open(&strict)), forbidden);
    }

    #[test]
    fn header_wins_over_query_and_query_is_decoded() {
        let bearer = |t: &str| (header::AUTHORIZATION, t.to_owned());
        let token = |uri: &str, auth: Option<(header::HeaderName, String)>| {
            let extra: Vec<_> = auth.iter().map(|(n, v)| (n.clone(), v.as_str())).collect();
            token_of(&request(uri, &extra))
        };
        assert_eq!(token("/ws?token=q", Some(bearer("Bearer h"))).as_deref(), Some("h"));
        assert_eq!(token("/ws?a=1&token=a%2Bb%20c", None).as_deref(), Some("a+b c"));
        assert_eq!(token("/ws", Some(bearer("Basic x"))), None);
        assert_eq!(token("/ws", None), None);
    }
}
