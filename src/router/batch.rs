//! A group's frames as its members' outboxes share them: a batch, pushed
//! once to each member and appended to by the group's next frames.
//!
//! A fan-out to a room of 500 pushed each message to 500 outboxes: a lock,
//! and a count on the shared frame taken and dropped, per member and
//! message, each on a line of the member's session that the last fan-out
//! left cold. A batch is pushed to the members once; the group's next
//! frames are appended to it, once for all of them, and each outbox reads
//! what was appended when it looks (`outbox::Tail`). A member whose writer
//! took everything is woken by the next append, as a push to an empty
//! outbox wakes it (docs/DECISIONS.md, "A room's messages reach its
//! members in batches").
//!
//! Frames are appended in place and never move, so the outboxes read those
//! below the length without a lock: each slot is set once.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use spin::Mutex;

use super::outbox::Queued;

/// The most frames a batch holds: a slice's ends fit in a `u16`.
pub(crate) const MAX_FRAMES: usize = 256;

/// The most payload bytes a batch takes: what it grows by counts against
/// an outbox only when the outbox looks, so a batch whose members' writers
/// are all blocked must not grow without bound.
const MAX_BYTES: usize = 64 * 1024;

/// One frame of a batch.
pub(crate) struct BatchFrame {
    pub(crate) frame: Queued,
    /// The session it is not for (its sender's).
    pub(crate) except: Option<u64>,
    /// The payload bytes of the batch's frames up to this one, included.
    through: usize,
}

/// Frames of one group, in the order they were fanned out.
pub(crate) struct Batch {
    /// Set in order, each once: those below `len` are set.
    slots: Box<[OnceLock<BatchFrame>]>,
    len: AtomicUsize,
    /// No frame is appended any more: set under the lock, read without.
    sealed: AtomicBool,
    state: Mutex<State>,
}

/// What changes under the batch's lock.
struct State {
    /// The sessions (by their index in the group's fan-out) to wake at the
    /// next append: a bit each.
    sleepers: Vec<u64>,
}

impl Batch {
    /// An empty batch of at most `capacity` frames (1 to [`MAX_FRAMES`]).
    pub(crate) fn new(capacity: usize) -> Batch {
        Batch {
            slots: (0..capacity.clamp(1, MAX_FRAMES)).map(|_| OnceLock::new()).collect(),
            len: AtomicUsize::new(0),
            sealed: AtomicBool::new(false),
            state: Mutex::new(State { sleepers: Vec::new() }),
        }
    }

    /// How many frames it may hold.
    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Appends `frame`, returning the sessions to wake (see
    /// [`Batch::watch`]); when the batch is sealed or full it is sealed,
    /// and `frame` is handed back.
    pub(crate) fn join(&self, frame: Queued, except: Option<u64>) -> Result<Vec<u64>, Queued> {
        let mut state = self.state.lock();
        let len = self.len();
        let through = self.bytes_through(len) + frame.len();
        if self.is_sealed() || (len > 0 && through > MAX_BYTES) {
            self.sealed.store(true, Ordering::SeqCst);
            return Err(frame);
        }
        let _ = self.slots[len].set(BatchFrame { frame, except, through });
        self.len.store(len + 1, Ordering::SeqCst);
        if len + 1 == self.slots.len() {
            self.sealed.store(true, Ordering::SeqCst);
        }
        Ok(std::mem::take(&mut state.sleepers))
    }

    /// Seals it: no frame is appended any more. Its length then.
    pub(crate) fn seal(&self) -> usize {
        let _state = self.state.lock();
        self.sealed.store(true, Ordering::SeqCst);
        self.len()
    }

    /// Its length, and whether it is sealed; unless it is, the session at
    /// `sleeper` is woken by the next append.
    pub(crate) fn watch(&self, sleeper: u32) -> (usize, bool) {
        let mut state = self.state.lock();
        let sealed = self.is_sealed();
        if !sealed {
            let (word, bit) = (sleeper as usize / 64, sleeper % 64);
            if state.sleepers.len() <= word {
                state.sleepers.resize(word + 1, 0);
            }
            state.sleepers[word] |= 1 << bit;
        }
        (self.len(), sealed)
    }

    /// Whether it is sealed: then its length no longer changes.
    pub(crate) fn is_sealed(&self) -> bool {
        self.sealed.load(Ordering::SeqCst)
    }

    /// How many frames it has now.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::SeqCst)
    }

    /// Frame `index`, if appended.
    pub(crate) fn get(&self, index: usize) -> Option<&BatchFrame> {
        self.slots.get(index)?.get()
    }

    /// The payload bytes of its first `count` frames.
    pub(crate) fn bytes_through(&self, count: usize) -> usize {
        count
            .checked_sub(1)
            .and_then(|last| self.get(last))
            .map_or(0, |f| f.through)
    }
}

/// The indexes whose bits `sleepers` has set.
pub(crate) fn sleepers(words: &[u64]) -> impl Iterator<Item = usize> + '_ {
    words.iter().enumerate().flat_map(|(word, &bits)| {
        (0..64)
            .filter(move |bit| bits & (1 << bit) != 0)
            .map(move |bit| word * 64 + bit)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_takes_frames_until_sealed_or_full() {
        let batch = Batch::new(3);
        assert!(batch.join(Queued::text("a"), None).is_ok());
        assert!(batch.join(Queued::text("bc"), Some(7)).is_ok());
        assert_eq!((batch.len(), batch.bytes_through(2), batch.bytes_through(1)), (2, 3, 1));
        assert_eq!(
            batch.get(1).map(|f| (f.frame.payload(), f.except)),
            Some(("bc".into(), Some(7)))
        );
        assert!(!batch.is_sealed());
        assert!(batch.join(Queued::text("d"), None).is_ok());
        assert!(batch.is_sealed(), "full, it is sealed");
        let refused = batch.join(Queued::text("e"), None).unwrap_err();
        assert_eq!(refused.payload(), "e");
        let batch = Batch::new(8);
        batch.join(Queued::text("a"), None).ok().unwrap();
        assert_eq!(batch.seal(), 1);
        assert!(batch.join(Queued::text("b"), None).is_err());
        assert_eq!(batch.len(), 1);
    }

    #[test]
    fn a_batch_takes_at_most_its_bytes_but_always_one_frame() {
        let batch = Batch::new(MAX_FRAMES);
        let big = "x".repeat(MAX_BYTES + 1);
        assert!(batch.join(Queued::text(&big), None).is_ok());
        assert!(batch.join(Queued::text("y"), None).is_err());
        assert!(batch.is_sealed());
        assert_eq!(Batch::new(MAX_FRAMES * 2).capacity(), MAX_FRAMES);
    }

    #[test]
    fn an_append_wakes_the_watchers_once_and_a_sealed_batch_keeps_none() {
        let batch = Batch::new(8);
        batch.join(Queued::text("a"), None).ok().unwrap();
        assert_eq!(batch.watch(3), (1, false));
        assert_eq!(batch.watch(3), (1, false));
        assert_eq!(batch.watch(130), (1, false));
        let woken = batch.join(Queued::text("b"), None).ok().unwrap();
        assert_eq!(sleepers(&woken).collect::<Vec<_>>(), [3, 130]);
        assert!(batch.join(Queued::text("c"), None).ok().unwrap().is_empty());
        batch.seal();
        assert_eq!(batch.watch(1), (3, true));
    }
}
