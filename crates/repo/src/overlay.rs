//! A snapshot made of an earlier one with some entries replaced or added from local files and
//! the rest dropped: how octobackup stores the server folders as they were inside the
//! maintenance window without reading the repository inside it. The pass before the window is
//! the base; what changed inside the window was copied to local staging; afterwards this writes
//! base (the entries the window left unchanged) + the copies.
//!
//! It is an ordinary backup through rustic's archiver, with the base as its parent: the kept
//! entries are the base's own nodes, so rustic takes their content from the base without
//! reading anything, and the result is a plain restic snapshot.

use std::collections::{BTreeSet, HashSet};
use std::io::{self, Read};
use std::iter::Peekable;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustic_core::repofile::{Metadata, Node, NodeType};
use rustic_core::{
    BackupOptions, ErrorKind, LsOptions, ParentOptions, ReadSource, ReadSourceEntry,
    ReadSourceOpen, RusticError, RusticResult, SnapshotGroupCriterion,
};

use crate::backup::{BackupSummary, SetOptions, check_tags};
use crate::error::{RepoError, from_rustic};
use crate::logging;
use crate::progress::ProgressSink;
use crate::repo::Repo;
use crate::snapshots::{from_chrono, resolve_snapshot};
use crate::source::{SetOpen, SetReader, SetSource, SourceItem};

impl Repo {
    /// Stores a snapshot holding the entries of snapshot `base` whose paths are in `keep`
    /// (snapshot paths like `/folders/Packages/a.nupkg`; folders too, each listed on its own),
    /// plus everything in `changes`. Where a kept entry and a change have the same path, the kept
    /// entry wins; every other entry of `base` is left out. Kept files are taken from `base`
    /// without reading them. `opts.parent_tags` is not used (the parent is `base`).
    ///
    /// Fails before writing anything when a path in `keep` is not in `base`.
    pub fn overlay(
        &self,
        base: &str,
        keep: &HashSet<String>,
        changes: Vec<SourceItem>,
        opts: &SetOptions,
        progress: &dyn ProgressSink,
    ) -> Result<BackupSummary, RepoError> {
        check_tags(&opts.tags)?;
        let time = opts.time.as_ref().map(from_chrono).transpose()?;
        let changes = SetSource::new(changes)?;
        let mut paths: BTreeSet<PathBuf> = changes.targets().into_iter().collect();
        let unreadable = changes.unreadable_handle();

        let capture = logging::capture();
        let snap = self.run(progress, |repo| {
            let repo = match opts.compression {
                Some(level) => self.with_compression(repo, level)?,
                None => repo,
            };
            let repo = repo
                .to_indexed_ids()
                .map_err(|e| from_rustic("cannot read the repository index", &e))?;
            let base_snap = resolve_snapshot(&repo, base)?;
            for p in base_snap.paths.iter() {
                paths.insert(PathBuf::from(p));
            }
            // The base's entries, in tree order, kept ones only.
            let mut root =
                Node::new_node(std::ffi::OsStr::new(""), NodeType::Dir, Metadata::default());
            root.subtree = Some(base_snap.tree);
            let mut kept = Vec::new();
            let mut found = 0usize;
            for item in repo
                .ls(&root, &LsOptions::default())
                .map_err(|e| from_rustic("cannot list the base snapshot", &e))?
            {
                let (relative, node) =
                    item.map_err(|e| from_rustic("cannot list the base snapshot", &e))?;
                let text = snapshot_path(&relative);
                if keep.contains(&text) {
                    found += 1;
                    kept.push((PathBuf::from(text), node));
                }
            }
            if found != keep.len() {
                let present: HashSet<String> = kept
                    .iter()
                    .map(|(p, _)| p.to_string_lossy().into_owned())
                    .collect();
                let mut missing: Vec<&String> =
                    keep.iter().filter(|p| !present.contains(*p)).collect();
                missing.sort();
                return Err(RepoError::InvalidInput(format!(
                    "{} path(s) to keep are not in snapshot {base} (first: {})",
                    missing.len(),
                    missing.first().map_or("", |s| s.as_str())
                )));
            }

            let snap = crate::backup::new_snapshot(opts, time)?;

            let source = OverlaySource {
                kept: Arc::new(kept),
                changes,
                unreadable: unreadable.clone(),
            };
            self.router
                .set_phase("backup", Some(source.changes.total_bytes()));
            let parent_opts = ParentOptions::default()
                .group_by(SnapshotGroupCriterion::new())
                .parents(vec![base_snap.id.to_hex().as_str().to_string()]);
            let backup_opts = BackupOptions::default()
                .no_scan(true)
                .parent_opts(parent_opts);
            let paths: Vec<PathBuf> = paths.iter().cloned().collect();
            repo.archive(&backup_opts, &source, snap, &paths)
                .map_err(|e| from_rustic("cannot back up", &e))
        });
        let captured = capture.finish();
        let snap = snap?;
        let (left_out, warnings) = crate::backup::sort_captured(captured);
        let mut all = unreadable.take();
        all.extend(left_out);
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
            unreadable: all,
            warnings,
        })
    }
}

/// A path relative to the snapshot root as an absolute snapshot path (`/a/b`).
fn snapshot_path(relative: &Path) -> String {
    let names: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    format!("/{}", names.join("/"))
}

/// The kept base entries and the changes, as one stream in tree order.
struct OverlaySource {
    kept: Arc<Vec<(PathBuf, Node)>>,
    changes: SetSource,
    unreadable: Arc<crate::source::Unreadable>,
}

type Entries = Box<dyn Iterator<Item = RusticResult<ReadSourceEntry<OverlayOpen>>> + Send>;

impl ReadSource for OverlaySource {
    type Open = OverlayOpen;
    type Iter = Entries;

    fn size(&self) -> RusticResult<Option<u64>> {
        Ok(Some(self.changes.total_bytes()))
    }

    fn entries(&self) -> Self::Iter {
        let kept = self.kept.clone();
        let unreadable = self.unreadable.clone();
        Box::new(Merge {
            kept: (0..kept.len()).peekable(),
            list: kept,
            changes: self.changes.entries().peekable(),
            unreadable,
        })
    }
}

struct Merge<C: Iterator> {
    list: Arc<Vec<(PathBuf, Node)>>,
    kept: Peekable<std::ops::Range<usize>>,
    changes: Peekable<C>,
    unreadable: Arc<crate::source::Unreadable>,
}

impl<C> Iterator for Merge<C>
where
    C: Iterator<Item = RusticResult<ReadSourceEntry<SetOpen>>>,
{
    type Item = RusticResult<ReadSourceEntry<OverlayOpen>>;

    fn next(&mut self) -> Option<Self::Item> {
        let base = self.kept.peek().map(|i| &self.list[*i].0);
        let change = match self.changes.peek() {
            Some(Ok(e)) => Some(&e.path),
            // Errors go out at once, in their place.
            Some(Err(_)) => {
                return self
                    .changes
                    .next()
                    .map(|e| e.map(|_| unreachable!("an error")));
            }
            None => None,
        };
        let take_base = match (base, change) {
            (None, None) => return None,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(b), Some(c)) => {
                if b == c {
                    // The kept entry wins; the change at the same path is dropped.
                    let _ = self.changes.next();
                    true
                } else {
                    b < c
                }
            }
        };
        if take_base {
            let i = self.kept.next().expect("peeked");
            let (path, node) = &self.list[i];
            let open = node.is_file().then(|| OverlayOpen::Base {
                path: path.to_string_lossy().into_owned(),
                unreadable: self.unreadable.clone(),
            });
            Some(Ok(ReadSourceEntry {
                path: path.clone(),
                node: node.clone(),
                open,
            }))
        } else {
            self.changes.next().map(|e| {
                e.map(|e| ReadSourceEntry {
                    path: e.path,
                    node: e.node,
                    open: e.open.map(OverlayOpen::Change),
                })
            })
        }
    }
}

pub(crate) enum OverlayOpen {
    Change(SetOpen),
    /// A kept file: rustic takes it from the base without opening it. It is opened only when
    /// the base's data is not in the index, and then there is nothing to read it from.
    Base {
        path: String,
        unreadable: Arc<crate::source::Unreadable>,
    },
}

impl ReadSourceOpen for OverlayOpen {
    type Reader = OverlayReader;

    fn open(self) -> RusticResult<OverlayReader> {
        match self {
            Self::Change(open) => open.open().map(OverlayReader),
            Self::Base { path, unreadable } => {
                let reason = "its data in the base snapshot is not in the repository's index, and its source is gone (run `octobackup check`)".to_string();
                unreadable.record(path.clone(), reason.clone());
                Err(RusticError::with_source(
                    ErrorKind::InputOutput,
                    format!(
                        "`{{path}}` not backed up {}",
                        crate::logging::RECORDED_MARKER
                    ),
                    io::Error::other(reason),
                )
                .attach_context("path", path))
            }
        }
    }
}

pub(crate) struct OverlayReader(SetReader);

impl Read for OverlayReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}
