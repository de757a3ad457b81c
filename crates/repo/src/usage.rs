//! Which snapshots use which stored data: mapping damage found by `check` to the snapshots (and
//! files) it hits, and estimating what forgetting some snapshots would free. rustic answers
//! neither, so this reads the index (blob -> pack) and walks each snapshot's trees.

use std::collections::{BTreeSet, HashMap, HashSet};

use rustic_core::repofile::{IndexFile, SnapshotFile};
use rustic_core::{CheckOptions, Id, IndexedTree, Open, ReadSubsetOption, Repository, TreeId};
use serde::Serialize;

use crate::check::{AffectedSnapshot, CheckReport};
use crate::error::{RepoError, from_rustic};
use crate::logging::QuietCheck;
use crate::progress::NoProgress;
use crate::repo::Repo;
use crate::snapshots::SnapshotInfo;

/// How much of the stored data `check` reads back.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum ReadData {
    /// Structure only: index, packs present with the right sizes, every tree readable.
    #[default]
    None,
    /// Every pack is read and every blob's hash verified.
    All,
    /// A random subset of packs: `10%`, a size such as `500MiB`, or `n/m` (restic's syntax).
    Subset(String),
}

impl ReadData {
    /// A subset as the user wrote it, checked: `10%`, `500MiB`, `n/m`, or `all`.
    pub fn subset(s: &str) -> Result<ReadData, RepoError> {
        let s = s.trim();
        if s == "all" {
            return Ok(ReadData::All);
        }
        parse_subset(s)?;
        Ok(ReadData::Subset(s.to_string()))
    }
}

fn parse_subset(s: &str) -> Result<ReadSubsetOption, RepoError> {
    s.parse::<ReadSubsetOption>().map_err(|_| {
        RepoError::InvalidInput(format!(
            "`{s}` is not a subset to read: give a percentage like 10%, a size like 500MiB, or n/m like 1/5"
        ))
    })
}

/// At most this many damaged files are named per snapshot.
pub const MAX_FILES_LISTED: usize = 20;

/// What forgetting some snapshots would free.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DropEstimate {
    /// Stored (compressed, encrypted) bytes of blobs only the dropped snapshots use: what a
    /// prune frees, give or take pack overhead.
    pub unique_bytes: u64,
    pub unique_blobs: u64,
}

/// Where each blob is stored.
#[derive(Default)]
struct BlobMap {
    /// blob -> (pack, stored length)
    blobs: HashMap<Id, (Id, u32)>,
    /// pack -> its blobs
    packs: HashMap<Id, Vec<Id>>,
}

fn read_index<S: Open>(repo: &Repository<S>) -> Result<BlobMap, RepoError> {
    let mut map = BlobMap::default();
    let files = repo
        .stream_files::<IndexFile>()
        .map_err(|e| from_rustic("cannot read the index", &e))?;
    for file in files {
        let (_, index) = file.map_err(|e| from_rustic("cannot read the index", &e))?;
        for pack in index.packs {
            let pack_id = *pack.id;
            let ids = map.packs.entry(pack_id).or_default();
            for blob in pack.blobs {
                ids.push(*blob.id);
                map.blobs.insert(*blob.id, (pack_id, blob.location.length));
            }
        }
    }
    Ok(map)
}

/// What one walk of a snapshot's trees found.
#[derive(Default)]
struct Walk {
    blobs: HashSet<Id>,
    damaged_files: Vec<String>,
    unreadable_folders: Vec<String>,
}

/// Walks the snapshot's trees, collecting every blob it uses (trees and file contents); files
/// using a blob in `damaged` and trees that cannot be read are noted by path (a tree that reads
/// and verifies is fine even when its pack holds damaged blobs).
/// Trees already in `out.blobs` are not walked again, so one `Walk` can gather what a group of
/// snapshots uses reading each shared tree once.
fn walk<S: IndexedTree>(
    repo: &Repository<S>,
    snap: &SnapshotFile,
    damaged: Option<&HashSet<Id>>,
    out: &mut Walk,
) {
    let mut stack: Vec<(TreeId, String)> = vec![(snap.tree, String::new())];
    while let Some((tree_id, path)) = stack.pop() {
        if !out.blobs.insert(*tree_id) {
            continue;
        }
        let tree = match repo.get_tree(&tree_id) {
            Ok(t) => t,
            Err(_) => {
                out.unreadable_folders
                    .push(if path.is_empty() { "/".into() } else { path });
                continue;
            }
        };
        for node in tree.nodes {
            let node_path = format!("{path}/{}", node.name().to_string_lossy());
            if let Some(content) = &node.content {
                let mut hit = false;
                for blob in content {
                    out.blobs.insert(**blob);
                    hit |= damaged.is_some_and(|d| d.contains(&**blob));
                }
                if hit {
                    out.damaged_files.push(node_path.clone());
                }
            }
            if let Some(sub) = node.subtree
                && !out.blobs.contains(&*sub)
            {
                stack.push((sub, node_path));
            }
        }
    }
}

/// 64-digit hex ids in a finding (rustic's `Display` shortens ids to 8 digits; `Debug` does not).
fn full_ids(text: &str) -> Vec<Id> {
    text.split(|c: char| !c.is_ascii_hexdigit())
        .filter(|t| t.len() == 64)
        .filter_map(|t| t.parse::<Id>().ok())
        .collect()
}

/// The 8-digit pack ids rustic writes as `Pack:1a2b3c4d` in nested error messages.
fn short_pack_ids(text: &str) -> Vec<String> {
    text.match_indices("Pack:")
        .filter_map(|(i, m)| text.get(i + m.len()..i + m.len() + 8))
        .filter(|h| h.chars().all(|c| c.is_ascii_hexdigit()))
        .map(str::to_ascii_lowercase)
        .collect()
}

impl Repo {
    /// Checks the repository like [`Repo::check`], optionally reading a subset of the data, and
    /// names the snapshots (and files) that damaged packs, blobs or trees affect.
    pub fn check_with(&self, read: &ReadData) -> Result<CheckReport, RepoError> {
        let subset = match read {
            ReadData::Subset(s) => Some(parse_subset(s)?),
            _ => None,
        };
        let _quiet = QuietCheck::start();
        self.run(&NoProgress, |repo| {
            let mut opts = CheckOptions::default().read_data(*read != ReadData::None);
            if let Some(subset) = subset {
                opts = opts.read_data_subset(subset);
            }
            // A damaged snapshot file is a finding, not the end of the check: the trees of
            // every readable snapshot are checked.
            let (mut snaps, unreadable) = crate::snapshots::all_snapshots(&repo)?;
            let trees = snaps.iter().map(|s| s.tree).collect();
            let results = match repo.check_with_trees(opts, trees) {
                Ok(results) => results,
                Err(e) => match crate::error::damaged_index(&e) {
                    // rustic stops at the first index file it cannot read: that is the finding.
                    Some(finding) => {
                        return Ok(CheckReport {
                            errors: vec![finding],
                            ..CheckReport::default()
                        });
                    }
                    None => return Err(from_rustic("cannot check the repository", &e)),
                },
            };
            let mut report = CheckReport::from_results(&results);
            report
                .errors
                .extend(unreadable.iter().map(|u| u.describe()));
            report.damaged_snapshots = unreadable.into_iter().map(|u| u.id).collect();
            if report.is_ok() || report.errors.len() == report.damaged_snapshots.len() {
                return Ok(report);
            }
            let map = read_index(&repo)?;
            let mut damaged: HashSet<Id> = HashSet::new();
            let mut packs: BTreeSet<String> = BTreeSet::new();
            // A finding that names a blob hits that blob; one that names only a pack, the
            // whole pack.
            for (_, finding) in results
                .0
                .iter()
                .filter(|(level, _)| format!("{level:?}") != "Warn")
            {
                let mut ids = full_ids(&format!("{finding:?}"));
                // Errors nested inside a finding name packs by 8 digits only ("Pack:1a2b3c4d").
                for short in short_pack_ids(&finding.to_string()) {
                    ids.extend(
                        map.packs
                            .keys()
                            .filter(|p| p.to_hex().starts_with(short.as_str()))
                            .copied(),
                    );
                }
                let blobs: Vec<Id> = ids
                    .iter()
                    .filter(|i| map.blobs.contains_key(i))
                    .copied()
                    .collect();
                for id in &ids {
                    if map.packs.contains_key(id) {
                        packs.insert(id.to_hex().to_string());
                        if blobs.is_empty() {
                            damaged.extend(map.packs[id].iter().copied());
                        }
                    }
                }
                damaged.extend(blobs);
            }
            report.damaged_packs = packs.into_iter().collect();
            snaps.sort_by(|a, b| a.time.cmp(&b.time));
            let repo = repo
                .to_indexed_ids()
                .map_err(|e| from_rustic("cannot read the index", &e))?;
            for snap in &snaps {
                let mut w = Walk::default();
                walk(&repo, snap, Some(&damaged), &mut w);
                if w.damaged_files.is_empty() && w.unreadable_folders.is_empty() {
                    continue;
                }
                report.affected.push(AffectedSnapshot {
                    snapshot: SnapshotInfo::from_snapshot(snap),
                    files_damaged: w.damaged_files.len(),
                    files: w.damaged_files.into_iter().take(MAX_FILES_LISTED).collect(),
                    unreadable_folders: w.unreadable_folders,
                });
            }
            Ok(report)
        })
    }

    /// Estimates what a prune would free once the snapshots `drop` (full ids) are deleted:
    /// the stored size of blobs that no other snapshot uses.
    pub fn estimate_drop(&self, drop: &[String]) -> Result<DropEstimate, RepoError> {
        let drop: HashSet<&str> = drop.iter().map(String::as_str).collect();
        self.run(&NoProgress, |repo| {
            let map = read_index(&repo)?;
            let snaps = crate::snapshots::readable_snapshots(&repo)?;
            let repo = repo
                .to_indexed_ids()
                .map_err(|e| from_rustic("cannot read the index", &e))?;
            let mut kept = Walk::default();
            let mut dropped = Walk::default();
            for snap in &snaps {
                if drop.contains(snap.id.to_hex().as_str()) {
                    walk(&repo, snap, None, &mut dropped);
                } else {
                    walk(&repo, snap, None, &mut kept);
                }
            }
            let mut est = DropEstimate::default();
            for blob in dropped.blobs.difference(&kept.blobs) {
                if let Some((_, len)) = map.blobs.get(blob) {
                    est.unique_bytes += u64::from(*len);
                    est.unique_blobs += 1;
                }
            }
            Ok(est)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_full_ids_are_taken_from_findings() {
        let a = "a".repeat(64);
        let text = format!("PackHashMismatch {{ id: PackId({a}), comp_id: PackId(0123abcd) }}");
        let ids = full_ids(&text);
        assert_eq!(ids.len(), 1);
        assert_eq!(ids[0].to_hex().as_str(), a);
    }
}
