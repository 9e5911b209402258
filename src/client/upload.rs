//! Uploads a file to the client's server: `POST /files` over HTTP(S) on the
//! WebSocket's own host and port (docs/PROTOCOL.md, "Files"), with hyper,
//! the same token and the same TLS trust as the WebSocket.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::Connector;

use super::connection::Shared;
use crate::error::Error;

/// How long an upload may take from connect to answer.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// Bytes read from the file per chunk of the request body.
const CHUNK_BYTES: usize = 64 * 1024;

/// Uploads the file at `path` to the first configured server that answers,
/// and returns the server's JSON answer: `{"id":…,"size":…,"type":…}`.
pub(crate) fn upload(shared: &Shared, path: &Path, content_type: Option<&str>) -> Result<String, Error> {
    // On a thread of its own: the caller may be on some tokio runtime's
    // thread, where a second runtime can neither block nor be dropped.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| Error::Io(format!("could not start the upload: {e}")))?
                    .block_on(upload_anywhere(shared, path, content_type))
            })
            .join()
            .unwrap_or_else(|_| Err(Error::Io("the upload panicked".into())))
    })
}

/// Tries each configured server in turn until one answers.
async fn upload_anywhere(shared: &Shared, path: &Path, content_type: Option<&str>) -> Result<String, Error> {
    let mut last = Error::Io("no server configured".into());
    for server in shared.config.servers() {
        match timeout(UPLOAD_TIMEOUT, upload_to(shared, server, path, content_type)).await {
            Ok(Ok(answer)) => return Ok(answer),
            // The server answered: another one would answer the same.
            Ok(Err(refused @ Error::InvalidArgument(_))) => return Err(refused),
            Ok(Err(e)) => last = e,
            Err(_) => last = Error::Io(format!("{server}: the upload timed out")),
        }
    }
    Err(last)
}

/// The `/files` URL beside a `ws://` or `wss://` server URL, and whether it is TLS.
fn files_url(server: &str) -> Result<(Uri, bool), Error> {
    let bad = |why: &str| Error::InvalidConfig(format!("url {server}: {why}"));
    let ws: Uri = server.parse().map_err(|_| bad("not a URL"))?;
    let tls = match ws.scheme_str() {
        Some("ws") => false,
        Some("wss") => true,
        _ => return Err(bad("not ws:// or wss://")),
    };
    let authority = ws.authority().ok_or_else(|| bad("no host"))?;
    let url = format!("{}://{authority}/files", if tls { "https" } else { "http" });
    Ok((url.parse().map_err(|_| bad("no host"))?, tls))
}

async fn upload_to(shared: &Shared, server: &str, path: &Path, content_type: Option<&str>) -> Result<String, Error> {
    let (url, tls) = files_url(server)?;
    let failed = |e: &dyn std::fmt::Display| Error::Io(format!("{server}: {e}"));
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))?;
    let size = file.metadata().await.map_err(|e| failed(&e))?.len();
    // An IPv6 literal comes with its brackets, which neither connect nor TLS takes.
    let host = url
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = url.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let patience = Duration::from_millis(shared.config.dead_after_ms);
    let tcp = timeout(patience, TcpStream::connect((host.as_str(), port)))
        .await
        .map_err(|_| failed(&"connecting timed out"))?
        .map_err(|e| failed(&e))?;
    let mut request = Request::post(url.path())
        .header(HOST, url.authority().map_or(host.clone(), |a| a.to_string()))
        .header(AUTHORIZATION, format!("Bearer {}", shared.config.token))
        .header(CONTENT_LENGTH, size);
    if let Some(content_type) = content_type {
        request = request.header(CONTENT_TYPE, content_type);
    }
    let request = request.body(file_body(file)).map_err(|e| failed(&e))?;
    let (status, answer) = if tls {
        let name = ServerName::try_from(host.clone()).map_err(|e| failed(&e))?;
        let stream = tls_connector(shared).connect(name, tcp).await.map_err(|e| failed(&e))?;
        exchange(stream, request).await
    } else {
        exchange(tcp, request).await
    }
    .map_err(|e| failed(&e))?;
    match status {
        StatusCode::CREATED => Ok(answer),
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::INSUFFICIENT_STORAGE | StatusCode::UNAUTHORIZED => Err(
            Error::InvalidArgument(format!("the server refused the upload: {status}: {}", answer.trim())),
        ),
        StatusCode::NOT_FOUND => Err(Error::InvalidArgument(format!(
            "the server takes no files (no files.dir): {status}"
        ))),
        _ => Err(failed(&format_args!("{status}: {}", answer.trim()))),
    }
}

/// The file's bytes as a request body, read a chunk at a time.
fn file_body(
    file: tokio::fs::File,
) -> StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, std::io::Error>>> {
    StreamBody::new(stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut chunk = vec![0; CHUNK_BYTES];
        match file.read(&mut chunk).await {
            Ok(0) => None,
            Ok(n) => {
                chunk.truncate(n);
                Some((Ok(Frame::data(Bytes::from(chunk))), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    }))
}

/// The TLS trust of the WebSocket: the configured roots, or the public web's.
fn tls_connector(shared: &Shared) -> tokio_rustls::TlsConnector {
    let config = match &shared.tls {
        Some(Connector::Rustls(config)) => config.clone(),
        _ => Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .with_root_certificates(rustls::RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                })
                .with_no_client_auth(),
        ),
    };
    tokio_rustls::TlsConnector::from(config)
}

/// Sends `request` on `io` and reads the whole answer.
async fn exchange<I, B>(
    io: I,
    request: Request<B>,
) -> Result<(StatusCode, String), Box<dyn std::error::Error + Send + Sync>>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    let driving = tokio::spawn(connection);
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    driving.abort();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_url_is_beside_the_websocket() {
        let (url, tls) = files_url("ws://127.0.0.1:8080/ws?x=1").unwrap();
        assert_eq!((url.to_string().as_str(), tls), ("http://127.0.0.1:8080/files", false));
        let (url, tls) = files_url("wss://chat.example/ws").unwrap();
        assert_eq!((url.to_string().as_str(), tls), ("https://chat.example/files", true));
        assert!(files_url("http://x/ws").is_err());
    }
}
