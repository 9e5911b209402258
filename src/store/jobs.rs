//! Writes as jobs for a store's writer: what the SQLite and PostgreSQL
//! stores queue, commit in groups, and report in queue order once committed.

use std::sync::Arc;
use std::sync::mpsc::Receiver;

use super::amend::Refused;
use super::{
    AppendDone, Appended, CollectedDone, FileRecord, FoundDone, NewMessage, Placement, PushRequest, PushesDone,
    ReadDone, ReadMark, StoreError, StoredMessage, UploadDone, WriteDone,
};

/// A write for a store's writer.
pub(crate) enum Job {
    /// Store a message, with push requests for these users if it is new.
    Append(NewMessage, Vec<Arc<str>>, AppendDone),
    /// Move a user's read cursor.
    MarkRead {
        /// The reader.
        user: Arc<str>,
        /// The conversation.
        conv: String,
        /// The seq read up to.
        seq: u64,
        /// Turn pushed messages now read into a badge request.
        badge: bool,
        /// Told the outcome.
        done: ReadDone,
    },
    /// Remember a user's device.
    SaveDevice {
        /// The user.
        user: Arc<str>,
        /// The device.
        device: Arc<str>,
        /// Told the outcome.
        done: WriteDone,
    },
    /// Take the push requests due for an offer, marking them offered.
    OfferPushes {
        /// The time to mark them offered at (ms).
        now: i64,
        /// Requests offered before this (ms), and never offered ones, are due.
        offered_before: i64,
        /// The most to take.
        limit: usize,
        /// Told the requests.
        done: PushesDone,
    },
    /// End a push request.
    PushDone {
        /// Which.
        push_id: u64,
        /// Told whether it was pending.
        done: FoundDone,
    },
    /// Create a group or set whether it is closed.
    SaveGroup {
        /// The group.
        group: String,
        /// Closed or open.
        closed: bool,
        /// Told the outcome.
        done: WriteDone,
    },
    /// Record an upload within its user's quota.
    SaveUpload {
        /// The uploader.
        user: Arc<str>,
        /// The file.
        file: FileRecord,
        /// The most bytes the user's uploads may take.
        quota: u64,
        /// When (ms).
        now: i64,
        /// Told the file as stored, if it was recorded.
        done: UploadDone,
    },
    /// Forget expired uploads and the files nobody needs.
    CollectFiles {
        /// Unreferenced uploads before this (ms) expire.
        uploaded_before: i64,
        /// Told the files forgotten.
        done: CollectedDone,
    },
    /// Add a member to a group, or remove one.
    SaveMember {
        /// The group.
        group: String,
        /// The user.
        user: String,
        /// Member or not.
        member: bool,
        /// Told the outcome.
        done: WriteDone,
    },
}

impl Job {
    /// Reports `error` as this job's outcome.
    pub(crate) fn fail(self, error: StoreError) {
        match self {
            Job::Append(_, _, done) => done(Err(error)),
            Job::MarkRead { done, .. } => done(Err(error)),
            Job::SaveGroup { done, .. } | Job::SaveMember { done, .. } | Job::SaveDevice { done, .. } => {
                done(Err(error))
            }
            Job::OfferPushes { done, .. } => done(Err(error)),
            Job::PushDone { done, .. } => done(Err(error)),
            Job::SaveUpload { done, .. } => done(Err(error)),
            Job::CollectFiles { done, .. } => done(Err(error)),
        }
    }
}

/// What a job did inside the transaction, reported once it commits.
pub(crate) enum Outcome {
    New(u64),
    Duplicate(Placement),
    Read(ReadMark),
    Saved,
    Offered(Vec<PushRequest>),
    Found(bool),
    Refused(Refused),
    Uploaded(Option<FileRecord>),
    Collected(Vec<String>),
}

/// A committed (or failed) batch, for the completion thread.
pub(crate) type Completed = Vec<(Job, Result<Outcome, StoreError>)>;

/// Reports the outcomes of committed batches, in order, until the writer ends.
/// A completion that panics is logged and the next one runs: one faulty
/// fan-out must not leave every later send without its ack.
pub(crate) fn complete(batches: Receiver<Completed>) {
    for batch in batches {
        for (job, outcome) in batch {
            let reported = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match outcome {
                Ok(outcome) => report(job, outcome),
                Err(error) => job.fail(error),
            }));
            if reported.is_err() {
                tracing::error!("a store completion panicked; the next ones still run");
            }
        }
    }
}

/// Hands `outcome` to `job`'s completion.
fn report(job: Job, outcome: Outcome) {
    match (job, outcome) {
        (Job::Append(message, _, done), Outcome::New(seq)) => done(Ok(Appended::New(Arc::new(StoredMessage {
            message,
            seq,
            state: Default::default(),
        })))),
        (Job::Append(_, _, done), Outcome::Refused(why)) => done(Ok(Appended::Refused(why))),
        (Job::Append(_, _, done), Outcome::Duplicate(placement)) => done(Ok(Appended::Duplicate(placement))),
        (Job::MarkRead { done, .. }, Outcome::Read(mark)) => done(Ok(mark)),
        (Job::SaveGroup { done, .. } | Job::SaveMember { done, .. } | Job::SaveDevice { done, .. }, Outcome::Saved) => {
            done(Ok(()))
        }
        (Job::OfferPushes { done, .. }, Outcome::Offered(requests)) => done(Ok(requests)),
        (Job::PushDone { done, .. }, Outcome::Found(found)) => done(Ok(found)),
        (Job::SaveUpload { done, .. }, Outcome::Uploaded(file)) => done(Ok(file)),
        (Job::CollectFiles { done, .. }, Outcome::Collected(files)) => done(Ok(files)),
        (job, _) => job.fail(StoreError("internal: outcome does not match its job".into())),
    }
}

/// The [`super::Store`] methods that only queue a [`Job`], for a store with a
/// `submit(&self, job: Job)` of its own; expands inside its `impl Store`.
macro_rules! queued_writes {
    () => {
        fn append(&self, message: NewMessage, push_to: Vec<Arc<str>>, done: AppendDone) {
            self.submit(Job::Append(message, push_to, done));
        }

        fn mark_read(&self, user: Arc<str>, conv: String, seq: u64, badge: bool, done: ReadDone) {
            self.submit(Job::MarkRead {
                user,
                conv,
                seq,
                badge,
                done,
            });
        }

        fn save_device(&self, user: Arc<str>, device: Arc<str>, done: WriteDone) {
            self.submit(Job::SaveDevice { user, device, done });
        }

        fn offer_pushes(&self, now: i64, offered_before: i64, limit: usize, done: PushesDone) {
            self.submit(Job::OfferPushes {
                now,
                offered_before,
                limit,
                done,
            });
        }

        fn push_done(&self, push_id: u64, done: FoundDone) {
            self.submit(Job::PushDone { push_id, done });
        }

        fn save_upload(&self, user: Arc<str>, file: FileRecord, quota: u64, now: i64, done: UploadDone) {
            self.submit(Job::SaveUpload {
                user,
                file,
                quota,
                now,
                done,
            });
        }

        fn collect_files(&self, uploaded_before: i64, done: CollectedDone) {
            self.submit(Job::CollectFiles {
                uploaded_before,
                done,
            });
        }

        fn save_group(&self, group: String, closed: bool, done: WriteDone) {
            self.submit(Job::SaveGroup { group, closed, done });
        }

        fn save_member(&self, group: String, user: String, member: bool, done: WriteDone) {
            self.submit(Job::SaveMember {
                group,
                user,
                member,
                done,
            });
        }
    };
}
pub(crate) use queued_writes;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MessageKind, Placement};
    use serde_json::value::RawValue;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn append(done: AppendDone) -> Job {
        let message = NewMessage {
            conv: "dm:a:b".into(),
            from: "a".into(),
            to: Some("b".into()),
            group: None,
            client_id: "c".into(),
            body: RawValue::from_string("1".into()).unwrap(),
            ts: 0,
            kind: MessageKind::Message,
            target: None,
            files: Vec::new(),
            by_host: false,
        };
        Job::Append(message, Vec::new(), done)
    }

    #[test]
    fn a_completion_that_panics_does_not_stop_the_next_ones() {
        let reached = Arc::new(AtomicBool::new(false));
        let seen = reached.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let placement = Placement {
            conv: "dm:a:b".into(),
            seq: 1,
            ts: 0,
        };
        tx.send(vec![
            (append(Box::new(|_| panic!("a faulty fan-out"))), Ok(Outcome::New(1))),
            (
                append(Box::new(move |_| seen.store(true, Ordering::SeqCst))),
                Ok(Outcome::Duplicate(placement)),
            ),
        ])
        .unwrap();
        drop(tx);
        complete(rx);
        assert!(reached.load(Ordering::SeqCst));
    }
}
