//! The WebSocket upgrade on `/ws` and the token it may carry.

use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{StatusCode, header};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::config::{Limits, OriginsConfig};

/// The one path the server upgrades.
pub const WS_PATH: &str = "/ws";

/// A connection after the upgrade.
pub struct Upgraded {
    /// The WebSocket.
    pub ws: WebSocketStream<TcpStream>,
    /// The token from `Authorization: Bearer` or `?token=`, if the client sent one.
    pub token: Option<String>,
}

/// tungstenite's buffers sized for many small messages, with the configured
/// limits: its defaults (128 KiB read buffer, 64 MiB messages) suit neither.
pub fn websocket_config(limits: &Limits) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(16 * 1024)
        .max_write_buffer_size(16 * 1024 + 2 * limits.max_frame_bytes + limits.outbound_queue_bytes)
        .max_message_size(Some(limits.max_frame_bytes))
        .max_frame_size(Some(limits.max_frame_bytes))
        .accept_unmasked_frames(false)
}

/// What the handshake checks besides the path.
pub struct Admission<'a> {
    /// The server is at its connection limit: refuse with 503.
    pub full: bool,
    /// Which browser origins may connect.
    pub origins: &'a OriginsConfig,
}

/// Upgrades `tcp`, refusing any path but [`WS_PATH`] with 404, a full server
/// with 503, and an origin the configuration does not allow with 403.
pub async fn upgrade(
    tcp: TcpStream,
    config: WebSocketConfig,
    admission: Admission<'_>,
) -> Result<Upgraded, tokio_tungstenite::tungstenite::Error> {
    let mut token = None;
    // The signature is tungstenite's Callback; its error type is not ours to shrink.
    #[allow(clippy::result_large_err)]
    let check = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        let refuse = |status: StatusCode, why: &str| {
            let mut refusal = ErrorResponse::new(Some(why.into()));
            *refusal.status_mut() = status;
            Err(refusal)
        };
        if request.uri().path() != WS_PATH {
            return refuse(StatusCode::NOT_FOUND, "not found");
        }
        if admission.full {
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "too many connections");
        }
        if !origin_allowed(request, admission.origins) {
            return refuse(StatusCode::FORBIDDEN, "origin not allowed");
        }
        token = token_of(request);
        Ok(response)
    };
    let ws = tokio_tungstenite::accept_hdr_async_with_config(tcp, check, Some(config)).await?;
    Ok(Upgraded { ws, token })
}

/// Whether the request's `Origin` passes the allow-list.
fn origin_allowed(request: &Request, origins: &OriginsConfig) -> bool {
    match request.headers().get(header::ORIGIN).map(|o| o.to_str().unwrap_or("")) {
        Some(origin) => origins.allowed.is_empty() || origins.allowed.iter().any(|allowed| allowed == origin),
        None => !origins.required,
    }
}

/// The bearer token of the `Authorization` header, else the `token` query parameter.
fn token_of(request: &Request) -> Option<String> {
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned());
    bearer.or_else(|| {
        form_urlencoded::parse(request.uri().query()?.as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str, authorization: Option<&str>) -> Request {
        let mut builder = Request::builder().uri(uri);
        if let Some(a) = authorization {
            builder = builder.header(header::AUTHORIZATION, a);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn origins_pass_the_allow_list_and_native_clients_pass_unless_required() {
        let with_origin = |origin: &str| {
            Request::builder()
                .uri("/ws")
                .header(header::ORIGIN, origin)
                .body(())
                .unwrap()
        };
        let open = OriginsConfig::default();
        let listed = OriginsConfig {
            allowed: vec!["https://good.example".into()],
            required: false,
        };
        let strict = OriginsConfig {
            allowed: listed.allowed.clone(),
            required: true,
        };
        assert!(origin_allowed(&with_origin("https://evil.example"), &open));
        assert!(origin_allowed(&with_origin("https://good.example"), &listed));
        assert!(!origin_allowed(&with_origin("https://evil.example"), &listed));
        assert!(!origin_allowed(&with_origin("https://good.example.evil"), &listed));
        assert!(origin_allowed(&request("/ws", None), &listed));
        assert!(!origin_allowed(&request("/ws", None), &strict));
    }

    #[test]
    fn header_wins_over_query_and_query_is_decoded() {
        assert_eq!(
            token_of(&request("/ws?token=q", Some("Bearer h"))).as_deref(),
            Some("h")
        );
        assert_eq!(
            token_of(&request("/ws?a=1&token=a%2Bb%20c", None)).as_deref(),
            Some("a+b c")
        );
        assert_eq!(token_of(&request("/ws", Some("Basic x"))), None);
        assert_eq!(token_of(&request("/ws", None)), None);
    }
}
