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
/// A set stored as several snapshots (the parts of a run) is one set: its newest complete
/// snapshot, else its newest. A prefix that several sets start with is refused, as restic
/// refuses an ambiguous snapshot id: a restore must never pick one of them by itself.
pub fn find<'a>(sets: &'a [SetSummary], wanted: &str) -> Result<Option<&'a SetSummary>, Ambiguous> {
    if wanted == "latest" {
        return Ok(sets.iter().rev().find(|s| s.complete));
    }
    let matches: Vec<&SetSummary> = sets
        .iter()
        .filter(|s| s.set_id.starts_with(wanted) || s.snapshot_id.starts_with(wanted))
        .collect();
    let mut set_ids: Vec<&str> = matches.iter().map(|s| s.set_id.as_str()).collect();
    set_ids.sort_unstable();
    set_ids.dedup();
    if set_ids.len() > 1 {
        return Err(Ambiguous {
            wanted: wanted.to_string(),
            set_ids: set_ids.into_iter().map(str::to_string).collect(),
        });
    }
    Ok(matches
        .iter()
        .rev()
        .find(|s| s.complete)
        .or(matches.last())
        .copied())
}

/// A set id prefix that several sets start with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ambiguous {
    pub wanted: String,
    pub set_ids: Vec<String>,
}

impl std::fmt::Display for Ambiguous {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOWN: usize = 5;
        let mut ids = self.set_ids[..self.set_ids.len().min(SHOWN)].join(", ");
        if self.set_ids.len() > SHOWN {
            ids.push_str(&format!(" and {} more", self.set_ids.len() - SHOWN));
        }
        write!(
            f,
            "'{}' matches {} sets ({ids}): give enough of the set id to name one (see `octobackup snapshots`)",
            self.wanted,
            self.set_ids.len()
        )
    }
}

impl std::error::Error for Ambiguous {}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(set_id: &str, snapshot_id: &str, complete: bool) -> SetSummary {
        SetSummary {
            set_id: set_id.into(),
            snapshot_id: snapshot_id.into(),
            time: String::new(),
            instance: "OctopusServer".into(),
            complete,
            octopus_version: None,
            database: None,
            database_bytes: None,
            folders: Vec::new(),
            window_seconds: None,
        }
    }

    #[test]
    fn a_prefix_of_two_sets_is_refused_and_names_them() {
        let sets = [
            set("20261129-0100-aaaa", "11aa", true),
            set("20261130-0100-bbbb", "22bb", true),
        ];
        let e = find(&sets, "2026").unwrap_err();
        assert_eq!(e.set_ids, ["20261129-0100-aaaa", "20261130-0100-bbbb"]);
        assert!(e.to_string().contains("matches 2 sets"), "{e}");
        assert_eq!(
            find(&sets, "20261130").unwrap().unwrap().set_id,
            "20261130-0100-bbbb"
        );
        assert_eq!(
            find(&sets, "11").unwrap().unwrap().set_id,
            "20261129-0100-aaaa"
        );
        assert!(find(&sets, "2027").unwrap().is_none());
    }

    #[test]
    fn the_parts_of_one_set_are_one_set_and_its_complete_snapshot_is_chosen() {
        let sets = [
            set("20261130-0100-bbbb", "01", false),
            set("20261130-0100-bbbb", "02", true),
            set("20261130-0100-bbbb", "03", false),
        ];
        assert_eq!(find(&sets, "2026").unwrap().unwrap().snapshot_id, "02");
        let parts = [
            set("20261130-0100-bbbb", "01", false),
            set("20261130-0100-bbbb", "03", false),
        ];
        let found = find(&parts, "2026").unwrap().unwrap();
        assert!(!found.complete);
        assert_eq!(found.snapshot_id, "03");
    }

    #[test]
    fn latest_is_the_newest_complete_set() {
        let sets = [
            set("a", "01", true),
            set("b", "02", true),
            set("c", "03", false),
        ];
        assert_eq!(find(&sets, "latest").unwrap().unwrap().set_id, "b");
        assert!(find(&sets[2..], "latest").unwrap().is_none());
    }
}
