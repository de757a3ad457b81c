//! A snapshot made of an earlier one with some entries replaced or added from local files and
//! the rest dropped: how octobackup stores the server folders as they were inside the
//! maintenance window without reading the repository inside it. The pass before the window is
//! the base; what changed inside the window was copied to local staging; afterwards this writes
//! base (the entries the window left unchanged) + the copies.
//!
//! Only the copies are read and stored (an ordinary backup of the staging folder). The result's
//! tree is then built from the base's trees: a folder of the base whose whole content was kept
//! and holds no change is the base's own subtree, shared as it is (restic does the same when
//! nothing in a folder changed); only the folders along a changed path get a new tree. The
//! result is a plain restic snapshot.

use std::collections::{HashMap, HashSet};
use std::path::{Component, Path};

use rustic_core::repofile::{Node, Tree};
use rustic_core::{BackupOptions, IndexedTree, ParentOptions, Repository, RusticResult, TreeId};

use crate::backup::{BackupSummary, SetOptions, check_tags};
use crate::error::{RepoError, from_rustic};
use crate::logging;
use crate::pathlist::{SortedPaths, tree_order};
use crate::progress::ProgressSink;
use crate::repo::Repo;
use crate::snapshots::{from_chrono, resolve_snapshot};
use crate::source::{SetSource, SourceItem};

impl Repo {
    /// Stores a snapshot holding the entries of snapshot `base` whose paths are in `keep`
    /// (snapshot paths like `/folders/Packages/a.nupkg`; folders too, each listed on its own),
    /// plus everything in `changes`. Where a kept entry and a change have the same path, the kept
    /// entry wins; every other entry of `base` is left out (with what it holds). Kept files are
    /// taken from `base` without reading them, and a folder whose whole content is kept and
    /// unchanged keeps the base's tree. `opts.parent_tags` is not used.
    ///
    /// `keep` is read as a stream, beside the base's trees (both in tree order), so its size
    /// costs no memory: only the folders being rebuilt are held, one mark per entry, and their
    /// trees up to 131,072 nodes in all.
    ///
    /// Fails before writing anything when a path in `keep` is not in `base` (or lies under a
    /// folder that is neither kept nor changed).
    pub fn overlay(
        &self,
        base: &str,
        keep: &dyn SortedPaths,
        changes: Vec<SourceItem>,
        opts: &SetOptions,
        progress: &dyn ProgressSink,
    ) -> Result<BackupSummary, RepoError> {
        check_tags(&opts.tags)?;
        let time = opts.time.as_ref().map(from_chrono).transpose()?;
        let changes = SetSource::new(changes)?;
        let targets = changes.targets();
        let unreadable = changes.unreadable_handle();
        // Every changed entry and the folders above it: the folders the plan must look into.
        let mut staged = Staged::default();
        for (path, is_dir) in changes.entry_paths() {
            staged.add(&path, is_dir);
        }

        let capture = logging::capture();
        let snap = self.run(progress, |repo| {
            let repo = match opts.compression {
                Some(level) => self.with_compression(repo, level)?,
                None => repo,
            };
            let began = std::time::Instant::now();
            let repo = self.index_ids(repo)?;
            log::debug!("overlay: index read in {:.3}s", began.elapsed().as_secs_f64());
            let base_snap = resolve_snapshot(&repo, base)?;

            // What the base's trees hold, before anything is written.
            let mut plan = Plan {
                staged: &staged,
                keep: Cursor::new(keep)?,
                kept_files: 0,
                kept_bytes: 0,
                rebuild: HashMap::new(),
                held_nodes: 0,
            };
            plan.visit(&repo, &[], base_snap.tree)?;
            plan.keep.finish()?;
            log::debug!("overlay: base planned at {:.3}s", began.elapsed().as_secs_f64());
            if let Some(first) = &plan.keep.first_missing {
                return Err(RepoError::InvalidInput(format!(
                    "{} path(s) to keep are not in snapshot {base}, or lie under a folder that is neither kept nor changed (first: {})",
                    plan.keep.missing,
                    String::from_utf8_lossy(first)
                )));
            }

            // The copies: an ordinary backup of the staging folder, tagged as the set's part (a
            // run that dies here leaves a part the next run discards).
            let staged = crate::backup::new_snapshot(opts, time.clone())?;
            let total = progress.wants_total().then(|| changes.total_bytes());
            self.router.set_phase("backup", total);
            let backup_opts = BackupOptions::default()
                .no_scan(true)
                .parent_opts(ParentOptions::default().force(true));
            let staged = repo
                .archive(&backup_opts, &changes, staged, &targets)
                .map_err(|e| from_rustic("cannot back up", &e))?;
            log::debug!("overlay: changes stored at {:.3}s", began.elapsed().as_secs_f64());

            // Indexed again: the index read above does not hold the copies' trees.
            drop(repo);
            let repo = self.index_ids(self.reopen()?)?;
            log::debug!("overlay: index read again at {:.3}s", began.elapsed().as_secs_f64());
            let mut counts = Counts::default();
            let tree = repo
                .save_trees(|save| {
                    let mut build = Build {
                        repo: &repo,
                        rebuild: &mut plan.rebuild,
                        save,
                    };
                    build.tree(&[], Some(base_snap.tree), Some(staged.tree), &mut counts)
                })
                .map_err(|e| from_rustic("cannot write the folder trees", &e))?;

            log::debug!("overlay: trees built at {:.3}s", began.elapsed().as_secs_f64());
            let mut snap = crate::backup::new_snapshot(opts, time)?;
            snap.tree = tree;
            for p in base_snap.paths.iter().chain(staged.paths.iter()) {
                snap.paths.add(p.clone());
            }
            let staged_summary = staged.summary.clone().unwrap_or_default();
            let mut summary = staged_summary.clone();
            summary.command = "octobackup backup".into();
            let taken_files = staged_summary
                .total_files_processed
                .saturating_sub(counts.overridden_files);
            let taken_bytes = staged_summary
                .total_bytes_processed
                .saturating_sub(counts.overridden_bytes);
            summary.files_changed = counts.replaced_files.min(taken_files);
            summary.files_new = taken_files - summary.files_changed;
            summary.files_unmodified = plan.kept_files;
            summary.total_files_processed = plan.kept_files + taken_files;
            summary.total_bytes_processed = plan.kept_bytes + taken_bytes;
            snap.summary = Some(summary.clone());
            let saved = crate::merge::save_snapshot(&repo, snap)?;
            // The copies' own snapshot was only a step; if it cannot go now, it is a leftover
            // part like any other (tagged with the set), removed with the run's parts.
            let _ = repo.delete_snapshots(&[staged.id]);
            Ok((saved.id, summary))
        });
        let captured = capture.finish();
        let (snapshot_id, s) = snap?;
        let (left_out, warnings) = crate::backup::sort_captured(captured);
        let mut all = unreadable.take();
        all.extend(left_out);
        Ok(BackupSummary {
            snapshot_id,
            files_new: s.files_new,
            files_changed: s.files_changed,
            files_unmodified: s.files_unmodified,
            total_files: s.total_files_processed,
            total_bytes: s.total_bytes_processed,
            data_added: s.data_added,
            data_added_packed: s.data_added_packed,
            remembered_bytes: 0,
            unreadable: all,
            warnings,
        })
    }
}

/// The names of a snapshot path (`/folders/Packages` gives `folders`, `Packages`).
fn names(path: &Path) -> impl Iterator<Item = &std::ffi::OsStr> + '_ {
    path.components().filter_map(|c| match c {
        Component::Normal(name) => Some(name),
        _ => None,
    })
}

/// The snapshot path of `node` in the folder at `parent`, as bytes (see `pathlist`).
fn child_path(parent: &[u8], node: &Node) -> Vec<u8> {
    let name = node.name();
    let name = name.as_encoded_bytes();
    let mut path = Vec::with_capacity(parent.len() + 1 + name.len());
    path.extend_from_slice(parent);
    path.push(b'/');
    path.extend_from_slice(name);
    path
}

/// The paths to keep, read one at a time as the base's trees are walked in the same order.
struct Cursor<'a> {
    paths: Box<dyn Iterator<Item = std::io::Result<Vec<u8>>> + 'a>,
    head: Option<Vec<u8>>,
    /// Paths to keep that the walk went past without meeting them in the base.
    missing: u64,
    first_missing: Option<Vec<u8>>,
}

fn unreadable_list(e: &std::io::Error) -> RepoError {
    RepoError::InvalidInput(format!("the list of paths to keep cannot be read: {e}"))
}

impl<'a> Cursor<'a> {
    fn new(keep: &'a dyn SortedPaths) -> Result<Self, RepoError> {
        let mut paths = keep.sorted().map_err(|e| unreadable_list(&e))?;
        let head = paths.next().transpose().map_err(|e| unreadable_list(&e))?;
        Ok(Self {
            paths,
            head,
            missing: 0,
            first_missing: None,
        })
    }

    fn advance(&mut self) -> Result<(), RepoError> {
        self.head = self
            .paths
            .next()
            .transpose()
            .map_err(|e| unreadable_list(&e))?;
        Ok(())
    }

    fn skip(&mut self) -> Result<(), RepoError> {
        self.missing += 1;
        if self.first_missing.is_none() {
            self.first_missing = self.head.take();
        }
        self.advance()
    }

    /// Whether `path` is to be kept. Paths are asked in tree order: every path to keep before
    /// `path` was not met in the base.
    fn take(&mut self, path: &[u8]) -> Result<bool, RepoError> {
        while let Some(head) = &self.head {
            match tree_order(head, path) {
                std::cmp::Ordering::Less => self.skip()?,
                std::cmp::Ordering::Equal => {
                    self.advance()?;
                    return Ok(true);
                }
                std::cmp::Ordering::Greater => return Ok(false),
            }
        }
        Ok(false)
    }

    /// After the walk: what is left was not met.
    fn finish(&mut self) -> Result<(), RepoError> {
        while self.head.is_some() {
            self.skip()?;
        }
        Ok(())
    }
}

/// What the copies hold, by folder (snapshot paths as bytes, see `pathlist`).
#[derive(Default)]
struct Staged {
    /// Every copied entry and the folders above it (the root: empty).
    touched: HashSet<Vec<u8>>,
    /// Per folder, the names of the copied folders directly in it (the folders above a copied
    /// entry count as copied folders).
    dirs: HashMap<Vec<u8>, HashSet<Vec<u8>>>,
    /// The folders that directly hold a copied file or link.
    holding_files: HashSet<Vec<u8>>,
}

impl Staged {
    fn add(&mut self, path: &Path, is_dir: bool) {
        let names: Vec<&[u8]> = names(path).map(|n| n.as_encoded_bytes()).collect();
        let mut parent = Vec::new();
        self.touched.insert(Vec::new());
        for (i, name) in names.iter().enumerate() {
            if i + 1 == names.len() && !is_dir {
                self.holding_files.insert(parent.clone());
            } else if let Some(dirs) = self.dirs.get_mut(&parent) {
                if !dirs.contains(*name) {
                    dirs.insert(name.to_vec());
                }
            } else {
                self.dirs
                    .insert(parent.clone(), HashSet::from([name.to_vec()]));
            }
            parent.push(b'/');
            parent.extend_from_slice(name);
            if !self.touched.contains(&parent) {
                self.touched.insert(parent.clone());
            }
        }
    }

    /// Whether the base's tree at `path`, every node of which is kept (`kept_names`), comes
    /// out of a rebuild as it went in. A copied file changes a tree; a copied folder changes
    /// it only when no kept node has its name (the kept entry wins, and what the copied folder
    /// holds is looked at on its own): a staging root, or a folder the window left as it was,
    /// adds nothing by itself.
    fn leaves_unchanged(&self, path: &[u8], kept_names: &HashSet<Vec<u8>>) -> bool {
        !self.holding_files.contains(path)
            && self
                .dirs
                .get(path)
                .is_none_or(|dirs| dirs.iter().all(|d| kept_names.contains(d)))
    }
}

/// The base's trees as the overlay needs them: which ones must be rebuilt, and what is kept.
struct Plan<'a> {
    staged: &'a Staged,
    keep: Cursor<'a>,
    kept_files: u64,
    kept_bytes: u64,
    /// The base trees that are not taken as they are, by folder path (empty: the root).
    rebuild: HashMap<Vec<u8>, Rebuild>,
    /// Nodes of the trees held in `rebuild`, at most [`HOLD_NODES`].
    held_nodes: usize,
}

/// How many nodes of the base's trees the plan holds for the rebuild, about 350 bytes each
/// (~45 MB). Past it a tree is read again when rebuilt (issue 13: a folder of 10 million task
/// logs is a tree of 10 million nodes); under it, the task-log folder's tree, which changes
/// every night, is read once instead of twice (reading trees was three quarters of the
/// overlay's CPU on the lab's nightly).
const HOLD_NODES: usize = 131_072;

/// A base tree to rebuild: whether each of its nodes is kept, and the tree itself when held.
struct Rebuild {
    kept: Vec<bool>,
    tree: Option<Tree>,
}

impl Plan<'_> {
    /// Reads the base tree `id` at `path` and what it holds that the overlay keeps or changes;
    /// returns whether the tree is taken as it is (everything in it kept, nothing changed).
    fn visit<S: IndexedTree>(
        &mut self,
        repo: &Repository<S>,
        path: &[u8],
        id: TreeId,
    ) -> Result<bool, RepoError> {
        let tree = repo
            .get_tree(&id)
            .map_err(|e| from_rustic("cannot read the base snapshot", &e))?;
        let mut same = true;
        let mut kept_nodes = Vec::with_capacity(tree.nodes.len());
        let copied_dirs_here = self.staged.dirs.get(path);
        let mut kept_names = HashSet::new();
        for node in &tree.nodes {
            let child = child_path(path, node);
            let kept = self.keep.take(&child)?;
            kept_nodes.push(kept);
            if kept && copied_dirs_here.is_some() {
                kept_names.insert(child[path.len() + 1..].to_vec());
            }
            if kept {
                // Counted as rustic's archiver counts: every entry that is not a folder.
                if !node.is_dir() {
                    self.kept_files += 1;
                }
                if node.is_file() {
                    self.kept_bytes += node.meta.size;
                }
            } else {
                same = false;
            }
            if node.is_dir()
                && (kept || self.staged.touched.contains(&child))
                && let Some(subtree) = node.subtree
                && !self.visit(repo, &child, subtree)?
            {
                same = false;
            }
        }
        if same && !self.staged.leaves_unchanged(path, &kept_names) {
            same = false;
        }
        if !same {
            let hold = self.held_nodes + tree.nodes.len() <= HOLD_NODES;
            if hold {
                self.held_nodes += tree.nodes.len();
            }
            let rebuild = Rebuild {
                kept: kept_nodes,
                tree: hold.then_some(tree),
            };
            let _ = self.rebuild.insert(path.to_vec(), rebuild);
        }
        Ok(same)
    }
}

#[derive(Default)]
struct Counts {
    /// Copied files left out because a kept entry has their path.
    overridden_files: u64,
    overridden_bytes: u64,
    /// Copied files that replace a file of the base.
    replaced_files: u64,
}

struct Build<'a, S: IndexedTree> {
    repo: &'a Repository<S>,
    /// The plan's trees to rebuild, each taken out when rebuilt.
    rebuild: &'a mut HashMap<Vec<u8>, Rebuild>,
    save: &'a dyn Fn(&Tree) -> RusticResult<TreeId>,
}

impl<S: IndexedTree> Build<'_, S> {
    /// The overlay's tree at folder `path`, from the base's tree there (if it was a folder) and
    /// the copies' tree there (if the window changed anything in it).
    fn tree(
        &mut self,
        path: &[u8],
        base: Option<TreeId>,
        staged: Option<TreeId>,
        counts: &mut Counts,
    ) -> RusticResult<TreeId> {
        let base_tree = match base {
            Some(id) => match self.rebuild.remove(path) {
                Some(Rebuild { kept, tree }) => {
                    let tree = match tree {
                        Some(tree) => tree,
                        None => self.repo.get_tree(&id)?,
                    };
                    Some((tree, kept))
                }
                // Everything in it kept, nothing changed (so nothing staged): the base's own.
                None => return Ok(id),
            },
            None => None,
        };
        let Some((base_tree, kept)) = base_tree else {
            // New in the window: the copies' tree as it was stored.
            return match staged {
                Some(id) => Ok(id),
                None => (self.save)(&Tree::default()),
            };
        };
        let staged_nodes = match staged {
            Some(id) => self.repo.get_tree(&id)?.nodes,
            None => Vec::new(),
        };

        // The nodes are moved, not copied, from the trees read into the new one.
        let mut nodes = Vec::with_capacity(base_tree.nodes.len() + staged_nodes.len());
        let mut b = base_tree.nodes.into_iter().zip(kept).peekable();
        let mut s = staged_nodes.into_iter().peekable();
        loop {
            let (from_base, from_staged) = match (b.peek(), s.peek()) {
                (None, None) => break,
                (Some(_), None) => (b.next(), None),
                (None, Some(_)) => (None, s.next()),
                (Some((x, _)), Some(y)) => match x.name().cmp(&y.name()) {
                    std::cmp::Ordering::Less => (b.next(), None),
                    std::cmp::Ordering::Greater => (None, s.next()),
                    std::cmp::Ordering::Equal => (b.next(), s.next()),
                },
            };
            let base_sub = from_base
                .as_ref()
                .filter(|(n, _)| n.is_dir())
                .and_then(|(n, _)| n.subtree);
            let staged_sub = from_staged
                .as_ref()
                .filter(|n| n.is_dir())
                .and_then(|n| n.subtree);
            let base_was_file = from_base.as_ref().is_some_and(|(n, _)| !n.is_dir());
            let mut node = match (from_base, from_staged) {
                (Some((node, true)), staged) => {
                    if let Some(s) = staged.filter(|s| !s.is_dir()) {
                        counts.overridden_files += 1;
                        if s.is_file() {
                            counts.overridden_bytes += s.meta.size;
                        }
                    }
                    node
                }
                (_, Some(node)) => {
                    if !node.is_dir() && base_was_file {
                        counts.replaced_files += 1;
                    }
                    node
                }
                // In the base only, and not kept: gone in the window.
                (_, None) => continue,
            };
            if node.is_dir() {
                let child = child_path(path, &node);
                node.subtree = Some(self.tree(&child, base_sub, staged_sub, counts)?);
            }
            nodes.push(node);
        }
        (self.save)(&Tree { nodes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staged(entries: &[(&str, bool)]) -> Staged {
        let mut s = Staged::default();
        for (path, is_dir) in entries {
            s.add(Path::new(path), *is_dir);
        }
        s
    }

    fn names(list: &[&str]) -> HashSet<Vec<u8>> {
        list.iter().map(|n| n.as_bytes().to_vec()).collect()
    }

    #[test]
    fn staging_roots_alone_leave_every_kept_tree_as_it_was() {
        // What the window copies when nothing changed: each folder's empty staging root.
        let s = staged(&[("/folders/Packages", true), ("/folders/TaskLogs", true)]);
        let kept = names(&["Artifacts", "Packages", "TaskLogs"]);
        assert!(s.leaves_unchanged(b"", &names(&["folders"])));
        assert!(s.leaves_unchanged(b"/folders", &kept));
        assert!(s.leaves_unchanged(b"/folders/TaskLogs", &names(&["a.log"])));
        // The plan still looks into them (their kept content is checked).
        assert!(s.touched.contains(b"/folders/TaskLogs".as_slice()));
    }

    #[test]
    fn a_copied_file_or_a_new_folder_changes_the_tree_that_holds_it() {
        let s = staged(&[
            ("/folders/TaskLogs", true),
            ("/folders/TaskLogs/b.log", false),
            ("/folders/Packages", true),
            ("/folders/Packages/feed", true),
        ]);
        assert!(!s.leaves_unchanged(b"/folders/TaskLogs", &names(&["a.log", "b.log"])));
        // `feed` is new: no kept node has its name.
        assert!(!s.leaves_unchanged(b"/folders/Packages", &names(&["other"])));
        assert!(s.leaves_unchanged(b"/folders/Packages", &names(&["feed", "other"])));
        assert!(s.leaves_unchanged(b"/folders", &names(&["Packages", "TaskLogs"])));
    }

    #[test]
    fn the_folders_above_a_copied_entry_count_as_copied_folders() {
        // Only the deepest entry is listed: the folders above it are copied folders too.
        let s = staged(&[("/folders/New/Deeper", true)]);
        assert!(!s.leaves_unchanged(b"/folders", &names(&["Packages"])));
        assert!(s.leaves_unchanged(b"/folders", &names(&["New", "Packages"])));
        assert!(!s.leaves_unchanged(b"/folders/New", &names(&[])));
    }
}
