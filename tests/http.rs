//! Plain HTTP on the WebSocket's port: the web root's files, `/healthz` and
//! `/metrics`, over real sockets with raw requests (so nothing normalizes a
//! hostile path before the server sees it).

mod support;

use std::time::Duration;

use imbed::{Config, Error, Server};
use serde_json::json;
use support::{connect, start};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response as the tests look at it.
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Reply {
    /// The value of header `name` (lowercase), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Sends `request` (a whole HTTP/1.1 request with `Connection: close`) and reads the reply to EOF.
pub async fn exchange(mut io: impl AsyncRead + AsyncWrite + Unpin, request: &str) -> Reply {
    io.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), io.read_to_end(&mut raw))
        .await
        .expect("the server answers and closes")
        .unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    Reply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

async fn get(addr: std::net::SocketAddr, method_and_path: &str) -> Reply {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!("{method_and_path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    exchange(tcp, &request).await
}

/// A web root with a page, a stylesheet, a script and a nested file, next to a
/// secret that must never be served.
fn site() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret.txt"), "the secret").unwrap();
    let root = dir.path().join("web");
    std::fs::create_dir_all(root.join("img")).unwrap();
    std::fs::write(root.join("index.html"), "<!doctype html><title>chat</title>").unwrap();
    std::fs::write(root.join("app.css"), "body{}").unwrap();
    std::fs::write(root.join("app.js"), "export {};").unwrap();
    std::fs::write(root.join("img/logo.svg"), "<svg/>").unwrap();
    dir
}

fn web_root(dir: &tempfile::TempDir) -> String {
    dir.path().join("web").to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_served_with_their_content_types() {
    let dir = site();
    let t = start(json!({"web_root": web_root(&dir)}));
    let addr = t.server.local_addr().unwrap();
    let cases = [
        ("/", "text/html", "<!doctype html><title>chat</title>"),
        ("/index.html", "text/html", "<!doctype html><title>chat</title>"),
        ("/app.css", "text/css", "body{}"),
        ("/app.js", "text/javascript", "export {};"),
        ("/img/logo.svg", "image/svg+xml", "<svg/>"),
    ];
    for (path, content_type, body) in cases {
        let reply = get(addr, &format!("GET {path}")).await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.header("content-type"), Some(content_type), "{path}");
        assert_eq!(reply.body, body, "{path}");
    }
    let head = get(addr, "HEAD /app.css").await;
    assert_eq!(
        (head.status, head.header("content-length"), head.body.as_str()),
        (200, Some("6"), "")
    );
    assert_eq!(get(addr, "GET /missing.html").await.status, 404);
    assert_eq!(get(addr, "GET /app.css/inside").await.status, 404);
    assert_eq!(get(addr, "POST /index.html").await.status, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_that_climb_out_of_the_web_root_are_not_found() {
    let dir = site();
    let t = start(json!({"web_root": web_root(&dir)}));
    let addr = t.server.local_addr().unwrap();
    for path in [
        "/../secret.txt",
        "/img/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/img/..%2F..%2Fsecret.txt",
        "/%2e%2e%5csecret.txt",
        "//etc/passwd",
        "/..\\secret.txt",
    ] {
        let reply = get(addr, &format!("GET {path}")).await;
        assert!(matches!(reply.status, 400 | 404), "{path}: {}", reply.status);
        assert!(
            !reply.body.contains("the secret") && !reply.body.contains("root:"),
            "{path} leaked"
        );
    }
    // The server is still serving.
    assert_eq!(get(addr, "GET /app.css").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_web_root_only_the_endpoints_answer() {
    let t = start(json!({}));
    let addr = t.server.local_addr().unwrap();
    assert_eq!(get(addr, "GET /").await.status, 404);
    let health = get(addr, "GET /healthz").await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    assert_eq!(get(addr, "POST /healthz").await.status, 405);
    let upgrade_without_headers = get(addr, "GET /ws").await;
    assert_eq!(upgrade_without_headers.status, 426);
    assert_eq!(upgrade_without_headers.header("sec-websocket-version"), Some("13"));
}

#[test]
fn a_web_root_that_is_not_a_directory_fails_at_start() {
    let dir = site();
    let file = dir.path().join("secret.txt");
    let config = json!({"listen": "127.0.0.1:0", "auth": {"mode": "dev"}, "web_root": file});
    let server = Server::new(Config::from_json(&config.to_string()).unwrap()).unwrap();
    match server.start() {
        Err(Error::InvalidConfig(why)) => assert!(why.contains("web_root") && why.contains("not a directory"), "{why}"),
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

/// The value of the sample `name` in a scrape.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_connections_messages_and_commits() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("metrics.db");
    let t = start(json!({"store": {"path": db}}));
    let addr = t.server.local_addr().unwrap();
    let before = get(addr, "GET /metrics").await;
    assert_eq!(before.status, 200);
    assert!(
        before
            .header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    assert_eq!(sample(&before.body, "imbed_connections"), 0.0);

    let mut alice = connect(&t.url, "alice").await;
    let mut bob = connect(&t.url, "bob").await;
    for i in 0..3 {
        alice.send_to("bob", &format!("m{i}"), json!({"text": "hi"})).await;
        assert_eq!(bob.recv().await["type"], "msg");
    }
    let after = get(addr, "GET /metrics").await.body;
    assert_eq!(sample(&after, "imbed_connections"), 2.0);
    assert_eq!(sample(&after, "imbed_users_online"), 2.0);
    assert_eq!(sample(&after, "imbed_messages_in_total"), 3.0);
    // Each message reaches bob's session (alice's sending session is skipped).
    assert_eq!(sample(&after, "imbed_messages_out_total"), 3.0);
    assert!(sample(&after, "imbed_store_commit_seconds_count") >= 1.0);
    assert!(sample(&after, "imbed_store_commit_seconds_sum") > 0.0);
    assert_eq!(sample(&after, "imbed_slow_reader_closes_total"), 0.0);
    assert_eq!(sample(&after, "imbed_host_events_dropped_total"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_connection_limit_http_gets_503_too() {
    let t = start(json!({"limits": {"max_connections": 1}}));
    let addr = t.server.local_addr().unwrap();
    let _held = connect(&t.url, "a").await;
    assert_eq!(get(addr, "GET /healthz").await.status, 503);
}
