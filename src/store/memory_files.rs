//! The in-memory store's bookkeeping of uploaded files (see
//! `sqlite/files.rs` for the durable one): the same rules, nothing kept
//! across a restart.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

use super::FileRecord;

/// Files, uploads and references, under one lock: none is on a hot path.
#[derive(Default)]
pub(super) struct MemoryFiles {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    files: HashMap<String, FileRecord>,
    /// User → file → when uploaded.
    uploads: HashMap<String, HashMap<String, i64>>,
    /// File → the messages (conversation, seq) that refer to it.
    refs: HashMap<String, BTreeSet<(String, u64)>>,
}

impl Inner {
    fn visible(&self, file_id: &str, user: &str, convs: &BTreeSet<String>) -> bool {
        self.uploads.get(user).is_some_and(|mine| mine.contains_key(file_id))
            || self
                .refs
                .get(file_id)
                .is_some_and(|refs| refs.iter().any(|(conv, _)| convs.contains(conv)))
    }
}

impl MemoryFiles {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The first of `files` that `user`, a member of `convs`, may not refer to.
    pub(super) fn first_unknown<'f>(
        &self,
        user: &str,
        convs: &BTreeSet<String>,
        files: &'f [String],
    ) -> Option<&'f str> {
        let inner = self.lock();
        files
            .iter()
            .find(|file| !inner.visible(file, user, convs))
            .map(String::as_str)
    }

    /// Records that the message at `seq` of `conv` refers to `files`.
    pub(super) fn refer(&self, files: &[String], conv: &str, seq: u64) {
        let mut inner = self.lock();
        for file in files {
            inner
                .refs
                .entry(file.clone())
                .or_default()
                .insert((conv.to_owned(), seq));
        }
    }

    /// Drops the references of the messages `seqs` of `conv`.
    pub(super) fn release(&self, conv: &str, seqs: &[u64]) {
        let mut inner = self.lock();
        for refs in inner.refs.values_mut() {
            refs.retain(|(c, seq)| c != conv || !seqs.contains(seq));
        }
        inner.refs.retain(|_, refs| !refs.is_empty());
    }

    /// See [`super::Store::save_upload`].
    pub(super) fn save_upload(&self, user: &str, file: FileRecord, quota: u64, now: i64) -> Option<FileRecord> {
        let mut inner = self.lock();
        let others: u64 = inner
            .uploads
            .get(user)
            .map(|mine| {
                mine.keys()
                    .filter(|id| **id != file.file_id)
                    .filter_map(|id| inner.files.get(id))
                    .map(|f| f.size)
                    .sum()
            })
            .unwrap_or(0);
        if others + file.size > quota {
            return None;
        }
        inner
            .uploads
            .entry(user.to_owned())
            .or_default()
            .insert(file.file_id.clone(), now);
        Some(inner.files.entry(file.file_id.clone()).or_insert(file).clone())
    }

    /// See [`super::Store::upload_usage`].
    pub(super) fn usage(&self, user: &str) -> u64 {
        let inner = self.lock();
        inner
            .uploads
            .get(user)
            .map(|mine| mine.keys().filter_map(|id| inner.files.get(id)).map(|f| f.size).sum())
            .unwrap_or(0)
    }

    /// See [`super::Store::file`]; `convs` are the reader's conversations.
    pub(super) fn file(&self, file_id: &str, reader: Option<(&str, &BTreeSet<String>)>) -> Option<FileRecord> {
        let inner = self.lock();
        let allowed = reader.is_none_or(|(user, convs)| inner.visible(file_id, user, convs));
        inner.files.get(file_id).filter(|_| allowed).cloned()
    }

    /// See [`super::Store::collect_files`]; `kept` says whether a message
    /// is still there (retention may have dropped it). `kept` takes the
    /// store's conversation locks, which appends hold while they take this
    /// one: it is asked with this lock released.
    pub(super) fn collect(&self, uploaded_before: i64, kept: impl Fn(&str, u64) -> bool) -> Vec<String> {
        let referred: Vec<(String, String, u64)> = self
            .lock()
            .refs
            .iter()
            .flat_map(|(file, refs)| refs.iter().map(|(conv, seq)| (file.clone(), conv.clone(), *seq)))
            .collect();
        let gone: Vec<_> = referred
            .into_iter()
            .filter(|(_, conv, seq)| !kept(conv, *seq))
            .collect();
        let mut inner = self.lock();
        for (file, conv, seq) in gone {
            if let Some(refs) = inner.refs.get_mut(&file) {
                refs.remove(&(conv, seq));
            }
        }
        inner.refs.retain(|_, refs| !refs.is_empty());
        let Inner { files, uploads, refs } = &mut *inner;
        for mine in uploads.values_mut() {
            mine.retain(|file, ts| *ts >= uploaded_before || refs.contains_key(file));
        }
        uploads.retain(|_, mine| !mine.is_empty());
        let unneeded: Vec<String> = files
            .keys()
            .filter(|id| !refs.contains_key(*id) && !uploads.values().any(|mine| mine.contains_key(*id)))
            .cloned()
            .collect();
        for id in &unneeded {
            files.remove(id);
        }
        unneeded
    }
}
