//! A set whose storage stopped answering after the window: its staging folder (the `.bak` and the
//! window's copies of the changed folder files) is kept, with a record of what the window
//! captured, so that the next backup of the instance stores it without a new BACKUP DATABASE and
//! without another maintenance window.
//!
//! The rule: the next backup run of the same instance (the marker names it) stores a kept set
//! before its own window when the set started less than [`MAX_AGE`] ago, backs up the same
//! database, and its differential base (with `sql.chain = "owned"`) is still there. Otherwise it
//! removes the folder and says why. The secrets (master key, license) are never written to
//! staging: the run that stores the kept set reads them again, as every run does before its window.

use super::staging::{KEPT_RECORD, SetFolder, discard_run, is_kept, marked_by};
use super::store;
use super::window_capture::Capture;
use super::{BackupJob, Captured, Secrets};
use crate::backupset::Manifest;
use crate::error::{Exit, Failure};
use crate::run::steps::Steps;
use crate::sqlserver::SqlServer;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How old a kept set may be and still be stored: a day, the interval of a nightly backup. An
/// older one is likely superseded by sets made since on another runner, and its copies hold a
/// full database on the staging share for no good reason.
pub const MAX_AGE: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// The window's kept paths are a list in the kept folder (`Capture::keep`); a record written
/// before held them itself and no longer parses, so its folder is removed like any unreadable one.
const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Record {
    format: u32,
    /// When the storage was found gone and the folder kept.
    kept_at: chrono::DateTime<chrono::Utc>,
    manifest: Manifest,
    capture: Capture,
    pre_pass: Option<String>,
    /// The `.bak` stripes, by file name in the folder.
    bak_names: Vec<String>,
}

/// Writes the record that keeps the set's folder for the next run (written whole, then renamed into place).
pub(super) fn keep(
    set: &SetFolder,
    m: &Manifest,
    steps: &Steps,
    c: &Captured,
) -> std::io::Result<()> {
    let dir = &set.local;
    let mut manifest = m.clone();
    manifest.steps = steps.records.clone();
    let record = Record {
        format: FORMAT,
        kept_at: chrono::Utc::now(),
        manifest,
        capture: c.folders.clone(),
        pre_pass: c.pre_pass.clone(),
        bak_names: set.names.clone(),
    };
    let tmp = dir.join(format!("{KEPT_RECORD}.tmp"));
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(&record).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(&tmp, dir.join(KEPT_RECORD))
}

/// The failure of a run whose storage stopped after the window: its staging folder is kept when
/// it can be (the message says so), else discarded as any failed run's.
pub(super) fn keep_or_discard(
    job: &BackupJob,
    set: &SetFolder,
    m: &Manifest,
    steps: &Steps,
    c: &Captured,
    mut f: Failure,
) -> Failure {
    let dir = &set.local;
    if job.repo.storage_gone().is_none() || job.stop.requested().is_some() {
        discard_run(&job.repo, &m.set_id, dir);
        return f;
    }
    match keep(set, m, steps, c) {
        Ok(()) => {
            f.message = format!(
                "{}; the staging folder {} was kept: the next backup of this instance within {} h stores it as set {} (complete, with its own time) before its own, without a new database backup",
                f.message.trim_end_matches('.'),
                dir.display(),
                MAX_AGE.num_hours(),
                m.set_id
            );
        }
        Err(e) => {
            discard_run(&job.repo, &m.set_id, dir);
            f.message = format!(
                "{}; the staging folder could not be kept ({e}), so it was removed: the next run takes a new database backup",
                f.message.trim_end_matches('.')
            );
        }
    }
    f
}

/// This instance's kept folders, oldest first.
fn kept_folders(instance_name: &str, staging: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(staging) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && is_kept(p))
        .filter(|p| marked_by(p, instance_name))
        .collect();
    found.sort();
    found
}

/// Whether a kept set is still wanted: `Err(why not)` when it is not.
fn judge(
    record: &Record,
    database: &str,
    now: chrono::DateTime<chrono::Utc>,
    base_present: bool,
) -> Result<(), String> {
    let started = record
        .manifest
        .started
        .ok_or("its record has no start time")?;
    if now - started > MAX_AGE {
        return Err(format!(
            "it started at {started}, more than {} h ago",
            MAX_AGE.num_hours()
        ));
    }
    if record.manifest.database.name != database {
        return Err(format!(
            "it holds the database {}, and this instance now backs up {database}",
            record.manifest.database.name
        ));
    }
    if !base_present {
        return Err(
            "its differential base is no longer kept (a new full base was taken since)".into(),
        );
    }
    Ok(())
}

/// A kept set as `doctor` shows it, judged as the next backup of the instance will judge it.
#[derive(Debug)]
pub struct KeptSet {
    pub dir: PathBuf,
    /// Empty when the record cannot be read.
    pub set_id: String,
    pub database: String,
    /// When its storage was found gone.
    pub kept_at: Option<chrono::DateTime<chrono::Utc>>,
    /// What the folder holds (the `.bak` and the window's copies).
    pub bytes: u64,
    /// `Ok`: the next backup stores it; `Err(why)`: it removes it.
    pub next: Result<(), String>,
}

/// This instance's kept sets. `database`: the one the instance backs up now (`None` when it
/// cannot be told: the record's own is taken).
pub fn kept_sets(
    instance_name: &str,
    inst: &crate::config::InstanceConfig,
    database: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<KeptSet> {
    kept_folders(instance_name, &inst.staging_local())
        .into_iter()
        .map(|dir| {
            let bytes = folder_bytes(&dir);
            let Some(record) = read_record(&dir) else {
                return KeptSet {
                    dir,
                    set_id: String::new(),
                    database: String::new(),
                    kept_at: None,
                    bytes,
                    next: Err("its record cannot be read".into()),
                };
            };
            let info = &record.manifest.database;
            let base_present = super::chain::base_items_of(instance_name, inst, info)
                .iter()
                .all(|i| match i {
                    octobackup_repo::SourceItem::Path { source, .. } => source.is_file(),
                    _ => true,
                });
            let next = judge(&record, database.unwrap_or(&info.name), now, base_present);
            KeptSet {
                dir,
                set_id: record.manifest.set_id.clone(),
                database: info.name.clone(),
                kept_at: Some(record.kept_at),
                bytes,
                next,
            }
        })
        .collect()
}

fn read_record(dir: &Path) -> Option<Record> {
    std::fs::read(dir.join(KEPT_RECORD))
        .ok()
        .and_then(|b| serde_json::from_slice::<Record>(&b).ok())
        .filter(|r| r.format == FORMAT)
}

/// The bytes of every file under `dir`.
fn folder_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// Stores the sets kept on staging by earlier runs whose storage stopped after their window, or
/// removes those no longer wanted (with a note each). Runs before this run's window. A storage
/// that is still gone stops the run with the folder kept.
pub(super) async fn store_kept_sets(
    job: &BackupJob,
    sqlserver: &SqlServer,
    secrets: &Secrets,
    database: &str,
) -> Result<(), Failure> {
    for dir in kept_folders(&job.instance_name, &job.instance.staging_local()) {
        let Some(record) = read_record(&dir) else {
            let _ = std::fs::remove_dir_all(&dir);
            job.ui.note(&format!(
                "removed {}, a staging folder kept when the storage stopped: its record cannot be read",
                dir.display()
            ));
            continue;
        };
        let set_id = record.manifest.set_id.clone();
        let base_present = super::chain::base_items(job, &record.manifest.database)
            .iter()
            .all(|i| match i {
                octobackup_repo::SourceItem::Path { source, .. } => source.is_file(),
                _ => true,
            });
        if let Err(why) = judge(&record, database, chrono::Utc::now(), base_present) {
            discard_run(&job.repo, &set_id, &dir);
            job.ui.note(&format!(
                "removed {}, the staging folder of set {set_id} kept when the storage stopped: {why}, so it is no longer stored",
                dir.display()
            ));
            continue;
        }
        let folder_name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let set = SetFolder::at(&job.instance, &folder_name, record.bak_names);
        let captured = Captured {
            folders: record.capture,
            pre_pass: record.pre_pass,
        };
        let mut m = record.manifest;
        let mut steps = Steps {
            records: m.steps.clone(),
        };
        let stored = tokio::select! {
            r = async {
                let stored = store::ingest(job, sqlserver, &captured, secrets, &set, &mut m, &mut steps).await?;
                store::seal(job, &set_id, &captured, stored, &mut m, &mut steps).await
            } => r,
            sig = job.stop.wait() => Err(Failure::new(
                Exit::Interrupted,
                format!("interrupted by {sig} while storing the set {set_id} kept on staging, before the maintenance window; nothing changed, the set stays kept"),
            )),
        };
        match stored {
            Ok(_) => {
                let _ = std::fs::remove_dir_all(&dir);
                super::chain::after_set(job, &m.database);
                job.ui.note(&format!(
                    "stored set {set_id}, kept on staging since {} when the storage stopped: it is complete, with its own time ({})",
                    record.kept_at.format("%Y-%m-%d %H:%M:%S UTC"),
                    m.started.map(|t| t.to_rfc3339()).unwrap_or_default()
                ));
            }
            Err(e) if e.plain_exit() == Some(Exit::Interrupted) => return Err(e),
            Err(mut e) if job.repo.storage_gone().is_some() => {
                e.message = format!(
                    "{}; the set {set_id} kept on staging ({}) stays kept for the next run, and this run took no backup of its own",
                    e.message.trim_end_matches('.'),
                    dir.display()
                );
                return Err(e);
            }
            Err(e) => {
                discard_run(&job.repo, &set_id, &dir);
                job.ui.note(&format!(
                    "warning: the set {set_id} kept on staging could not be stored ({}); its staging folder was removed",
                    e.message.trim_end_matches('.')
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(started: chrono::DateTime<chrono::Utc>, db: &str) -> Record {
        let mut manifest = Manifest {
            started: Some(started),
            ..Default::default()
        };
        manifest.database.name = db.into();
        Record {
            format: FORMAT,
            kept_at: started,
            manifest,
            capture: Capture::default(),
            pre_pass: None,
            bak_names: vec!["OctopusDeploy.bak".into()],
        }
    }

    #[test]
    fn a_kept_set_is_stored_within_a_day_for_the_same_database_and_base() {
        let now = chrono::Utc::now();
        let fresh = record(now - chrono::TimeDelta::hours(2), "Octopus");
        assert_eq!(judge(&fresh, "Octopus", now, true), Ok(()));
        let old = record(now - chrono::TimeDelta::hours(25), "Octopus");
        assert!(
            judge(&old, "Octopus", now, true)
                .unwrap_err()
                .contains("more than 24 h ago")
        );
        assert!(
            judge(&fresh, "Other", now, true)
                .unwrap_err()
                .contains("database")
        );
        assert!(
            judge(&fresh, "Octopus", now, false)
                .unwrap_err()
                .contains("base")
        );
    }

    #[test]
    fn only_folders_with_a_record_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_kept(dir.path()));
        std::fs::write(dir.path().join(KEPT_RECORD), "{}").unwrap();
        assert!(is_kept(dir.path()));
    }
}
