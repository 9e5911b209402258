//! The client's connection loop: connect, re-send the outbox, sync from the
//! cursors, then relay frames until the connection fails; back off with
//! jitter and do it again, until stopped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::watch;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::AUTHORIZATION;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::state::{Arrival, ClientState};
use crate::config::ClientConfig;
use crate::host::Event;
use crate::host::dispatcher::EventQueue;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the host asks of the connection.
pub enum Command {
    /// Send this frame now if connected (it is in the outbox either way).
    Transmit(String),
    /// Send this request frame (not queued when disconnected).
    Request(String),
    /// A hint about the app's situation.
    Hint(Hint),
}

/// The host's hints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    /// Reconnect now rather than after the backoff or a dead-connection timeout.
    NetworkChanged,
    /// Close the connection and stay paused.
    Background,
    /// Reconnect at once.
    Foreground,
}

/// State shared by the host's calls and the connection task.
pub struct Shared {
    /// The configuration.
    pub config: ClientConfig,
    /// Outbox and cursors.
    pub state: Mutex<ClientState>,
    /// Whether a connection is up (requests need one).
    pub connected: AtomicBool,
    /// Numbers sync and request ids.
    pub counter: AtomicU64,
    /// The TLS trust of `wss://` connections, when the configuration adds roots.
    pub tls: Option<Connector>,
}

impl Shared {
    /// The state, even if a panic poisoned its lock.
    pub fn state(&self) -> std::sync::MutexGuard<'_, ClientState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How a connection ended.
enum Ended {
    /// It failed or was replaced; connect again (after a backoff unless `now`).
    Reconnect { reason: String, was_up: bool, now: bool },
    /// The app went to the background.
    Paused,
    /// The client is stopping.
    Stopped,
}

/// Runs connections until `stopping` turns true.
pub async fn run(
    shared: Arc<Shared>,
    events: Arc<EventQueue>,
    mut commands: UnboundedReceiver<Command>,
    mut stopping: watch::Receiver<bool>,
) {
    let state_event = |state: &'static str, reason: Option<String>, attempt: Option<u32>| {
        events.post(Event::State { state, reason, attempt });
    };
    let (mut attempt, mut failures, mut paused) = (0u32, 0u32, false);
    while !*stopping.borrow() {
        if paused {
            state_event("paused", None, None);
            match wait_for_wake(&mut commands, &mut stopping).await {
                Some(()) => paused = false,
                None => break,
            }
        }
        attempt += 1;
        state_event("connecting", None, Some(attempt));
        let ended = connect_and_serve(&shared, &events, &mut commands, &mut stopping).await;
        shared.connected.store(false, Ordering::Relaxed);
        match ended {
            Ended::Stopped => break,
            Ended::Paused => {
                state_event("disconnected", Some("background".into()), None);
                paused = true;
            }
            Ended::Reconnect { reason, was_up, now } => {
                tracing::debug!(reason, "connection lost");
                state_event("disconnected", Some(reason), None);
                failures = if was_up { 0 } else { failures.saturating_add(1) };
                if now {
                    continue;
                }
                let delay = backoff(&shared.config, failures);
                match wait_backoff(delay, &mut commands, &mut stopping).await {
                    Wake::Stop => break,
                    Wake::Pause => paused = true,
                    Wake::Retry => {}
                }
            }
        }
    }
    state_event("stopped", None, None);
}

/// Resolves when the client is stopping (dropping the watch's borrow, which
/// must not live across another branch's await).
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|s| *s).await;
}

/// The delay before the next attempt: exponential, capped, with full jitter
/// so that many clients cut off together do not come back together.
fn backoff(config: &ClientConfig, failures: u32) -> Duration {
    let ceiling = config
        .reconnect
        .initial_ms
        .saturating_mul(1u64 << failures.min(20))
        .min(config.reconnect.max_ms);
    Duration::from_millis(fastrand::u64(0..=ceiling))
}

enum Wake {
    Retry,
    Pause,
    Stop,
}

/// Sleeps out a backoff; hints cut it short. Sends that arrive meanwhile are
/// already in the outbox; requests are dropped (they need a connection).
async fn wait_backoff(
    delay: Duration,
    commands: &mut UnboundedReceiver<Command>,
    stopping: &mut watch::Receiver<bool>,
) -> Wake {
    let deadline = Instant::now() + delay;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return Wake::Retry,
            _ = stopped(stopping) => return Wake::Stop,
            command = commands.recv() => match command {
                None => return Wake::Stop,
                Some(Command::Hint(Hint::NetworkChanged | Hint::Foreground)) => return Wake::Retry,
                Some(Command::Hint(Hint::Background)) => return Wake::Pause,
                Some(_) => {}
            },
        }
    }
}

/// Waits while paused; `None` when stopping.
async fn wait_for_wake(commands: &mut UnboundedReceiver<Command>, stopping: &mut watch::Receiver<bool>) -> Option<()> {
    loop {
        tokio::select! {
            _ = stopped(stopping) => return None,
            command = commands.recv() => match command {
                None => return None,
                Some(Command::Hint(Hint::NetworkChanged | Hint::Foreground)) => return Some(()),
                Some(_) => {}
            },
        }
    }
}

/// The fields of a server frame the client acts on.
#[derive(Deserialize)]
struct Head {
    #[serde(rename = "type")]
    kind: String,
    id: Option<String>,
    conv: Option<String>,
    seq: Option<u64>,
    from: Option<String>,
    ts: Option<i64>,
    code: Option<String>,
    message: Option<String>,
    convs: Option<HashMap<String, More>>,
}

#[derive(Deserialize)]
struct More {
    more: bool,
}

/// The sync in flight, if any, and whether another is wanted after it.
#[derive(Default)]
struct Syncing {
    current: Option<String>,
    again: bool,
}

fn lost(reason: impl Into<String>, was_up: bool) -> Ended {
    Ended::Reconnect {
        reason: reason.into(),
        was_up,
        now: false,
    }
}

async fn connect_and_serve(
    shared: &Arc<Shared>,
    events: &EventQueue,
    commands: &mut UnboundedReceiver<Command>,
    stopping: &mut watch::Receiver<bool>,
) -> Ended {
    let config = &shared.config;
    let patience = Duration::from_millis(config.dead_after_ms);
    let mut request = match config.url.as_str().into_client_request() {
        Ok(request) => request,
        Err(e) => return lost(format!("bad url: {e}"), false),
    };
    match format!("Bearer {}", config.token).parse() {
        Ok(value) => request.headers_mut().insert(AUTHORIZATION, value),
        Err(_) => return lost("the token is not a valid header value", false),
    };
    let mut ws = match timeout(
        patience,
        tokio_tungstenite::connect_async_tls_with_config(request, None, false, shared.tls.clone()),
    )
    .await
    {
        Ok(Ok((ws, _))) => ws,
        Ok(Err(e)) => return lost(format!("could not connect: {e}"), false),
        Err(_) => return lost("connecting timed out", false),
    };
    match timeout(patience, ws.next()).await {
        Ok(Some(Ok(Message::Text(text)))) if serde_json::from_str::<Head>(&text).is_ok_and(|h| h.kind == "welcome") => {
        }
        Ok(Some(Ok(Message::Text(text)))) => return lost(format!("refused: {text}"), false),
        _ => return lost("no welcome from the server", false),
    }
    shared.connected.store(true, Ordering::Relaxed);
    events.post(Event::State {
        state: "connected",
        reason: None,
        attempt: None,
    });

    let pending = shared.state().pending();
    for p in pending {
        if ws.feed(Message::text(p.frame)).await.is_err() {
            return lost("write failed", true);
        }
    }
    let mut syncing = Syncing::default();
    if start_sync(shared, &mut ws, &mut syncing).await.is_err() {
        return lost("write failed", true);
    }
    let heartbeat_every = Duration::from_millis(config.heartbeat_ms);
    let mut heartbeat = tokio::time::interval_at(Instant::now() + heartbeat_every, heartbeat_every);
    loop {
        tokio::select! {
            frame = timeout(patience, ws.next()) => match frame {
                Err(_) => return lost(format!("nothing received for {} ms", config.dead_after_ms), true),
                Ok(None) | Ok(Some(Err(_))) => return lost("connection lost", true),
                Ok(Some(Ok(Message::Close(frame)))) => {
                    let why = frame.map_or("no reason".into(), |f| format!("{} {}", u16::from(f.code), f.reason));
                    return lost(format!("closed by the server: {why}"), true);
                }
                Ok(Some(Ok(Message::Text(text)))) => {
                    if handle_frame(shared, events, text, &mut ws, &mut syncing).await.is_err() {
                        return lost("write failed", true);
                    }
                }
                Ok(Some(Ok(_))) => {}
            },
            command = commands.recv() => match command {
                Some(Command::Transmit(frame) | Command::Request(frame)) => {
                    if ws.send(Message::text(frame)).await.is_err() {
                        return lost("write failed", true);
                    }
                }
                Some(Command::Hint(Hint::NetworkChanged)) => {
                    return Ended::Reconnect { reason: "network changed".into(), was_up: true, now: true };
                }
                Some(Command::Hint(Hint::Background)) => {
                    let _ = timeout(Duration::from_secs(1), ws.close(None)).await;
                    return Ended::Paused;
                }
                Some(Command::Hint(Hint::Foreground)) => {}
                None => return Ended::Stopped,
            },
            _ = heartbeat.tick() => {
                if ws.send(Message::Ping(Default::default())).await.is_err() {
                    return lost("write failed", true);
                }
            }
            _ = stopped(stopping) => {
                let _ = timeout(Duration::from_secs(1), ws.close(None)).await;
                return Ended::Stopped;
            }
        }
    }
}

async fn start_sync(shared: &Shared, ws: &mut Ws, syncing: &mut Syncing) -> Result<(), ()> {
    let id = format!("sync-{}", shared.counter.fetch_add(1, Ordering::Relaxed));
    let frame = serde_json::json!({
        "type": "sync", "id": id, "cursors": shared.state().cursors(), "limit": shared.config.sync_limit,
    });
    syncing.current = Some(id);
    syncing.again = false;
    ws.send(Message::text(frame.to_string())).await.map_err(drop)
}

async fn handle_frame(
    shared: &Shared,
    events: &EventQueue,
    text: Utf8Bytes,
    ws: &mut Ws,
    syncing: &mut Syncing,
) -> Result<(), ()> {
    let Ok(head) = serde_json::from_str::<Head>(&text) else {
        tracing::warn!("a server frame could not be read");
        return Ok(());
    };
    let is_sync = head.id.is_some() && head.id == syncing.current;
    match head.kind.as_str() {
        "msg" => {
            let (Some(conv), Some(seq)) = (&head.conv, head.seq) else {
                return Ok(());
            };
            let arrival = shared.state().arrive(conv, seq);
            match arrival {
                Arrival::Next => events.post(Event::Message {
                    from: head.from.unwrap_or_default().into(),
                    frame: text,
                }),
                Arrival::Duplicate => {}
                // Missing messages come with a sync; this one with them.
                Arrival::Gap if syncing.current.is_some() => syncing.again = true,
                Arrival::Gap => return start_sync(shared, ws, syncing).await,
            }
        }
        "synced" if is_sync => {
            let more = head.convs.is_some_and(|convs| convs.values().any(|c| c.more));
            syncing.current = None;
            if more || syncing.again {
                return start_sync(shared, ws, syncing).await;
            }
        }
        "ack" => {
            let (Some(id), Some(conv), Some(seq), Some(ts)) = (head.id, head.conv, head.seq, head.ts) else {
                return Ok(());
            };
            let mut state = shared.state();
            if state.settle(&id) {
                state.sent(&conv, seq);
                drop(state);
                events.post(Event::Ack { id, conv, seq, ts });
            }
        }
        "error" if is_sync => {
            // Try again on a fresh connection rather than in a tight loop here.
            tracing::warn!(message = head.message.as_deref().unwrap_or(""), "sync refused");
            return Err(());
        }
        "error" if head.id.as_deref().is_some_and(|id| shared.state().is_pending(id)) => {
            let (id, code) = (head.id.unwrap_or_default(), head.code.unwrap_or_default());
            // A store failure is worth retrying; anything else will fail again.
            if code != "internal" && shared.state().settle(&id) {
                let message = head.message.unwrap_or_default();
                events.post(Event::SendFailed { id, code, message });
            }
        }
        _ => events.post(Event::Frame { frame: text }),
    }
    Ok(())
}
