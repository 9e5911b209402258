//! The client's connection loop: connect, re-send the outbox, sync from the
//! cursors, then relay frames until the connection fails; back off with
//! jitter and do it again, until stopped.

use std::collections::{HashMap, HashSet};
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
pub(crate) enum Command {
    /// The outbox grew: send what the window allows, if connected.
    Transmit,
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
pub(crate) struct Shared {
    /// The configuration.
    pub(crate) config: ClientConfig,
    /// Outbox and cursors.
    pub(crate) state: Mutex<ClientState>,
    /// Whether a connection is up (requests need one).
    pub(crate) connected: AtomicBool,
    /// Numbers sync and request ids.
    pub(crate) counter: AtomicU64,
    /// The TLS trust of `wss://` connections, when the configuration adds roots.
    pub(crate) tls: Option<Connector>,
    /// This device's id, sent as `?device=`.
    pub(crate) device: String,
    /// The user the server signed this client in as (from `welcome`).
    pub(crate) me: std::sync::OnceLock<String>,
}

impl Shared {
    /// The state, even if a panic poisoned its lock.
    pub(crate) fn state(&self) -> std::sync::MutexGuard<'_, ClientState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How a connection ended.
enum Ended {
    /// It failed or was replaced; connect again (after a backoff unless
    /// `now`). `was_up`: it got as far as a completed sync, so the next
    /// attempt starts the backoff over.
    Reconnect { reason: String, was_up: bool, now: bool },
    /// The app went to the background.
    Paused,
    /// The client is stopping.
    Stopped,
}

/// Runs connections until `stopping` turns true.
pub(crate) async fn run(
    shared: Arc<Shared>,
    events: Arc<EventQueue>,
    mut commands: UnboundedReceiver<Command>,
    mut stopping: watch::Receiver<bool>,
) {
    let state_event = |state: &'static str, reason: Option<String>, attempt: Option<u32>, server: Option<&str>| {
        events.post_waiting(Event::State {
            state,
            reason,
            attempt,
            server: server.map(str::to_owned),
        })
    };
    let (mut attempt, mut failures, mut paused) = (0u32, 0u32, false);
    let servers = shared.config.servers().len();
    let mut server = 0;
    while !*stopping.borrow() {
        if paused {
            state_event("paused", None, None, None).await;
            match wait_for_wake(&mut commands, &mut stopping).await {
                Some(()) => paused = false,
                None => break,
            }
        }
        attempt += 1;
        let url = shared.config.servers()[server].to_owned();
        state_event("connecting", None, Some(attempt), Some(&url)).await;
        let ended = connect_and_serve(&shared, &url, &events, &mut commands, &mut stopping).await;
        shared.connected.store(false, Ordering::Relaxed);
        match ended {
            Ended::Stopped => break,
            Ended::Paused => {
                state_event("disconnected", Some("background".into()), None, None).await;
                paused = true;
            }
            Ended::Reconnect { reason, was_up, now } => {
                tracing::debug!(reason, "connection lost");
                state_event("disconnected", Some(reason), None, None).await;
                failures = if was_up { 0 } else { failures.saturating_add(1) };
                // A server that could not be reached: the next one. One that
                // was up and dropped the connection gets the first try again.
                if !was_up {
                    server = (server + 1) % servers;
                }
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
    state_event("stopped", None, None, None).await;
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
    user: Option<String>,
    ts: Option<i64>,
    code: Option<String>,
    message: Option<String>,
    convs: Option<HashMap<String, More>>,
    next: Option<String>,
}

#[derive(Deserialize)]
struct More {
    more: bool,
}

/// Conversations whose cursors one `sync` carries at most, so that the frame
/// stays far below the server's frame limit (64 KiB by default) however
/// many conversations the user has: about 60 bytes a cursor.
const SYNC_PAGE: usize = 500;

/// The sync in flight, if any, and whether another is wanted after it. A
/// sync goes page by page over the conversations the client knows, in name
/// order: each page repeats while the server says `more`, then moves on to
/// the server's `next`.
#[derive(Default)]
struct Syncing {
    current: Option<String>,
    again: bool,
    /// A sync has completed on this connection: it is working.
    done_once: bool,
    /// The page: conversations after `after`, up to and including `until`
    /// (to the last, when `None`).
    after: Option<String>,
    until: Option<String>,
}

impl Syncing {
    /// Starts a new round over every page, from the first.
    fn first_page(&mut self) {
        self.after = None;
        self.until = None;
        self.again = false;
    }
}

/// The most sends one connection has on the wire unanswered. A server
/// closes a session that ignores its `rate_limited` refusals (after
/// `limits.message_burst` in a row, 2000 by default): a window far below
/// that lets the client stop at the first refusal with few frames behind it.
const SEND_WINDOW: usize = 64;

/// The outbox's flow onto one connection: at most [`SEND_WINDOW`] sends
/// unanswered, and none while a refusal the server asked to retry
/// (`rate_limited`, `internal`) waits out its backoff; each such refusal in
/// a row doubles the wait, as reconnecting does. After a refusal one send
/// probes alone, and the window opens again with its ack, so a server that
/// is still refusing sees one frame per backoff, not a window's worth.
#[derive(Default)]
struct Outflow {
    on_wire: HashSet<String>,
    retry_due: Option<Instant>,
    refusals: u32,
    probing: bool,
}

impl Outflow {
    /// Sends the oldest queued messages not on the wire, as the window allows.
    async fn fill(&mut self, shared: &Shared, ws: &mut Ws) -> Result<(), Lost> {
        let window = if self.probing { 1 } else { SEND_WINDOW };
        let room = window.saturating_sub(self.on_wire.len());
        if self.retry_due.is_some() || room == 0 {
            return Ok(());
        }
        let next = shared.state().next_to_send(&self.on_wire, room);
        if next.is_empty() {
            return Ok(());
        }
        for p in next {
            ws.feed(Message::text(p.frame)).await.map_err(|_| "write failed")?;
            self.on_wire.insert(p.id);
        }
        ws.flush().await.map_err(|_| "write failed".into())
    }

    /// The server stored the send `id`.
    fn acked(&mut self, id: &str) {
        self.on_wire.remove(id);
        self.refusals = 0;
        self.probing = false;
    }

    /// The server refused the send `id` for good.
    fn failed(&mut self, id: &str) {
        self.on_wire.remove(id);
    }

    /// The server asked for the send `id` to be tried again later.
    fn refused_for_now(&mut self, id: &str, config: &ClientConfig) {
        self.on_wire.remove(id);
        self.probing = true;
        if self.retry_due.is_none() {
            self.retry_due = Some(Instant::now() + backoff(config, self.refusals));
            self.refusals = self.refusals.saturating_add(1);
        }
    }
}

/// Why a connection must be dropped.
type Lost = String;

fn lost(reason: impl Into<String>, was_up: bool) -> Ended {
    Ended::Reconnect {
        reason: reason.into(),
        was_up,
        now: false,
    }
}

async fn connect_and_serve(
    shared: &Arc<Shared>,
    server: &str,
    events: &EventQueue,
    commands: &mut UnboundedReceiver<Command>,
    stopping: &mut watch::Receiver<bool>,
) -> Ended {
    let config = &shared.config;
    let patience = Duration::from_millis(config.dead_after_ms);
    let separator = if server.contains('?') { '&' } else { '?' };
    let url = format!("{server}{separator}device={}", shared.device);
    let mut request = match url.as_str().into_client_request() {
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
        Ok(Some(Ok(Message::Text(text)))) => match serde_json::from_str::<Head>(&text) {
            Ok(welcome) if welcome.kind == "welcome" => {
                if let Some(user) = welcome.user {
                    let _ = shared.me.set(user);
                }
            }
            _ => return lost(format!("refused: {text}"), false),
        },
        _ => return lost("no welcome from the server", false),
    }
    shared.connected.store(true, Ordering::Relaxed);
    events
        .post_waiting(Event::State {
            state: "connected",
            reason: None,
            attempt: None,
            server: Some(server.to_owned()),
        })
        .await;

    let (mut syncing, mut outflow) = (Syncing::default(), Outflow::default());
    if let Err(reason) = outflow.fill(shared, &mut ws).await {
        return lost(reason, false);
    }
    if let Err(reason) = start_sync(shared, &mut ws, &mut syncing).await {
        return lost(reason, false);
    }
    let heartbeat_every = Duration::from_millis(config.heartbeat_ms);
    let mut heartbeat = tokio::time::interval_at(Instant::now() + heartbeat_every, heartbeat_every);
    loop {
        let was_up = syncing.done_once;
        tokio::select! {
            frame = timeout(patience, ws.next()) => match frame {
                Err(_) => return lost(format!("nothing received for {} ms", config.dead_after_ms), was_up),
                Ok(None) | Ok(Some(Err(_))) => return lost("connection lost", was_up),
                Ok(Some(Ok(Message::Close(frame)))) => {
                    let why = frame.map_or("no reason".into(), |f| format!("{} {}", u16::from(f.code), f.reason));
                    return lost(format!("closed by the server: {why}"), was_up);
                }
                Ok(Some(Ok(Message::Text(text)))) => {
                    if let Err(reason) = handle_frame(shared, events, text, &mut ws, &mut syncing, &mut outflow).await {
                        return lost(reason, syncing.done_once);
                    }
                }
                Ok(Some(Ok(_))) => {}
            },
            _ = sleep_until_due(outflow.retry_due) => {
                outflow.retry_due = None;
                if let Err(reason) = outflow.fill(shared, &mut ws).await {
                    return lost(reason, was_up);
                }
            }
            command = commands.recv() => match command {
                Some(Command::Transmit) => {
                    if let Err(reason) = outflow.fill(shared, &mut ws).await {
                        return lost(reason, was_up);
                    }
                }
                Some(Command::Request(frame)) => {
                    if ws.send(Message::text(frame)).await.is_err() {
                        return lost("write failed", was_up);
                    }
                }
                Some(Command::Hint(Hint::NetworkChanged)) => {
                    return Ended::Reconnect { reason: "network changed".into(), was_up, now: true };
                }
                Some(Command::Hint(Hint::Background)) => {
                    close_politely(&mut ws).await;
                    return Ended::Paused;
                }
                Some(Command::Hint(Hint::Foreground)) => {}
                // `stop` drops the commands before it signals: close politely all the same.
                None => {
                    close_politely(&mut ws).await;
                    return Ended::Stopped;
                }
            },
            _ = heartbeat.tick() => {
                if ws.send(Message::Ping(Default::default())).await.is_err() {
                    return lost("write failed", was_up);
                }
            }
            _ = stopped(stopping) => {
                close_politely(&mut ws).await;
                return Ended::Stopped;
            }
        }
    }
}

/// Sends a close frame and waits (briefly) for the server's answer, so the
/// server sees a clean close rather than a reset connection.
async fn close_politely(ws: &mut Ws) {
    let _ = timeout(Duration::from_secs(1), async {
        let _ = ws.close(None).await;
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// Resolves at `due`, or never when there is nothing due.
async fn sleep_until_due(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

/// Sends the `sync` of the current page, choosing where the page ends when
/// it is new: after [`SYNC_PAGE`] of the conversations the client knows.
async fn start_sync(shared: &Shared, ws: &mut Ws, syncing: &mut Syncing) -> Result<(), Lost> {
    let id = format!("sync-{}", shared.counter.fetch_add(1, Ordering::Relaxed));
    let cursors: HashMap<String, u64> = {
        let state = shared.state();
        let after = syncing.after.as_deref();
        let mut known: Vec<(&String, &u64)> = state
            .cursors()
            .iter()
            .filter(|(conv, _)| after.is_none_or(|after| conv.as_str() > after))
            .collect();
        known.sort_unstable();
        if syncing.until.is_none() && known.len() > SYNC_PAGE {
            syncing.until = Some(known[SYNC_PAGE - 1].0.clone());
        }
        let until = syncing.until.as_deref();
        known
            .into_iter()
            .take_while(|(conv, _)| until.is_none_or(|until| conv.as_str() <= until))
            .map(|(conv, seq)| (conv.clone(), *seq))
            .collect()
    };
    let frame = serde_json::json!({
        "type": "sync", "id": id, "cursors": cursors, "limit": shared.config.sync_limit,
        "after": syncing.after, "until": syncing.until,
    });
    syncing.current = Some(id);
    ws.send(Message::text(frame.to_string()))
        .await
        .map_err(|_| "write failed".into())
}

/// Whether the server asks for a refused send to be tried again later.
fn is_retryable(code: &str) -> bool {
    matches!(code, "rate_limited" | "internal")
}

async fn handle_frame(
    shared: &Arc<Shared>,
    events: &EventQueue,
    text: Utf8Bytes,
    ws: &mut Ws,
    syncing: &mut Syncing,
    outflow: &mut Outflow,
) -> Result<(), Lost> {
    let Ok(head) = serde_json::from_str::<Head>(&text) else {
        tracing::warn!("a server frame could not be read");
        return Ok(());
    };
    let is_sync = head.id.is_some() && head.id == syncing.current;
    match head.kind.as_str() {
        "msg" => {
            let (Some(conv), Some(seq)) = (head.conv, head.seq) else {
                return Ok(());
            };
            // Only a message this user sent can be one of its own pending sends:
            // a client id alone is no proof, anyone may reuse one.
            let own_id = head
                .id
                .as_deref()
                .filter(|_| head.from.is_some() && head.from.as_deref() == shared.me.get().map(String::as_str));
            let arrival = shared.state().arrive(&conv, seq, own_id);
            match arrival {
                Arrival::Next { through } => {
                    let from = head.from.unwrap_or_default().into();
                    events.post_waiting(Event::Message { from, frame: text }).await;
                    record_cursor(shared, events, conv, through).await;
                }
                Arrival::Own { through } => record_cursor(shared, events, conv, through).await,
                Arrival::Duplicate => {}
                // Missing messages come with a sync; this one with them.
                Arrival::Gap if syncing.current.is_some() => syncing.again = true,
                Arrival::Gap => {
                    syncing.first_page();
                    return start_sync(shared, ws, syncing).await;
                }
            }
        }
        "synced" if is_sync => {
            let more = head.convs.is_some_and(|convs| convs.values().any(|c| c.more));
            syncing.current = None;
            syncing.done_once = true;
            if more {
                return start_sync(shared, ws, syncing).await;
            }
            if let Some(next) = head.next {
                (syncing.after, syncing.until) = (Some(next), None);
                return start_sync(shared, ws, syncing).await;
            }
            if syncing.again {
                syncing.first_page();
                return start_sync(shared, ws, syncing).await;
            }
        }
        "ack" => {
            let (Some(id), Some(conv), Some(seq), Some(ts)) = (head.id, head.conv, head.seq, head.ts) else {
                return Ok(());
            };
            outflow.acked(&id);
            let stepped = {
                let mut state = shared.state();
                if !state.settle(&id) {
                    return Ok(());
                }
                state.sent(&conv, seq)
            };
            // The send left the outbox with `settle`: the host hears of it
            // before the next write, which may fail and end the connection.
            events
                .post_waiting(Event::Ack {
                    id,
                    conv: conv.clone(),
                    seq,
                    ts,
                })
                .await;
            if let Some(through) = stepped {
                record_cursor(shared, events, conv, through).await;
            }
            outflow.fill(shared, ws).await?;
        }
        // Try again on a fresh connection, after a backoff that keeps growing
        // until a sync succeeds, rather than in a tight loop here.
        "error" if is_sync => {
            return Err(format!("sync refused: {}", head.message.unwrap_or_default()));
        }
        "error" if head.id.as_deref().is_some_and(|id| shared.state().is_pending(id)) => {
            let (id, code) = (head.id.unwrap_or_default(), head.code.unwrap_or_default());
            if is_retryable(&code) {
                outflow.refused_for_now(&id, &shared.config);
            } else if shared.state().settle(&id) {
                outflow.failed(&id);
                let message = head.message.unwrap_or_default();
                events.post_waiting(Event::SendFailed { id, code, message }).await;
                outflow.fill(shared, ws).await?;
            }
        }
        _ => events.post_waiting(Event::Frame { frame: text }).await,
    }
    Ok(())
}

/// Records `conv`'s cursor at `through` in the state file once the host
/// has processed every event queued before this.
async fn record_cursor(shared: &Arc<Shared>, events: &EventQueue, conv: String, through: u64) {
    let shared = shared.clone();
    events
        .then_waiting(move || shared.state().delivered(&conv, through))
        .await;
}
