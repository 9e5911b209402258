//! Shared pieces of the integration tests: a server on a free port, a host
//! that records what it is told, and a WebSocket client.

#![allow(dead_code)] // each test binary uses its own subset

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use imbed::{Config, Event, Host, LogLevel, Server};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, http};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub mod postgres;

pub const WAIT: Duration = Duration::from_secs(5);

/// A host that records events and logs, and accepts tokens of the form `ok:<user>`.
#[derive(Default)]
pub struct RecordingHost {
    pub events: Mutex<Vec<Value>>,
    pub logs: Mutex<Vec<String>>,
    changed: Condvar,
}

impl Host for RecordingHost {
    fn on_event(&self, event: &Event) {
        self.events
            .lock()
            .unwrap()
            .push(serde_json::from_str(&event.to_json()).unwrap());
        self.changed.notify_all();
    }
    fn on_log(&self, level: LogLevel, target: &str, message: &str) {
        self.logs.lock().unwrap().push(format!("{level:?} {target} {message}"));
    }
    fn authenticate(&self, token: &str) -> Option<String> {
        token.strip_prefix("ok:").map(str::to_owned)
    }
}

impl RecordingHost {
    /// Waits until the events so far satisfy `done`; `what` names it in the panic.
    pub fn wait_until(&self, what: &str, done: impl Fn(&[Value]) -> bool) {
        // Generous: it only trips when something hangs.
        let deadline = Instant::now() + 4 * WAIT;
        let mut events = self.events.lock().unwrap();
        while !done(&events) {
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("timed out waiting for {what}"));
            events = self.changed.wait_timeout(events, left).unwrap().0;
        }
    }

    /// Waits until an event satisfies `pred`, and returns it.
    pub fn wait_for(&self, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_until("an event", |events| events.iter().any(&pred));
        self.events
            .lock()
            .unwrap()
            .iter()
            .find(|e| pred(e))
            .cloned()
            .expect("just seen")
    }

    pub fn events_of(&self, kind: &str) -> Vec<Value> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["event"] == kind)
            .cloned()
            .collect()
    }
}

/// A started server with a recording host.
pub struct TestServer {
    pub server: Server,
    pub host: Arc<RecordingHost>,
    pub url: String,
}

/// Starts a client of the client role on `config` (ClientConfig JSON),
/// with a host that records its events.
pub fn start_client(config: Value) -> (imbed::Client, Arc<RecordingHost>) {
    let config = imbed::config::ClientConfig::from_json(&config.to_string()).unwrap();
    let client = imbed::Client::new(config).unwrap();
    let recorder = Arc::new(RecordingHost::default());
    client.set_host(recorder.clone()).unwrap();
    client.start().unwrap();
    (client, recorder)
}

/// The seqs of `conv`'s messages a client's host was given, in order.
pub fn delivered_seqs(recorder: &RecordingHost, conv: &str) -> Vec<u64> {
    recorder
        .events_of("message")
        .iter()
        .filter(|e| e["message"]["conv"] == conv)
        .map(|e| e["message"]["seq"].as_u64().unwrap())
        .collect()
}

/// A loopback port nobody listens on (for a server that must come back on it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a server on a free port with `extra` merged into a dev-auth config.
pub fn start(extra: Value) -> TestServer {
    let mut config = json!({"listen": "127.0.0.1:0", "auth": {"mode": "dev"}});
    merge(&mut config, extra);
    let server = Server::new(Config::from_json(&config.to_string()).unwrap()).unwrap();
    let host = Arc::new(RecordingHost::default());
    server.set_host(host.clone()).unwrap();
    server.start().unwrap();
    let url = format!("ws://{}/ws", server.local_addr().unwrap());
    TestServer { server, host, url }
}

fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A protocol client over a real socket.
pub struct Client {
    pub ws: Ws,
}

/// Opens a WebSocket to `url`, with an optional `Authorization` header; no frame read.
pub async fn open(url: &str, bearer: Option<&str>) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
    let authorization = bearer.map(|token| format!("Bearer {token}"));
    let headers: Vec<(&str, &str)> = authorization.iter().map(|a| ("authorization", a.as_str())).collect();
    open_with_headers(url, &headers).await
}

/// Opens a WebSocket to `url` with extra request headers; no frame read.
pub async fn open_with_headers(
    url: &str,
    headers: &[(&str, &str)],
) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
    let mut request = url.into_client_request().unwrap();
    for (name, value) in headers {
        let name = http::header::HeaderName::from_bytes(name.as_bytes()).unwrap();
        request.headers_mut().insert(name, value.parse().unwrap());
    }
    let (ws, _) = tokio_tungstenite::connect_async(request).await?;
    Ok(Client { ws })
}

/// The HTTP status a refused handshake answered with.
pub fn refused_status(result: Result<Client, tokio_tungstenite::tungstenite::Error>) -> u16 {
    match result {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other:?}"),
        Ok(_) => panic!("expected an HTTP refusal, got a connection"),
    }
}

/// Connects as `user` over a socket with a tiny receive buffer (which turns
/// off the kernel's autotuning, up to 32 MB here), like a stalled phone on a
/// slow link; consumes the welcome.
pub async fn connect_with_small_window(url: &str, user: &str) -> Client {
    let addr = url.trim_start_matches("ws://").trim_end_matches("/ws");
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(addr.parse().unwrap()).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(format!("{url}?token={user}"), MaybeTlsStream::Plain(tcp))
        .await
        .unwrap();
    let mut client = Client { ws };
    assert_eq!(client.recv().await["type"], "welcome");
    client
}

/// Connects as `user` (dev auth, query token) and consumes the welcome.
pub async fn connect(url: &str, user: &str) -> Client {
    let mut client = open(&format!("{url}?token={user}"), None).await.unwrap();
    let welcome = client.recv().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["user"], user);
    client
}

/// The cursor a client state file holds for `conv` (0 when none).
pub fn file_cursor(path: &str, conv: &str) -> u64 {
    let Ok(conn) = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY) else {
        return 0;
    };
    conn.query_row("SELECT seq FROM cursors WHERE conv = ?1", [conv], |r| {
        r.get::<_, i64>(0)
    })
    .map_or(0, |s| s as u64)
}

impl Client {
    /// Sends `frame` and returns the reply with its id, skipping other frames.
    pub async fn request(&mut self, frame: Value) -> Value {
        let id = frame["id"].clone();
        self.send_json(frame).await;
        loop {
            let reply = self.recv().await;
            if reply["id"] == id {
                return reply;
            }
        }
    }

    pub async fn send_json(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.unwrap();
    }

    pub async fn send_raw(&mut self, m: Message) {
        self.ws.send(m).await.unwrap();
    }

    /// The next text frame as JSON (pings are answered by tungstenite).
    pub async fn recv(&mut self) -> Value {
        loop {
            let m = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for a frame")
                .expect("connection ended")
                .expect("read failed");
            match m {
                Message::Text(t) => return serde_json::from_str(&t).unwrap(),
                Message::Close(c) => panic!("closed: {c:?}"),
                _ => {}
            }
        }
    }

    /// Reads until the server closes; returns the close code.
    pub async fn closed_with(&mut self) -> Option<CloseCode> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .expect("timed out waiting for close")
            {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// Asserts that nothing arrives for a short while.
    pub async fn assert_quiet(&mut self) {
        if let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(300), self.ws.next()).await
            && m.is_text()
        {
            panic!("unexpected frame: {m}");
        }
    }

    /// Sends a message and returns the reply (ack or error).
    pub async fn send_to(&mut self, to: &str, id: &str, body: Value) -> Value {
        self.send_json(json!({"type": "send", "id": id, "to": to, "body": body}))
            .await;
        self.recv().await
    }
}
