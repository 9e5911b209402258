//! One WebSocket session, from authentication to close, in one task.
//!
//! The task reads frames and answers them through the session's outbox,
//! and it drains the outbox into the socket's write half
//! ([`super::writer`]): the two are raced, reads first, so a session reads
//! what its peer sent before it writes, and its replies leave together.
//! Anyone ends the session by asking the outbox to close; the task then
//! sends the close frame and reports the end to the router and the host.

use std::borrow::Cow;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::Upgraded;
use tokio::io::AsyncWriteExt;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};

use super::core::Core;
use super::frames::{Incoming, Refusal};
use super::handshake::Credentials;
use super::rate_limit::{FrameBudget, rate_limited};
use super::reader::{ReadError, ReadSide};
use super::requests::{SessionState, handle_text, reply};
use super::socket::{self, WriteHalf};
use super::writer::{Stopped, WriteSide, framed};
use crate::host::Event;
use crate::protocol::{
    ClientFrame, ErrorCode, ServerFrame, close, error_frame, is_valid_id, now_ms, parse_client_frame,
};
use crate::router::outbox::Outbox;
use crate::router::{Attached, SessionHandle};

/// A WebSocket on the socket hyper handed over after the upgrade, before
/// its session starts: its read side, and its socket's write half.
pub(crate) struct Wire {
    reads: ReadSide,
    writes: WriteHalf,
}

impl Wire {
    /// The upgraded connection, reading messages of at most `max_message` bytes.
    pub(crate) fn new(upgraded: Upgraded, max_message: usize) -> Wire {
        let (reads, writes) = socket::split(upgraded);
        Wire {
            reads: ReadSide::new(reads, max_message),
            writes,
        }
    }

    /// Writes `frame` straight to the socket: before the session starts,
    /// nothing else writes to it.
    async fn send(&mut self, frame: Frame) {
        let _ = self.writes.write_all(&framed(frame)).await;
    }
}

/// How long a closing side waits for the peer's close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Who a session is: its user and device.
struct SignedIn {
    /// The authenticated user.
    user: String,
    /// The device: named by the token, else by the client, else made up.
    device: String,
    /// Whether the token or the client named the device: a made-up one is
    /// not remembered, since nothing can reach it again.
    named: bool,
}

/// A session that started: authenticated, welcomed and reachable.
pub(crate) struct Admitted {
    /// Boxed: inline, its bytes put every session's task in a larger size
    /// class (768 bytes instead of 640).
    reads: Box<ReadSide>,
    writes: WriteHalf,
    session: Arc<SessionHandle>,
    name: Arc<str>,
}

/// Authenticates an upgraded connection before `deadline` and starts its
/// session. A client that fails gets `unauthorized` and close code 1008;
/// a user with too many sessions, `rate_limited` and 1008.
///
/// Everything but the [`Admitted`] session is made and dropped here, in the
/// handshake's boxed future: what lives across the read loop's await takes
/// room in every idle session's task.
pub(crate) async fn admit(
    core: &Arc<Core>,
    mut wire: Wire,
    credentials: Credentials,
    deadline: Instant,
) -> Option<Admitted> {
    let signed_in = match authenticate(core, &mut wire, credentials, deadline).await {
        Ok(signed_in) => signed_in,
        Err(why) => {
            tracing::debug!(why, "authentication failed");
            turn_away(wire, ErrorCode::Unauthorized, why).await;
            return None;
        }
    };
    let Some((session, name)) = start(core, signed_in) else {
        turn_away(wire, ErrorCode::RateLimited, "too many connections for this user").await;
        return None;
    };
    Some(Admitted {
        reads: Box::new(wire.reads),
        writes: wire.writes,
        session,
        name,
    })
}

/// The user and device of the connection: from the handshake's token, or
/// else from an `auth` frame, which must be the first frame and arrive
/// before `deadline`.
async fn authenticate(
    core: &Arc<Core>,
    wire: &mut Wire,
    credentials: Credentials,
    deadline: Instant,
) -> Result<SignedIn, &'static str> {
    let Credentials { token, device } = match credentials.token {
        Some(_) => credentials,
        None => {
            let in_frame = first_frame_credentials(wire, deadline).await?;
            Credentials {
                token: in_frame.token,
                device: in_frame.device.or(credentials.device),
            }
        }
    };
    let token = token.unwrap_or_default();
    let identity = match timeout_at(deadline, core.auth.authenticate(token, &core.gate)).await {
        // The host sends as these ids; a user signed in as one would read its mail.
        Ok(Some(identity)) if core.config.host_ids.contains(&identity.user) => return Err("reserved user id"),
        Ok(Some(identity)) => identity,
        Ok(None) => return Err("invalid token"),
        Err(_) => return Err("authentication timed out"),
    };
    let (device, named) = match identity.device.or(device) {
        Some(device) if is_valid_id(&device) => (device, true),
        Some(_) => return Err("invalid device id"),
        None => (core.unique_name("d", core.next_number()), false),
    };
    Ok(SignedIn {
        user: identity.user,
        device,
        named,
    })
}

async fn first_frame_credentials(wire: &mut Wire, deadline: Instant) -> Result<Credentials, &'static str> {
    loop {
        let text = match timeout_at(deadline, wire.reads.next()).await {
            Err(_) => return Err("authentication timed out"),
            Ok(Ok(Incoming::Text(text))) => text,
            Ok(Ok(Incoming::Ping(payload))) => {
                let _ = timeout_at(deadline, wire.send(Frame::pong(payload))).await;
                continue;
            }
            Ok(Ok(Incoming::Pong)) => continue,
            Ok(_) => return Err("expected an auth frame first"),
        };
        return match parse_client_frame(&text) {
            Ok(ClientFrame {
                kind,
                token: Some(token),
                device,
                ..
            }) if kind == "auth" => Ok(Credentials {
                token: Some(token.into_owned()),
                device: device.map(Cow::into_owned),
            }),
            _ => Err("expected an auth frame first"),
        };
    }
}

/// Tells the client why with an error frame and closes with 1008, then
/// reads until the peer answers the close (or a short grace passes), so
/// the close frame is not lost to a reset connection.
async fn turn_away(mut wire: Wire, code: ErrorCode, why: &str) {
    let close = CloseFrame {
        code: CloseCode::Policy,
        reason: why.into(),
    };
    let _ = timeout(CLOSE_GRACE, async {
        wire.send(Frame::message(
            error_frame(None, code, why),
            OpCode::Data(Data::Text),
            true,
        ))
        .await;
        wire.send(Frame::close(Some(close))).await;
        until_closed(&mut wire.reads).await;
    })
    .await;
}

/// Reads until the peer's close frame, or the end of the connection.
async fn until_closed(reads: &mut ReadSide) {
    while let Ok(incoming) = reads.next().await {
        if incoming == Incoming::Close {
            break;
        }
    }
}

/// Runs an admitted session until it ends.
///
/// Not an `async fn`, so that the session's future keeps the parts of
/// `admitted` once, not also `admitted` itself.
pub(crate) fn run(core: Arc<Core>, admitted: Admitted) -> impl Future<Output = ()> + Send {
    let Admitted {
        mut reads,
        writes,
        session,
        name,
    } = admitted;
    async move {
        let reason = read_loop(&core, &mut reads, &session, WriteSide::new(writes)).await;
        if session
            .outbox
            .close_reason()
            .is_some_and(|(code, _)| code == close::SLOW_READER)
        {
            core.metrics.slow_reader_closes.inc();
        }
        core.presence.forget(&session);
        if core.router.detach(&session) {
            core.presence.announce(&session.user, false);
        }
        tracing::debug!(session = &*name, reason, "session ended");
        core.events.post(Event::Disconnected {
            user: session.user.clone(),
            session: name,
            device: session.device.clone(),
            reason: reason.into(),
        });
    }
}

/// Makes the session of `signed_in`, queues its welcome and makes it
/// reachable; its handle and name, or `None` when the user has too many
/// sessions already.
fn start(core: &Arc<Core>, signed_in: SignedIn) -> Option<(Arc<SessionHandle>, Arc<str>)> {
    let number = core.next_number();
    let name: Arc<str> = core.unique_name("s", number).into();
    let (user, device): (Arc<str>, Arc<str>) = (signed_in.user.into(), signed_in.device.into());
    if signed_in.named {
        core.store.save_device(user.clone(), device.clone(), Box::new(|_| {}));
    }
    let outbox_bytes = core.config.limits.outbound_queue_bytes;
    let session = Arc::new(SessionHandle::new(number, user.clone(), device.clone(), outbox_bytes));
    core.keepalive.heard(&session);
    let welcome = ServerFrame::Welcome {
        user: &user,
        session: &name,
        device: &device,
        server_time: now_ms(),
    };
    // Welcome is queued before the session becomes reachable, so it is the first frame out.
    session.outbox.push(welcome.encode().into());
    match core
        .router
        .attach(session.clone(), core.config.limits.max_connections_per_user)
    {
        Attached::CameOnline => core.presence.announce(&user, true),
        Attached::AlreadyOnline => {}
        Attached::TooMany => return None,
    }
    if core.is_stopping() {
        session.outbox.close(close::GOING_AWAY, "server stopping");
    }
    core.events.post(Event::Connected {
        user,
        session: name.clone(),
        device,
    });
    tracing::debug!(session = &*name, "session started");
    Some((session, name))
}

/// Reads frames and writes what the outbox makes ready until the
/// connection ends; returns why it ended. (Not an `async fn`, which would
/// keep its arguments twice in the session's task.)
fn read_loop<'a>(
    core: &'a Arc<Core>,
    stream: &'a mut ReadSide,
    session: &'a Arc<SessionHandle>,
    mut writes: WriteSide,
) -> impl Future<Output = &'static str> + Send + 'a {
    let mut state = SessionState::new(&core.config.limits);
    async move {
        let outbox = &session.outbox;
        let peer_reason = 'session: loop {
            // No timeout here: the keepalive task closes a session it has
            // not heard from, so a wait for the peer registers no timer.
            let next = match poll_fn(|cx| poll_next_step(cx, stream, &mut writes, session)).await {
                Step::Read(next) => next,
                Step::Stopped(stopped) => break stopped_by(outbox, stopped),
            };
            core.keepalive.heard(session);
            let text = match on_read(session, &mut state, next) {
                AfterRead::Read => continue,
                AfterRead::Request(text) => text,
                AfterRead::End(peer_reason) => break peer_reason,
            };
            if let Some(mut waiting) = handle_text(core, session, &mut state, &text) {
                core.keepalive.answering(session);
                // Writes go on meanwhile: the request may wait for room in
                // the outbox.
                let stopped = tokio::select! {
                    () = &mut waiting => None,
                    stopped = poll_fn(|cx| writes.poll_write_until_closing(cx, session)) => Some(stopped),
                };
                if let Some(stopped) = stopped {
                    waiting.await;
                    break 'session stopped_by(outbox, stopped);
                }
                core.keepalive.heard(session);
            }
        };
        outbox.close(close::NORMAL, "closed by peer");
        // Boxed, like the grace below: in place, the close's timer took
        // room in every session's task for the whole session.
        Box::pin(writes.close(outbox)).await;
        // Let the peer's close frame arrive, so the connection ends cleanly.
        // Boxed: in place, the timer took room in every session's task for
        // the whole session, for its last moment (a larger size class).
        let grace = timeout(CLOSE_GRACE, until_closed(stream));
        let _ = Box::pin(grace).await;
        peer_reason.unwrap_or_else(|| outbox.close_reason().map_or("connection error", |(_, r)| r))
    }
}

/// What a session's task does next.
enum Step {
    /// Handle what was read.
    Read(Result<Incoming, ReadError>),
    /// End: writing stopped.
    Stopped(Stopped),
}

/// Reads first: the writes wait until the socket has nothing more to read
/// (or [`WriteSide::is_first`]), so the replies to everything read leave
/// in one write. Right after the write side's cork writes go first: the
/// read was polled just before it, and most wake-ups are for writing.
fn poll_next_step(
    cx: &mut Context<'_>,
    stream: &mut ReadSide,
    writes: &mut WriteSide,
    session: &SessionHandle,
) -> Poll<Step> {
    let writes_first = writes.is_first();
    if writes_first && let Poll::Ready(stopped) = writes.poll_write_until_closing(cx, session) {
        return Poll::Ready(Step::Stopped(stopped));
    }
    if let Poll::Ready(next) = stream.poll_next(cx) {
        writes.read_one();
        return Poll::Ready(Step::Read(next));
    }
    if writes_first {
        return Poll::Pending;
    }
    writes.poll_write_until_closing(cx, session).map(Step::Stopped)
}

/// The peer's reason for the end when writing stopped: none, since the
/// server asked for the close (a failed write asks for one here).
fn stopped_by(outbox: &Outbox, stopped: Stopped) -> Option<&'static str> {
    if let Stopped::Failed = stopped {
        outbox.close(close::INTERNAL_ERROR, "write failed");
    }
    None
}

/// What the read loop does after a read.
enum AfterRead {
    /// Read the next frame.
    Read,
    /// Handle this text frame, a request within the session's rate limit.
    Request(Utf8Bytes),
    /// End the session; the reason the peer gave, if it closed.
    End(Option<&'static str>),
}

/// Sorts out what a read brought: an end, a frame answered here, or a
/// request. Not `async`, and apart from the read loop, so that what was
/// read is not kept in the session's task beyond the text of a request.
// Inlined: called once per frame; out of line, direct ran about 5% slower
// in pairs of runs.
#[inline(always)]
fn on_read(session: &Arc<SessionHandle>, state: &mut SessionState, read: Result<Incoming, ReadError>) -> AfterRead {
    match read {
        // The peer's close may be its answer to ours: the server's reason
        // wins. The write side answers the peer's close with the server's
        // close frame.
        Ok(Incoming::Close) => AfterRead::End(
            session
                .outbox
                .close_reason()
                .map(|(_, reason)| reason)
                .or(Some("closed by peer")),
        ),
        Err(e) => {
            let (code, reason) = close_code_for(&e);
            session.outbox.close(code, reason);
            AfterRead::End(None)
        }
        Ok(Incoming::Ping(payload)) => {
            session.outbox.push_control(&framed(Frame::pong(payload)));
            AfterRead::Read
        }
        Ok(Incoming::Pong) => AfterRead::Read,
        Ok(message @ (Incoming::Text(_) | Incoming::Binary(_))) => match (state.limits.frame(), message) {
            (FrameBudget::Exhausted, _) => {
                session.outbox.close(close::POLICY, "rate limit");
                AfterRead::End(None)
            }
            (FrameBudget::Over, Incoming::Text(text)) => {
                reply(session, rate_limited(Some(&text)));
                AfterRead::Read
            }
            (FrameBudget::Over, _) => {
                reply(session, rate_limited(None));
                AfterRead::Read
            }
            (FrameBudget::Within, Incoming::Text(text)) => AfterRead::Request(text),
            (FrameBudget::Within, _) => {
                reply(
                    session,
                    error_frame(
                        None,
                        ErrorCode::BadRequest,
                        "binary frames are reserved; send JSON in text frames",
                    ),
                );
                AfterRead::Read
            }
        },
    }
}

/// The close code and reason for a read error.
fn close_code_for(e: &ReadError) -> (u16, &'static str) {
    match e {
        ReadError::Refused(Refusal::TooBig) => (close::TOO_BIG, "frame too large"),
        ReadError::Refused(Refusal::InvalidUtf8) => (close::INVALID_DATA, "invalid utf-8"),
        ReadError::Refused(Refusal::Protocol) => (close::PROTOCOL_ERROR, "protocol error"),
        ReadError::Reset => (close::NORMAL, "connection reset"),
        ReadError::Io => (close::INTERNAL_ERROR, "connection error"),
    }
}
