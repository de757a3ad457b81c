//! The run's own folder on the staging share: its marker, what a failed run leaves there or
//! discards, and the folders killed runs left behind.
//!
//! Each run stages into a folder of its own (`octobackup-<set id>`), so the staged files carry
//! the names they get in the set and nothing else on the share is touched. The folder's marker
//! names the instance and run, so a later run (or `recover`) knows a leftover of its instance.

use super::BackupJob;
use crate::backupset;
use crate::config::InstanceConfig;
use crate::error::{Exit, Failure};
use crate::run::connect::sql_side_path;
use octobackup_repo::Repo;
use std::path::{Path, PathBuf};

/// The run's folder on the staging share, as octobackup and as SQL Server see it, and the .bak
/// stripes BACKUP DATABASE writes there.
pub(super) struct SetFolder {
    pub(super) local: PathBuf,
    /// The stripes' file names.
    pub(super) names: Vec<String>,
    pub(super) bak_sql: Vec<String>,
    pub(super) bak_local: Vec<PathBuf>,
}

impl SetFolder {
    /// The folder `folder` on the instance's staging share, holding the stripes `names`.
    pub(super) fn at(inst: &InstanceConfig, folder: &str, names: Vec<String>) -> SetFolder {
        let local = inst.staging_local().join(folder);
        let sql = sql_side_path(&inst.staging.sql_path, folder);
        SetFolder {
            bak_sql: names.iter().map(|n| sql_side_path(&sql, n)).collect(),
            bak_local: names.iter().map(|n| local.join(n)).collect(),
            names,
            local,
        }
    }

    /// Creates the set's folder with its marker.
    pub(super) fn create(
        job: &BackupJob,
        set_id: &str,
        database: &str,
    ) -> Result<SetFolder, Failure> {
        let names = backupset::stripe_names(database, job.instance.sql.stripes.unwrap_or(1));
        let set = SetFolder::at(&job.instance, &format!("octobackup-{set_id}"), names);
        let staging_local = &set.local;
        std::fs::create_dir_all(staging_local).map_err(|e| {
            Failure::new(
                Exit::Failed,
                format!(
                    "cannot create {} on the staging share: {e}",
                    staging_local.display()
                ),
            )
        })?;
        // The mark that lets a later run (or `recover`) know this folder as a leftover of this instance.
        let marker = serde_json::json!({
            "instance": job.instance_name,
            "set_id": set_id,
            "pid": std::process::id(),
        });
        if let Err(e) = write_marker(staging_local, &marker.to_string()) {
            let _ = std::fs::remove_dir_all(staging_local);
            return Err(Failure::new(
                Exit::Failed,
                format!(
                    "cannot write in {} on the staging share: {e}",
                    staging_local.display()
                ),
            ));
        }
        Ok(set)
    }
}

/// Undoes what a failed run stored: its staging folder and every part snapshot of its set (found
/// by tag, so parts written by a pass the failure interrupted go too). Best effort: what is left
/// is tagged `part`, never `complete`, and `forget` removes it.
pub(super) fn discard_run(repo: &Repo, set_id: &str, staging: &Path) {
    if !staging.join(KEEP_FOR_CLEANUP).exists() {
        let _ = std::fs::remove_dir_all(staging);
    }
    let parts = part_snapshots(repo, set_id);
    if !parts.is_empty() {
        let _ = repo.delete_snapshots(&parts);
    }
}

fn part_snapshots(repo: &Repo, set_id: &str) -> Vec<String> {
    let tag = backupset::tag_set(set_id);
    repo.snapshots()
        .map(|s| {
            s.into_iter()
                .filter(|s| {
                    s.tags.contains(&tag) && s.tags.iter().any(|t| t == backupset::TAG_PART)
                })
                .map(|s| s.id)
                .collect()
        })
        .unwrap_or_default()
}

/// A BACKUP that may still run may still write in its staging folder: the folder is kept with
/// its marker (`discard_run` leaves it) for the next run's clean-up. Says so, or nothing.
pub(super) fn keep_if_running(stopped: &crate::sqlserver::Stopped, staging: &Path) -> String {
    if !stopped.may_still_run() {
        return String::new();
    }
    let _ = std::fs::write(staging.join(KEEP_FOR_CLEANUP), "");
    format!(
        "; the staging folder {} is kept with its marker, and the next run removes it (or delete it once the BACKUP is gone from sys.dm_exec_requests)",
        staging.display()
    )
}

/// Set in a staging folder the failed run must leave for the next run's clean-up (a BACKUP that
/// may still write there).
const KEEP_FOR_CLEANUP: &str = "octobackup-keep-for-cleanup";

/// The marker file in each run's staging folder: which instance and run it belongs to. The
/// folder also holds the window's folder listing and copies (`window_capture`), so whatever
/// removes a leftover folder removes them too.
pub(super) const STAGING_MARKER: &str = "octobackup-run.json";

/// True for a name octobackup gives a run's staging folder: `octobackup-` and a set id
/// (`20260101T000000Z-0123ab`).
fn is_staging_folder_name(name: &str) -> bool {
    let Some(id) = name.strip_prefix("octobackup-") else {
        return false;
    };
    let b = id.as_bytes();
    b.len() == 23
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[15] == b'Z'
        && b[16] == b'-'
        && b[17..]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// Staging folders that runs of this instance left behind (killed before they could remove
/// them): octobackup's name, and its marker naming this instance. Nothing else on the share is
/// ever listed. Only meaningful with the instance lock held (no run of it is going on).
pub fn staging_leftovers(instance_name: &str, inst: &InstanceConfig) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(inst.staging_local()) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| e.file_name().to_str().is_some_and(is_staging_folder_name))
        // A set kept for the next run (its storage stopped after the window) is not a leftover.
        .filter(|e| !is_kept(&e.path()))
        .filter(|e| marked_by(&e.path(), instance_name))
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

/// Folders with octobackup's staging name but no readable marker. A run killed between creating
/// its folder and writing the marker leaves one that holds nothing (or a torn marker): `.0`,
/// removable by any run. One that holds more was left by a version that wrote no marker: `.1`,
/// whose instance is unknown, so it is only ever reported.
pub fn unmarked_staging_folders(inst: &InstanceConfig) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(inst.staging_local()) else {
        return (Vec::new(), Vec::new());
    };
    let marked = |dir: &Path| {
        std::fs::read(dir.join(STAGING_MARKER))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|v| v["instance"].is_string())
    };
    let (mut empty, mut unknown) = (Vec::new(), Vec::new());
    for e in entries.flatten() {
        let dir = e.path();
        if !e.file_type().is_ok_and(|t| t.is_dir())
            || !e.file_name().to_str().is_some_and(is_staging_folder_name)
            || marked(&dir)
        {
            continue;
        }
        let holds_more = std::fs::read_dir(&dir)
            .map(|rd| rd.flatten().any(|f| f.file_name() != STAGING_MARKER))
            .unwrap_or(true);
        if holds_more {
            unknown.push(dir);
        } else {
            empty.push(dir);
        }
    }
    empty.sort();
    unknown.sort();
    (empty, unknown)
}

/// Removes this instance's staging leftovers and the empty folders of runs killed before their
/// marker; returns a note for each, and for unmarked folders that are kept.
pub fn remove_staging_leftovers(instance_name: &str, inst: &InstanceConfig) -> Vec<String> {
    let mut notes: Vec<String> = staging_leftovers(instance_name, inst)
        .into_iter()
        .map(|dir| match std::fs::remove_dir_all(&dir) {
            Ok(()) => format!(
                "removed {}, the staging folder an interrupted run left",
                dir.display()
            ),
            Err(e) => format!(
                "warning: could not remove {}, the staging folder an interrupted run left: {e}. It holds a copy of the database: delete it by hand.",
                dir.display()
            ),
        })
        .collect();
    let (empty, unknown) = unmarked_staging_folders(inst);
    for dir in empty {
        // Nothing but a torn marker, if that: no database copy. A run of another instance that
        // is just starting there writes its marker again (see `write_marker`).
        let _ = std::fs::remove_file(dir.join(STAGING_MARKER));
        if std::fs::remove_dir(&dir).is_ok() {
            notes.push(format!(
                "removed {}, the empty staging folder of a run killed as it started",
                dir.display()
            ));
        }
    }
    for dir in unknown {
        notes.push(format!(
            "kept {}: it has octobackup's staging name but no {STAGING_MARKER} (left by an older version), so which instance it belongs to is unknown. It may hold a copy of a database: delete it by hand when no backup is running.",
            dir.display()
        ));
    }
    notes
}

/// Writes the run's marker into its staging folder; once more, folder and all, if the folder went
/// away meanwhile (another instance's run took it, still empty, for a killed run's).
fn write_marker(dir: &Path, marker: &str) -> std::io::Result<()> {
    std::fs::write(dir.join(STAGING_MARKER), marker).or_else(|_| {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join(STAGING_MARKER), marker)
    })
}

/// The record beside the files of a set kept for the next run (`kept`).
pub(super) const KEPT_RECORD: &str = "octobackup-kept.json";

/// True when `dir` is a staging folder kept for the next run (not a leftover to remove).
pub fn is_kept(dir: &Path) -> bool {
    dir.join(KEPT_RECORD).is_file()
}

/// True when `dir`'s marker names the instance `instance_name`.
pub(super) fn marked_by(dir: &Path, instance_name: &str) -> bool {
    std::fs::read(dir.join(STAGING_MARKER))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|v| v["instance"] == instance_name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::backup::window_capture;

    /// An instance whose staging share is `dir`.
    fn staging_at(dir: &Path) -> InstanceConfig {
        InstanceConfig {
            staging: crate::config::StagingConfig {
                sql_path: dir.display().to_string(),
                local_path: None,
            },
            ..Default::default()
        }
    }

    #[test]
    fn only_octobackups_own_staging_folder_names_are_recognised() {
        let id = backupset::new_set_id(chrono::Utc::now());
        assert!(is_staging_folder_name(&format!("octobackup-{id}")));
        for other in [
            "octobackup-",
            "octobackup-notes",
            "OctopusDeploy.bak",
            "octobackup-20260101T000000Z-0123ab-copy",
            "octobackup-20260101T000000Z-0123AB",
            "backup-20260101T000000Z-0123ab",
        ] {
            assert!(!is_staging_folder_name(other), "{other}");
        }
    }

    #[test]
    fn leftovers_are_this_instances_marked_folders_only() {
        let dir = tempfile::tempdir().unwrap();
        let inst = staging_at(dir.path());
        let mine = dir.path().join("octobackup-20260101T000000Z-0123ab");
        let theirs = dir.path().join("octobackup-20260102T000000Z-0123ab");
        let unmarked = dir.path().join("octobackup-20260103T000000Z-0123ab");
        let foreign = dir.path().join("nightly");
        for d in [&mine, &theirs, &unmarked, &foreign] {
            std::fs::create_dir(d).unwrap();
            std::fs::write(d.join("OctopusDeploy.bak"), b"x").unwrap();
        }
        // The window's listing and copies live in the run's folder, so they go with it.
        std::fs::write(mine.join(window_capture::LISTING_FILE), b"{}").unwrap();
        let copy = mine
            .join(window_capture::CAPTURE_DIR)
            .join("0/ServerTasks-1.log.txt");
        std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
        std::fs::write(&copy, b"log").unwrap();
        std::fs::write(mine.join(STAGING_MARKER), r#"{"instance":"A"}"#).unwrap();
        std::fs::write(theirs.join(STAGING_MARKER), r#"{"instance":"B"}"#).unwrap();
        std::fs::write(foreign.join(STAGING_MARKER), r#"{"instance":"A"}"#).unwrap();
        assert_eq!(staging_leftovers("A", &inst), vec![mine.clone()]);
        let notes = remove_staging_leftovers("A", &inst);
        assert!(!mine.exists());
        assert!(theirs.exists() && unmarked.exists() && foreign.exists());
        // A .bak without a marker: an older version's; its instance is unknown, so it is kept
        // and said so.
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[1].starts_with("kept ") && notes[1].contains("no octobackup-run.json"));
    }

    #[test]
    fn a_run_killed_before_its_marker_leaves_a_folder_any_run_removes() {
        let dir = tempfile::tempdir().unwrap();
        let inst = staging_at(dir.path());
        let empty = dir.path().join("octobackup-20260101T000000Z-0123ab");
        let torn = dir.path().join("octobackup-20260102T000000Z-0123ab");
        let old = dir.path().join("octobackup-20260103T000000Z-0123ab");
        for d in [&empty, &torn, &old] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::write(torn.join(STAGING_MARKER), br#"{"instan"#).unwrap();
        std::fs::write(old.join("OctopusDeploy.bak"), b"x").unwrap();
        assert_eq!(
            unmarked_staging_folders(&inst),
            (vec![empty.clone(), torn.clone()], vec![old.clone()])
        );
        let notes = remove_staging_leftovers("A", &inst);
        assert!(!empty.exists() && !torn.exists(), "{notes:?}");
        assert!(old.join("OctopusDeploy.bak").exists(), "{notes:?}");
        assert_eq!(notes.len(), 3, "{notes:?}");
        // A run whose empty folder was taken meanwhile writes its marker all the same.
        write_marker(&empty, r#"{"instance":"A"}"#).unwrap();
        assert_eq!(staging_leftovers("A", &inst), vec![empty]);
    }
}
