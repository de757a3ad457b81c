//! Drill results kept in the repository, so a report (or `restic snapshots`) can say which sets were
//! proven restorable and when.
//!
//! A drill leaves one small snapshot beside the set it tested, restic's own format and nothing
//! else: tags `octobackup-drill`, `drill-of:<set id>`, `instance:<name>` and `drill:pass` or
//! `drill:fail`, holding `/octobackup-drill/drill.json` (the drill's checks, no secret: the same
//! report `drill --json` prints). Stock restic lists them with `restic snapshots --tag
//! octobackup-drill` and prints one with `restic dump <id> /octobackup-drill/drill.json`.
//!
//! Its tags are deliberately not `octobackup` and `set:`: the set listing, retention and escrow
//! clean-up read those, and a drill record is not a part of the set it tested.

use crate::backupset::{tag_instance, tag_value};
use crate::run::drill::DrillReport;
use chrono::{DateTime, Utc};
use octobackup_repo::{
    NoProgress, Repo, RepoError, SetOptions, SnapshotInfo, SourceItem, Zeroizing,
};

pub const TAG_DRILL: &str = "octobackup-drill";
pub const DRILL_PATH: &str = "/octobackup-drill/drill.json";

pub fn tag_drill_of(set_id: &str) -> String {
    format!("drill-of:{set_id}")
}

/// One drill as recorded.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DrillRecord {
    pub set_id: String,
    pub instance: String,
    pub time: DateTime<Utc>,
    pub passed: bool,
    /// The record's own snapshot.
    pub snapshot_id: String,
}

/// What a drill leaves in the repository.
pub struct Record {
    set_id: String,
    instance: String,
    passed: bool,
    body: Vec<u8>,
}

impl Record {
    pub fn of(report: &DrillReport) -> Record {
        Record {
            set_id: report.set_id.clone(),
            instance: report.instance.clone(),
            passed: report.ok,
            body: serde_json::to_vec_pretty(report).unwrap_or_default(),
        }
    }

    /// Stores the drill's result as a snapshot of its own. Blocking.
    pub fn store(self, repo: &Repo) -> Result<String, RepoError> {
        let tags = vec![
            TAG_DRILL.to_string(),
            tag_drill_of(&self.set_id),
            tag_instance(&self.instance),
            if self.passed {
                "drill:pass"
            } else {
                "drill:fail"
            }
            .to_string(),
        ];
        let item = SourceItem::Memory {
            target: DRILL_PATH.into(),
            bytes: Zeroizing::new(self.body),
            mode: 0o644,
        };
        let opts = SetOptions {
            tags,
            ..Default::default()
        };
        Ok(repo.backup(vec![item], &opts, &NoProgress)?.snapshot_id)
    }
}

/// The drill records among `snapshots`, oldest first.
pub fn from_snapshots(snapshots: &[SnapshotInfo]) -> Vec<DrillRecord> {
    let mut out: Vec<DrillRecord> = snapshots
        .iter()
        .filter(|s| s.tags.iter().any(|t| t == TAG_DRILL))
        .filter_map(|s| {
            let status = tag_value(&s.tags, "drill")?;
            Some(DrillRecord {
                set_id: tag_value(&s.tags, "drill-of")?.to_string(),
                instance: tag_value(&s.tags, "instance").unwrap_or("?").to_string(),
                time: s.time.with_timezone(&Utc),
                passed: status == "pass",
                snapshot_id: s.id.clone(),
            })
        })
        .collect();
    out.sort_by_key(|d| d.time);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backupset::check::Status;

    fn snap(id: &str, tags: &[&str], time: &str) -> SnapshotInfo {
        SnapshotInfo {
            id: id.into(),
            short_id: id.into(),
            time: DateTime::parse_from_rfc3339(time).unwrap().into(),
            hostname: "h".into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            paths: vec![],
            parent: None,
            program_version: String::new(),
            summary: None,
        }
    }

    #[test]
    fn drill_records_are_read_from_their_tags_only() {
        let snaps = vec![
            snap(
                "b",
                &[
                    "octobackup-drill",
                    "drill-of:S2",
                    "instance:I",
                    "drill:fail",
                ],
                "2026-01-02T03:00:00Z",
            ),
            snap(
                "a",
                &[
                    "octobackup-drill",
                    "drill-of:S1",
                    "instance:I",
                    "drill:pass",
                ],
                "2026-01-01T03:00:00Z",
            ),
            // A set's own snapshot is not a drill record.
            snap(
                "c",
                &["octobackup", "set:S1", "complete"],
                "2026-01-01T02:00:00Z",
            ),
            // Nor is a record without its status.
            snap(
                "d",
                &["octobackup-drill", "drill-of:S3"],
                "2026-01-03T03:00:00Z",
            ),
        ];
        let d = from_snapshots(&snaps);
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].set_id.as_str(), d[0].passed), ("S1", true));
        assert_eq!((d[1].set_id.as_str(), d[1].passed), ("S2", false));
        assert_eq!(d[1].instance, "I");
    }

    #[test]
    fn a_drill_record_stored_by_an_earlier_version_reads() {
        // `/octobackup-drill/drill.json` as drills stored it before checks had one record type.
        let old = r#"{
          "ok": false,
          "set_id": "20260101T020000Z-0123ab",
          "snapshot_id": "5f2c0e1a",
          "instance": "OctopusServer",
          "scratch_database": "OctopusDeploy_octobackup_drill_1a2b3c",
          "scratch_folder": "/staging/octobackup-drill-1a2b3c",
          "checks": [
            {"name": "RESTORE VERIFYONLY", "status": "fail", "seconds": 1.25, "detail": "Msg 3241"},
            {"name": "DBCC CHECKDB", "status": "skipped", "seconds": 0.0, "detail": "the restore failed"},
            {"name": "folder files match the set", "status": "pass", "seconds": 0.5}
          ],
          "error": "RESTORE VERIFYONLY: Msg 3241"
        }"#;
        let r: DrillReport = serde_json::from_str(old).unwrap();
        assert!(!r.ok);
        let got: Vec<(&str, Status)> = r
            .checks
            .iter()
            .map(|c| (c.name.as_str(), c.status))
            .collect();
        assert_eq!(
            got,
            vec![
                ("RESTORE VERIFYONLY", Status::Fail),
                ("DBCC CHECKDB", Status::Skip),
                ("folder files match the set", Status::Pass),
            ]
        );
        assert_eq!(r.checks[1].seconds, Some(0.0));
        // Written again, a record keeps every field it had, with `ok` beside each status.
        let again = serde_json::to_value(&r).unwrap();
        assert_eq!(again["checks"][1]["status"], "skipped");
        assert_eq!(again["checks"][1]["ok"], false);
        assert_eq!(again["checks"][2].get("detail"), None);
    }
}
