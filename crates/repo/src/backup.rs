//! One backup run = one snapshot holding every source of the set under its snapshot path.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Local};
use rustic_core::repofile::SnapshotFile;
use rustic_core::{
    BackupOptions, OpenStatus, ParentOptions, Repository, SnapshotGroupCriterion, SnapshotOptions,
};
use serde::Serialize;

use crate::chunk_memory::ChunkMemoryFile;
use crate::error::{RepoError, from_rustic};
use crate::logging::{self, Captured};
use crate::progress::ProgressSink;
use crate::repo::Repo;
use crate::snapshots::from_chrono;
use crate::source::{SetSource, SourceItem, WalkedAhead};

/// How to record the set.
#[derive(Debug, Clone, Default)]
pub struct SetOptions {
    /// Tags of the snapshot: what must survive `restic tag` (set id, instance, completeness).
    /// No commas (restic splits on them), none empty.
    pub tags: Vec<String>,
    /// Empty: this machine's host name.
    pub hostname: String,
    /// The newest snapshot carrying all these tags is the parent: files with the same size,
    /// mtime and ctime are taken from it without reading them. Empty: no parent, read all.
    pub parent_tags: Vec<String>,
    /// Snapshot time; `None`: now.
    pub time: Option<DateTime<Local>>,
    /// zstd level (0 = off). `None` keeps the repository's setting (1 for repositories made by
    /// [`Repo::init`]); another level is stored in the repository config, as rustic does.
    pub compression: Option<i32>,
    /// A file that keeps, between backups, the chunks of this part's large files (the
    /// database backup), so that tomorrow's chunks found unchanged at the same offsets are
    /// taken without hashing them again (`chunk_memory.rs`). `None`: every byte is hashed.
    pub chunk_memory: Option<PathBuf>,
}

/// What a backup stored.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackupSummary {
    pub snapshot_id: String,
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unmodified: u64,
    pub total_files: u64,
    pub total_bytes: u64,
    pub data_added: u64,
    pub data_added_packed: u64,
    /// Bytes of large files found unchanged through [`SetOptions::chunk_memory`] (taken
    /// without being chunked and hashed again).
    pub remembered_bytes: u64,
    /// Files left out of the snapshot, as (snapshot path, reason). Not empty means the set is
    /// incomplete: say so in its tags and to the user.
    pub unreadable: Vec<(String, String)>,
    /// Other warnings rustic logged during the run (nothing was left out because of them).
    pub warnings: Vec<String>,
}

impl Repo {
    /// Stores `items` as one snapshot. Fails before writing anything if a source is missing or
    /// the snapshot paths overlap; files that fail while being read are left out and listed in
    /// [`BackupSummary::unreadable`].
    pub fn backup(
        &self,
        items: Vec<SourceItem>,
        opts: &SetOptions,
        progress: &dyn ProgressSink,
    ) -> Result<BackupSummary, RepoError> {
        check_tags(&opts.tags)?;
        check_tags(&opts.parent_tags)?;
        let memory = opts
            .chunk_memory
            .as_deref()
            .map(|path| Arc::new(ChunkMemoryFile::load(path, &self.key_material())));
        let capture = logging::capture();
        let source = SetSource::new(items)?.with_chunk_memory(memory.clone());
        self.backup_source(source, capture, memory, opts, progress)
    }

    /// As [`Repo::backup`], for sources whose walk started ahead ([`WalkedAhead::start`]),
    /// while the repository's key was still being derived, say. Refuses `opts.chunk_memory`
    /// (the walk has already decided how each file is opened).
    pub fn backup_walked(
        &self,
        walked: WalkedAhead,
        opts: &SetOptions,
        progress: &dyn ProgressSink,
    ) -> Result<BackupSummary, RepoError> {
        check_tags(&opts.tags)?;
        check_tags(&opts.parent_tags)?;
        if opts.chunk_memory.is_some() {
            return Err(RepoError::InvalidInput(
                "sources walked ahead are stored without a chunk memory".into(),
            ));
        }
        let WalkedAhead { source, capture } = walked;
        self.backup_source(source, capture, None, opts, progress)
    }

    fn backup_source(
        &self,
        source: SetSource,
        capture: logging::CaptureGuard,
        memory: Option<Arc<ChunkMemoryFile>>,
        opts: &SetOptions,
        progress: &dyn ProgressSink,
    ) -> Result<BackupSummary, RepoError> {
        let time = opts.time.as_ref().map(from_chrono).transpose()?;
        let paths = source.targets();
        let snap = self.run(progress, |repo| {
            let repo = match opts.compression {
                Some(level) => self.with_compression(repo, level)?,
                None => repo,
            };
            // The progress total, when someone sees it, is taken beside the reading of the
            // snapshots and the index, not before them (issue 13: a serial walk of every file
            // before anything else began); a walk started ahead counts it as it goes.
            let began = std::time::Instant::now();
            let (found, total) = std::thread::scope(|scope| {
                let total = scope.spawn(|| progress.wants_total().then(|| source.total_bytes()));
                let found = match newest_with_tags(&repo, &opts.parent_tags) {
                    Ok(parent) => self.index_ids(repo).map(|indexed| (parent, indexed)),
                    Err(e) => Err(e),
                };
                (found, total.join().ok().flatten())
            });
            let (parent, indexed) = found?;
            log::debug!(
                "backup: parent and index read in {:.3}s",
                began.elapsed().as_secs_f64()
            );
            let parent_opts = match parent {
                Some(id) => ParentOptions::default()
                    .group_by(SnapshotGroupCriterion::new())
                    .parents(vec![id]),
                None => ParentOptions::default().force(true),
            };
            let snap = new_snapshot(opts, time)?;

            self.router.set_phase("backup", total);
            let backup_opts = BackupOptions::default()
                .no_scan(true)
                .parent_opts(parent_opts);
            let archived = indexed
                .archive(&backup_opts, &source, snap, &paths)
                .map_err(|e| from_rustic("cannot back up", &e));
            log::debug!("backup: stored at {:.3}s", began.elapsed().as_secs_f64());
            archived
        });
        let captured = capture.finish();
        let snap = snap?;
        let remembered_bytes = memory.as_ref().map_or(0, |memory| {
            memory.save();
            memory.taken()
        });

        let mut unreadable = source.unreadable().take();
        let (left_out, warnings) = sort_captured(captured);
        unreadable.extend(left_out);
        let s = snap.summary.unwrap_or_default();
        Ok(BackupSummary {
            snapshot_id: snap.id.to_hex().as_str().to_string(),
            files_new: s.files_new,
            files_changed: s.files_changed,
            files_unmodified: s.files_unmodified,
            total_files: s.total_files_processed,
            total_bytes: s.total_bytes_processed,
            data_added: s.data_added,
            data_added_packed: s.data_added_packed,
            remembered_bytes,
            unreadable,
            warnings,
        })
    }
}

/// rustic's captured log lines, as (entries left out of the snapshot, other warnings).
pub(crate) fn sort_captured(captured: Vec<Captured>) -> (Vec<(String, String)>, Vec<String>) {
    let mut left_out = Vec::new();
    let mut warnings = Vec::new();
    for Captured { message } in captured {
        if left_something_out(&message) {
            left_out.push((quoted_path(&message).unwrap_or_default(), message));
        } else {
            warnings.push(message);
        }
    }
    (left_out, warnings)
}

/// The id of the newest snapshot carrying all `tags`.
fn newest_with_tags(
    repo: &Repository<OpenStatus>,
    tags: &[String],
) -> Result<Option<String>, RepoError> {
    if tags.is_empty() {
        return Ok(None);
    }
    let snaps = crate::snapshots::readable_snapshots(repo)?;
    Ok(snaps
        .into_iter()
        .filter(|s| tags.iter().all(|t| s.tags.contains(t)))
        .max_by(|a, b| a.time.cmp(&b.time))
        .map(|s| s.id.to_hex().as_str().to_string()))
}

/// A new snapshot of a set's part: the host, time and tags of `opts`, octobackup as its program.
pub(crate) fn new_snapshot(
    opts: &SetOptions,
    time: Option<rustic_core::jiff::Zoned>,
) -> Result<SnapshotFile, RepoError> {
    let mut snap = SnapshotFile::from_options(&SnapshotOptions::default())
        .map_err(|e| from_rustic("cannot start the snapshot", &e))?;
    if !opts.hostname.is_empty() {
        snap.hostname.clone_from(&opts.hostname);
    }
    if let Some(time) = time {
        snap.time = time;
    }
    for tag in &opts.tags {
        snap.tags.add(tag.clone());
    }
    snap.program_version = format!("octobackup-repo {}", env!("CARGO_PKG_VERSION"));
    if let Some(summary) = snap.summary.as_mut() {
        // rustic would record the whole command line.
        summary.command = "octobackup backup".into();
    }
    Ok(snap)
}

pub(crate) fn check_tags(tags: &[String]) -> Result<(), RepoError> {
    for tag in tags {
        if tag.trim().is_empty() || tag.contains(',') {
            return Err(RepoError::InvalidInput(format!(
                "tag `{tag}` cannot be used: tags must not be empty or contain commas"
            )));
        }
    }
    Ok(())
}

/// rustic's archiver says "ignoring error" when it drops an entry from the snapshot.
fn left_something_out(message: &str) -> bool {
    message.starts_with("ignoring error") && !message.starts_with("ignoring error obtaining xargs")
}

/// The first `quoted` path in a rustic message.
fn quoted_path(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_with_commas_are_refused() {
        assert!(check_tags(&["set:1".into(), "complete".into()]).is_ok());
        assert!(check_tags(&["a,b".into()]).is_err());
        assert!(check_tags(&[" ".into()]).is_err());
    }

    #[test]
    fn dropped_entries_are_told_apart_from_other_warnings() {
        let m = "ignoring error: Error: Error while backing up `/x/y` (kind: related to input/output operations)";
        assert!(left_something_out(m));
        assert_eq!(quoted_path(m).as_deref(), Some("/x/y"));
        assert!(!left_something_out("ignoring error obtaining xargs: nope"));
        assert!(!left_something_out(
            "missing blobs in index for unchanged file /a; re-reading file"
        ));
    }
}
