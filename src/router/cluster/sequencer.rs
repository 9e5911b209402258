//! Each conversation's messages in seq order on this node, whichever node
//! stored them.
//!
//! PostgreSQL gives every message its seq under the conversation's row lock,
//! so seqs commit in order; but the nodes that stored them publish on their
//! own, and node A's seq 5 may reach this node after node B's seq 6. The
//! sequencer delivers a message only when it is the next of its
//! conversation here; a later one waits while the messages before it are
//! read back from the store (a backfill), and one already delivered is
//! dropped. What a Redis outage kept from this node comes back the same way.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::protocol::now_ms;

/// Conversations are spread over this many locks.
const SHARDS: usize = 64;

/// The most messages one backfill reads.
pub(super) const BACKFILL_LIMIT: u64 = 1000;

/// How far back a conversation first seen here is read from the store.
const FIRST_SEEN_LOOKBACK: u64 = 16;

/// How long before a conversation's first sighting here a message it
/// misses may have been stored and still be on its way (with the other
/// nodes' clocks a little behind); one stored earlier is history, which
/// sessions here get by sync, and a backfill does not push it.
const RACE_WINDOW_MS: i64 = 2000;

/// Who a message goes to, owned, for while it waits.
#[derive(Debug, Clone)]
pub(super) enum Recipients {
    /// The two members of a direct conversation.
    Direct(Arc<str>, Arc<str>),
    /// A group's members, as this node knows them when it delivers.
    Group(Arc<str>),
}

/// A message that arrived (or was read back) and waits for its turn.
#[derive(Debug, Clone)]
pub(super) struct Arrival {
    /// The `msg` frame.
    pub(super) frame: Utf8Bytes,
    /// Who gets it.
    pub(super) recipients: Recipients,
    /// The session not to give it to (the sender's, on the node that stored it).
    pub(super) except: Option<u64>,
}

/// A conversation's messages before `before` and after `after` are missing here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Gap {
    /// The conversation.
    pub(super) conv: String,
    /// The last seq delivered here.
    pub(super) after: u64,
    /// The first seq waiting.
    pub(super) before: u64,
    /// Messages stored before this (ms since the epoch) are history here.
    pub(super) history_before_ms: i64,
}

#[derive(Default)]
struct Track {
    /// The last seq delivered here.
    last: u64,
    /// Messages past a gap, by seq.
    waiting: BTreeMap<u64, Arrival>,
    /// A backfill is reading the gap.
    backfilling: bool,
    /// Messages stored before this (ms since the epoch) are history here:
    /// for a conversation first seen by a message, shortly before it
    /// arrived; for one a sync began, none.
    history_before_ms: i64,
}

/// The per-conversation order of this node.
pub(super) struct Sequencer {
    shards: Vec<Mutex<HashMap<String, Track>>>,
    hasher: ahash::RandomState,
}

impl Default for Sequencer {
    fn default() -> Sequencer {
        Sequencer {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: ahash::RandomState::new(),
        }
    }
}

impl Sequencer {
    fn shard(&self, conv: &str) -> MutexGuard<'_, HashMap<String, Track>> {
        let index = self.hasher.hash_one(conv) as usize % SHARDS;
        self.shards[index].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Message `seq` of `conv` arrived: `deliver` gets it and any waiting
    /// after it now in order, under the conversation's lock (so two
    /// arrivals never interleave on a session). A conversation first seen
    /// here starts [`FIRST_SEEN_LOOKBACK`] messages before: the ones just
    /// before it may have been stored on other nodes a moment earlier and
    /// still be on their way (starting at the message before dropped them
    /// when they came); of those, the backfill pushes only what was stored
    /// within [`RACE_WINDOW_MS`] of this arrival. A gap that needs a
    /// backfill is returned, once, until [`Sequencer::backfilled`] reports it.
    pub(super) fn arrive(
        &self,
        conv: &str,
        seq: u64,
        arrival: Arrival,
        deliver: &mut dyn FnMut(u64, &Arrival),
    ) -> Option<Gap> {
        let mut shard = self.shard(conv);
        let track = shard.entry(conv.to_owned()).or_insert_with(|| Track {
            last: seq.saturating_sub(1 + FIRST_SEEN_LOOKBACK),
            history_before_ms: now_ms() - RACE_WINDOW_MS,
            ..Track::default()
        });
        if seq <= track.last {
            return None;
        }
        track.waiting.entry(seq).or_insert(arrival);
        drain(track, deliver);
        gap(conv, track)
    }

    /// A backfill of `conv` read `found`, every message the store has
    /// between the gap's `after` and `before`. Those not delivered yet are,
    /// with what waited after them; a hole the store cannot fill (its
    /// messages gone by retention) is passed over. The next gap is returned
    /// when the one read was cut at [`BACKFILL_LIMIT`].
    pub(super) fn backfilled(
        &self,
        conv: &str,
        before: u64,
        found: Vec<(u64, Arrival)>,
        deliver: &mut dyn FnMut(u64, &Arrival),
    ) -> Option<Gap> {
        let mut shard = self.shard(conv);
        let track = shard.entry(conv.to_owned()).or_default();
        track.backfilling = false;
        for (seq, arrival) in found {
            if seq > track.last {
                track.waiting.entry(seq).or_insert(arrival);
            }
        }
        loop {
            drain(track, deliver);
            match track.waiting.keys().next() {
                Some(&first) if first < before => track.last = first - 1,
                _ => break,
            }
        }
        track.last = track.last.max(before - 1);
        drain(track, deliver);
        gap(conv, track)
    }

    /// Whether everything of `conv` before `before` has been delivered here.
    pub(super) fn delivered_before(&self, conv: &str, before: u64) -> bool {
        self.shard(conv).get(conv).is_some_and(|track| track.last + 1 >= before)
    }

    /// A backfill of `conv` failed: the gap is asked for again.
    pub(super) fn backfill_failed(&self, conv: &str) -> Option<Gap> {
        let mut shard = self.shard(conv);
        let track = shard.get_mut(conv)?;
        track.backfilling = false;
        gap(conv, track)
    }

    /// Whether `conv` is followed here.
    pub(super) fn follows(&self, conv: &str) -> bool {
        self.shard(conv).contains_key(conv)
    }

    /// A sync told a session here that `conv` ends at `last_seq`: a
    /// conversation not followed yet is followed from there.
    pub(super) fn synced(&self, conv: &str, last_seq: u64) {
        self.shard(conv).entry(conv.to_owned()).or_insert_with(|| Track {
            last: last_seq,
            ..Track::default()
        });
    }

    /// Every conversation followed, with its last seq delivered here.
    pub(super) fn followed(&self) -> Vec<(String, u64)> {
        self.shards
            .iter()
            .flat_map(|shard| {
                let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
                shard.iter().map(|(conv, t)| (conv.clone(), t.last)).collect::<Vec<_>>()
            })
            .collect()
    }

    /// The store says `conv` ends at `last_seq`: a gap to read, when this
    /// node is behind and no backfill runs already.
    pub(super) fn behind(&self, conv: &str, last_seq: u64) -> Option<Gap> {
        let mut shard = self.shard(conv);
        let track = shard.get_mut(conv)?;
        if track.backfilling || track.last >= last_seq {
            return None;
        }
        track.backfilling = true;
        Some(Gap {
            conv: conv.to_owned(),
            after: track.last,
            before: last_seq + 1,
            history_before_ms: track.history_before_ms,
        })
    }
}

/// Delivers the waiting messages that follow the last one delivered.
fn drain(track: &mut Track, deliver: &mut dyn FnMut(u64, &Arrival)) {
    while let Some(entry) = track.waiting.first_entry() {
        if *entry.key() != track.last + 1 {
            break;
        }
        let (seq, arrival) = entry.remove_entry();
        deliver(seq, &arrival);
        track.last = seq;
    }
}

/// The gap before the first waiting message, if no backfill reads it yet.
fn gap(conv: &str, track: &mut Track) -> Option<Gap> {
    let before = *track.waiting.keys().next()?;
    if track.backfilling {
        return None;
    }
    track.backfilling = true;
    Some(Gap {
        conv: conv.to_owned(),
        after: track.last,
        before: before.min(track.last + 1 + BACKFILL_LIMIT),
        history_before_ms: track.history_before_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrival(text: &str) -> Arrival {
        Arrival {
            frame: Utf8Bytes::from(text.to_owned()),
            recipients: Recipients::Direct("a".into(), "b".into()),
            except: None,
        }
    }

    fn arrive(s: &Sequencer, seq: u64, delivered: &mut Vec<u64>) -> Option<Gap> {
        s.arrive("c", seq, arrival(&seq.to_string()), &mut |seq, _| delivered.push(seq))
    }

    #[test]
    fn in_order_passes_a_duplicate_is_dropped_and_a_gap_waits_for_its_backfill() {
        let s = Sequencer::default();
        s.synced("c", 4);
        let mut delivered = Vec::new();
        assert_eq!(arrive(&s, 5, &mut delivered), None);
        assert_eq!(arrive(&s, 6, &mut delivered), None);
        assert_eq!(arrive(&s, 6, &mut delivered), None);
        let gap = arrive(&s, 9, &mut delivered).unwrap();
        assert_eq!((gap.after, gap.before), (6, 9));
        // Asked once while it runs; what arrives meanwhile waits.
        assert_eq!(arrive(&s, 10, &mut delivered), None);
        assert_eq!(arrive(&s, 7, &mut delivered), None);
        assert_eq!(delivered, [5, 6, 7]);
        let more = s.backfilled("c", 9, vec![(7, arrival("7")), (8, arrival("8"))], &mut |seq, _| {
            delivered.push(seq)
        });
        assert_eq!(more, None);
        assert_eq!(delivered, [5, 6, 7, 8, 9, 10]);
        assert!(s.delivered_before("c", 11) && !s.delivered_before("c", 12));
        assert_eq!(s.followed(), [("c".to_owned(), 10)]);
    }

    #[test]
    fn a_conversation_first_seen_past_its_start_waits_for_the_messages_just_before() {
        // Node a stored seq 1 and node b seq 2 a moment later; b's arrived
        // here first. Seq 1 must still reach this node's sessions, first.
        let s = Sequencer::default();
        let mut delivered = Vec::new();
        let gap = arrive(&s, 2, &mut delivered).unwrap();
        assert_eq!((gap.after, gap.before), (0, 2));
        assert_eq!(arrive(&s, 1, &mut delivered), None);
        assert_eq!(delivered, [1, 2]);
        // Far into a conversation, it looks back a bounded way.
        let far = Sequencer::default();
        let gap = arrive(&far, 1000, &mut delivered).unwrap();
        assert_eq!((gap.after, gap.before), (999 - FIRST_SEEN_LOOKBACK, 1000));
        assert_eq!(delivered, [1, 2], "nothing delivered before the backfill");
        // What was stored well before the first sighting is history.
        let window = now_ms() - gap.history_before_ms;
        assert!((RACE_WINDOW_MS..RACE_WINDOW_MS + 1000).contains(&window), "{window}");
        // A conversation a sync began has no such bound.
        s.synced("d", 3);
        assert_eq!(s.behind("d", 5).map(|g| g.history_before_ms), Some(0));
    }

    #[test]
    fn a_hole_the_store_cannot_fill_is_passed_over() {
        let s = Sequencer::default();
        let mut delivered = Vec::new();
        arrive(&s, 1, &mut delivered);
        assert!(arrive(&s, 4, &mut delivered).is_some());
        s.backfilled("c", 4, Vec::new(), &mut |seq, _| delivered.push(seq));
        assert_eq!(delivered, [1, 4]);
        // A read cut at its limit: the rest is asked for next.
        let gap = arrive(&s, 4 + BACKFILL_LIMIT + 10, &mut delivered).unwrap();
        assert_eq!((gap.after, gap.before), (4, 5 + BACKFILL_LIMIT));
        let next = s.backfilled("c", gap.before, vec![(5, arrival("5"))], &mut |seq, _| {
            delivered.push(seq)
        });
        assert_eq!(
            next.map(|g| (g.after, g.before)),
            Some((4 + BACKFILL_LIMIT, 4 + BACKFILL_LIMIT + 10))
        );
    }

    #[test]
    fn a_store_ahead_of_this_node_asks_for_the_rest() {
        let s = Sequencer::default();
        s.synced("c", 3);
        assert_eq!(s.behind("c", 3), None);
        let gap = s.behind("c", 7).unwrap();
        assert_eq!((gap.after, gap.before), (3, 8));
        assert_eq!(s.behind("c", 7), None, "one backfill at a time");
        assert_eq!(s.behind("unknown", 7), None);
        assert!(s.follows("c") && !s.follows("unknown"));
    }
}
