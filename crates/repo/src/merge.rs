//! Joining snapshots into one: a set whose folders were stored before the maintenance window
//! and whose database after it still ends up as one snapshot, as restic users expect a set.

use std::collections::BTreeSet;

use rustic_core::jiff::Unit;
use rustic_core::repofile::{SnapshotFile, SnapshotId, SnapshotSummary};
use rustic_core::{Repository, SnapshotOptions};

use crate::backup::{SetOptions, check_tags};
use crate::error::{RepoError, from_rustic};
use crate::progress::NoProgress;
use crate::repo::Repo;
use crate::snapshots::{SnapshotInfo, from_chrono, resolve_snapshot};
use crate::vpath::{VirtualPath, check_disjoint};

impl Repo {
    /// Writes one new snapshot holding everything in the snapshots `ids` (whose paths must not
    /// overlap), with tags, hostname and time from `opts` (time `None`: the newest part's).
    /// No file data is copied: only trees are written. The parts stay until deleted.
    /// `parent_tags` and `compression` are not used.
    pub fn merge_snapshots(
        &self,
        ids: &[String],
        opts: &SetOptions,
    ) -> Result<SnapshotInfo, RepoError> {
        check_tags(&opts.tags)?;
        let time = opts.time.as_ref().map(from_chrono).transpose()?;
        if ids.is_empty() {
            return Err(RepoError::InvalidInput(
                "nothing to merge: give at least one snapshot".into(),
            ));
        }
        self.run(&NoProgress, |repo| {
            let parts: Vec<SnapshotFile> = ids
                .iter()
                .map(|id| resolve_snapshot(&repo, id))
                .collect::<Result<_, _>>()?;
            let paths: Vec<VirtualPath> = parts
                .iter()
                .flat_map(|p| p.paths.iter())
                .map(|p| VirtualPath::parse(p))
                .collect::<Result<_, _>>()?;
            check_disjoint(&paths.iter().collect::<Vec<_>>())?;

            let mut snap = SnapshotFile::from_options(&SnapshotOptions::default())
                .map_err(|e| from_rustic("cannot start the snapshot", &e))?;
            snap.time = match time {
                Some(time) => time,
                None => parts
                    .iter()
                    .map(|p| p.time.clone())
                    .max()
                    .unwrap_or_else(rustic_core::jiff::Zoned::now),
            };
            if !opts.hostname.is_empty() {
                snap.hostname.clone_from(&opts.hostname);
            }
            for tag in &opts.tags {
                snap.tags.add(tag.clone());
            }
            for path in &paths {
                snap.paths.add(path.to_string());
            }
            snap.program_version = format!("octobackup-repo {}", env!("CARGO_PKG_VERSION"));

            let repo = repo
                .to_indexed_ids()
                .map_err(|e| from_rustic("cannot read the repository index", &e))?;
            let trees: Vec<_> = parts.iter().map(|p| p.tree).collect();
            let mut summary = SnapshotSummary::default();
            // Paths are disjoint, so only folders between them meet: any one's metadata will do.
            snap.tree = repo
                .merge_trees(
                    &trees,
                    &|a, b| a.meta.mtime.cmp(&b.meta.mtime),
                    &mut summary,
                )
                .map_err(|e| from_rustic("cannot merge the snapshots", &e))?;
            snap.summary = Some(combined_summary(&parts, summary, &snap));
            save_snapshot(&repo, snap)
        })
    }
}

/// The parts' figures added up; file and byte totals from the merged tree.
fn combined_summary(
    parts: &[SnapshotFile],
    merged: SnapshotSummary,
    snap: &SnapshotFile,
) -> SnapshotSummary {
    let mut s = merged;
    s.command = "octobackup merge".into();
    let (mut new, mut changed, mut unmodified) = (0, 0, 0);
    let (mut added, mut packed, mut duration) = (0, 0, 0.0);
    for part in parts.iter().filter_map(|p| p.summary.as_ref()) {
        new += part.files_new;
        changed += part.files_changed;
        unmodified += part.files_unmodified;
        added += part.data_added;
        packed += part.data_added_packed;
        duration += part.backup_duration;
    }
    s.files_new = new;
    s.files_changed = changed;
    s.files_unmodified = unmodified;
    s.data_added = added;
    s.data_added_packed = packed;
    s.backup_duration = duration;
    let summaries = || parts.iter().filter_map(|p| p.summary.as_ref());
    if let Some(start) = summaries().map(|p| p.backup_start.clone()).min() {
        s.backup_start = start;
    }
    if let Some(end) = summaries().map(|p| p.backup_end.clone()).max() {
        s.backup_end = end;
    }
    s.total_duration = s
        .backup_end
        .since(&snap.time)
        .and_then(|span| span.total(Unit::Second))
        .unwrap_or_default();
    s
}

/// Saves `snap` and finds its id: rustic's public API saves snapshots without returning ids,
/// so the new id is the one that appeared with this tree, time and tags.
fn save_snapshot<S: rustic_core::Open>(
    repo: &Repository<S>,
    snap: SnapshotFile,
) -> Result<SnapshotInfo, RepoError> {
    let list = || -> Result<BTreeSet<SnapshotId>, RepoError> {
        Ok(repo
            .list::<SnapshotId>()
            .map_err(|e| from_rustic("cannot list snapshots", &e))?
            .collect())
    };
    let before = list()?;
    repo.save_snapshots(vec![snap.clone()])
        .map_err(|e| from_rustic("cannot save the merged snapshot", &e))?;
    for id in list()?.difference(&before) {
        let mut saved: SnapshotFile = repo
            .get_file(id)
            .map_err(|e| from_rustic("cannot read the merged snapshot", &e))?;
        if saved.tree == snap.tree
            && saved.time.timestamp() == snap.time.timestamp()
            && saved.tags == snap.tags
        {
            saved.id = *id;
            return Ok(SnapshotInfo::from_snapshot(&saved));
        }
    }
    Err(RepoError::Other(
        "the merged snapshot was saved but cannot be found again: list the snapshots and run `check`"
            .into(),
    ))
}
