//! The sets in a repository, read from snapshot tags and each complete set's manifest.

use super::{MANIFEST_PATH, Manifest, TAG, TAG_COMPLETE, TAG_PART, tag_value};
use octobackup_repo::{Repo, RepoError, SnapshotInfo};

#[derive(Clone, Debug, serde::Serialize)]
pub struct SetSummary {
    pub set_id: String,
    pub snapshot_id: String,
    pub time: String,
    pub instance: String,
    pub complete: bool,
    pub octopus_version: Option<String>,
    pub database: Option<String>,
    pub database_bytes: Option<u64>,
    pub folders: Vec<String>,
    pub window_seconds: Option<f64>,
}

/// Every octobackup snapshot as a set, oldest first. Partial snapshots of a run that did not
/// finish are listed as incomplete.
pub fn list(repo: &Repo, instance: Option<&str>) -> Result<Vec<SetSummary>, RepoError> {
    let mut out = Vec::new();
    let mut snaps: Vec<SnapshotInfo> = repo
        .snapshots()?
        .into_iter()
        .filter(|s| s.tags.iter().any(|t| t == TAG))
        .collect();
    snaps.sort_by_key(|a| a.time);
    for s in snaps {
        let inst = tag_value(&s.tags, "instance").unwrap_or("?").to_string();
        if instance.is_some_and(|i| i != inst) {
            continue;
        }
        let complete =
            s.tags.iter().any(|t| t == TAG_COMPLETE) && !s.tags.iter().any(|t| t == TAG_PART);
        let manifest = if complete {
            read_manifest(repo, &s.id).ok()
        } else {
            None
        };
        out.push(SetSummary {
            set_id: tag_value(&s.tags, "set").unwrap_or("?").to_string(),
            snapshot_id: s.id.clone(),
            time: s.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
            instance: inst,
            complete,
            octopus_version: manifest.as_ref().map(|m| m.octopus.version.clone()),
            database: manifest.as_ref().map(|m| m.database.name.clone()),
            database_bytes: manifest.as_ref().map(|m| m.database.bytes),
            folders: manifest
                .as_ref()
                .map(|m| m.folders.iter().map(|f| f.name.clone()).collect())
                .unwrap_or_default(),
            window_seconds: manifest.as_ref().map(|m| m.window.seconds),
        });
    }
    Ok(out)
}

pub fn read_manifest(repo: &Repo, snapshot_id: &str) -> Result<Manifest, RepoError> {
    let bytes = repo.read_file(snapshot_id, MANIFEST_PATH)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| RepoError::Other(format!("the set's manifest is not readable: {e}")))
}

/// A set by set id, set id prefix or snapshot id prefix; "latest" for the newest complete one.
pub fn find<'a>(sets: &'a [SetSummary], wanted: &str) -> Option<&'a SetSummary> {
    if wanted == "latest" {
        return sets.iter().rev().find(|s| s.complete);
    }
    let matches: Vec<&SetSummary> = sets
        .iter()
        .filter(|s| s.set_id.starts_with(wanted) || s.snapshot_id.starts_with(wanted))
        .collect();
    match matches.as_slice() {
        [one] => Some(one),
        many => many.iter().rev().find(|s| s.complete).copied(),
    }
}
