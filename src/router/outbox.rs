//! A session's outbound queue, bounded in bytes.
//!
//! Producers (fan-out, replies) never wait: a push that would take the queue
//! past its byte limit closes the session with 1013 instead, because a reader
//! that far behind is better served by `sync` after reconnecting than by an
//! ever-growing buffer here. A close request also wakes the session's task
//! when its write is blocked on a peer that does not read.
//!
//! Frames wait in a queue under one lock, a spin lock: it is held for a
//! few dozen instructions and never across an await, and its unlock is a
//! plain store where a parking lock's is an atomic exchange, one per push
//! (docs/DECISIONS.md, "The outbox's lock spins"). The session's task
//! takes all of them at once and is woken only when the queue goes from
//! empty to not empty, so a fan-out to many sessions costs each of them a
//! push, not a wake-up per frame. One task per session drains its outbox,
//! so one waker is all the outbox keeps.
//!
//! A group's messages come in batches (`super::batch`): the fan-out pushes
//! a batch once, and the group's next frames are appended to it. A batch
//! that may still grow is a *tail* of the queue: whenever the queue looks
//! (at each push, and when the writer takes) what the batch got since it
//! last looked is queued as a slice of it and counted against the limit.
//! So a frame pushed here goes out after the group's frames fanned out
//! before it, and before those fanned out after it.
//!
//! While a sync reply is being read from the store, the outbox *holds* new
//! frames instead of queueing them; the reply goes out first and the held
//! frames after it, minus the messages the reply already carried. That keeps
//! each conversation in seq order on the wire. A holding outbox takes no
//! batch (the fan-out pushes it each frame instead), and a hold seals the
//! batches in its queue.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use spin::{Mutex, MutexGuard};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use super::batch::Batch;
use crate::protocol::close;

/// The most entries an emptied list may have room for and still be kept
/// for the next batch (2 KiB of room, at 16 bytes an entry): a burst's
/// list is not kept.
const SPARE_FRAMES_KEPT: usize = 128;

/// A text frame as it waits in outboxes: framed once (the WebSocket header
/// and the payload, as the writer sends them), shared by every session it
/// goes to, behind a thin pointer. A queue of them is dense: in a room,
/// the writers read their queues after the fan-out filled hundreds of
/// them, and the slots of 32-byte `Utf8Bytes` were where reading them
/// missed the cache; and a frame fanned out to a room is framed once, not
/// once per member.
#[derive(Clone)]
pub(crate) struct Queued(Arc<Vec<u8>>);

impl Queued {
    /// `payload` as a text frame.
    pub(crate) fn text(payload: &str) -> Queued {
        let mut wire = Vec::with_capacity(payload.len() + MAX_HEADER);
        let header = FrameHeader {
            opcode: OpCode::Data(Data::Text),
            ..FrameHeader::default()
        };
        // Writing to a Vec cannot fail.
        let _ = header.format(payload.len() as u64, &mut wire);
        wire.extend_from_slice(payload.as_bytes());
        Queued(Arc::new(wire))
    }

    /// The frame's bytes on the wire.
    pub(crate) fn wire(&self) -> &[u8] {
        &self.0
    }

    /// The payload of a short frame, for tests.
    #[cfg(test)]
    pub(crate) fn payload(&self) -> String {
        assert!(self.0[1] < 126, "a short frame");
        String::from_utf8(self.0[2..].to_vec()).unwrap()
    }

    /// How many bytes its payload has: what counts against the limit, as
    /// the session sizes a sync's reply by its payloads.
    pub(crate) fn len(&self) -> usize {
        let header = match self.0[1] {
            ..126 => 2,
            126 => 4,
            _ => MAX_HEADER,
        };
        self.0.len() - header
    }
}

/// The longest header of a server frame: unmasked, with a 64-bit length.
const MAX_HEADER: usize = 10;

/// Where a `msg` frame sits: its conversation and seq.
pub(crate) type Position<'a> = (&'a str, u64);

/// A frame held back during a sync, with its position if it is a `msg`.
struct Held {
    frame: Queued,
    position: Option<(String, u64)>,
}

/// What waits for the writer: a frame, or a slice of a group's batch.
pub(crate) enum Entry {
    /// One frame.
    Frame(Queued),
    /// Frames `from..to` of a batch, all appended.
    Slice(Arc<Batch>, u16, u16),
}

#[cfg(any(test, feature = "internals"))]
impl Entry {
    /// Its frames, each with the session it is not for.
    pub(crate) fn frames(&self) -> Vec<(&Queued, Option<u64>)> {
        match self {
            Entry::Frame(frame) => vec![(frame, None)],
            Entry::Slice(batch, from, to) => (usize::from(*from)..usize::from(*to))
                .filter_map(|at| batch.get(at))
                .map(|queued| (&queued.frame, queued.except))
                .collect(),
        }
    }
}

/// A batch the queue reads as it grows.
struct Tail {
    batch: Arc<Batch>,
    /// Its first frame not queued yet.
    from: usize,
    /// The session's index in the group's fan-out, to be woken by.
    sleeper: u32,
}

/// How the queue looks at its tails.
#[derive(Clone, Copy)]
enum Look {
    /// Queues what they got.
    Now,
    /// And asks to be woken by their next frame: the writer takes all.
    Watch,
    /// And seals them: the group's next frames come one by one.
    Seal,
}

/// What a push of a batch did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BatchPushed {
    /// The batch is queued: its frames reach the session as it grows.
    Taken,
    /// The session holds its frames for a sync (or filters them by its
    /// last sync's positions): its frames must be pushed one by one.
    Declined,
    /// The session is closing or just overflowed.
    Refused,
}

/// What waits for the writer, and what waits for a sync reply.
///
/// In C's order, what a push reads first: with [`Outbox`]'s order and the
/// session handle's, a push touches two cache lines of the session.
#[derive(Default)]
#[repr(C)]
struct Queue {
    ready: VecDeque<Entry>,
    /// The bytes ever queued, less those of held frames a sync reply
    /// carried: what counts against the limit is this, less what the
    /// writer has written.
    pushed: usize,
    /// The most bytes that may wait: a push past it closes the session
    /// with 1013.
    limit_bytes: usize,
    /// The batches the queue reads as they grow (see [`Tail`]): boxed,
    /// since most sessions take no group's batch.
    #[expect(
        clippy::box_collection,
        reason = "the empty list's 24 bytes, not its entries, are what the box saves"
    )]
    tails: Option<Box<Vec<Tail>>>,
    /// The frames held back while a sync reply is read. Boxed, like
    /// `synced`: only a session in a sync has any, and inline the empty
    /// list took every session's handle a size class larger.
    #[expect(
        clippy::box_collection,
        reason = "the empty list's 24 bytes, not its entries, are what the box saves"
    )]
    held: Option<Box<Vec<Held>>>,
    /// On a node of a cluster: per conversation, the last seq the session's
    /// latest sync read. A message up to it reaches the session in that
    /// reply (or the next sync), so a copy arriving later from another node
    /// or a backfill is not pushed again. An entry goes once a later
    /// message of its conversation is pushed. Boxed: only a cluster's
    /// sessions have one, and inline it made every session's handle a
    /// size class larger.
    #[expect(
        clippy::box_collection,
        reason = "the empty map's 48 bytes, not its entries, are what the box saves"
    )]
    synced: Option<Box<std::collections::HashMap<Box<str>, u64>>>,
    /// Whether the writer is asked to ping the peer.
    ping: bool,
    /// WebSocket control frames (pongs) the reader's tungstenite wrote,
    /// already framed: they go out before the next text frames. Read by
    /// a push only when no text frame waits.
    control: Vec<u8>,
}

impl Queue {
    /// Whether nothing waits for the writer.
    fn is_empty(&self) -> bool {
        self.ready.is_empty() && self.control.is_empty() && !self.ping
    }

    /// Queues what each tail's batch got since the queue last looked, and
    /// counts it; forgets the batches that grow no more.
    fn look(&mut self, how: Look) {
        let Some(tails) = self.tails.as_mut() else {
            return;
        };
        tails.retain_mut(|tail| {
            let (len, sealed) = match how {
                // Sealed first: then the length read after is the last.
                Look::Now => {
                    let sealed = tail.batch.is_sealed();
                    (tail.batch.len(), sealed)
                }
                Look::Watch => tail.batch.watch(tail.sleeper),
                Look::Seal => (tail.batch.seal(), true),
            };
            if len > tail.from {
                let batch = &tail.batch;
                self.pushed += batch.bytes_through(len) - batch.bytes_through(tail.from);
                self.ready
                    .push_back(Entry::Slice(batch.clone(), tail.from as u16, len as u16));
                tail.from = len;
            }
            !sealed
        });
    }

    /// Whether the session's latest sync covers the message at `position`.
    fn covers(&mut self, position: Option<Position<'_>>) -> bool {
        let (Some((conv, seq)), Some(synced)) = (position, self.synced.as_mut()) else {
            return false;
        };
        match synced.get(conv) {
            Some(&up_to) if seq <= up_to => true,
            Some(_) => {
                synced.remove(conv);
                false
            }
            None => false,
        }
    }
}

/// What the writer takes from the outbox at once.
pub(crate) struct Ready {
    /// Whether to ping the peer, before the other frames.
    pub(crate) ping: bool,
    /// Control frames, framed, each whole; to write before the text frames.
    pub(crate) control: Vec<u8>,
    /// The text frames, framed, in order; slices of groups' batches among them.
    pub(crate) frames: VecDeque<Entry>,
}

/// A session's outbound queue: producers push, the session's task drains.
/// In C's order, what a push reads first (see [`Queue`]).
#[repr(C)]
pub(crate) struct Outbox {
    /// The bytes the writer has written, ever. Changed by it alone,
    /// so that a push counts what is queued with plain loads under the
    /// lock it takes anyway, not with an atomic read-modify-write per frame.
    written: AtomicUsize,
    /// Whether a close was requested: set once `close_reason` is. A flag
    /// of its own, beside the lock, where a push reads it.
    closing: AtomicBool,
    /// Set when frames became ready or a close was requested, until the
    /// session's task sees it ([`Outbox::poll_ready`]).
    due: AtomicBool,
    /// Whether the session waits for room ([`Outbox::room_for`]): the
    /// write side wakes it only then.
    room_wanted: AtomicBool,
    queue: Mutex<Queue>,
    close_reason: OnceLock<(u16, &'static str)>,
    /// The session's task, while it waits for [`Outbox::poll_ready`] or
    /// [`Outbox::room_for`]: one task, so one waker serves both.
    waiting: AtomicWaker,
}

impl Outbox {
    /// A queue holding at most `limit_bytes` of frames.
    pub(crate) fn new(limit_bytes: usize) -> Outbox {
        Outbox {
            written: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
            due: AtomicBool::new(false),
            room_wanted: AtomicBool::new(false),
            queue: Mutex::new(Queue {
                limit_bytes,
                ..Queue::default()
            }),
            close_reason: OnceLock::new(),
            waiting: AtomicWaker::new(),
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock()
    }

    /// The queue, with what its tails got queued and counted.
    fn settled(&self) -> MutexGuard<'_, Queue> {
        let mut queue = self.queue();
        queue.look(Look::Now);
        queue
    }

    /// Appends to the ready frames, after what the tails got, waking the
    /// writer if they were none.
    fn enqueue(&self, queue: &mut Queue, frames: impl IntoIterator<Item = Queued>) {
        let was_empty = queue.is_empty();
        queue.look(Look::Now);
        queue.ready.extend(frames.into_iter().map(Entry::Frame));
        if was_empty && !queue.ready.is_empty() {
            self.wake();
        }
    }

    /// Every frame ready to write, in order, leaving the queue empty.
    ///
    /// `spare` is the emptied list of the batch before: it becomes the
    /// queue's, so a session that keeps receiving fills the same two lists
    /// instead of growing a new one from nothing for every batch (in a
    /// room that growth, a copy at every doubling, and the writer's
    /// buffer were a tenth of the server's time). A batch without text
    /// frames (a ping or a pong, or a close) means the session is quiet:
    /// then both lists are freed, and a session pinged once per interval
    /// keeps no room it does not use.
    ///
    /// With them, what the tails got; the writer is woken by their next frame.
    pub(crate) fn take_ready(&self, spare: VecDeque<Entry>) -> Ready {
        debug_assert!(spare.is_empty());
        let mut queue = self.queue();
        queue.look(Look::Watch);
        let frames = if queue.ready.is_empty() {
            queue.ready = VecDeque::new();
            VecDeque::new()
        } else if spare.capacity() > SPARE_FRAMES_KEPT {
            std::mem::take(&mut queue.ready)
        } else {
            std::mem::replace(&mut queue.ready, spare)
        };
        Ready {
            ping: std::mem::take(&mut queue.ping),
            control: std::mem::take(&mut queue.control),
            frames,
        }
    }

    /// Queues control frames, framed (see [`Ready::control`]); they count
    /// against the limit like any frame. Dropped when the session is closing:
    /// its close frame ends what the peer is owed.
    pub(crate) fn push_control(&self, framed: &[u8]) {
        let mut queue = self.queue();
        if self.is_closing() || !self.reserve(&mut queue, framed.len()) {
            return;
        }
        if queue.is_empty() {
            self.wake();
        }
        queue.control.extend_from_slice(framed);
    }

    /// Asks the writer to ping the peer (once, however often asked before
    /// it does). Nothing when the session is closing.
    pub(crate) fn ping(&self) {
        let mut queue = self.queue();
        if self.is_closing() || queue.ping {
            return;
        }
        if queue.is_empty() {
            self.wake();
        }
        queue.ping = true;
    }

    /// Ready when frames may be ready or a close was requested: at once if
    /// either happened since it was last ready. For the session's task
    /// alone, since the outbox keeps one waker.
    pub(crate) fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        // Checked before registering too: a busy session finds it set and
        // registers nothing.
        if self.due.swap(false, Ordering::SeqCst) {
            return Poll::Ready(());
        }
        self.waiting.register(cx.waker());
        if self.due.swap(false, Ordering::SeqCst) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Tells the session's task to look at the outbox.
    fn wake(&self) {
        self.due.store(true, Ordering::SeqCst);
        self.waiting.wake();
    }

    /// Queues a frame; false when the session is closing or just overflowed.
    pub(crate) fn push(&self, frame: Utf8Bytes) -> bool {
        self.push_at(Queued::text(&frame), None)
    }

    /// Queues a `msg` frame at `position`, so a sync in progress can tell
    /// whether its reply already carries it.
    pub(crate) fn push_at(&self, frame: Queued, position: Option<Position<'_>>) -> bool {
        if self.is_closing() {
            return false;
        }
        let mut queue = self.queue();
        if queue.covers(position) {
            return true;
        }
        if !self.reserve(&mut queue, frame.len()) {
            return false;
        }
        match queue.held.as_mut() {
            Some(held) => {
                let position = position.map(|(conv, seq)| (conv.to_owned(), seq));
                held.push(Held { frame, position });
            }
            None => self.enqueue(&mut queue, [frame]),
        }
        true
    }

    /// Queues `batch`, whose frames then reach the session as the group's
    /// fan-out appends them, without a push each (see `Tail`); `sleeper`
    /// is the session's index in the fan-out, which wakes it by that.
    pub(crate) fn push_batch(&self, batch: &Arc<Batch>, sleeper: u32) -> BatchPushed {
        if self.is_closing() {
            return BatchPushed::Refused;
        }
        let mut queue = self.queue();
        if queue.held.is_some() || queue.synced.is_some() {
            return BatchPushed::Declined;
        }
        let tail = Tail {
            batch: batch.clone(),
            from: 0,
            sleeper,
        };
        queue.tails.get_or_insert_with(Box::default).push(tail);
        let was_empty = queue.is_empty();
        if !self.reserve(&mut queue, 0) {
            return BatchPushed::Refused;
        }
        if was_empty && !queue.is_empty() {
            self.wake();
        }
        BatchPushed::Taken
    }

    /// A batch the session takes got a frame after its writer took all.
    pub(crate) fn batch_grew(&self) {
        self.wake();
    }

    /// The bytes queued and not yet written, as `queue` counts them.
    fn queued(&self, queue: &Queue) -> usize {
        queue.pushed.wrapping_sub(self.written.load(Ordering::SeqCst))
    }

    /// Whether `len` more bytes would stay within the limit.
    fn has_room(&self, queue: &Queue, len: usize) -> bool {
        self.queued(queue) + len <= queue.limit_bytes
    }

    /// Counts `len` more bytes against the limit, closing with 1013 when over.
    fn reserve(&self, queue: &mut Queue, len: usize) -> bool {
        queue.look(Look::Now);
        if !self.has_room(queue, len) {
            self.close(close::SLOW_READER, "slow reader");
            return false;
        }
        queue.pushed += len;
        true
    }

    /// Starts holding new frames back; false if a hold is already on.
    /// The batches in the queue are sealed: a frame their groups fan out
    /// from now on is held, not sent ahead of the reply.
    pub(crate) fn hold(&self) -> bool {
        let mut queue = self.queue();
        if queue.held.is_some() {
            return false;
        }
        queue.look(Look::Seal);
        queue.held = Some(Box::default());
        true
    }

    /// Queues `reply`, then the held frames except the `msg`s for which
    /// `already_sent(conv, seq)` is true, and stops holding.
    pub(crate) fn release(&self, reply: Vec<Utf8Bytes>, already_sent: impl Fn(&str, u64) -> bool) {
        let mut queue = self.queue();
        let mut due = Vec::with_capacity(reply.len());
        for frame in reply {
            if self.is_closing() || !self.reserve(&mut queue, frame.len()) {
                break;
            }
            due.push(Queued::text(&frame));
        }
        for held in queue.held.take().map(|held| *held).unwrap_or_default() {
            match &held.position {
                Some((conv, seq)) if already_sent(conv, *seq) => queue.pushed -= held.frame.len(),
                _ => due.push(held.frame),
            }
        }
        self.enqueue(&mut queue, due);
    }

    /// Remembers, per conversation, the last seq a sync read for this
    /// session (see `Queue::synced`); for nodes of a cluster, where copies
    /// of a message can arrive after the sync that carried it.
    pub(crate) fn remember_synced(&self, synced: impl IntoIterator<Item = (String, u64)>) {
        let mut queue = self.queue();
        // Frames appended to a batch would pass the filter by.
        queue.look(Look::Seal);
        let remembered = queue.synced.get_or_insert_with(Default::default);
        remembered.extend(synced.into_iter().map(|(conv, seq)| (conv.into_boxed_str(), seq)));
    }

    /// Asks the session to close the connection; only the first request counts.
    pub(crate) fn close(&self, code: u16, reason: &'static str) {
        if self.close_reason.set((code, reason)).is_ok() {
            self.closing.store(true, Ordering::SeqCst);
            self.wake();
        }
    }

    /// Whether a close was requested.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// The code and reason of the first close request.
    pub(crate) fn close_reason(&self) -> Option<(u16, &'static str)> {
        self.close_reason.get().copied()
    }

    /// The writer reports `bytes` of frames handed to the WebSocket, making
    /// room. Only the session's write side calls it.
    pub(crate) fn written(&self, bytes: usize) {
        let written = self.written.load(Ordering::Relaxed).wrapping_add(bytes);
        self.written.store(written, Ordering::SeqCst);
        if self.room_wanted.load(Ordering::SeqCst) {
            self.waiting.wake();
        }
    }

    /// Resolves once `bytes` more would fit in the queue, or the session is
    /// closing. For the session's task alone, which drains the queue
    /// meanwhile: it shares the outbox's one waker with
    /// [`Outbox::poll_ready`]. The session waits so before it asks the
    /// store for a reply of up to `bytes`.
    pub(crate) async fn room_for(&self, bytes: usize) {
        std::future::poll_fn(|cx| {
            // Registered before the check, so a drain between the two still wakes it.
            self.waiting.register(cx.waker());
            self.room_wanted.store(true, Ordering::SeqCst);
            if self.is_closing() || self.has_room(&self.settled(), bytes) {
                self.room_wanted.store(false, Ordering::SeqCst);
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

/// The payloads `entries` bring the session with id `session`, for tests.
#[cfg(test)]
pub(crate) fn texts_for(entries: &VecDeque<Entry>, session: u64) -> Vec<String> {
    (entries.iter().flat_map(Entry::frames))
        .filter(|(_, except)| *except != Some(session))
        .map(|(frame, _)| frame.payload())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(text: &str) -> Queued {
        Queued::text(text)
    }

    fn texts(frames: VecDeque<Entry>) -> Vec<String> {
        texts_for(&frames, 0)
    }

    async fn ready(outbox: &Outbox) {
        std::future::poll_fn(|cx| outbox.poll_ready(cx)).await
    }

    #[test]
    fn overflow_closes_with_1013_once() {
        let outbox = Outbox::new(10);
        assert!(outbox.push("123456".into()));
        assert!(!outbox.push("123456".into()));
        assert!(!outbox.push("1".into()));
        outbox.close(close::GOING_AWAY, "again");
        assert_eq!(outbox.close_reason(), Some((close::SLOW_READER, "slow reader")));
        assert_eq!(texts(outbox.take_ready(VecDeque::new()).frames), ["123456"]);
        assert!(outbox.take_ready(VecDeque::new()).frames.is_empty());
    }

    #[test]
    fn a_queued_frame_is_a_whole_text_frame_counted_by_its_payload() {
        for size in [0, 125, 126, 65_535, 65_536] {
            let frame = Queued::text(&"x".repeat(size));
            let mut wire = std::io::Cursor::new(frame.wire());
            let (header, length) = FrameHeader::parse(&mut wire).unwrap().unwrap();
            assert_eq!(
                (header.opcode, header.is_final, header.mask, length),
                (OpCode::Data(Data::Text), true, None, size as u64)
            );
            assert_eq!(frame.wire().len() - wire.position() as usize, size);
            assert_eq!(frame.len(), size);
        }
    }

    #[test]
    fn a_receiving_session_refills_its_emptied_list_and_a_quiet_one_keeps_none() {
        let outbox = Outbox::new(1 << 20);
        let room = |outbox: &Outbox| outbox.queue().ready.capacity();
        outbox.push("a".into());
        let first = outbox.take_ready(VecDeque::with_capacity(16)).frames;
        assert_eq!(texts(first), ["a"]);
        assert!(room(&outbox) >= 16, "the emptied list is the queue's now");
        for _ in 0..16 {
            outbox.push("b".into());
        }
        assert!(room(&outbox) < 32, "filled without growing");
        assert_eq!(outbox.take_ready(VecDeque::with_capacity(8)).frames.len(), 16);
        // A ping and nothing else: the session is quiet.
        outbox.ping();
        let quiet = outbox.take_ready(VecDeque::with_capacity(8));
        assert!(quiet.ping);
        assert_eq!((quiet.frames.capacity(), room(&outbox)), (0, 0));
        // A burst's list is not kept.
        outbox.push("c".into());
        outbox.take_ready(VecDeque::with_capacity(SPARE_FRAMES_KEPT + 1));
        assert_eq!(room(&outbox), 0);
    }

    #[test]
    fn a_message_the_last_sync_covered_is_not_pushed_again() {
        let outbox = Outbox::new(1000);
        outbox.remember_synced([("c".to_owned(), 5), ("d".to_owned(), 2)]);
        assert!(outbox.push_at(queued("c-4"), Some(("c", 4))));
        assert!(outbox.push_at(queued("c-5"), Some(("c", 5))));
        assert!(outbox.push_at(queued("c-6"), Some(("c", 6))));
        assert!(outbox.push_at(queued("d-3"), Some(("d", 3))));
        assert!(outbox.push_at(queued("e-1"), Some(("e", 1))));
        assert_eq!(texts(outbox.take_ready(VecDeque::new()).frames), ["c-6", "d-3", "e-1"]);
        // Past the sync, the conversation is forgotten: nothing is filtered.
        assert!(outbox.push_at(queued("c-6 again"), Some(("c", 6))));
        assert_eq!(texts(outbox.take_ready(VecDeque::new()).frames), ["c-6 again"]);
    }

    #[test]
    fn held_frames_follow_the_reply_minus_what_it_carried() {
        let outbox = Outbox::new(1000);
        assert!(outbox.hold());
        assert!(!outbox.hold());
        outbox.push_at(queued("live-5"), Some(("c", 5)));
        outbox.push_at(queued("live-7"), Some(("c", 7)));
        outbox.push("pong".into());
        assert!(outbox.take_ready(VecDeque::new()).frames.is_empty());
        outbox.release(vec!["sync-5".into(), "synced".into()], |conv, seq| {
            conv == "c" && seq <= 5
        });
        assert_eq!(
            texts(outbox.take_ready(VecDeque::new()).frames),
            ["sync-5", "synced", "live-7", "pong"]
        );
        outbox.push("after".into());
        assert_eq!(texts(outbox.take_ready(VecDeque::new()).frames), ["after"]);
    }

    #[test]
    fn a_held_frame_the_reply_carried_stops_counting() {
        // Room for the reply and the held frame, not for two copies.
        let outbox = Outbox::new(12);
        assert!(outbox.hold());
        assert!(outbox.push_at(queued("live-5"), Some(("c", 5))));
        outbox.release(vec!["sync-5".into()], |_, seq| seq <= 5);
        assert!(!outbox.is_closing());
        assert_eq!(texts(outbox.take_ready(VecDeque::new()).frames), ["sync-5"]);
        outbox.written(6);
        assert!(outbox.push("123456789012".into()));
        assert!(!outbox.is_closing());
    }

    #[tokio::test]
    async fn the_writer_is_woken_once_per_batch_and_never_misses_one() {
        let outbox = Outbox::new(1000);
        outbox.push("a".into());
        outbox.push("b".into());
        // The permit of the first push is waiting; the second stored none.
        ready(&outbox).await;
        assert_eq!(texts(outbox.take_ready(VecDeque::new()).frames), ["a", "b"]);
        let woken = tokio::time::timeout(std::time::Duration::from_millis(20), ready(&outbox)).await;
        assert!(woken.is_err(), "no frame was queued since the last take");
        outbox.push("c".into());
        ready(&outbox).await;
        assert_eq!(texts(outbox.take_ready(VecDeque::new()).frames), ["c"]);
    }

    #[tokio::test]
    async fn a_close_wakes_the_session_with_nothing_queued() {
        let outbox = std::sync::Arc::new(Outbox::new(1000));
        let waiting = tokio::spawn({
            let outbox = outbox.clone();
            async move { ready(&outbox).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        outbox.close(close::GOING_AWAY, "stopping");
        tokio::time::timeout(std::time::Duration::from_secs(1), waiting)
            .await
            .expect("woken by the close")
            .unwrap();
        assert!(outbox.take_ready(VecDeque::new()).frames.is_empty());
    }

    #[tokio::test]
    async fn control_frames_wake_the_writer_and_go_first() {
        let outbox = Outbox::new(10);
        outbox.push_control(&[0x8a, 0]);
        outbox.push("abc".into());
        ready(&outbox).await;
        let ready = outbox.take_ready(VecDeque::new());
        assert_eq!(ready.control, [0x8a, 0]);
        assert_eq!(texts(ready.frames), ["abc"]);
        // They count against the limit like any frame, and go with the session.
        outbox.push_control(&[0; 11]);
        assert_eq!(outbox.close_reason(), Some((close::SLOW_READER, "slow reader")));
        outbox.push_control(&[0x8a, 0]);
        assert!(outbox.take_ready(VecDeque::new()).control.is_empty());
    }

    #[tokio::test]
    async fn a_ping_wakes_the_writer_once_and_goes_with_the_next_batch() {
        let outbox = Outbox::new(10);
        outbox.ping();
        outbox.ping();
        outbox.push("a".into());
        ready(&outbox).await;
        let ready = outbox.take_ready(VecDeque::new());
        assert!(ready.ping);
        assert_eq!(texts(ready.frames), ["a"]);
        assert!(!outbox.take_ready(VecDeque::new()).ping);
        outbox.close(close::NORMAL, "bye");
        outbox.ping();
        assert!(!outbox.take_ready(VecDeque::new()).ping);
    }

    #[tokio::test]
    async fn room_for_waits_until_the_writer_drains_enough() {
        let outbox = std::sync::Arc::new(Outbox::new(10));
        assert!(outbox.push("123456".into()));
        let waiting = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.room_for(8).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        outbox.written(6);
        tokio::time::timeout(std::time::Duration::from_secs(1), waiting)
            .await
            .expect("woken by the drain")
            .unwrap();
    }

    fn batch_of(texts: &[&str]) -> Arc<Batch> {
        let batch = Arc::new(Batch::new(8));
        for text in texts {
            assert!(batch.join(queued(text), Some(9)).is_ok());
        }
        batch
    }

    #[tokio::test]
    async fn a_batch_reaches_the_session_as_it_grows_after_what_was_pushed_before() {
        let outbox = Outbox::new(1000);
        let batch = batch_of(&["a"]);
        assert_eq!(outbox.push_batch(&batch, 5), BatchPushed::Taken);
        ready(&outbox).await;
        assert_eq!(texts(outbox.take_ready(VecDeque::new()).frames), ["a"]);
        // The writer took all: the next frame wakes it, once.
        let woken = batch.join(queued("b"), None).ok().unwrap();
        assert_eq!(crate::router::batch::sleepers(&woken).collect::<Vec<_>>(), [5]);
        assert!(batch.join(queued("c"), None).ok().unwrap().is_empty());
        outbox.push("x".into());
        assert!(batch.join(queued("d"), Some(9)).is_ok());
        let frames = outbox.take_ready(VecDeque::new()).frames;
        assert_eq!(texts_for(&frames, 0), ["b", "c", "x", "d"]);
        assert_eq!(texts_for(&frames, 9), ["b", "c", "x"], "a frame not for the session");
        // Sealed and read to its end, the batch is let go.
        batch.seal();
        outbox.push("y".into());
        assert!(outbox.queue().tails.as_ref().is_some_and(|tails| tails.is_empty()));
    }

    #[test]
    fn what_a_batch_grows_by_counts_against_the_limit() {
        let outbox = Outbox::new(10);
        let batch = batch_of(&["123"]);
        assert_eq!(outbox.push_batch(&batch, 0), BatchPushed::Taken);
        assert!(batch.join(queued("456"), None).is_ok());
        assert!(batch.join(queued("789"), None).is_ok());
        assert!(outbox.push("0".into()));
        assert!(!outbox.push("1".into()), "3 + 3 + 3 + 1 bytes fit, not one more");
        assert_eq!(outbox.close_reason(), Some((close::SLOW_READER, "slow reader")));
        // A batch pushed past the limit is refused.
        let outbox = Outbox::new(4);
        assert_eq!(outbox.push_batch(&batch_of(&["12345"]), 0), BatchPushed::Refused);
        assert!(outbox.is_closing());
    }

    #[test]
    fn a_hold_seals_the_batches_and_a_holding_session_takes_none() {
        let outbox = Outbox::new(1000);
        let batch = batch_of(&["a"]);
        assert_eq!(outbox.push_batch(&batch, 0), BatchPushed::Taken);
        assert!(batch.join(queued("b"), None).is_ok());
        assert!(outbox.hold());
        assert!(batch.is_sealed(), "what the group sends next must be held");
        assert!(batch.join(queued("c"), None).is_err());
        assert_eq!(outbox.push_batch(&batch_of(&["c"]), 0), BatchPushed::Declined);
        outbox.push_at(queued("c"), Some(("g", 3)));
        outbox.release(vec!["synced".into()], |_, _| false);
        assert_eq!(
            texts(outbox.take_ready(VecDeque::new()).frames),
            ["a", "b", "synced", "c"]
        );
        // A node of a cluster filters by its sync: it takes no batch either.
        outbox.remember_synced([("g".to_owned(), 3)]);
        assert_eq!(outbox.push_batch(&batch_of(&["d"]), 0), BatchPushed::Declined);
    }

    #[test]
    fn written_bytes_make_room() {
        let outbox = Outbox::new(10);
        assert!(outbox.push("123456".into()));
        outbox.written(6);
        assert!(outbox.push("123456".into()));
        assert!(!outbox.is_closing());
    }
}
