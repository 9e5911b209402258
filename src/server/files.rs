//! Files beside the WebSocket (docs/PROTOCOL.md, "Files"): `POST /files`
//! streams an upload into `files.dir` under the SHA-256 of its bytes,
//! `GET /files/<id>` serves one to whoever may see it, and a collector
//! removes the files nobody needs any more. The store keeps the
//! bookkeeping; only the bytes are here.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tower_http::services::ServeFile;
use tower_service::Service;

use super::core::Core;
use super::http::{Body, json_response, plain};
use crate::config::FilesConfig;
use crate::protocol::now_ms;
use crate::store::{FileRecord, wait_for};

/// Where uploads go and files are served.
pub(crate) const FILES_PATH: &str = "/files";

/// The most files one message refers to.
const MAX_FILES_PER_MESSAGE: usize = 32;

/// How many first bytes of an upload its type is taken from.
const SNIFF_BYTES: usize = 8192;

/// Types a browser may show inline; every other is served as an attachment.
fn shown_inline(content_type: &str) -> bool {
    ["image/", "audio/", "video/"]
        .iter()
        .any(|p| content_type.starts_with(p))
        && content_type != "image/svg+xml"
        || content_type == "application/pdf"
}

/// Types that are taken from a request's header when the bytes say
/// nothing: none of them runs script in a browser.
const DECLARABLE_TYPES: &[&str] = &["text/plain", "text/csv", "text/markdown", "application/json"];

/// Types a browser would run script in, whatever the bytes look like.
const SCRIPTABLE_TYPES: &[&str] = &[
    "text/html",
    "application/xhtml+xml",
    "image/svg+xml",
    "text/xml",
    "application/xml",
    "text/javascript",
    "application/javascript",
];

/// Whether `id` is a file id: 64 lowercase hex digits.
pub(crate) fn is_file_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The file ids a body refers to: its `files`, an array of ids or of
/// objects with an `id`. A body without `files` refers to none.
pub(crate) fn referenced(body: &RawValue) -> Result<Vec<String>, String> {
    // Most bodies have no files: they are not parsed a second time. A key
    // can be written with escapes (`fil\u0065s`), so those are parsed too.
    if !body.get().contains("files") && !body.get().contains('\\') {
        return Ok(Vec::new());
    }
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_str(body.get()) else {
        return Ok(Vec::new());
    };
    let Some(files) = fields.get("files") else {
        return Ok(Vec::new());
    };
    let invalid = || "body.files must be an array of file ids, or of objects with an id".to_owned();
    let entries = files.as_array().ok_or_else(invalid)?;
    if entries.len() > MAX_FILES_PER_MESSAGE {
        return Err(format!("body.files names at most {MAX_FILES_PER_MESSAGE} files"));
    }
    let mut ids: Vec<String> = Vec::with_capacity(entries.len());
    for entry in entries {
        let id = match entry {
            serde_json::Value::String(id) => id,
            serde_json::Value::Object(file) => file.get("id").and_then(|id| id.as_str()).ok_or_else(invalid)?,
            _ => return Err(invalid()),
        };
        if !is_file_id(id) {
            return Err(format!("{id:?} is not a file id (64 lowercase hex digits)"));
        }
        if !ids.iter().any(|known| known == id) {
            ids.push(id.to_owned());
        }
    }
    Ok(ids)
}

/// The directory of files, and the lock that keeps an upload and the
/// collector from deciding about the same file at once.
pub(crate) struct FileShelf {
    dir: PathBuf,
    deciding: tokio::sync::Mutex<()>,
}

impl FileShelf {
    /// Creates `config.dir` (and its `tmp`) when missing, and clears `tmp`
    /// of uploads a crash left half done. `None` without a `dir`.
    pub(crate) fn open(config: &FilesConfig) -> std::io::Result<Option<FileShelf>> {
        let Some(dir) = &config.dir else {
            return Ok(None);
        };
        let dir = PathBuf::from(dir);
        let tmp = dir.join("tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir_all(&tmp)?;
        Ok(Some(FileShelf {
            dir,
            deciding: tokio::sync::Mutex::new(()),
        }))
    }

    /// Where the bytes of `id` are: `<dir>/<first two digits>/<id>`.
    pub(crate) fn path_of(&self, id: &str) -> PathBuf {
        self.dir.join(&id[..2]).join(id)
    }
}

/// Answers a request under `/files`; any other request comes back as the error.
pub(crate) async fn respond(core: &Arc<Core>, request: Request<Incoming>) -> Result<Response<Body>, Request<Incoming>> {
    let path = request.uri().path();
    let id = match path.strip_prefix(FILES_PATH) {
        Some("") => None,
        Some(rest) if rest.starts_with('/') => Some(rest[1..].to_owned()),
        _ => return Err(request),
    };
    let Some(shelf) = core.files.as_ref() else {
        return Ok(plain(StatusCode::NOT_FOUND, "not found"));
    };
    Ok(match (id, request.method().clone()) {
        (None, Method::POST) => upload(core, shelf, request).await,
        (Some(id), Method::GET | Method::HEAD) => download(core, shelf, request, &id).await,
        _ => plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
    })
}

/// The user the request's token stands for (a host id never is one).
async fn user_of<B>(core: &Core, request: &Request<B>) -> Option<Arc<str>> {
    let token = super::handshake::token_of(request)?;
    let identity = core.auth.authenticate(token, &core.gate).await?;
    (!core.config.host_ids.contains(&identity.user)).then(|| identity.user.into())
}

/// Why an upload was not kept.
enum Refusal {
    Status(StatusCode, &'static str),
    Io(std::io::Error),
}

impl From<std::io::Error> for Refusal {
    fn from(e: std::io::Error) -> Refusal {
        Refusal::Io(e)
    }
}

async fn upload(core: &Arc<Core>, shelf: &FileShelf, request: Request<Incoming>) -> Response<Body> {
    let Some(user) = user_of(core, &request).await else {
        return plain(StatusCode::UNAUTHORIZED, "a valid token is required");
    };
    let tmp = shelf
        .dir
        .join("tmp")
        .join(core.unique_name("upload", core.next_number()));
    let outcome = receive(core, shelf, &user, request, &tmp).await;
    let _ = tokio::fs::remove_file(&tmp).await;
    match outcome {
        Ok(file) => json_response(
            StatusCode::CREATED,
            serde_json::json!({ "id": file.file_id, "size": file.size, "type": file.content_type }).to_string(),
        ),
        Err(Refusal::Status(status, why)) => plain(status, why),
        Err(Refusal::Io(e)) => {
            tracing::error!(error = %e, "upload failed");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "the file could not be stored")
        }
    }
}

/// Streams the body into `tmp`, then files it under its hash; `tmp` is
/// left for the caller to remove whatever happened.
async fn receive(
    core: &Arc<Core>,
    shelf: &FileShelf,
    user: &Arc<str>,
    request: Request<Incoming>,
    tmp: &Path,
) -> Result<FileRecord, Refusal> {
    let limits = &core.config.files;
    let too_large = Refusal::Status(StatusCode::PAYLOAD_TOO_LARGE, "the file is over files.max_bytes");
    let over_quota = || {
        Refusal::Status(
            StatusCode::INSUFFICIENT_STORAGE,
            "the upload is over your files.quota_bytes",
        )
    };
    let declared_size = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared_size.is_some_and(|size| size > limits.max_bytes) {
        return Err(too_large);
    }
    let usage = {
        let (store, user) = (core.store.clone(), user.clone());
        tokio::task::spawn_blocking(move || store.upload_usage(&user))
            .await
            .map_err(|e| Refusal::Io(std::io::Error::other(e)))?
            .map_err(|e| Refusal::Io(std::io::Error::other(e.0)))?
    };
    let room = limits.quota_bytes.saturating_sub(usage);
    if declared_size.is_some_and(|size| size > room) {
        return Err(over_quota());
    }
    let declared_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body = request.into_body();
    let mut file = tokio::fs::File::create(tmp).await?;
    let (mut hasher, mut size, mut head) = (Sha256::new(), 0u64, Vec::new());
    // A sender that stops sending is cut off as an idle WebSocket would be.
    let idle = core.config.limits.idle_timeout();
    while let Some(frame) = tokio::time::timeout(idle, body.frame())
        .await
        .map_err(|_| Refusal::Status(StatusCode::REQUEST_TIMEOUT, "the upload stalled"))?
    {
        // The sender went away or broke HTTP: its problem, not the server's.
        let frame = frame.map_err(|_| Refusal::Status(StatusCode::BAD_REQUEST, "the upload was cut off"))?;
        let Ok(data) = frame.into_data() else { continue };
        size += data.len() as u64;
        if size > limits.max_bytes {
            return Err(too_large);
        }
        if size > room {
            return Err(over_quota());
        }
        if head.len() < SNIFF_BYTES {
            head.extend_from_slice(&data[..data.len().min(SNIFF_BYTES - head.len())]);
        }
        hasher.update(&data);
        file.write_all(&data).await?;
    }
    // Messages will refer to it once it is acknowledged: it must be on disk.
    file.sync_all().await?;
    drop(file);
    let record = FileRecord {
        file_id: hasher.finalize().iter().map(|b| format!("{b:02x}")).collect(),
        size,
        content_type: content_type_of(&head, declared_type.as_deref()),
    };
    let _deciding = shelf.deciding.lock().await;
    let saved = {
        let (store, user, quota) = (core.store.clone(), user.clone(), limits.quota_bytes);
        tokio::task::spawn_blocking(move || wait_for(|done| store.save_upload(user, record, quota, now_ms(), done)))
            .await
            .map_err(|e| Refusal::Io(std::io::Error::other(e)))?
            .map_err(|e| Refusal::Io(std::io::Error::other(e.0)))?
    };
    // As stored: the same bytes uploaded before keep the type they had.
    let record = saved.ok_or_else(over_quota)?;
    let path = shelf.path_of(&record.file_id);
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    tokio::fs::rename(tmp, &path).await?;
    // The rename (and a new shard directory) must be on disk before the id is
    // answered: a message may refer to it the moment it is.
    if let Some(parent) = path.parent() {
        tokio::fs::File::open(parent).await?.sync_all().await?;
        tokio::fs::File::open(&shelf.dir).await?.sync_all().await?;
    }
    Ok(record)
}

/// The type of a file from its first bytes; when they say nothing, the
/// declared one if it is harmless; else `application/octet-stream`.
fn content_type_of(head: &[u8], declared: Option<&str>) -> String {
    let sniffed = infer::get(head).map(|kind| kind.mime_type());
    let declared = declared
        .and_then(|d| d.split(';').next())
        .map(|d| d.trim().to_ascii_lowercase())
        .filter(|d| DECLARABLE_TYPES.contains(&d.as_str()));
    match (sniffed, declared) {
        (Some(sniffed), _) if !SCRIPTABLE_TYPES.contains(&sniffed) => sniffed.to_owned(),
        (None, Some(declared)) => declared,
        _ => "application/octet-stream".to_owned(),
    }
}

async fn download(core: &Arc<Core>, shelf: &FileShelf, request: Request<Incoming>, id: &str) -> Response<Body> {
    let Some(user) = user_of(core, &request).await else {
        return plain(StatusCode::UNAUTHORIZED, "a valid token is required");
    };
    let not_found = || plain(StatusCode::NOT_FOUND, "not found");
    if !is_file_id(id) {
        return not_found();
    }
    let found = {
        let (store, id) = (core.store.clone(), id.to_owned());
        tokio::task::spawn_blocking(move || store.file(&id, Some(&user))).await
    };
    let file = match found {
        Ok(Ok(Some(file))) => file,
        Ok(Ok(None)) => return not_found(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "file lookup failed");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "the file could not be read");
        }
        Err(_) => return plain(StatusCode::INTERNAL_SERVER_ERROR, "the file could not be read"),
    };
    let etag = format!("\"{id}\"");
    let unchanged = request
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    let mut response = if unchanged {
        plain(StatusCode::NOT_MODIFIED, "")
    } else {
        let mime = file.content_type.parse().unwrap_or(mime::APPLICATION_OCTET_STREAM);
        // tower-http answers ranges, HEAD and If-Modified-Since; a missing file is 404.
        let Ok(served) = ServeFile::new_with_mime(shelf.path_of(id), &mime).call(request).await;
        served.map(BodyExt::boxed_unsync)
    };
    let headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, etag);
    }
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=31536000, immutable"),
    );
    if !shown_inline(&file.content_type) {
        headers.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment"));
    }
    response
}

/// Removes, every so often, the files [`crate::store::Store::collect_files`]
/// gives up, until the server stops.
pub(crate) async fn collect(core: Arc<Core>) {
    let Some(shelf) = core.files.as_ref() else { return };
    let keep = core.config.files.unreferenced_ms;
    let every = Duration::from_millis((keep / 2).clamp(100, 60_000));
    let mut stopping = core.stopping.clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stopping.wait_for(|stopping| *stopping) => return,
        }
        let _deciding = shelf.deciding.lock().await;
        let store = core.store.clone();
        let uploaded_before = now_ms().saturating_sub(keep.min(i64::MAX as u64) as i64);
        let collected =
            tokio::task::spawn_blocking(move || wait_for(|done| store.collect_files(uploaded_before, done)));
        match collected.await {
            Ok(Ok(ids)) => {
                for id in ids {
                    if let Err(e) = tokio::fs::remove_file(shelf.path_of(&id)).await {
                        tracing::warn!(error = %e, file = %id, "could not remove a collected file");
                    }
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "collecting files failed"),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.into()).unwrap()
    }

    #[test]
    fn files_are_ids_or_objects_with_an_id() {
        assert_eq!(
            referenced(&raw(&format!(r#"{{"files":["{ID}",{{"id":"{ID}","name":"x"}}]}}"#))),
            Ok(vec![ID.to_owned()])
        );
        assert_eq!(referenced(&raw(r#"{"text":"files"}"#)), Ok(vec![]));
        assert_eq!(
            referenced(&raw(&format!(r#"{{"fil\u0065s":["{ID}"]}}"#))),
            Ok(vec![ID.to_owned()])
        );
        assert_eq!(referenced(&raw(r#""files""#)), Ok(vec![]));
        assert!(referenced(&raw(r#"{"files":"x"}"#)).is_err());
        assert!(referenced(&raw(r#"{"files":["ABC"]}"#)).is_err());
        assert!(referenced(&raw(r#"{"files":[{"name":"x"}]}"#)).is_err());
    }

    #[test]
    fn the_type_comes_from_the_bytes_and_never_runs_script() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        assert_eq!(content_type_of(png, Some("text/plain")), "image/png");
        assert_eq!(
            content_type_of(b"hello", Some("text/plain; charset=utf-8")),
            "text/plain"
        );
        assert_eq!(
            content_type_of(b"<html><script>", Some("text/html")),
            "application/octet-stream"
        );
        assert_eq!(content_type_of(b"hello", None), "application/octet-stream");
        assert!(shown_inline("image/png") && shown_inline("application/pdf"));
        assert!(!shown_inline("image/svg+xml") && !shown_inline("text/plain"));
    }
}
