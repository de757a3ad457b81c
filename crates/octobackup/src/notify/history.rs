//! What the last runs of each instance were, kept in the state folder (`history/NAME.json`): the
//! previous status for `on = "recovery"`, and everything the metrics file shows, so that the file
//! holds every instance whichever one ran last and a failed run still shows the last success.

use super::{Event, Status};
use crate::backupset::check::Check;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct InstanceHistory {
    pub instance: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunRecord>,
    /// The last successful run (its sizes and steps are the ones the metrics show).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success: Option<RunRecord>,
    #[serde(default)]
    pub runs_succeeded: u64,
    #[serde(default)]
    pub runs_failed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drill: Option<DrillResult>,
    /// The repository's size after the last run, where it could be measured (a local folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_bytes: Option<u64>,
    /// The `[[copy]]` made after each backup, by copy name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub copies: BTreeMap<String, CopyRecord>,
}

/// How the copies to one `[[copy]]` after backups went.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct CopyRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success: Option<DateTime<Utc>>,
    #[serde(default)]
    pub runs_succeeded: u64,
    #[serde(default)]
    pub runs_failed: u64,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct RunRecord {
    pub finished: DateTime<Utc>,
    pub status: Status,
    pub exit_code: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub folders: Vec<(String, u64)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Check>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct DrillResult {
    pub ok: bool,
    pub set_id: String,
    pub finished: DateTime<Utc>,
}

pub struct History {
    dir: PathBuf,
}

impl History {
    pub fn new(state_dir: &Path) -> History {
        History {
            dir: state_dir.join("history"),
        }
    }

    fn path(&self, instance: &str) -> PathBuf {
        let safe: String = instance
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(format!("{safe}.json"))
    }

    /// The instance's history; empty when there is none (or it cannot be read: it is a
    /// convenience, never a reason to fail a backup).
    pub fn load(&self, instance: &str) -> InstanceHistory {
        std::fs::read(self.path(instance))
            .ok()
            .and_then(|b| serde_json::from_slice::<InstanceHistory>(&b).ok())
            .filter(|h| h.instance == instance)
            .unwrap_or_else(|| InstanceHistory {
                instance: instance.to_string(),
                ..Default::default()
            })
    }

    /// Every instance that has a history, by name.
    pub fn all(&self) -> Vec<InstanceHistory> {
        let mut out: Vec<InstanceHistory> = std::fs::read_dir(&self.dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                    .filter_map(|e| std::fs::read(e.path()).ok())
                    .filter_map(|b| serde_json::from_slice::<InstanceHistory>(&b).ok())
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| a.instance.cmp(&b.instance));
        out
    }

    pub fn save(&self, h: &InstanceHistory) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(h).expect("history serializes");
        write_atomically(&self.path(&h.instance), &bytes)
    }

    /// Adds a backup run; returns the history as it was before.
    pub fn record_backup(
        &self,
        event: &Event,
        folders: Vec<(String, u64)>,
        repository_bytes: Option<u64>,
    ) -> std::io::Result<InstanceHistory> {
        let before = self.load(&event.instance);
        let mut h = before.clone();
        let run = RunRecord {
            finished: event.finished,
            status: event.status,
            exit_code: event.exit_code,
            set_id: event.set_id.clone(),
            window_seconds: event.window_seconds,
            database_bytes: event.database_bytes,
            folders,
            new_bytes: event.new_bytes,
            steps: event.steps.clone(),
        };
        if event.status == Status::Success {
            h.runs_succeeded += 1;
            h.last_success = Some(run.clone());
        } else {
            h.runs_failed += 1;
        }
        h.last_run = Some(run);
        if repository_bytes.is_some() {
            h.repository_bytes = repository_bytes;
        }
        self.save(&h)?;
        Ok(before)
    }

    /// Adds the copy `event` tells of (`event.copy` names it) to `instance`'s history; returns
    /// the copy's record as it was before.
    pub fn record_copy(&self, instance: &str, event: &Event) -> std::io::Result<CopyRecord> {
        let mut h = self.load(instance);
        let name = event.copy.clone().unwrap_or_default();
        let record = h.copies.entry(name).or_default();
        let before = record.clone();
        if event.status == Status::Success {
            record.runs_succeeded += 1;
            record.last_success = Some(event.finished);
        } else {
            record.runs_failed += 1;
        }
        record.last_run = Some(RunRecord {
            finished: event.finished,
            status: event.status,
            exit_code: event.exit_code,
            set_id: event.set_id.clone(),
            window_seconds: None,
            database_bytes: None,
            folders: vec![],
            new_bytes: event.new_bytes,
            steps: vec![],
        });
        self.save(&h)?;
        Ok(before)
    }

    pub fn record_drill(&self, instance: &str, drill: DrillResult) -> std::io::Result<()> {
        let mut h = self.load(instance);
        h.last_drill = Some(drill);
        self.save(&h)
    }
}

/// Writes `path` as a whole or not at all: a temporary file in the same folder, flushed, then
/// renamed over it (a reader such as node_exporter never sees half a file).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".octobackup-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_success_through_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::new(dir.path());
        let mut e = Event {
            event: "backup",
            copy: None,
            instance: "a/b".into(),
            status: Status::Success,
            exit_code: 0,
            recovery: false,
            set_id: Some("S1".into()),
            snapshot_id: None,
            host: "h".into(),
            nodes: vec![],
            drained_nodes: vec![],
            started: Utc::now(),
            finished: Utc::now(),
            window_seconds: Some(1.0),
            database_bytes: Some(10),
            folder_bytes: None,
            new_bytes: None,
            steps: vec![],
            drill: None,
            failure: None,
            fix: None,
        };
        h.record_backup(&e, vec![], Some(100)).unwrap();
        e.status = Status::Failed;
        e.exit_code = 4;
        e.set_id = None;
        let before = h.record_backup(&e, vec![], None).unwrap();
        assert_eq!(before.last_run.unwrap().status, Status::Success);
        let now = h.load("a/b");
        assert_eq!(now.last_run.as_ref().unwrap().status, Status::Failed);
        assert_eq!(now.last_success.unwrap().set_id.as_deref(), Some("S1"));
        assert_eq!((now.runs_succeeded, now.runs_failed), (1, 1));
        assert_eq!(now.repository_bytes, Some(100));
        assert_eq!(h.all().len(), 1);

        // A copy's result is kept beside the backup's, by copy name, and keeps its last success.
        e.copy = Some("offsite".into());
        e.status = Status::Success;
        e.exit_code = 0;
        h.record_copy("a/b", &e).unwrap();
        e.status = Status::Failed;
        e.exit_code = 9;
        let before = h.record_copy("a/b", &e).unwrap();
        assert_eq!(before.last_run.unwrap().status, Status::Success);
        let now = h.load("a/b");
        let c = &now.copies["offsite"];
        assert_eq!(c.last_run.as_ref().unwrap().exit_code, 9);
        assert!(c.last_success.is_some());
        assert_eq!((c.runs_succeeded, c.runs_failed), (1, 1));
        // The backup's own record is untouched by its copy.
        assert_eq!(now.last_run.unwrap().status, Status::Failed);
        assert_eq!((now.runs_succeeded, now.runs_failed), (1, 1));
    }
}
