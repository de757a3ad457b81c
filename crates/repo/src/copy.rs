//! Copying a snapshot to a second repository (another backend, another password), through
//! rustic_core's `Repository::copy`, one snapshot per call.
//!
//! rustic writes the target's packs, then its index, and the snapshot file last, only once
//! everything it needs is stored (rustic-rs/rustic discussion 1090): a copy that stops half way
//! leaves unreferenced packs in the target, never a snapshot whose data is missing. Blobs the
//! target's index already holds are not sent again. One snapshot per call, so each set is
//! finished (and usable in the target) before the next one starts.

use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering};

use rustic_core::repofile::{SnapshotFile, SnapshotId};
use rustic_core::{Open, Repository};

use crate::error::{RepoError, from_rustic};
use crate::progress::{NoProgress, ProgressSink};
use crate::repo::Repo;
use crate::snapshots::{SnapshotInfo, readable_snapshots, resolve_snapshot};

/// What one copy did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Copied {
    /// The snapshot in the source (full id).
    pub source_id: String,
    /// The snapshot in the target (full id): the new one, or the one already there.
    pub target_id: String,
    /// False when the target already held it (nothing was sent).
    pub copied: bool,
    /// Blob bytes read from the source and written to the target (as stored: compressed and
    /// encrypted). Zero when every blob was there already.
    pub bytes_sent: u64,
}

/// What a copy target holds: its snapshots, read once per run ([`Repo::copy_target`]) and kept
/// up to date by each [`Repo::copy_snapshot`], so a run of many sets reads each snapshot file of
/// the target once, not once per set.
pub struct CopyTarget {
    snapshots: Vec<SnapshotFile>,
}

impl CopyTarget {
    /// The target's snapshot with `snap`'s root tree and tags, if there is one.
    fn same_as(&self, snap: &SnapshotFile) -> Option<SnapshotInfo> {
        self.snapshots
            .iter()
            .find(|s| s.tree == snap.tree && s.tags == snap.tags)
            .map(SnapshotInfo::from_snapshot)
    }

    /// Reads the target's snapshot files not known yet (the ones a copy just wrote).
    fn refresh<S: Open>(&mut self, dest: &Repository<S>) -> Result<(), RepoError> {
        let ids: Vec<SnapshotId> = dest
            .list::<SnapshotId>()
            .map_err(|e| from_rustic("cannot list the snapshots of the copy", &e))?
            .filter(|id| !self.snapshots.iter().any(|s| s.id == *id))
            .collect();
        for id in ids {
            let mut snap: SnapshotFile = dest
                .get_file(&id)
                .map_err(|e| from_rustic("cannot read a snapshot of the copy", &e))?;
            snap.id = id;
            self.snapshots.push(snap);
        }
        Ok(())
    }
}

impl Repo {
    /// This repository as the target of copies: its snapshots, read once.
    pub fn copy_target(&self) -> Result<CopyTarget, RepoError> {
        self.run(&NoProgress, |repo| {
            Ok(CopyTarget {
                snapshots: readable_snapshots(&repo)?,
            })
        })
    }

    /// Copies the snapshot `id` (full id or unique prefix) to `target`, keeping its tags, host,
    /// time and paths, with `original` naming the source snapshot as restic's copy does.
    ///
    /// A snapshot is already in the target when one there has the same root tree and the same
    /// tags: the tree id is the hash of the whole content, so the same tree is the same data.
    /// Then nothing is sent.
    pub fn copy_snapshot(
        &self,
        target: &Repo,
        known: &mut CopyTarget,
        id: &str,
        sink: &dyn ProgressSink,
    ) -> Result<Copied, RepoError> {
        let _target_busy = target.busy.lock().unwrap_or_else(PoisonError::into_inner);
        let sent = Sent::new(sink);
        let result = self.run(&sent, |repo| {
            let snap = resolve_snapshot(&repo, id)?;
            if let Some(there) = known.same_as(&snap) {
                return Ok((snap, there, false));
            }
            // The target's bars report through this call's route, so the caller sees its phases.
            let dest = target
                .reopen_with(&self.router)?
                .to_indexed_ids()
                .map_err(|e| from_rustic(&doing(target), &e))?;
            let src = repo
                .to_indexed()
                .map_err(|e| from_rustic("cannot read the index of the source repository", &e))?;
            let mut to_copy = snap.clone();
            to_copy.original = Some(snap.original.unwrap_or(snap.id));
            src.copy(&dest, [&to_copy])
                .map_err(|e| from_rustic(&doing(target), &e))?;
            known.refresh(&dest)?;
            let there = known.same_as(&snap).ok_or_else(|| {
                RepoError::Other(format!(
                    "the copy of snapshot {} is not listed in {} after it was written",
                    short(&snap),
                    target.location()
                ))
            })?;
            Ok((snap, there, true))
        });
        let (snap, there, copied) = target.gone_first(result)?;
        Ok(Copied {
            source_id: snap.id.to_hex().as_str().to_string(),
            target_id: there.id,
            copied,
            bytes_sent: if copied { sent.bytes() } else { 0 },
        })
    }
}

fn doing(target: &Repo) -> String {
    format!("cannot copy to {}", target.location())
}

fn short(snap: &SnapshotFile) -> String {
    snap.id.to_hex().as_str().chars().take(8).collect()
}

/// Passes progress on, and adds up the bytes of rustic's "copying ... blobs" phases (their
/// length is what is read from the source and written to the target).
struct Sent<'a> {
    inner: &'a dyn ProgressSink,
    bytes: AtomicU64,
}

impl<'a> Sent<'a> {
    fn new(inner: &'a dyn ProgressSink) -> Self {
        Sent {
            inner,
            bytes: AtomicU64::new(0),
        }
    }

    fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::SeqCst)
    }
}

impl ProgressSink for Sent<'_> {
    fn start(&self, what: &str, total_bytes: Option<u64>) {
        if what.starts_with("copying") {
            self.bytes
                .fetch_add(total_bytes.unwrap_or(0), Ordering::SeqCst);
        }
        self.inner.start(what, total_bytes);
    }
    fn advance(&self, bytes: u64) {
        self.inner.advance(bytes);
    }
    fn finish(&self) {
        self.inner.finish();
    }
}
