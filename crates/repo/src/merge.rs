//! Joining snapshots into one: a set whose folders were stored before the maintenance window
//! and whose database after it still ends up as one snapshot, as restic users expect a set.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;

use rustic_core::jiff::Unit;
use rustic_core::repofile::{Node, SnapshotFile, SnapshotId, SnapshotSummary, Tree};
use rustic_core::{IndexedTree, Repository, RusticResult, SnapshotOptions, TreeId};

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

            let repo = self.index_ids(repo)?;
            let trees: Vec<_> = parts.iter().map(|p| p.tree).collect();
            snap.tree = repo
                .save_trees(|save| merge_trees(&repo, &trees, save))
                .map_err(|e| from_rustic("cannot merge the snapshots", &e))?;
            snap.summary = Some(combined_summary(&parts, &snap));
            save_snapshot(&repo, snap)
        })
    }
}

/// One tree holding what `trees` hold. Paths are disjoint, so only the folders above them meet
/// (`/`, `/folders`): those are merged, and everything else is each part's own subtree, shared
/// as it is (nothing below the meeting folders is read or written again). Where two parts have
/// a folder of the same name, the later one's metadata is kept.
fn merge_trees<S: IndexedTree>(
    repo: &Repository<S>,
    trees: &[TreeId],
    save: &dyn Fn(&Tree) -> RusticResult<TreeId>,
) -> RusticResult<TreeId> {
    if let [only] = trees {
        return Ok(*only);
    }
    let mut by_name: BTreeMap<OsString, Vec<Node>> = BTreeMap::new();
    for id in trees {
        for node in repo.get_tree(id)?.nodes {
            by_name
                .entry(node.name().into_owned())
                .or_default()
                .push(node);
        }
    }
    let mut nodes = Vec::with_capacity(by_name.len());
    for (_, mut same) in by_name {
        let subtrees: Vec<TreeId> = same.iter().filter_map(|n| n.subtree).collect();
        let all_dirs = same.iter().all(Node::is_dir) && subtrees.len() == same.len();
        same.sort_by_key(|n| n.meta.mtime);
        let mut node = same.pop().expect("at least one node per name");
        if all_dirs && subtrees.len() > 1 {
            node.subtree = Some(merge_trees(repo, &subtrees, save)?);
        }
        nodes.push(node);
    }
    save(&Tree { nodes })
}

/// The parts' figures added up (their paths are disjoint, so their totals add up too).
fn combined_summary(parts: &[SnapshotFile], snap: &SnapshotFile) -> SnapshotSummary {
    let mut s = SnapshotSummary::default();
    for part in parts.iter().filter_map(|p| p.summary.as_ref()) {
        s.total_files_processed += part.total_files_processed;
        s.total_bytes_processed += part.total_bytes_processed;
        s.total_dirs_processed += part.total_dirs_processed;
        s.total_dirsize_processed += part.total_dirsize_processed;
    }
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
pub(crate) fn save_snapshot<S: rustic_core::Open>(
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
    // Another writer's snapshot can appear beside ours half written (on SFTP a file is written
    // in place; this run's other parts or another run may be saving one): one that cannot be
    // read yet is tried again, briefly, and only ours must be found.
    let mut unread: Vec<SnapshotId> = list()?.difference(&before).copied().collect();
    let mut last_error = None;
    for pause_ms in [0, 100, 300, 600, 1000] {
        std::thread::sleep(std::time::Duration::from_millis(pause_ms));
        let mut still = Vec::new();
        for id in unread {
            match repo.get_file::<SnapshotFile>(&id) {
                Ok(mut saved) => {
                    if saved.tree == snap.tree
                        && saved.time.timestamp() == snap.time.timestamp()
                        && saved.tags == snap.tags
                    {
                        saved.id = id;
                        return Ok(SnapshotInfo::from_snapshot(&saved));
                    }
                }
                Err(e) => {
                    last_error = Some(e);
                    still.push(id);
                }
            }
        }
        if still.is_empty() {
            break;
        }
        unread = still;
    }
    if let Some(e) = last_error {
        return Err(from_rustic("cannot read the merged snapshot", &e));
    }
    Err(RepoError::Other(
        "the merged snapshot was saved but cannot be found again: list the snapshots and run `check`"
            .into(),
    ))
}
