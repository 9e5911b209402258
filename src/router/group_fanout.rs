//! A group's fan-out on this node: its sessions here, and the batch its
//! frames are appended to (`super::batch`).
//!
//! A new batch is pushed to every session; the group's next frames are
//! appended to it, once for all of them, until it is full or sealed, and
//! the sessions whose writers took everything are woken. A session that
//! does not take a batch (it holds its frames for a sync) gets its frames
//! one by one instead. The frames of one group are fanned out one after
//! another (the store reports a conversation's messages in seq order, one
//! at a time), so the lock here is for that order, not for speed.

use std::sync::{Arc, Mutex};

use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::SessionHandle;
use super::batch::{Batch, MAX_FRAMES, sleepers};
use super::outbox::{BatchPushed, Position, Queued};

/// The frames of a group's first batch: a quiet group's batch stays small.
/// Each batch that fills up makes the next one twice as large.
const FIRST_FRAMES: usize = 16;

/// A group's sessions here, as a fan-out to the group found them, and the
/// batch being fanned out to them.
pub(crate) struct GroupFanout {
    sessions: Box<[Arc<SessionHandle>]>,
    open: Mutex<OpenBatch>,
}

/// The batch the group's next frame is appended to, and who takes it how.
#[derive(Default)]
struct OpenBatch {
    batch: Option<Arc<Batch>>,
    /// How many sessions took it.
    took: usize,
    /// The sessions that did not: each frame is pushed to them.
    one_by_one: Vec<Arc<SessionHandle>>,
    /// The sessions that refused it, closing: nothing more reaches them.
    refused: Vec<u64>,
    /// The last session a frame was not for, and whether it took the batch.
    except: Option<(u64, bool)>,
}

impl GroupFanout {
    /// The fan-out to `sessions`, with no batch yet.
    pub(crate) fn new(sessions: Vec<Arc<SessionHandle>>) -> GroupFanout {
        GroupFanout {
            sessions: sessions.into_boxed_slice(),
            open: Mutex::default(),
        }
    }

    /// The group's sessions here.
    pub(crate) fn sessions(&self) -> &[Arc<SessionHandle>] {
        &self.sessions
    }

    /// Queues `frame` (a `msg` at `position`) to every session but the one
    /// with id `except`; how many it reached.
    pub(crate) fn deliver(&self, frame: &Utf8Bytes, position: Option<Position<'_>>, except: Option<u64>) -> usize {
        // Framed only for someone: a group with nobody else online costs no copy.
        if self.sessions.iter().all(|s| Some(s.id) == except) {
            return 0;
        }
        let frame = Queued::text(frame);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let (frame, capacity) = match open.batch.clone() {
            Some(batch) => {
                let for_one_by_one = (!open.one_by_one.is_empty()).then(|| frame.clone());
                match batch.join(frame, except) {
                    Ok(woken) => {
                        for sleeper in sleepers(&woken).filter_map(|index| self.sessions.get(index)) {
                            sleeper.outbox.batch_grew();
                        }
                        let took = open.took - usize::from(open.took_it(except, &self.sessions));
                        return took + for_one_by_one.map_or(0, |frame| open.push_one_by_one(frame, position, except));
                    }
                    Err(frame) if batch.len() == batch.capacity() => (frame, (batch.capacity() * 2).min(MAX_FRAMES)),
                    Err(frame) => (frame, batch.capacity()),
                }
            }
            None => (frame, FIRST_FRAMES),
        };
        let batch = Arc::new(Batch::new(capacity));
        let _ = batch.join(frame.clone(), except);
        *open = OpenBatch::default();
        for (index, session) in self.sessions.iter().enumerate() {
            match session.outbox.push_batch(&batch, index as u32) {
                BatchPushed::Taken => open.took += 1,
                BatchPushed::Declined => open.one_by_one.push(session.clone()),
                BatchPushed::Refused => open.refused.push(session.id),
            }
        }
        open.batch = Some(batch);
        let took = open.took - usize::from(open.took_it(except, &self.sessions));
        took + open.push_one_by_one(frame, position, except)
    }
}

impl Drop for GroupFanout {
    /// The group's sessions or members changed: its next frame starts a
    /// new batch, for the new sessions, and this one grows no more.
    fn drop(&mut self) {
        let open = self.open.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(batch) = &open.batch {
            batch.seal();
        }
    }
}

impl OpenBatch {
    /// Whether the session with id `except` took the batch.
    fn took_it(&mut self, except: Option<u64>, sessions: &[Arc<SessionHandle>]) -> bool {
        let Some(except) = except else {
            return false;
        };
        match self.except {
            Some((id, took)) if id == except => took,
            _ => {
                let took = sessions.iter().any(|s| s.id == except)
                    && !self.one_by_one.iter().any(|s| s.id == except)
                    && !self.refused.contains(&except);
                self.except = Some((except, took));
                took
            }
        }
    }

    /// Pushes `frame` to the sessions that did not take the batch; how many it reached.
    fn push_one_by_one(&self, frame: Queued, position: Option<Position<'_>>, except: Option<u64>) -> usize {
        self.one_by_one
            .iter()
            .filter(|s| Some(s.id) != except)
            .filter(|s| s.outbox.push_at(frame.clone(), position))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::outbox::texts_for;

    fn sessions(count: u64) -> Vec<Arc<SessionHandle>> {
        (0..count)
            .map(|id| Arc::new(SessionHandle::new(id, format!("u{id}").into(), "d".into(), 1 << 20)))
            .collect()
    }

    fn take(session: &SessionHandle) -> Vec<String> {
        texts_for(&session.outbox.take_ready(Default::default()).frames, session.id)
    }

    #[test]
    fn every_session_gets_every_frame_in_order_a_holding_one_after_its_reply() {
        let online = sessions(4);
        let fanout = GroupFanout::new(online.clone());
        assert!(online[3].outbox.hold());
        for seq in 1..=3u64 {
            let frame = Utf8Bytes::from(format!("m{seq}"));
            // From session 0: the other three.
            assert_eq!(fanout.deliver(&frame, Some(("g:g", seq)), Some(0)), 3);
        }
        assert_eq!(take(&online[0]), Vec::<String>::new());
        assert_eq!(take(&online[1]), ["m1", "m2", "m3"]);
        assert_eq!(take(&online[1]), Vec::<String>::new());
        fanout.deliver(&"m4".into(), Some(("g:g", 4)), None);
        assert_eq!(take(&online[1]), ["m4"]);
        assert_eq!(take(&online[2]), ["m1", "m2", "m3", "m4"]);
        online[3].outbox.release(vec!["synced".into()], |_, seq| seq <= 2);
        assert_eq!(take(&online[3]), ["synced", "m3", "m4"]);
        assert_eq!(take(&online[0]), ["m4"]);
    }

    #[test]
    fn a_full_batch_starts_a_larger_one_and_a_closing_session_is_not_counted() {
        let online = sessions(2);
        let fanout = GroupFanout::new(online.clone());
        online[1].outbox.close(1000, "bye");
        for seq in 0..FIRST_FRAMES as u64 * 3 {
            assert_eq!(fanout.deliver(&format!("m{seq}").into(), None, None), 1);
        }
        let open = fanout.open.lock().unwrap();
        assert_eq!(open.batch.as_ref().map(|b| b.capacity()), Some(FIRST_FRAMES * 2));
        drop(open);
        let expected: Vec<String> = (0..FIRST_FRAMES * 3).map(|seq| format!("m{seq}")).collect();
        assert_eq!(take(&online[0]), expected);
    }

    #[tokio::test]
    async fn a_session_that_took_everything_is_woken_by_the_next_frame() {
        let online = sessions(2);
        let fanout = GroupFanout::new(online.clone());
        fanout.deliver(&"m1".into(), None, None);
        assert_eq!(take(&online[1]), ["m1"]);
        let outbox = &online[1].outbox;
        // The push woke it: that wake-up is used.
        std::future::poll_fn(|cx| outbox.poll_ready(cx)).await;
        let waiting = std::future::poll_fn(|cx| outbox.poll_ready(cx));
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(20), waiting)
                .await
                .is_err(),
            "nothing new yet"
        );
        fanout.deliver(&"m2".into(), None, None);
        std::future::poll_fn(|cx| outbox.poll_ready(cx)).await;
        assert_eq!(take(&online[1]), ["m2"]);
    }
}
