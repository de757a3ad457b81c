//! `octobackup backup`: Octopus's documented procedure as one backup set.
//!
//! Order (the README's "What `backup` does"): capture the master key and the license; list the
//! server folders onto the run's staging folder and store them once (the pass before the
//! window); record maintenance mode and turn it on; inside the window, wait for
//! running tasks, then side by side BACKUP DATABASE to the staging share and copy onto it the
//! folder entries that differ from the listing; put maintenance mode back; only then touch the
//! repository again: store the folders as the window had them (the pass before it, less what the
//! window did not keep, plus the copies), verify and store the .bak, and seal. Nothing inside the
//! window reads or writes the repository, so a slow or missing repository cannot lengthen it, and
//! the window has a budget (`wait.max_window`): past it, maintenance mode is put back and the run
//! fails. The parts are merged into the set's single snapshot: only that snapshot carries the
//! `complete` tag, so a run that fails at any point leaves nothing that claims to be complete, and
//! the repository stays valid.
//!
//! `run` is the sequence of phases: `preflight` (before maintenance mode is touched), the run's
//! folder on the staging share (`staging`), the `window`, and the parts stored and sealed
//! (`store`, with `database` for BACKUP DATABASE and VERIFYONLY). A failure once the folder
//! exists is discarded in one place, unless the set was kept for the next run (`kept`).

pub mod chain;
mod database;
pub mod kept;
mod preflight;
pub mod staging;
mod store;
mod window;
pub mod window_capture;

use super::connect::{octopus_client, sql_server};
use super::journal::StateDir;
use super::steps::Steps;
use super::stop::Stop;
use crate::backupset::check::Check;
use crate::backupset::{self, Manifest, manifest};
use crate::config::InstanceConfig;
use crate::error::{Exit, Failure};
use crate::octopus::{OctopusClient, master_key};
use crate::run::progress::Ui;
use crate::secret::Secret;
use crate::sqlserver::{SqlServer, client as sql};
use octobackup_repo::Repo;
use staging::{SetFolder, discard_run};
use std::path::PathBuf;
use std::sync::Arc;
use window_capture::{Capture, Listing};

/// Everything a backup run needs, resolved from the config.
pub struct BackupJob {
    pub instance_name: String,
    pub instance: InstanceConfig,
    pub state: StateDir,
    pub repo: Arc<Repo>,
    pub compression: Option<i32>,
    /// age public keys the set's master key and license are also sealed to (`[escrow]`).
    pub escrow_recipients: Vec<String>,
    /// The repository's location, for the escrow copy kept beside it.
    pub repository_location: String,
    pub ui: Ui,
    /// Ctrl-C and SIGTERM, heard from the job's creation to the end of the run.
    pub stop: Stop,
    /// Told at once when maintenance mode could not be put back (exit 7), before the run cleans
    /// up: `[notify]` sends it before anything else can fail or hang.
    pub alarm: Option<crate::notify::Alarm>,
    /// The connection running BACKUP DATABASE, while it runs: when the window's budget cuts the
    /// BACKUP short, it is kept here to tell SQL Server to stop (ATTENTION) after the drop.
    running_backup: Arc<tokio::sync::Mutex<Option<sql::Session>>>,
}

impl BackupJob {
    /// The job the config describes for one instance.
    pub fn new(
        config: &crate::config::Config,
        config_path: &std::path::Path,
        name: &str,
        instance: InstanceConfig,
        repo: Arc<Repo>,
        ui: Ui,
    ) -> Self {
        BackupJob {
            instance_name: name.to_string(),
            instance,
            state: StateDir::new(&config.state_dir(config_path)),
            repo,
            compression: config.repository.compression,
            escrow_recipients: config
                .escrow
                .as_ref()
                .map(|e| e.age_recipients.clone())
                .unwrap_or_default(),
            repository_location: config.repository.location.clone(),
            ui,
            stop: Stop::listen(),
            alarm: None,
            running_backup: Default::default(),
        }
    }

    async fn raise_alarm(&self, f: Failure) -> Failure {
        if let Some(alarm) = &self.alarm {
            alarm(f.message.clone()).await;
        }
        f
    }
}

#[derive(Debug, serde::Serialize)]
pub struct BackupReport {
    pub set_id: String,
    pub snapshot_id: String,
    pub instance: String,
    pub complete: bool,
    pub window_seconds: f64,
    pub database_bytes: u64,
    pub folders: Vec<manifest::FolderInfo>,
    pub data_added: u64,
    pub steps: Vec<Check>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovered: Option<String>,
}

/// The instance's secrets, read on the Octopus host and from its API.
pub(super) struct Secrets {
    master_key: master_key::MasterKey,
    license_text: Secret,
}

/// What the window produced, handed to the ingest after maintenance mode is back.
pub(super) struct Captured {
    /// The folder entries the window changed, copied onto staging, and what it kept.
    pub(super) folders: Capture,
    /// The folder pass before the window: the base of the folders' part, deleted once the set
    /// is sealed.
    pub(super) pre_pass: Option<String>,
}

/// The server folders, and the pass over them before the window (its part's snapshot id and the
/// listing the window is judged by).
pub(super) struct Folders {
    pub(super) list: Vec<(String, PathBuf)>,
    pub(super) pre_pass: Option<(String, Arc<Listing>)>,
}

/// The instance's Octopus Server and SQL Server, as the run reaches them.
pub(super) struct Servers {
    pub(super) octopus: OctopusClient,
    pub(super) sql: SqlServer,
}

pub async fn run(job: BackupJob) -> Result<BackupReport, Failure> {
    let _lock = job.state.lock(&job.instance_name)?;
    let servers = Servers {
        octopus: octopus_client(&job.instance)?,
        sql: sql_server(&job.instance)?,
    };
    let _instance_lock = preflight::lock_instance(&job, &servers).await?;
    let recovered = preflight::clean_up_earlier_runs(&job, &servers).await?;
    let mut steps = Steps::default();
    let mut m = new_manifest(&job);
    let (folders, secrets) = preflight::check(&job, &servers, &mut m, &mut steps).await?;
    let set = SetFolder::create(&job, &m.set_id, &m.database.name)?;
    // From here on a failure discards what the run staged and stored, here and only here, unless
    // the set was kept for the next run or its clean-up already ran (`Unfinished::Settled`).
    let sealed = match staged(&job, &servers, folders, &set, &secrets, &mut m, &mut steps).await {
        Ok(sealed) => sealed,
        Err(Unfinished::Discard(e)) => {
            discard_run(&job.repo, &m.set_id, &set.local);
            return Err(e);
        }
        Err(Unfinished::Settled(e)) => return Err(e),
    };
    let (snapshot_id, data_added) = sealed;
    let _ = std::fs::remove_dir_all(&set.local);
    chain::after_set(&job, &m.database);
    Ok(BackupReport {
        set_id: m.set_id.clone(),
        snapshot_id,
        instance: job.instance_name.clone(),
        complete: true,
        window_seconds: m.window.seconds,
        database_bytes: m.database.bytes,
        folders: m.folders.clone(),
        data_added,
        steps: steps.records,
        recovered,
    })
}

/// The set's manifest as the run starts it.
fn new_manifest(job: &BackupJob) -> Manifest {
    let started = chrono::Utc::now();
    Manifest {
        format: manifest::FORMAT,
        set_id: backupset::new_set_id(started),
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        instance: job.instance_name.clone(),
        hostname: hostname(),
        started: Some(started),
        ..Default::default()
    }
}

/// How a run that got as far as its staging folder failed.
enum Unfinished {
    /// What the run staged and stored goes (`staging::discard_run`).
    Discard(Failure),
    /// Nothing is left to undo: the set was kept for the next run, or discarded already.
    Settled(Failure),
}

impl From<Failure> for Unfinished {
    fn from(e: Failure) -> Self {
        Unfinished::Discard(e)
    }
}

/// The run in its staging folder: before the window, the window, and the set stored and sealed.
/// Returns the set's snapshot id and the data it added.
async fn staged(
    job: &BackupJob,
    servers: &Servers,
    folders: Vec<(String, PathBuf)>,
    set: &SetFolder,
    secrets: &Secrets,
    m: &mut Manifest,
    steps: &mut Steps,
) -> Result<(String, u64), Unfinished> {
    let folders = preflight::before_window(job, servers, folders, set, m, steps).await?;
    let captured = window::hold(job, servers, &folders, set, m, steps).await?;
    after_window(job, &servers.sql, set, &captured, secrets, m, steps)
        .await
        .map_err(Unfinished::Settled)
}

/// After the window: ingest the .bak with the manifest and secrets, then merge into one
/// snapshot. A failure keeps the set for the next run when the storage stopped answering, else
/// discards it (`kept::keep_or_discard`).
async fn after_window(
    job: &BackupJob,
    sqlserver: &SqlServer,
    set: &SetFolder,
    c: &Captured,
    secrets: &Secrets,
    m: &mut Manifest,
    steps: &mut Steps,
) -> Result<(String, u64), Failure> {
    let stop = &job.stop;
    let previous = m.octopus.maintenance_before;
    let stored = tokio::select! {
        r = store::ingest(job, sqlserver, c, secrets, set, m, steps) => r,
        sig = stop.wait() => Err(Failure::new(Exit::Interrupted, format!("interrupted by {sig} while storing the set; maintenance mode was put back {}; nothing was marked complete", on_off(previous)))),
    };
    let stored = match stored {
        Ok(s) => s,
        // The storage stopped answering: the window's work is kept for the next run.
        Err(e) => return Err(kept::keep_or_discard(job, set, m, steps, c, e)),
    };
    // The seal is never cut short: the set is complete the moment it ends, and what the run then
    // reports (exit code, message, escrow copy) must say so. A stop heard meanwhile waits for it.
    let set_id = m.set_id.clone();
    let sealed = store::seal(job, &set_id, c, stored, m, steps).await;
    if let (Ok(_), Some(sig)) = (&sealed, stop.requested()) {
        job.ui.note(&store::sealed_despite_stop(sig));
    }
    sealed.map_err(|e| kept::keep_or_discard(job, set, m, steps, c, e))
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

pub(crate) fn hostname() -> String {
    std::env::var("COMPUTERNAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "localhost".into())
        })
}

/// Files the store could not take: the set would be incomplete, so the run fails, naming the
/// first ten.
pub(super) fn unreadable_files(unreadable: &[(String, String)], what: &str) -> Failure {
    let list: Vec<String> = unreadable
        .iter()
        .take(10)
        .map(|(p, e)| format!("{p}: {e}"))
        .collect();
    Failure::new(
        Exit::Failed,
        format!(
            "{} file(s) in the server folders {what}, so the set would be incomplete: {}",
            unreadable.len(),
            list.join("; ")
        ),
    )
}
