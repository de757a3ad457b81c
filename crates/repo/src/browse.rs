//! Reading a snapshot back: one small file into memory, a listing, or a restore to disk.

use std::ffi::OsStr;
use std::path::Path;

use chrono::{DateTime, Local};
use rustic_core::repofile::{Metadata, Node, NodeType, SnapshotFile};
use rustic_core::{IndexedTree, LsOptions, Repository};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::error::{RepoError, from_rustic};
use crate::logging;
use crate::mode;
use crate::progress::{NoProgress, ProgressSink};
use crate::repo::Repo;
use crate::restore::RestoreSummary;
use crate::snapshots::{resolve_snapshot, timestamp_to_chrono};
use crate::vpath::VirtualPath;

/// `read_file` is for manifests and secrets; big files are restored to disk instead.
pub const READ_FILE_LIMIT: u64 = 256 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    /// Devices, FIFOs, sockets.
    Other,
}

/// One entry of a snapshot listing.
#[derive(Debug, Clone, Serialize)]
pub struct FileEntry {
    /// Full snapshot path, like `/folders/Packages/a.nupkg`.
    pub path: String,
    pub kind: EntryKind,
    pub size: u64,
    /// Unix permission bits (`0o644`); `None` when the source had none (Windows).
    pub mode: Option<u32>,
    pub mtime: Option<DateTime<Local>>,
}

impl Repo {
    /// The content of one file of a snapshot (at most [`READ_FILE_LIMIT`] bytes), in a buffer
    /// that is zeroized when dropped.
    pub fn read_file(
        &self,
        snapshot_id: &str,
        path: &str,
    ) -> Result<Zeroizing<Vec<u8>>, RepoError> {
        let path = VirtualPath::parse(path)?;
        self.run_indexed(&NoProgress, |repo| {
            let snap = resolve_snapshot(repo, snapshot_id)?;
            let node = find_node(repo, &snap, &path)?;
            if !node.is_file() {
                return Err(RepoError::InvalidInput(format!(
                    "`{path}` in snapshot {} is not a file: list it, or restore it",
                    short(&snap)
                )));
            }
            if node.meta.size > READ_FILE_LIMIT {
                return Err(RepoError::InvalidInput(format!(
                    "`{path}` is {} bytes, too big to read into memory: restore it to disk",
                    node.meta.size
                )));
            }
            // Reserved up front: growing the buffer would leave unzeroized copies behind.
            let capacity = usize::try_from(node.meta.size).unwrap_or_default();
            let mut content = Zeroizing::new(Vec::with_capacity(capacity));
            repo.dump(&node, &mut *content)
                .map_err(|e| from_rustic("cannot read from the repository", &e))?;
            Ok(content)
        })
    }

    /// Everything at or below `path_prefix` (a snapshot path; `/` for all), in tree order.
    pub fn list_files(
        &self,
        snapshot_id: &str,
        path_prefix: &str,
    ) -> Result<Vec<FileEntry>, RepoError> {
        let base = VirtualPath::parse(path_prefix)?;
        // The full index, kept for the restore that usually follows a listing.
        self.run_indexed(&NoProgress, |repo| {
            let snap = resolve_snapshot(repo, snapshot_id)?;
            let node = find_node(repo, &snap, &base)?;
            if !node.is_dir() {
                return Ok(vec![entry(base.to_string(), &node)]);
            }
            let listing = repo
                .ls(&node, &LsOptions::default())
                .map_err(|e| from_rustic("cannot list the snapshot", &e))?;
            listing
                .map(|item| {
                    let (relative, node) =
                        item.map_err(|e| from_rustic("cannot list the snapshot", &e))?;
                    let tail = relative
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy())
                        .collect::<Vec<_>>()
                        .join("/");
                    Ok(entry(base.join(&tail), &node))
                })
                .collect()
        })
    }

    /// Restores `path` of a snapshot to `dest`, streamed in bounded memory (`restore.rs`). For a
    /// folder, `dest` is the folder that receives its contents (created if needed; other files
    /// in it are kept). For a file, `dest` is the file to write, or an existing folder to put it
    /// in under its own name. Existing files with the right content are kept; others are
    /// overwritten.
    pub fn restore(
        &self,
        snapshot_id: &str,
        path: &str,
        dest: &Path,
        progress: &dyn ProgressSink,
    ) -> Result<RestoreSummary, RepoError> {
        self.restore_gated(snapshot_id, path, dest, progress, &|_| true)
    }

    /// `restore`, asking `gate` before each file and each write (see [`Gate`](crate::Gate)):
    /// a run that is asked to stop ends its copy at once instead of writing on.
    pub fn restore_gated(
        &self,
        snapshot_id: &str,
        path: &str,
        dest: &Path,
        progress: &dyn ProgressSink,
        gate: crate::restore::Gate<'_>,
    ) -> Result<RestoreSummary, RepoError> {
        let mut summaries = self.restore_parts(snapshot_id, &[(path, dest)], progress, gate)?;
        Ok(summaries.pop().unwrap_or_default())
    }

    /// `restore_gated` of several paths of one snapshot, each to its own destination, with the
    /// repository opened and its index read once, and each pack read once for all of them. A
    /// summary for each part; the warnings of the engine itself go with the first.
    pub fn restore_parts(
        &self,
        snapshot_id: &str,
        parts: &[(&str, &Path)],
        progress: &dyn ProgressSink,
        gate: crate::restore::Gate<'_>,
    ) -> Result<Vec<RestoreSummary>, RepoError> {
        let paths = parts
            .iter()
            .map(|(path, _)| VirtualPath::parse(path))
            .collect::<Result<Vec<_>, _>>()?;
        let capture = logging::capture();
        let wants_total = progress.wants_total();
        let outcome = self.run_indexed(progress, |repo| {
            let snap = resolve_snapshot(repo, snapshot_id)?;
            let nodes = paths
                .iter()
                .zip(parts)
                .map(|(path, (_, dest))| Ok((find_node(repo, &snap, path)?, *dest)))
                .collect::<Result<Vec<_>, RepoError>>()?;
            let progress = |total: Option<u64>| {
                self.router.set_phase("restore", total);
                let bar = repo.progress_bytes("restore");
                if let Some(total) = total {
                    bar.set_length(total);
                }
                bar
            };
            let batch = self
                .restore_batch
                .load(std::sync::atomic::Ordering::Relaxed);
            crate::restore::restore_nodes(repo, &nodes, (wants_total, progress), gate, batch)
        });
        let warnings = capture.finish();
        let mut summaries = outcome?;
        if let Some(first) = summaries.first_mut() {
            first
                .warnings
                .extend(warnings.into_iter().map(|c| c.message));
        }
        Ok(summaries)
    }
}

fn short(snap: &SnapshotFile) -> String {
    snap.id.to_hex().as_str().chars().take(8).collect()
}

/// The node at `path`, walking the snapshot's trees (rustic's own lookup reports a missing
/// path as an internal bug).
fn find_node<S: IndexedTree>(
    repo: &Repository<S>,
    snap: &SnapshotFile,
    path: &VirtualPath,
) -> Result<Node, RepoError> {
    let mut node = Node::new_node(OsStr::new(""), NodeType::Dir, Metadata::default());
    node.subtree = Some(snap.tree);
    for name in path.names() {
        let not_found = || RepoError::PathNotFound {
            snapshot: short(snap),
            path: path.to_string(),
        };
        let tree_id = node.subtree.ok_or_else(not_found)?;
        let tree = repo
            .get_tree(&tree_id)
            .map_err(|e| from_rustic("cannot read the snapshot", &e))?;
        node = tree
            .nodes
            .into_iter()
            .find(|n| n.name() == OsStr::new(name))
            .ok_or_else(not_found)?;
    }
    Ok(node)
}

fn entry(path: String, node: &Node) -> FileEntry {
    let kind = if node.is_dir() {
        EntryKind::Dir
    } else if node.is_file() {
        EntryKind::File
    } else if node.is_symlink() || node.meta.mode.is_some_and(mode::is_symlink) {
        EntryKind::Symlink
    } else {
        EntryKind::Other
    };
    FileEntry {
        path,
        kind,
        size: node.meta.size,
        mode: node.meta.mode.map(mode::unix_permissions),
        mtime: node.meta.mtime.map(timestamp_to_chrono),
    }
}
