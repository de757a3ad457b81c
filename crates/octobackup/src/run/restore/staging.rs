//! The set's .bak files copied back from the repository onto the staging share, where SQL Server
//! reads them; a stop ends a copy at its next write.

use super::set::ChosenSet;
use crate::config::InstanceConfig;
use crate::error::{Exit, Failure};
use crate::run::connect::sql_side_path;
use crate::run::progress::Ui;
use crate::run::stop::Stop;
use octobackup_repo::Repo;
use std::path::PathBuf;
use std::sync::Arc;

/// The set's .bak files, staged back from the repository into a folder of their own on the
/// staging share, where SQL Server can read them.
pub struct Staged {
    pub local_dir: PathBuf,
    pub sql_paths: Vec<String>,
    /// An owned chain's set: the base, restored WITH NORECOVERY before `sql_paths` (the
    /// differential). Empty otherwise.
    pub base_sql_paths: Vec<String>,
}

impl Staged {
    pub fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.local_dir);
    }
}

/// Copies from the repository under way on blocking threads. A stop waits for them to end (they
/// end at their next write, see `copy_gate`) before it deletes what they wrote.
pub(super) static COPYING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Resolves once no copy from the repository is under way (or after a minute).
pub async fn copies_ended() {
    for _ in 0..3000 {
        if COPYING.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Asked before each write of the copy: a stop request ends it there. With the lab,
/// `OCTOBACKUP_LAB_STAGE_RATE` (bytes per second) slows it so that the fault matrix can stop a
/// run part-way, and the first write is announced in `OCTOBACKUP_LAB_PAUSED_FILE`.
pub(super) fn copy_gate(stop: Stop) -> impl Fn(u64) -> bool + Sync {
    #[cfg(feature = "lab")]
    let rate = std::env::var("OCTOBACKUP_LAB_STAGE_RATE")
        .ok()
        .and_then(|r| r.parse::<u64>().ok())
        .filter(|r| *r > 0);
    #[cfg(feature = "lab")]
    let announced = std::sync::atomic::AtomicBool::new(false);
    move |bytes: u64| {
        #[cfg(feature = "lab")]
        if let Some(rate) = rate
            && bytes > 0
        {
            if !announced.swap(true, std::sync::atomic::Ordering::SeqCst)
                && let Some(f) = std::env::var_os("OCTOBACKUP_LAB_PAUSED_FILE")
            {
                let _ = std::fs::write(f, "stage: copying");
            }
            let until = std::time::Instant::now()
                + std::time::Duration::from_secs_f64(bytes as f64 / rate as f64);
            while std::time::Instant::now() < until && stop.requested().is_none() {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        let _ = bytes;
        stop.requested().is_none()
    }
}

pub async fn stage_database(
    repo: &Arc<Repo>,
    set: &ChosenSet,
    instance: &InstanceConfig,
    folder: &str,
    ui: &Ui,
    stop: &Stop,
) -> Result<Staged, Failure> {
    let files = &set.manifest.database.files;
    if files.is_empty() {
        return Err(Failure::new(
            Exit::Failed,
            format!("set {} holds no database backup", set.set_id),
        ));
    }
    let local_dir = instance.staging_local().join(folder);
    let sql_dir = sql_side_path(&instance.staging.sql_path, folder);
    std::fs::create_dir_all(&local_dir).map_err(|e| {
        Failure::new(
            Exit::Failed,
            format!(
                "cannot create {} on the staging share: {e}. Check staging.local_path (or sql_path) in the config.",
                local_dir.display()
            ),
        )
    })?;
    let staged = Staged {
        local_dir: local_dir.clone(),
        sql_paths: Vec::new(),
        base_sql_paths: Vec::new(),
    };
    let mut sql_paths = Vec::new();
    let mut base_sql_paths = Vec::new();
    let base_files = set.manifest.database.base_files();
    for (file, is_base) in files
        .iter()
        .map(|f| (f, false))
        .chain(base_files.iter().map(|f| (f, true)))
    {
        // The base has the differential's file names: a folder of its own.
        let (local_dir, sql_dir) = if is_base {
            let d = local_dir.join("base");
            if let Err(e) = std::fs::create_dir_all(&d) {
                staged.remove();
                return Err(Failure::new(
                    Exit::Failed,
                    format!("cannot create {} on the staging share: {e}", d.display()),
                ));
            }
            (d, sql_side_path(&sql_dir, "base"))
        } else {
            (local_dir.clone(), sql_dir.clone())
        };
        let name = file.rsplit('/').next().unwrap_or(file).to_string();
        // Into the folder, under the file's own name (rustic logs an error for a missing target file).
        let dest = local_dir.clone();
        let (repo, snap, path, sink) = (
            repo.clone(),
            set.snapshot_id.clone(),
            file.clone(),
            ui.repo_sink("stage database backup"),
        );
        let gate = copy_gate(stop.clone());
        COPYING.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let r = crate::run::blocking::blocking("copying the .bak from the repository", move || {
            let r = repo.restore_gated(&snap, &path, &dest, &*sink, &gate);
            COPYING.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            r
        })
        .await?;
        if let Err(e) = r {
            staged.remove();
            return Err(e.into());
        }
        if is_base {
            base_sql_paths.push(sql_side_path(&sql_dir, &name));
        } else {
            sql_paths.push(sql_side_path(&sql_dir, &name));
        }
    }
    Ok(Staged {
        local_dir,
        sql_paths,
        base_sql_paths,
    })
}
