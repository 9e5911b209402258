//! What a session does with each frame a client sends: one handler per
//! frame type. Replies go through the session's outbox; store reads run on
//! the blocking pool, never on a network thread. A session's requests take
//! effect in the order they arrived ([`super::write_order`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::core::Core;
use super::membership::{Actor, Refused};
use super::msg_frames::{msg_array, msg_frame};
use super::rate_limit::{MEMBERSHIP_BURST, MEMBERSHIP_PER_SECOND, SessionLimits, TYPING_PER_SECOND};
use super::receipts::{self, relay_read};
use super::write_order::WriteOrder;
use super::{amendments, files, search};
use crate::protocol::{
    ClientFrame, Conversation, ConversationEntry, ErrorCode, ServerFrame, SyncedState, close, direct_conv, error_frame,
    group_conv, is_valid_id, now_ms, parse_client_frame,
};
use crate::router::SessionHandle;
use crate::store::amend::Refused as StoreRefused;
use crate::store::{
    Appended, ConversationRange, MessageKind, NewMessage, ReadMark, Store, StoreError, StoredMessage,
    SyncedConversation,
};

/// Default and largest `limit` of `sync` (per conversation) and `history`.
const SYNC_LIMIT: (u64, u64) = (100, 1000);
const HISTORY_LIMIT: (u64, u64) = (50, 1000);
/// Default and largest `limit` of `conversations`: a page of 1000 entries
/// stays far below the reply budget.
const CONVERSATIONS_LIMIT: (u64, u64) = (1000, 1000);

/// Read positions per `reads` reply: (default, max).
const READS_LIMIT: (u64, u64) = (1000, 1000);

/// The most users one `watch` or `unwatch` names.
const MAX_WATCH: usize = 1000;

/// Store reads one session may have in flight; its reader waits (and stops
/// reading the socket) until the reply of one is queued, and its outbox has
/// room for another whole reply, before it starts the next.
const STORE_READS_PER_SESSION: usize = 1;

/// What a session's reader keeps from one frame to the next.
pub(crate) struct SessionState {
    /// Its rate limits.
    pub(crate) limits: SessionLimits,
    /// Its store writes in flight.
    writes: WriteOrder,
    /// Its store reads in flight; made at its first read, since most
    /// sessions idle and an idle one never reads.
    reads: std::sync::OnceLock<Arc<Semaphore>>,
}

impl SessionState {
    /// Full rate-limit buckets and nothing in flight.
    pub(crate) fn new(limits: &crate::config::Limits) -> SessionState {
        SessionState {
            limits: SessionLimits::new(limits),
            writes: WriteOrder::new(),
            reads: std::sync::OnceLock::new(),
        }
    }
}

/// Queues a reply to the session.
pub(crate) fn reply(session: &SessionHandle, frame: String) {
    session.outbox.push(frame.into());
}

/// A failed request: the error code and message of its `error` frame.
pub(crate) type Refusal = (ErrorCode, String);

pub(crate) fn bad(message: impl Into<String>) -> Refusal {
    (ErrorCode::BadRequest, message.into())
}

/// Handles one text frame. Most requests take effect, as far as the next
/// frame's checks can see, before it returns; the rest come back as a future
/// to await before the next frame.
///
/// Not async itself: the waiting requests' futures are boxed, and the common
/// ones never wait, so the session's reader holds no request state while idle.
pub(crate) fn handle_text<'a>(
    core: &'a Arc<Core>,
    session: &'a Arc<SessionHandle>,
    state: &'a mut SessionState,
    text: &'a str,
) -> Option<BoxFuture<'a, ()>> {
    let frame = match parse_client_frame(text) {
        Ok(frame) => frame,
        Err(e) => {
            reply(session, error_frame(e.id.as_deref(), ErrorCode::BadRequest, &e.message));
            return None;
        }
    };
    let handled = match &*frame.kind {
        "send" => send(core, session, state, &frame),
        "read" => read(core, session, state, &frame),
        "members" => members(core, session, &frame),
        "edit" => amendments::amend(core, session, state, &frame, MessageKind::Edit),
        "delete" => amendments::amend(core, session, state, &frame, MessageKind::Delete),
        "react" => amendments::amend(core, session, state, &frame, MessageKind::React),
        "unreact" => amendments::amend(core, session, state, &frame, MessageKind::Unreact),
        "device" => device(core, session, &frame),
        "watch" => watch(core, session, &frame, true),
        "unwatch" => watch(core, session, &frame, false),
        "typing" => typing(core, session, &mut state.limits, &frame),
        "ping" => {
            reply(
                session,
                ServerFrame::Pong {
                    id: frame.id.as_deref(),
                }
                .encode(),
            );
            Ok(())
        }
        "auth" => Err(bad("already authenticated")),
        other => match Waiting::of(other) {
            // Boxed: a future lives inside every session's reader for as long
            // as the session, sized by its largest state, and these are rare.
            Some(kind) => return Some(Box::pin(handle_waiting(core, session, state, kind, frame))),
            None => Err(bad(format!("unknown frame type `{other}`"))),
        },
    };
    refuse(session, frame.id.as_deref(), handled);
    None
}

/// The frames whose answers wait for the store or the outbox.
#[derive(Clone, Copy)]
enum Waiting {
    Sync,
    History,
    Join,
    Leave,
    Conversations,
    Reads,
    Search,
}

impl Waiting {
    /// The waiting frame of type `kind`, if it is one.
    fn of(kind: &str) -> Option<Waiting> {
        Some(match kind {
            "sync" => Waiting::Sync,
            "history" => Waiting::History,
            "join" => Waiting::Join,
            "leave" => Waiting::Leave,
            "conversations" => Waiting::Conversations,
            "reads" => Waiting::Reads,
            "search" => Waiting::Search,
            _ => return None,
        })
    }
}

/// Answers a frame that waits for the store or the outbox.
async fn handle_waiting(
    core: &Arc<Core>,
    session: &Arc<SessionHandle>,
    state: &mut SessionState,
    kind: Waiting,
    frame: ClientFrame<'_>,
) {
    let handled = match kind {
        Waiting::Sync => sync(core, session, state, &frame).await,
        Waiting::History => history(core, session, state, &frame).await,
        Waiting::Join => change_membership(core, session, &mut state.limits, &frame, true).await,
        Waiting::Leave => change_membership(core, session, &mut state.limits, &frame, false).await,
        Waiting::Conversations => conversations(core, session, state, &frame).await,
        Waiting::Reads => reads(core, session, state, &frame).await,
        Waiting::Search => search::search(core, session, state, &frame).await,
    };
    refuse(session, frame.id.as_deref(), handled);
}

/// Answers a refused frame with its error.
fn refuse(session: &SessionHandle, id: Option<&str>, handled: Result<(), Refusal>) {
    if let Err((code, message)) = handled {
        reply(session, error_frame(id, code, &message));
    }
}

/// A `limit` field within `1..=max`, or `default` when absent.
pub(crate) fn limit_of(frame: &ClientFrame<'_>, (default, max): (u64, u64)) -> Result<usize, Refusal> {
    match frame.limit.unwrap_or(default) {
        n @ 1.. if n <= max => Ok(n as usize),
        _ => Err(bad(format!("limit must be between 1 and {max}"))),
    }
}

/// The `conv` field, checked for form and for the user's membership.
pub(crate) fn member_conv<'f>(
    core: &Core,
    session: &SessionHandle,
    frame: &'f ClientFrame<'_>,
) -> Result<&'f str, Refusal> {
    let conv = frame.conv.as_deref().ok_or_else(|| bad("conv is required"))?;
    let member = match Conversation::parse(conv) {
        None => return Err(bad("conv must be dm:<a>:<b> (sorted) or g:<group>")),
        Some(Conversation::Direct(a, b)) => *session.user == *a || *session.user == *b,
        Some(Conversation::Group(group)) => core.groups.is_member(group, &session.user),
    };
    if member { Ok(conv) } else { Err(forbidden()) }
}

fn forbidden() -> Refusal {
    (ErrorCode::Forbidden, "not a member of this conversation".into())
}

/// An `after` or `until` bound: a conversation name, whether or not the
/// user has it.
fn conv_bound(bound: Option<&str>, field: &str) -> Result<Option<String>, Refusal> {
    match bound {
        Some(conv) if Conversation::parse(conv).is_none() => {
            Err(bad(format!("{field} must be a conversation: dm:<a>:<b> or g:<group>")))
        }
        bound => Ok(bound.map(str::to_owned)),
    }
}

/// A valid `group` field.
fn group_of<'f>(frame: &'f ClientFrame<'_>) -> Result<&'f str, Refusal> {
    match frame.group.as_deref() {
        Some(group) if is_valid_id(group) => Ok(group),
        Some(_) => Err(bad("group must be 1 to 64 characters of [A-Za-z0-9_.@-]")),
        None => Err(bad("group is required")),
    }
}

fn send(
    core: &Arc<Core>,
    session: &Arc<SessionHandle>,
    state: &mut SessionState,
    frame: &ClientFrame<'_>,
) -> Result<(), Refusal> {
    let client_id = frame.id.as_deref().ok_or_else(|| bad("send requires an id"))?;
    let (conv, to, group) = match (&frame.to, &frame.group) {
        (Some(to), None) if is_valid_id(to) => (direct_conv(&session.user, to), Some(to.to_string()), None),
        (Some(_), None) => return Err(bad("to must be 1 to 64 characters of [A-Za-z0-9_.@-]")),
        (None, Some(_)) => {
            let group = group_of(frame)?;
            if !core.groups.is_member(group, &session.user) {
                return Err((ErrorCode::Forbidden, "not a member of this group".into()));
            }
            (group_conv(group), None, Some(group.to_owned()))
        }
        _ => return Err(bad("send requires exactly one of to or group")),
    };
    let body = frame.body.ok_or_else(|| bad("send requires a body"))?;
    let message = NewMessage {
        conv,
        from: session.user.clone(),
        to,
        group,
        client_id: client_id.to_owned(),
        files: files::referenced(body).map_err(bad)?,
        body: body.to_owned(),
        ts: now_ms(),
        kind: MessageKind::Message,
        target: frame.reply_to,
        by_host: false,
    };
    store_and_ack(core, session, state, message);
    Ok(())
}

/// Stores `message` (a message or an event) from the session, then answers
/// it: `ack`, or the error of the store's refusal or failure.
pub(crate) fn store_and_ack(
    core: &Arc<Core>,
    session: &Arc<SessionHandle>,
    state: &mut SessionState,
    message: NewMessage,
) {
    let (replying, written) = (session.clone(), state.writes.start());
    let client_id = message.client_id.clone();
    core.submit(message, Some(session.id), move |outcome| {
        let _written = written;
        let ack = |conv: &str, seq, ts| {
            ServerFrame::Ack {
                id: &client_id,
                conv,
                seq,
                ts,
            }
            .encode()
        };
        let frame = match outcome {
            Ok(Appended::New(m)) => ack(&m.message.conv, m.seq, m.message.ts),
            Ok(Appended::Duplicate(p)) => ack(&p.conv, p.seq, p.ts),
            Ok(Appended::Refused(refused)) => {
                let (code, message) = match refused {
                    StoreRefused::NotFound(why) => (ErrorCode::NotFound, why),
                    StoreRefused::Forbidden(why) => (ErrorCode::Forbidden, why),
                    StoreRefused::Invalid(why) => (ErrorCode::BadRequest, why),
                };
                error_frame(Some(&client_id), code, &message)
            }
            Err(e) => {
                tracing::error!(error = %e, "store failed");
                error_frame(Some(&client_id), ErrorCode::Internal, "the message could not be stored")
            }
        };
        reply(&replying, frame);
    });
}

/// The byte budget of one sync or history reply: half the outbound queue,
/// so a reply never closes the session it answers.
pub(crate) fn reply_budget(core: &Core) -> usize {
    core.config.limits.outbound_queue_bytes / 2
}

async fn sync(
    core: &Arc<Core>,
    session: &Arc<SessionHandle>,
    state: &SessionState,
    frame: &ClientFrame<'_>,
) -> Result<(), Refusal> {
    let limit = limit_of(frame, SYNC_LIMIT)?;
    let cursors = frame.cursors.clone().unwrap_or_default();
    let range = ConversationRange {
        after: conv_bound(frame.after.as_deref(), "after")?,
        until: conv_bound(frame.until.as_deref(), "until")?,
    };
    if !session.outbox.hold() {
        return Err(bad("a sync is already in progress on this connection"));
    }
    let (answering, user, budget, reading) = (session.clone(), session.user.clone(), reply_budget(core), core.clone());
    let id = frame.id.as_deref().map(str::to_owned);
    let synced_by = core.clone();
    read_then_answer(
        core,
        session,
        state,
        frame.id.as_deref(),
        "sync",
        move |store| {
            let page = store.sync(&user, &range, &cursors, limit, budget)?;
            // Read no more positions than the reply's budget could carry.
            let (mut reads, mut bytes) = (Vec::new(), 0);
            for conv in &page.convs {
                if bytes > budget {
                    break;
                }
                for (reader, seq) in receipts::others_positions(&reading, store, &user, &conv.conv)?.unwrap_or_default()
                {
                    let frame = receipts::read_frame(&conv.conv, &reader, seq);
                    bytes += frame.len();
                    reads.push(frame);
                }
            }
            Ok((page, reads, range))
        },
        move |outcome| match outcome {
            Ok((page, reads, range)) => {
                for conv in &page.convs {
                    synced_by.router.synced(&conv.conv, conv.last_seq);
                }
                if synced_by.config.cluster.redis.is_some() {
                    let synced = page.convs.iter().map(|c| (c.conv.clone(), c.last_seq));
                    answering.outbox.remember_synced(synced);
                }
                let next = range.until.as_deref().filter(|_| page.more_after);
                let (frames, covered) = sync_reply(id.as_deref(), &page.convs, reads, next, budget);
                answering
                    .outbox
                    .release(frames, |conv, seq| covered.get(conv).is_some_and(|up_to| seq <= *up_to));
            }
            Err(error) => answering.outbox.release(vec![error.into()], |_, _| false),
        },
    )
    .await;
    Ok(())
}

/// Reads from the store on the blocking pool, once every write the session
/// sent before this request has taken effect, and hands `answer` the result,
/// or an `internal` error frame ("<what> failed; retry") when the store failed.
/// Waits first for the session's read permit and for room in its outbox for
/// a whole reply: a session that asks faster than it reads the answers stops
/// being read, instead of overflowing its queue.
pub(crate) async fn read_then_answer<T: Send + 'static>(
    core: &Core,
    session: &SessionHandle,
    state: &SessionState,
    id: Option<&str>,
    what: &'static str,
    read: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    answer: impl FnOnce(Result<T, String>) + Send + 'static,
) {
    let reads = state
        .reads
        .get_or_init(|| Arc::new(Semaphore::new(STORE_READS_PER_SESSION)));
    let Ok(mine) = reads.clone().acquire_owned().await else {
        return;
    };
    // A peer that stops reading never makes room: it is a slow reader.
    let room = tokio::time::timeout(
        core.config.limits.idle_timeout(),
        session.outbox.room_for(reply_budget(core)),
    );
    if room.await.is_err() {
        return session.outbox.close(close::SLOW_READER, "slow reader");
    }
    let (store, settled, id) = (core.store.clone(), state.writes.settled(), id.map(str::to_owned));
    let everyone = core.store_reads.clone();
    tokio::spawn(async move {
        settled.await;
        let Ok(shared) = everyone.acquire_owned().await else {
            return;
        };
        let outcome = match tokio::task::spawn_blocking(move || read(&*store)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(e.0),
            Err(e) => Err(e.to_string()),
        };
        drop(shared);
        answer(outcome.map_err(|e| {
            tracing::error!(error = %e, "{what} failed");
            error_frame(id.as_deref(), ErrorCode::Internal, &format!("{what} failed; retry"))
        }));
        drop(mine);
    });
}

/// Bytes a `conversations` entry takes at most besides its conversation's
/// name and its read positions.
const CONVERSATION_ENTRY_BYTES: usize = 80;

/// Bytes a `synced` entry takes at most besides its conversation's name.
const SYNCED_ENTRY_BYTES: usize = 48;

/// The `msg` frames of a sync reply within `budget` bytes, then `synced`;
/// and, per conversation, up to which seq live messages held during the
/// sync are covered: by this reply, or (where more remain) by the next sync.
///
/// `synced` must fit the budget too, whatever the number of conversations:
/// it lists those whose messages the reply carries, then the first one with
/// messages the reply could not carry (`more`, so the client repeats the
/// sync), then the rest while the budget lasts. A client learns of the
/// conversations left out from `conversations`, or from a later sync.
fn sync_reply<'c>(
    id: Option<&str>,
    convs: &'c [SyncedConversation],
    reads: Vec<Utf8Bytes>,
    next: Option<&str>,
    budget: usize,
) -> (Vec<Utf8Bytes>, BTreeMap<&'c str, u64>) {
    let mut frames = Vec::new();
    let mut states = BTreeMap::new();
    let mut covered = BTreeMap::new();
    let mut used = 0;
    let mut waiting_listed = false;
    let mut quiet = Vec::new();
    for conv in convs {
        let mut carried = 0;
        for message in &conv.messages {
            let frame = msg_frame(message);
            // The first message goes even when it alone is over the budget:
            // a reply without one would promise `more` and never make progress.
            if used + frame.len() > budget && !frames.is_empty() {
                break;
            }
            used += frame.len();
            carried += 1;
            frames.push(frame.into());
        }
        let more = conv.more || carried < conv.messages.len();
        if carried == 0 && !more {
            quiet.push(conv);
            continue;
        }
        covered.insert(conv.conv.as_str(), if more { u64::MAX } else { conv.last_seq });
        if carried > 0 || !waiting_listed {
            waiting_listed |= carried == 0;
            used += conv.conv.len() + SYNCED_ENTRY_BYTES;
            let last_seq = conv.last_seq;
            states.insert(conv.conv.as_str(), SyncedState { last_seq, more });
        }
    }
    for conv in quiet {
        used += conv.conv.len() + SYNCED_ENTRY_BYTES;
        if used > budget {
            break;
        }
        covered.insert(conv.conv.as_str(), conv.last_seq);
        let last_seq = conv.last_seq;
        states.insert(conv.conv.as_str(), SyncedState { last_seq, more: false });
    }
    // Others' read positions, as the `read` frames a client already handles
    // live, while they fit; `conversations` carries them all.
    for read in reads {
        if used + read.len() > budget {
            break;
        }
        used += read.len();
        frames.push(read);
    }
    frames.push(
        ServerFrame::Synced {
            id,
            convs: states,
            next,
        }
        .encode()
        .into(),
    );
    (frames, covered)
}

async fn history(
    core: &Arc<Core>,
    session: &Arc<SessionHandle>,
    state: &SessionState,
    frame: &ClientFrame<'_>,
) -> Result<(), Refusal> {
    let conv = member_conv(core, session, frame)?.to_owned();
    let limit = limit_of(frame, HISTORY_LIMIT)?;
    let (before, budget, answering) = (frame.before, reply_budget(core), session.clone());
    let (id, read_conv) = (frame.id.as_deref().map(str::to_owned), conv.clone());
    read_then_answer(
        core,
        session,
        state,
        frame.id.as_deref(),
        "history",
        move |store| store.history(&read_conv, before, limit, budget),
        move |outcome| {
            let frame = outcome.map(|messages| history_frame(id.as_deref(), &conv, &messages, budget));
            reply(&answering, frame.unwrap_or_else(|error| error));
        },
    )
    .await;
    Ok(())
}

/// A `history` frame with the newest of `messages` that fit in `budget` bytes.
fn history_frame(id: Option<&str>, conv: &str, messages: &[Arc<StoredMessage>], budget: usize) -> String {
    let messages = msg_array(messages, budget);
    ServerFrame::History {
        id,
        conv,
        messages: &messages,
    }
    .encode()
}

fn read(
    core: &Arc<Core>,
    session: &Arc<SessionHandle>,
    state: &mut SessionState,
    frame: &ClientFrame<'_>,
) -> Result<(), Refusal> {
    let conv = member_conv(core, session, frame)?.to_owned();
    let seq = frame
        .seq
        .filter(|s| *s >= 1)
        .ok_or_else(|| bad("read requires a seq of 1 or more"))?;
    let (core, session, id) = (core.clone(), session.clone(), frame.id.as_deref().map(str::to_owned));
    let (store, written) = (core.store.clone(), state.writes.start());
    store.mark_read(
        session.user.clone(),
        conv.clone(),
        seq,
        core.config.push.enabled,
        Box::new(move |outcome| {
            let _written = written;
            let refusal = match outcome {
                Ok(ReadMark::Advanced) => {
                    relay_read(&core, &session, &conv, seq);
                    core.pushes.wake();
                    None
                }
                Ok(ReadMark::Unchanged) => None,
                Ok(ReadMark::BeyondLast { last_seq }) => Some(bad(format!(
                    "seq {seq} is beyond the conversation's last seq {last_seq}"
                ))),
                Err(e) => {
                    tracing::error!(error = %e, "read cursor not stored");
                    Some((ErrorCode::Internal, "the read cursor could not be stored".into()))
                }
            };
            match (refusal, id) {
                (Some((code, message)), id) => reply(&session, error_frame(id.as_deref(), code, &message)),
                (None, Some(id)) => reply(&session, ServerFrame::Ok { id: &id, online: None }.encode()),
                (None, None) => {}
            }
        }),
    );
    Ok(())
}

/// `join` and `leave`: stored on the blocking pool, then answered. The
/// reader waits for it, so the session's next request sees the change.
async fn change_membership(
    core: &Arc<Core>,
    session: &Arc<SessionHandle>,
    limits: &mut SessionLimits,
    frame: &ClientFrame<'_>,
    join: bool,
) -> Result<(), Refusal> {
    let group = group_of(frame)?.to_owned();
    if !limits.membership() {
        return Err((
            ErrorCode::RateLimited,
            format!("at most {MEMBERSHIP_PER_SECOND} joins and leaves per second, bursts of {MEMBERSHIP_BURST}"),
        ));
    }
    let (changing, user, actor) = (core.clone(), session.user.clone(), Actor::User(session.id));
    let changed = tokio::task::spawn_blocking(move || {
        if join {
            changing.join(&group, &user, actor)
        } else {
            changing.leave(&group, &user, actor)
        }
    })
    .await
    .unwrap_or_else(|e| Err(Refused::Store(e.to_string())));
    let id = frame.id.as_deref();
    match changed {
        Ok(_) => {
            if let Some(id) = id {
                reply(session, ServerFrame::Ok { id, online: None }.encode());
            }
            Ok(())
        }
        Err(Refused::Forbidden) => Err((ErrorCode::Forbidden, "the group is closed".into())),
        Err(Refused::NotFound) => Err((ErrorCode::NotFound, "no such group".into())),
        Err(Refused::Store(e)) => {
            tracing::error!(error = %e, "membership change not stored");
            Err((ErrorCode::Internal, "the change could not be stored".into()))
        }
    }
}

fn members(core: &Arc<Core>, session: &Arc<SessionHandle>, frame: &ClientFrame<'_>) -> Result<(), Refusal> {
    let name = group_of(frame)?;
    let group = core
        .groups
        .get(name)
        .filter(|g| g.has(&session.user))
        .ok_or_else(forbidden)?;
    let members = group.members.iter().map(|m| &**m).collect();
    let id = frame.id.as_deref();
    reply(
        session,
        ServerFrame::Members {
            id,
            group: name,
            closed: group.closed,
            members,
        }
        .encode(),
    );
    Ok(())
}

/// `reads`: a page of the members' read positions in a conversation, for
/// groups too large to carry them everywhere.
async fn reads(
    core: &Arc<Core>,
    session: &Arc<SessionHandle>,
    state: &SessionState,
    frame: &ClientFrame<'_>,
) -> Result<(), Refusal> {
    let conv = member_conv(core, session, frame)?.to_owned();
    let limit = limit_of(frame, READS_LIMIT)?;
    let after = frame.after.as_deref().map(str::to_owned);
    let (answering, id, reading) = (session.clone(), frame.id.as_deref().map(str::to_owned), core.clone());
    read_then_answer(
        core,
        session,
        state,
        frame.id.as_deref(),
        "reads",
        move |store| {
            let mut positions = receipts::members_positions(&reading, store, &conv)?;
            positions.retain(|(user, _)| after.as_deref().is_none_or(|after| user.as_str() > after));
            let more = positions.len() > limit;
            positions.truncate(limit);
            Ok((conv, positions, more))
        },
        move |outcome| {
            let frame = outcome.map(|(conv, positions, more)| {
                ServerFrame::Reads {
                    id: id.as_deref(),
                    conv: &conv,
                    reads: receipts::as_map(&positions),
                    next: positions.last().filter(|_| more).map(|(user, _)| user.as_str()),
                }
                .encode()
            });
            reply(&answering, frame.unwrap_or_else(|error| error));
        },
    )
    .await;
    Ok(())
}

/// `device`: the app went to the background or came back. A user with no
/// session in the foreground gets push requests.
fn device(core: &Core, session: &SessionHandle, frame: &ClientFrame<'_>) -> Result<(), Refusal> {
    let background = match frame.state.as_deref() {
        Some("background") => true,
        Some("foreground") => false,
        _ => return Err(bad("state must be foreground or background")),
    };
    let was = session
        .background
        .swap(background, std::sync::atomic::Ordering::Relaxed);
    if was != background {
        core.router.looking_changed(&session.user);
    }
    if let Some(id) = frame.id.as_deref() {
        reply(session, ServerFrame::Ok { id, online: None }.encode());
    }
    Ok(())
}

async fn conversations(
    core: &Arc<Core>,
    session: &Arc<SessionHandle>,
    state: &SessionState,
    frame: &ClientFrame<'_>,
) -> Result<(), Refusal> {
    let limit = limit_of(frame, CONVERSATIONS_LIMIT)?;
    let after = frame.after.as_deref().map(str::to_owned);
    let (answering, user, id, reading, budget) = (
        session.clone(),
        session.user.clone(),
        frame.id.as_deref().map(str::to_owned),
        core.clone(),
        reply_budget(core),
    );
    read_then_answer(
        core,
        session,
        state,
        frame.id.as_deref(),
        "listing",
        move |store| {
            // One more than asked for tells whether another page follows.
            let mut conversations = store.conversations(&user, after.as_deref(), limit + 1)?;
            let more = conversations.len() > limit;
            conversations.truncate(limit);
            let reads = conversations
                .iter()
                .map(|c| receipts::others_positions(&reading, store, &user, &c.conv))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((conversations, reads, more))
        },
        move |outcome| {
            let frame = outcome.map(|(conversations, reads, more)| {
                let next = conversations.last().filter(|_| more).map(|c| c.conv.as_str());
                // Read positions ride along while the reply stays within its
                // budget; past it, entries come without them (a `reads`
                // request has them), so the reply never closes its session.
                let mut used = 0;
                let entries: Vec<ConversationEntry<'_>> = conversations
                    .iter()
                    .zip(&reads)
                    .map(|(c, reads)| {
                        used += c.conv.len() + CONVERSATION_ENTRY_BYTES;
                        let cost = reads
                            .as_deref()
                            .map_or(0, |r| r.iter().map(|(u, _)| u.len() + 24).sum());
                        let fits = used + cost <= budget;
                        used += if fits { cost } else { 0 };
                        ConversationEntry {
                            conv: &c.conv,
                            last_seq: c.last_seq,
                            read_seq: c.read_seq,
                            reads: reads.as_deref().filter(|_| fits).map(receipts::as_map),
                        }
                    })
                    .collect();
                ServerFrame::Conversations {
                    id: id.as_deref(),
                    conversations: &entries,
                    next,
                }
                .encode()
            });
            reply(&answering, frame.unwrap_or_else(|error| error));
        },
    )
    .await;
    Ok(())
}

/// `watch` (and `unwatch`, when `watch` is false).
fn watch(core: &Arc<Core>, session: &Arc<SessionHandle>, frame: &ClientFrame<'_>, watch: bool) -> Result<(), Refusal> {
    let users = frame.users.as_deref().unwrap_or_default();
    if users.is_empty() || users.len() > MAX_WATCH || !users.iter().all(|u| is_valid_id(u)) {
        return Err(bad(format!("users must be 1 to {MAX_WATCH} valid user ids")));
    }
    let users: Vec<Arc<str>> = users.iter().map(|u| Arc::from(u.as_str())).collect();
    let online = if watch {
        let max = core.config.limits.max_watches;
        if !core.presence.watch(session, &users, max) {
            return Err(bad(format!(
                "at most {max} watched users per session (limits.max_watches)"
            )));
        }
        Some(users.iter().map(|u| (&**u, core.router.is_online(u))).collect())
    } else {
        core.presence.unwatch(session, &users);
        None
    };
    if let Some(id) = frame.id.as_deref() {
        reply(session, ServerFrame::Ok { id, online }.encode());
    }
    Ok(())
}

/// `typing`: relayed to the other side, never stored, rate-limited.
fn typing(
    core: &Arc<Core>,
    session: &Arc<SessionHandle>,
    limits: &mut SessionLimits,
    frame: &ClientFrame<'_>,
) -> Result<(), Refusal> {
    let (conv, recipients): (String, Vec<Arc<str>>) = match (&frame.to, &frame.group) {
        (Some(to), None) if is_valid_id(to) => (direct_conv(&session.user, to), vec![Arc::from(&**to)]),
        (None, Some(_)) => {
            let name = group_of(frame)?;
            let group = core
                .groups
                .get(name)
                .filter(|g| g.has(&session.user))
                .ok_or_else(forbidden)?;
            (group_conv(name), group.members.to_vec())
        }
        _ => return Err(bad("typing requires exactly one valid to or group")),
    };
    if !limits.typing() {
        return Err((
            ErrorCode::RateLimited,
            format!("at most {TYPING_PER_SECOND} typing indicators per second"),
        ));
    }
    let frame = Utf8Bytes::from(
        ServerFrame::Typing {
            from: &session.user,
            conv: &conv,
        }
        .encode(),
    );
    for user in recipients.iter().filter(|u| ***u != *session.user) {
        core.router.deliver(user, &frame, None, None);
    }
    Ok(())
}
