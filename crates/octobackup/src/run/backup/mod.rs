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

pub mod chain;
pub mod kept;
pub mod window_capture;

pub use super::connect::{octopus_client, sql_server, sql_side_path};
use super::journal::{JournalError, StateDir};
use super::maintenance::{self, Entered, Held, MaintenanceError};
use super::steps::Steps;
use super::stop::Stop;
use crate::backupset::{self, Manifest, manifest};
use crate::config::{InstanceConfig, OnWaitTimeout};
use crate::error::{Exit, Failure};
use crate::octopus::{OctopusClient, master_key};
use crate::run::progress::Ui;
use crate::secret::Secret;
use crate::sqlserver::lock::LockError;
use crate::sqlserver::{SqlServer, client as sql, tsql};
use octobackup_repo::{Repo, SetOptions, SourceItem};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use window_capture::{Capture, Listing};
use zeroize::Zeroizing;

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
    pub steps: Vec<manifest::StepRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovered: Option<String>,
}

/// The instance's secrets, read on the Octopus host and from its API.
pub(super) struct Secrets {
    master_key: master_key::MasterKey,
    license_text: Secret,
}

async fn capture_secrets(
    job: &BackupJob,
    octopus: &OctopusClient,
    m: &mut Manifest,
    steps: &mut Steps,
) -> Result<Secrets, Failure> {
    let key = steps
        .run("master key", async {
            master_key::read(&job.instance.master_key)
                .await
                .map_err(Failure::from)
        })
        .await?;
    m.secrets.master_key = true;
    m.secrets.master_key_bytes = key.bytes;
    let (license, status) = steps
        .run("license", async {
            let l = octopus.license().await?;
            let status = octopus.license_status().await.ok();
            Ok::<_, Failure>((l, status))
        })
        .await?;
    m.secrets.license = !license.license_text.is_empty();
    m.secrets.license_expiry = status.and_then(|s| s.effective_expiry_date);
    Ok(Secrets {
        master_key: key,
        license_text: Secret::new(license.license_text.clone()),
    })
}

/// What the window produced, handed to the ingest after maintenance mode is back.
pub(super) struct Captured {
    pub(super) bak_local: Vec<PathBuf>,
    /// The folder entries the window changed, copied onto staging, and what it kept.
    pub(super) folders: Capture,
    /// The folder pass before the window: the base of the folders' part, deleted once the set
    /// is sealed.
    pub(super) pre_pass: Option<String>,
}

pub async fn run(job: BackupJob) -> Result<BackupReport, Failure> {
    let stop = job.stop.clone();
    let _lock = job.state.lock(&job.instance_name)?;
    let octopus = octopus_client(&job.instance)?;
    let sqlserver = sql_server(&job.instance)?;
    // The lock every runner meets, on any machine, before anything touches maintenance mode.
    let _instance_lock = match sqlserver.lock_instance(&job.instance_name).await {
        Ok(lock) => lock,
        // Another run is going on: its journal is not ours to judge, nothing is touched.
        Err(e @ LockError::Held { .. }) => return Err(e.into()),
        // SQL Server down or refusing must not keep maintenance mode as a killed run of ours left
        // it: its journal is here, under our local lock, so it is undone before this run stops.
        Err(e) => {
            let mut f = Failure::from(e);
            if let Some(action) = recover_earlier_run(&job, &octopus).await? {
                f.message = format!(
                    "{} (Before stopping, octobackup put back what an interrupted earlier run left: {action}.)",
                    f.message.trim_end_matches('.')
                );
            }
            return Err(f);
        }
    };
    let mut steps = Steps::default();

    // A run that died with maintenance mode changed is undone before anything else.
    let recovered = recover_earlier_run(&job, &octopus).await?;

    // What killed runs left on the staging share (full, unencrypted copies of the database).
    for note in remove_staging_leftovers(&job.instance_name, &job.instance) {
        job.ui.note(&note);
    }
    // And what killed restores and drills left (a drill's only when no drill is going on).
    let drill_lock = job.state.lock(&format!("{} drill", job.instance_name));
    let allowed = super::leftovers::Allowed {
        restore: true,
        drill: drill_lock.is_ok(),
        except: None,
    };
    let staging = job.instance.staging_local();
    for note in super::leftovers::remove(&job.instance_name, &staging, &sqlserver, allowed).await {
        job.ui.note(&note);
    }
    drop(drill_lock);

    let before_window = |sig: &str| {
        Failure::new(
            Exit::Interrupted,
            format!("interrupted by {sig} before the maintenance window; nothing changed"),
        )
    };
    if let Some(sig) = stop.requested() {
        return Err(before_window(sig));
    }

    let started = chrono::Utc::now();
    let set_id = backupset::new_set_id(started);
    let mut m = Manifest {
        format: manifest::FORMAT,
        set_id: set_id.clone(),
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        instance: job.instance_name.clone(),
        hostname: hostname(),
        started: Some(started),
        ..Default::default()
    };

    // Preflight, outside the window: everything that can be checked without maintenance mode.
    let pre = steps.start("preflight");
    let preflight = tokio::select! {
        r = preflight(&job, &octopus, &sqlserver, &mut m) => r,
        sig = stop.wait() => Err(before_window(sig)),
    };
    steps.finish(
        pre,
        preflight.is_ok(),
        preflight.as_ref().err().map(|e| e.message.clone()),
    );
    let folders = preflight?;

    // A bad escrow key is a config error: refuse before anything changes.
    if !job.escrow_recipients.is_empty() {
        crate::backupset::escrow::parse_recipients(&job.escrow_recipients)?;
    }

    // The master key and the license do not change while Octopus runs: read them before the
    // window, so a missing right or a wrong command stops the run before maintenance mode is touched.
    let secrets = tokio::select! {
        r = capture_secrets(&job, &octopus, &mut m, &mut steps) => r?,
        sig = stop.wait() => return Err(before_window(sig)),
    };
    // Sets kept on staging by earlier runs whose storage stopped after their window.
    kept::store_kept_sets(&job, &sqlserver, &secrets, &m.database.name).await?;

    // A folder of its own per set on the staging share, so the staged files carry the names they
    // get in the set and nothing else on the share is touched.
    let stripe_names =
        backupset::stripe_names(&m.database.name, job.instance.sql.stripes.unwrap_or(1));
    let set_folder = format!("octobackup-{set_id}");
    let staging_local = job.instance.staging_local().join(&set_folder);
    let staging_sql = sql_side_path(&job.instance.staging.sql_path, &set_folder);
    std::fs::create_dir_all(&staging_local).map_err(|e| {
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
    if let Err(e) = write_marker(&staging_local, &marker.to_string()) {
        let _ = std::fs::remove_dir_all(&staging_local);
        return Err(Failure::new(
            Exit::Failed,
            format!(
                "cannot write in {} on the staging share: {e}",
                staging_local.display()
            ),
        ));
    }
    let bak_sql: Vec<String> = stripe_names
        .iter()
        .map(|n| sql_side_path(&staging_sql, n))
        .collect();
    let bak_local: Vec<PathBuf> = stripe_names.iter().map(|n| staging_local.join(n)).collect();

    // sql.chain = "owned": the differential base, before the window (run/backup/chain.rs).
    let chained = tokio::select! {
        r = chain::before_window(&job, &sqlserver, &set_id, &stripe_names, &mut m, &mut steps) => r,
        sig = stop.wait() => Err(before_window(sig)),
    };
    if let Err(e) = chained {
        discard_run(&job.repo, &set_id, &staging_local);
        return Err(e);
    }

    // The folders are mostly immutable (packages) or append-only (logs): a first full pass before
    // the window leaves only the changes to copy inside it (the window is what users feel). The listing the
    // window is judged by is taken before the pass reads anything and kept on local staging.
    let pre_pass = if job.instance.folders_before_window {
        let r = steps.start("server folders (before the window)");
        let pass = tokio::select! {
            r = async {
                let listing = Listing::take(&folders, &staging_local)?;
                let id = backup_folders(&job, &folders, &set_id, &m.hostname).await?;
                Ok::<_, Failure>((id, Arc::new(listing)))
            } => r,
            sig = stop.wait() => Err(before_window(sig)),
        };
        steps.finish(
            r,
            pass.is_ok(),
            pass.as_ref().err().map(|e| e.message.clone()),
        );
        match pass {
            Ok(result) => Some(result),
            Err(e) => {
                discard_run(&job.repo, &set_id, &staging_local);
                return Err(e);
            }
        }
    } else {
        None
    };

    if let Some(sig) = stop.requested() {
        discard_run(&job.repo, &set_id, &staging_local);
        return Err(before_window(sig));
    }

    // The window.
    let enter = steps.start("maintenance mode on");
    let window = match maintenance::enter(&octopus, &job.state, &job.instance_name, &set_id, &stop)
        .await
    {
        Ok(Entered::Stopped(sig)) => {
            steps.finish(enter, false, Some(format!("stopped by {sig}")));
            discard_run(&job.repo, &set_id, &staging_local);
            return Err(Failure::new(
                Exit::Interrupted,
                format!(
                    "interrupted by {sig} while turning maintenance mode on; it is off, as found, and nothing was backed up"
                ),
            ));
        }
        Ok(Entered::Window(w)) => {
            steps.finish(
                enter,
                true,
                Some(if w.changed {
                    "turned on".into()
                } else {
                    "was already on; left on".into()
                }),
            );
            w
        }
        Err(e) => {
            steps.finish(enter, false, Some(e.to_string()));
            discard_run(&job.repo, &set_id, &staging_local);
            return Err(e.into());
        }
    };
    m.octopus.maintenance_before = window.previous;
    m.window.start = Some(window.started);
    m.window.changed_by_octobackup = window.changed;

    // The window's budget runs from the moment maintenance mode went on.
    let budget = job.instance.wait.window_budget();
    let deadline = tokio::time::Instant::now()
        + budget.saturating_sub(
            (chrono::Utc::now() - window.started)
                .to_std()
                .unwrap_or_default(),
        );
    let track = window_capture::Track::default();
    let capture_dest = staging_local.join(window_capture::CAPTURE_DIR);
    let inside = tokio::select! {
        r = tokio::time::timeout_at(deadline, inside_window(&job, &octopus, &sqlserver, &folders, &bak_sql, &bak_local, &set_id, pre_pass.as_ref(), &capture_dest, &track, &mut m, &mut steps)) => {
            r.unwrap_or_else(|_| Err(window_capture::overran(budget, &track.running(), window.previous)))
        }
        // While BACKUP DATABASE runs, its own step stops it on the server first (ATTENTION).
        sig = stop_after_backup(&stop, &track) => Err(Failure::new(Exit::Interrupted, format!("interrupted by {sig}; maintenance mode was put back {}; nothing was marked complete", on_off(window.previous)))),
    };
    let inside = inside.map_err(|mut e| {
        if stop.requested().is_some()
            && e.message.starts_with("interrupted by ")
            && !e.message.contains("maintenance mode was put back")
        {
            e.message = format!(
                "{}; maintenance mode was put back {}; nothing was marked complete",
                e.message,
                on_off(window.previous)
            );
        }
        e
    });

    // Did the window hold? Someone may have turned maintenance mode off (the backup may then hold
    // changes made outside it) or set it on themselves (theirs now: left on).
    let mut inside = inside;
    let mut theirs = false;
    if inside.is_ok() {
        // Reading maintenance mode back is part of the window, so of its budget.
        let held =
            tokio::time::timeout_at(deadline, maintenance::check_window(&octopus, &window)).await;
        if held.is_err() {
            inside = Err(window_capture::overran(
                budget,
                &["reading maintenance mode back".to_string()],
                window.previous,
            ));
        }
        match held.unwrap_or(Ok(Held::Yes)) {
            Ok(Held::Yes) => {}
            Ok(Held::TurnedOff { by, at }) => {
                theirs = true;
                inside = Err(Failure::new(
                    Exit::Failed,
                    format!(
                        "maintenance mode was turned off during the window (by {by} at {at}), so the database backup may hold changes made outside it: nothing was marked complete. Maintenance mode stays off, as {by} set it; run the backup again."
                    ),
                ));
            }
            Ok(Held::SetByOthers { by, at }) => {
                theirs = window.changed;
                let note = format!(
                    "maintenance mode was set by {by} at {at} during the window; octobackup leaves it on"
                );
                job.ui.note(&note);
                m.window.changed_by_others = Some(note);
            }
            Err(e) => {
                inside = Err(Failure::new(
                    Exit::Octopus,
                    format!(
                        "maintenance mode could not be read after the database backup ({}), so whether the window held is unknown: nothing was marked complete",
                        e.to_string().trim_end_matches('.')
                    ),
                ));
            }
        }
    }

    let leave = steps.start("maintenance mode restored");
    let left = if theirs {
        maintenance::release(&job.state, &job.instance_name)
    } else {
        maintenance::leave(&octopus, &job.state, &job.instance_name, &window).await
    };
    let window_end = chrono::Utc::now();
    steps.finish(
        leave,
        left.is_ok(),
        left.as_ref().err().map(|e| e.to_string()),
    );
    m.window.end = Some(window_end);
    m.window.seconds = (window_end - window.started).num_milliseconds() as f64 / 1000.0;
    // A BACKUP DATABASE the budget or a stop cut short is told to stop, maintenance mode back.
    if let Err(f) = inside {
        inside = Err(stop_cut_backup(&job, &staging_local, f).await);
    }

    if let Err(e) = left {
        let stuck = job
            .raise_alarm(Failure::new(
                Exit::MaintenanceStuck,
                format!(
                    "MAINTENANCE MODE COULD NOT BE PUT BACK {}: {}. Turn it {} in Octopus (Configuration > Maintenance) or run `octobackup recover` once the server answers.",
                    if window.previous { "ON" } else { "OFF" },
                    e.to_string().trim_end_matches('.'),
                    if window.previous { "on" } else { "off" }
                ),
            ))
            .await;
        discard_run(&job.repo, &set_id, &staging_local);
        return Err(stuck);
    }
    let captured = match inside {
        Ok(c) => c,
        Err(e) => {
            discard_run(&job.repo, &set_id, &staging_local);
            return Err(e);
        }
    };
    // A stop heard while maintenance mode was put back.
    if let Some(sig) = stop.requested() {
        discard_run(&job.repo, &set_id, &staging_local);
        return Err(Failure::new(
            Exit::Interrupted,
            format!(
                "interrupted by {sig}; maintenance mode was put back {}; nothing was marked complete",
                on_off(window.previous)
            ),
        ));
    }

    // After the window: ingest the .bak with the manifest and secrets, then merge into one snapshot.
    let stored = tokio::select! {
        r = ingest(&job, &sqlserver, &set_id, &captured, &secrets, &bak_sql, &mut m, &mut steps) => r,
        sig = stop.wait() => Err(Failure::new(Exit::Interrupted, format!("interrupted by {sig} while storing the set; maintenance mode was put back {}; nothing was marked complete", on_off(window.previous)))),
    };
    let stored = match stored {
        Ok(s) => s,
        Err(e) => {
            // The storage stopped answering: the window's work is kept for the next run.
            return Err(kept::keep_or_discard(
                &job,
                &staging_local,
                &m,
                &steps,
                &captured,
                e,
            ));
        }
    };
    // The seal is never cut short: the set is complete the moment it ends, and what the run then
    // reports (exit code, message, escrow copy) must say so. A stop heard meanwhile waits for it.
    let sealed = seal(&job, &set_id, &captured, stored, &mut m, &mut steps).await;
    if let (Ok(_), Some(sig)) = (&sealed, stop.requested()) {
        job.ui.note(&sealed_despite_stop(sig));
    }
    match sealed {
        Ok((snapshot_id, data_added)) => {
            let _ = std::fs::remove_dir_all(&staging_local);
            chain::after_set(&job, &m.database);
            Ok(BackupReport {
                set_id,
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
        Err(e) => Err(kept::keep_or_discard(
            &job,
            &staging_local,
            &m,
            &steps,
            &captured,
            e,
        )),
    }
}

/// The window's budget ran out, and with BACKUP DATABASE still running its statement was dropped:
/// SQL Server is told to stop it (ATTENTION on its connection, and its acknowledgment awaited),
/// and the message says what became of it. Without the acknowledgment the BACKUP may still be
/// writing in the staging folder, so the folder is kept with its marker for the next run's
/// leftover clean-up rather than removed under SQL Server's feet.
async fn stop_cut_backup(job: &BackupJob, staging: &std::path::Path, mut f: Failure) -> Failure {
    let Some(mut session) = job.running_backup.lock().await.take() else {
        return f;
    };
    let base = f.message.trim_end_matches('.').to_string();
    let stopped = session.stop(STOP_WAIT).await;
    f.message = if stopped == crate::sqlserver::Stopped::Acknowledged {
        format!("{base}. SQL Server stopped the cut BACKUP DATABASE (ATTENTION, acknowledged).")
    } else {
        format!(
            "{base}. The cut BACKUP DATABASE: {}{}.",
            stopped.describe("BACKUP DATABASE", STOP_WAIT),
            keep_if_running(&stopped, staging)
        )
    };
    f
}

/// How long SQL Server is given to acknowledge ATTENTION before octobackup KILLs the session.
const STOP_WAIT: Duration = Duration::from_secs(15);

/// A BACKUP that may still run may still write in its staging folder: the folder is kept with
/// its marker (`discard_run` leaves it) for the next run's clean-up. Says so, or nothing.
fn keep_if_running(stopped: &crate::sqlserver::Stopped, staging: &std::path::Path) -> String {
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

/// Undoes the maintenance change a killed run of this state folder left (its journal); call with
/// the local instance lock held. `Some(what was done)` when there was such a run.
async fn recover_earlier_run(
    job: &BackupJob,
    octopus: &OctopusClient,
) -> Result<Option<String>, Failure> {
    match maintenance::recover(octopus, &job.state, &job.instance_name).await {
        Ok(r) if r.found_record => {
            job.ui
                .note(&format!("recovered an interrupted run: {}", r.action));
            Ok(Some(r.action))
        }
        Ok(_) => Ok(None),
        // It says itself what to do.
        Err(MaintenanceError::Journal(e @ JournalError::Torn { .. })) => Err(e.into()),
        Err(e) => Err(job
            .raise_alarm(Failure::new(
                Exit::MaintenanceStuck,
                format!(
                    "an earlier run left maintenance mode changed and it could not be put back: {e}"
                ),
            ))
            .await),
    }
}

/// Undoes what a failed run stored: its staging folder and every part snapshot of its set (found
/// by tag, so parts written by a pass the failure interrupted go too). Best effort: what is left
/// is tagged `part`, never `complete`, and `forget` removes it.
pub(super) fn discard_run(repo: &Repo, set_id: &str, staging: &std::path::Path) {
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

/// A stop request; while BACKUP DATABASE runs, heard only after its step had the time to stop
/// the statement on the server and return.
async fn stop_after_backup(stop: &Stop, track: &window_capture::Track) -> &'static str {
    let sig = stop.wait().await;
    if track.running().iter().any(|r| r == "BACKUP DATABASE") {
        // ATTENTION's wait, then KILL's budget, and a margin.
        tokio::time::sleep(
            STOP_WAIT + crate::sqlserver::kill::KILL_BUDGET + Duration::from_secs(5),
        )
        .await;
    }
    sig
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

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
        .filter(|e| !kept::is_kept(&e.path()))
        .filter(|e| {
            std::fs::read(e.path().join(STAGING_MARKER))
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .is_some_and(|v| v["instance"] == instance_name)
        })
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
    let marked = |dir: &std::path::Path| {
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
fn write_marker(dir: &std::path::Path, marker: &str) -> std::io::Result<()> {
    std::fs::write(dir.join(STAGING_MARKER), marker).or_else(|_| {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join(STAGING_MARKER), marker)
    })
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

async fn preflight(
    job: &BackupJob,
    octopus: &OctopusClient,
    sqlserver: &SqlServer,
    m: &mut Manifest,
) -> Result<Vec<(String, PathBuf)>, Failure> {
    let root = octopus.root().await?;
    m.octopus.url = octopus.url().to_string();
    m.octopus.version = root.version.clone();
    m.octopus.installation_id = root.installation_id.clone().unwrap_or_default();
    m.octopus.nodes = octopus
        .nodes()
        .await
        .map(|n| n.into_iter().map(|n| n.name).collect())
        .unwrap_or_default();

    let mut session = sqlserver.connect().await?;
    let info = session.server_info().await?;
    // Azure SQL Database, Managed Instance and RDS have no BACKUP TO DISK: refuse before the window.
    info.check_backup_to_disk(&sqlserver.server_display())?;
    let database = sqlserver.database().to_string();
    if !session.database_exists(&database).await? {
        return Err(crate::sqlserver::SqlError::NoDatabase {
            server: sqlserver.server_display(),
            database,
        }
        .into());
    }
    // BACKUP and the VERIFYONLY after it need permissions a DBA grants: refuse before the window.
    if !info.is_sysadmin {
        let perms = crate::sqlserver::permissions::read(&mut session, &database).await?;
        let missing: Vec<_> = perms
            .gaps()
            .into_iter()
            .filter(|g| matches!(g.check, "sql-permission" | "sql-create-database"))
            .collect();
        if !missing.is_empty() {
            return Err(Failure::new(
                Exit::Sql,
                format!(
                    "the SQL login cannot back up {database}: {}. Have a DBA run: {} (octobackup doctor lists every grant)",
                    missing
                        .iter()
                        .map(|g| g.detail.as_str())
                        .collect::<Vec<_>>()
                        .join("; "),
                    missing
                        .iter()
                        .map(|g| g.grant.as_str())
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
            ));
        }
    }
    m.database.name = database;
    m.database.server = sqlserver.server_display();
    m.database.product_version = info.product_version.clone();
    m.database.edition = info.edition.clone();

    let folders: Vec<(String, PathBuf)> = if job.instance.folders.is_empty() {
        octopus
            .server_folders()
            .await?
            .named()
            .into_iter()
            .map(|(n, p)| (n.to_string(), PathBuf::from(p)))
            .collect()
    } else {
        job.instance
            .folders
            .iter()
            .map(|(n, p)| (n.clone(), p.clone()))
            .collect()
    };
    for (name, path) in &folders {
        if !path.is_dir() {
            return Err(Failure::new(
                Exit::Failed,
                format!(
                    "the {name} folder {} is not readable from here. Run octobackup where the server folders are reachable, or set [instance.{}.folders] to the path as this machine sees it.",
                    path.display(),
                    job.instance_name
                ),
            ));
        }
    }
    let staging = job.instance.staging_local();
    if !staging.is_dir() {
        return Err(Failure::new(
            Exit::Failed,
            format!(
                "the staging folder {} does not exist here. Create it (SQL Server must be able to write it as {}) or set staging.local_path.",
                staging.display(),
                job.instance.staging.sql_path
            ),
        ));
    }
    Ok(folders)
}

#[allow(clippy::too_many_arguments)]
async fn inside_window(
    job: &BackupJob,
    octopus: &OctopusClient,
    sqlserver: &SqlServer,
    folders: &[(String, PathBuf)],
    bak_sql: &[String],
    bak_local: &[PathBuf],
    set_id: &str,
    pre_pass: Option<&(String, Arc<Listing>)>,
    capture_dest: &std::path::Path,
    track: &window_capture::Track,
    m: &mut Manifest,
    steps: &mut Steps,
) -> Result<Captured, Failure> {
    m.window.inside.push("wait for running tasks".into());
    track.start("the wait for running tasks");
    let running = steps
        .run("wait for running tasks", wait_for_tasks(job, octopus))
        .await?;
    track.end("the wait for running tasks");
    m.tasks_running_at_backup = running;

    // The database backup (SQL Server's work) and the folder capture (local copies, never the
    // repository) do not depend on each other: run them side by side so the window lasts as long
    // as the longer one.
    m.window.inside.push("database backup".into());
    let db = m.database.name.clone();
    let differential = chain::differential_tonight(&m.database);
    let db_step = steps.start(if differential {
        "database backup (differential)"
    } else {
        "database backup"
    });
    let folder_step = steps.start(if pre_pass.is_some() {
        "server folders (capture changes)"
    } else {
        "server folders (capture)"
    });
    let (db_result, folder_result) = tokio::join!(
        async {
            track.start("BACKUP DATABASE");
            let r = backup_database(
                job,
                sqlserver,
                &db,
                bak_sql,
                bak_local,
                set_id,
                differential,
            )
            .await;
            track.end("BACKUP DATABASE");
            (r, std::time::Instant::now())
        },
        async {
            track.start("the copy of the changed folder files onto staging");
            let r = window_capture::capture_blocking(
                folders.to_vec(),
                pre_pass.map(|p| p.1.clone()),
                capture_dest.to_path_buf(),
            )
            .await;
            track.end("the copy of the changed folder files onto staging");
            (r, std::time::Instant::now())
        }
    );
    let ((db_result, db_end), (folder_result, folder_end)) = (db_result, folder_result);
    steps.finish_at(
        db_step,
        db_end,
        db_result.is_ok(),
        db_result.as_ref().err().map(|e| e.message.clone()),
    );
    steps.finish_at(
        folder_step,
        folder_end,
        folder_result.is_ok(),
        folder_result.as_ref().err().map(|e| e.message.clone()),
    );
    db_result?;
    let capture = folder_result?;
    m.window.inside.push(match pre_pass {
        Some(_) if capture.changed == 0 => {
            "server folders (checked: unchanged since the first pass)".into()
        }
        Some(_) => "server folders (changes since the first pass, copied to staging)".into(),
        None => "server folders (copied to staging)".into(),
    });
    m.folders = capture.infos.clone();
    m.window.folder_files_read = capture.files_copied;

    Ok(Captured {
        bak_local: bak_local.to_vec(),
        folders: capture,
        pre_pass: pre_pass.map(|p| p.0.clone()),
    })
}

/// Waits until no task is Executing or Cancelling (and none Queued if configured); returns the
/// names of tasks still running when the wait gave up under on_timeout = continue.
///
/// A cancelled task keeps running while it is Cancelling (its step is stopped and cleaned up), so
/// it counts as running, as in Octopus's own drain script (`states=Executing,Cancelling`). A task
/// list that cannot be read for a while (a restarting node, a load balancer) is asked again until
/// `wait.timeout`: only then does the wait fail.
async fn wait_for_tasks(job: &BackupJob, octopus: &OctopusClient) -> Result<Vec<String>, Failure> {
    let wait = &job.instance.wait;
    let states: &[&str] = if wait.include_queued {
        &["Executing", "Cancelling", "Queued"]
    } else {
        &["Executing", "Cancelling"]
    };
    let deadline = tokio::time::Instant::now() + wait.timeout;
    loop {
        let tasks = match octopus.tasks(states).await {
            Ok(tasks) => tasks,
            Err(e) if e.transient() && tokio::time::Instant::now() < deadline => {
                job.ui.note(&format!(
                    "cannot read the task list ({e}); asking again until the wait's limit ({})",
                    humantime::format_duration(wait.timeout)
                ));
                tokio::time::sleep(
                    wait.poll_interval
                        .min(deadline.saturating_duration_since(tokio::time::Instant::now()))
                        .max(Duration::from_millis(50)),
                )
                .await;
                continue;
            }
            Err(e) if e.transient() => {
                return Err(Failure::new(
                    Exit::Octopus,
                    format!(
                        "the task list could not be read within the wait's limit ({}): {e}. Nothing was backed up and maintenance mode is put back. Check the Octopus Server's health, or raise wait.timeout.",
                        humantime::format_duration(wait.timeout)
                    ),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<String> = tasks
            .iter()
            .map(|t| format!("{} ({}, {})", t.id, t.description.trim(), t.state))
            .collect();
        job.ui.status(&format!(
            "waiting for {} task(s): {}",
            tasks.len(),
            names.join("; ")
        ));
        if tokio::time::Instant::now() >= deadline {
            return match wait.on_timeout {
                OnWaitTimeout::Abort => Err(Failure::new(
                    Exit::Failed,
                    format!(
                        "tasks still running after waiting {}: {}. Nothing was backed up and maintenance mode is put back. Let them finish, cancel them, or set wait.on_timeout = \"continue\".",
                        humantime::format_duration(wait.timeout),
                        names.join("; ")
                    ),
                )),
                OnWaitTimeout::Continue => {
                    job.ui.note(&format!(
                        "going on while tasks still run (wait.on_timeout = continue): {}",
                        names.join("; ")
                    ));
                    Ok(names)
                }
            };
        }
        tokio::time::sleep(
            wait.poll_interval
                .min(deadline.saturating_duration_since(tokio::time::Instant::now()))
                .max(Duration::from_millis(50)),
        )
        .await;
    }
}

/// The DESCRIPTION octobackup gives its BACKUP, by which it finds its own msdb row.
fn backup_description(set_id: &str) -> String {
    format!("octobackup set {set_id}")
}

async fn backup_database(
    job: &BackupJob,
    sqlserver: &SqlServer,
    database: &str,
    bak_sql: &[String],
    bak_local: &[PathBuf],
    set_id: &str,
    differential: bool,
) -> Result<(), Failure> {
    let mut slot = job.running_backup.lock().await;
    let session = slot.insert(sqlserver.connect_unbounded().await?);
    let spid = match session.server_info().await {
        Ok(info) => info.spid,
        Err(e) => {
            slot.take();
            return Err(e.into());
        }
    };
    let statement = if differential {
        crate::sqlserver::chain::backup_differential(database, bak_sql, &backup_description(set_id))
    } else {
        tsql::backup_database(database, bak_sql, 5, &backup_description(set_id))
    };
    let bar = job.ui.percent_bar("BACKUP DATABASE");
    let first = bak_sql.first().map(String::as_str);
    let stop = job.stop.clone();
    let progress = |p| bar.set(p);
    let ran = tokio::select! {
        r = sql::run_with_progress(
            sqlserver,
            &mut *session,
            spid,
            "BACKUP DATABASE",
            &statement,
            first,
            &progress,
        ) => r,
        sig = stop.wait() => {
            // A dropped connection leaves the server's BACKUP running until it notices: stop it
            // with ATTENTION on its own connection, as the drill does, and KILL without an answer.
            let stopped = session.stop(STOP_WAIT).await;
            slot.take();
            let kept = bak_local
                .first()
                .and_then(|p| p.parent())
                .map(|staging| keep_if_running(&stopped, staging))
                .unwrap_or_default();
            return Err(Failure::new(
                Exit::Interrupted,
                format!(
                    "interrupted by {sig}; {}{kept}",
                    stopped.describe("BACKUP DATABASE", STOP_WAIT)
                ),
            ));
        }
    };
    // It ended on its own: nothing to stop.
    let Some(mut session) = slot.take() else {
        unreachable!("the slot holds the session until here")
    };
    if let Err(crate::sqlserver::SqlError::StagingNotWritable { path, message, .. }) = &ran
        // Windows reports a missing folder as OS error 3, SQL Server on Linux as error 2
        && (message.contains("error 3(") || message.contains("error 2("))
    {
        // octobackup created the set's folder through its own view of the share; SQL Server cannot find it.
        let local = bak_local
            .first()
            .and_then(|p| p.parent())
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        return Err(Failure::new(
            Exit::Sql,
            format!(
                "SQL Server cannot find the staging folder: octobackup created {local}, but SQL Server sees no {} (Msg 3201: {message}). staging.sql_path and staging.local_path must name the same folder (a share both can reach).",
                path.rsplit_once(['\\', '/'])
                    .map(|(d, _)| d)
                    .unwrap_or(path)
            ),
        ));
    }
    // The staging share filled up (Msg 3202, operating system error 112): say where, how much.
    if let Err(e) = &ran
        && super::space::is_disk_full(&e.to_string())
    {
        let needed = database_size(&mut session, database).await;
        return Err(super::space::full(
            Exit::Sql,
            "the staging folder",
            &job.instance.staging_local(),
            needed,
            &format!(
                "BACKUP DATABASE could not write its file there ({}). Free space on the staging share or point staging at a bigger one; nothing was marked complete.",
                e.to_string().trim_end_matches('.')
            ),
        ));
    }
    ran?;
    bar.finish();
    Ok(())
}

/// The database's data files' size (sys.master_files, in 8 KiB pages): what a full backup needs
/// at most. `None` when it cannot be read.
async fn database_size(session: &mut sql::Session, database: &str) -> Option<u64> {
    let rows = session
        .query_text(
            "size of the database",
            &format!(
                "SELECT type, size FROM sys.master_files WHERE database_id = DB_ID({})",
                tsql::quote_str(database)
            ),
        )
        .await
        .ok()?;
    let pages: u64 = rows
        .iter()
        .filter(|r| r.get("type").cloned().flatten().as_deref() == Some("0"))
        .filter_map(|r| r.get("size").cloned().flatten()?.parse::<u64>().ok())
        .sum();
    (pages > 0).then_some(pages * 8192)
}

/// After the window: RESTORE VERIFYONLY, the msdb row, and the staged files as octobackup sees
/// them. None of it needs maintenance mode, so none of it lengthens the window.
async fn verify_database(
    job: &BackupJob,
    sqlserver: &SqlServer,
    database: &str,
    bak_sql: &[String],
    bak_local: &[PathBuf],
    set_id: &str,
    info: &mut manifest::DatabaseInfo,
) -> Result<(), Failure> {
    let mut session = sqlserver.connect_unbounded().await?;
    let first = bak_sql.first().map(String::as_str);
    session
        .execute(
            "RESTORE VERIFYONLY",
            &tsql::restore_verifyonly(bak_sql),
            first,
        )
        .await?;
    info.verified = true;
    chain::confirm(job, &mut session, bak_sql, info).await?;
    // The history row is a record, not the backup: without it (no SELECT in msdb) the set is
    // still complete and verified.
    match session
        .backupset_row(database, &backup_description(set_id))
        .await
    {
        Ok(row) => info.backupset = row,
        Err(e) => job.ui.note(&format!(
            "warning: the backup is verified, but its msdb history row could not be read, so the set records no LSNs ({e}). Grant the login SELECT on msdb.dbo.backupset and msdb.dbo.backupmediafamily to record them."
        )),
    }
    // TDE: a restore on another server needs the certificate. Unknown rather than a failed set.
    info.tde_encrypted = session
        .query_text(
            "TDE state",
            &format!(
                "SELECT CAST(is_encrypted AS int) AS IsEncrypted FROM sys.databases WHERE name = {}",
                tsql::quote_str(database)
            ),
        )
        .await
        .ok()
        .and_then(|rows| rows.first()?.get("IsEncrypted").cloned().flatten())
        .map(|v| v.trim() == "1");
    let mut bytes = 0;
    for (local, sqlp) in bak_local.iter().zip(bak_sql) {
        match std::fs::metadata(local) {
            Ok(meta) => bytes += meta.len(),
            Err(_) => {
                return Err(Failure::new(
                    Exit::Failed,
                    format!(
                        "SQL Server wrote {sqlp} but octobackup cannot see it as {}. staging.sql_path and staging.local_path must name the same folder (a share both can reach).",
                        local.display()
                    ),
                ));
            }
        }
    }
    info.bytes = bytes;
    info.files = bak_local
        .iter()
        .map(|p| {
            format!(
                "{}/{}",
                backupset::DATABASE_DIR,
                p.file_name().unwrap().to_string_lossy()
            )
        })
        .collect();
    Ok(())
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

fn base_tags(job: &BackupJob, set_id: &str) -> Vec<String> {
    vec![
        backupset::TAG.to_string(),
        backupset::tag_set(set_id),
        backupset::tag_instance(&job.instance_name),
    ]
}

const TAG_PRE_PASS: &str = "pass:before-window";

/// The pass over the server folders before the window: a part of the set (its parent is the
/// previous complete set, so unchanged files are not read), the base the window's changes are
/// laid over after it. Returns the part's snapshot id.
async fn backup_folders(
    job: &BackupJob,
    folders: &[(String, PathBuf)],
    set_id: &str,
    hostname: &str,
) -> Result<String, Failure> {
    let items: Vec<SourceItem> = folders
        .iter()
        .map(|(name, path)| SourceItem::Path {
            source: path.clone(),
            target: format!("{}/{name}", backupset::FOLDERS_DIR),
        })
        .collect();
    let mut tags = base_tags(job, set_id);
    tags.push(backupset::TAG_PART.into());
    tags.push(TAG_PRE_PASS.into());
    let opts = SetOptions {
        tags,
        hostname: hostname.to_string(),
        parent_tags: previous_set_tags(job),
        time: None,
        compression: job.compression,
    };
    let repo = job.repo.clone();
    let sink = job.ui.repo_sink("folders (before window)");
    let summary = crate::run::blocking::blocking("the folder backup", move || {
        repo.backup(items, &opts, &*sink)
    })
    .await?
    .map_err(|e| {
        let f = Failure::from(e);
        // At most what the folders hold (before deduplication and compression).
        let needed = super::space::is_disk_full(&f.message).then(|| {
            folders
                .iter()
                .map(|(_, p)| super::space::tree_bytes(p))
                .sum()
        });
        super::space::repository_full(f, &job.repository_location, needed)
    })?;
    if !summary.unreadable.is_empty() {
        return Err(unreadable_files(&summary.unreadable, "could not be read"));
    }
    Ok(summary.snapshot_id)
}

/// The tags of this instance's newest complete set: the parent of a folder pass.
fn previous_set_tags(job: &BackupJob) -> Vec<String> {
    vec![
        backupset::tag_instance(&job.instance_name),
        backupset::TAG_COMPLETE.into(),
    ]
}

/// Stores `items` as a part of the set (tagged `part`), on a blocking thread, through `repo`
/// (the job's, or a twin of it to run beside another call).
async fn store_part(
    job: &BackupJob,
    repo: Arc<Repo>,
    set_id: &str,
    hostname: &str,
    items: Vec<SourceItem>,
    label: &str,
) -> Result<octobackup_repo::BackupSummary, Failure> {
    let mut tags = base_tags(job, set_id);
    tags.push(backupset::TAG_PART.into());
    let opts = SetOptions {
        tags,
        hostname: hostname.to_string(),
        parent_tags: vec![],
        time: None,
        compression: job.compression,
    };
    // What the part needs at most: its files' size (a full repository is said with it).
    let needed = items
        .iter()
        .map(|i| match i {
            SourceItem::Path { source, .. } => std::fs::metadata(source)
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len()),
            SourceItem::Memory { bytes, .. } => Some(bytes.len() as u64),
        })
        .sum::<Option<u64>>();
    let sink = job.ui.repo_sink(label);
    let label = label.to_string();
    let stored = crate::run::blocking::blocking(&format!("storing the {label}"), move || {
        repo.backup(items, &opts, &*sink)
    })
    .await?;
    stored.map_err(|e| super::space::repository_full(e.into(), &job.repository_location, needed))
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn ingest(
    job: &BackupJob,
    sqlserver: &SqlServer,
    set_id: &str,
    c: &Captured,
    secrets: &Secrets,
    bak_sql: &[String],
    m: &mut Manifest,
    steps: &mut Steps,
) -> Result<Stored, Failure> {
    let hostname = m.hostname.clone();
    // The folders as the window had them: the pass before it, less what the window did not
    // keep, plus the copies it made (or the copies alone, without a pass before the window).
    let mut tags = base_tags(job, set_id);
    tags.push(backupset::TAG_PART.into());
    let folder_opts = SetOptions {
        tags,
        hostname: hostname.clone(),
        parent_tags: if c.pre_pass.is_some() {
            vec![]
        } else {
            previous_set_tags(job)
        },
        time: None,
        compression: job.compression,
    };
    // The folders, the .bak and SQL Server's verification all run at once: they only read
    // what the window left, and each part is a snapshot of its own (issue 13: stored one after
    // the other, the folders' tail and the .bak's each left a core idle). A failed
    // verification discards what was stored.
    let db = m.database.name.clone();
    let mut info = m.database.clone();
    let mut bak_items: Vec<SourceItem> = c
        .bak_local
        .iter()
        .map(|local| SourceItem::Path {
            source: local.clone(),
            target: format!(
                "{}/{}",
                backupset::DATABASE_DIR,
                local.file_name().expect("a file name").to_string_lossy()
            ),
        })
        .collect();
    bak_items.extend(chain::base_items(job, &m.database));
    let folders_step = steps.start("store the server folders");
    let verify_step = steps.start("verify the database backup");
    let store_step = steps.start("store the database backup");
    let ((folders, folders_end), (verified, verify_end), (stored, store_end)) = tokio::join!(
        async {
            (
                window_capture::ingest(job, &c.folders, c.pre_pass.as_deref(), folder_opts).await,
                std::time::Instant::now(),
            )
        },
        async {
            (
                verify_database(
                    job,
                    sqlserver,
                    &db,
                    bak_sql,
                    &c.bak_local,
                    set_id,
                    &mut info,
                )
                .await,
                std::time::Instant::now(),
            )
        },
        async {
            (
                store_part(
                    job,
                    Arc::new(job.repo.twin()),
                    set_id,
                    &hostname,
                    bak_items,
                    "database",
                )
                .await,
                std::time::Instant::now(),
            )
        },
    );
    steps.finish_at(
        folders_step,
        folders_end,
        folders.is_ok(),
        folders.as_ref().err().map(|e| e.message.clone()),
    );
    steps.finish_at(
        verify_step,
        verify_end,
        verified.is_ok(),
        verified.as_ref().err().map(|e| e.message.clone()),
    );
    steps.finish_at(
        store_step,
        store_end,
        stored.is_ok(),
        stored.as_ref().err().map(|e| e.message.clone()),
    );
    let folders = folders?;
    verified?;
    let stored = stored?;
    m.database = info;

    let mut items = vec![SourceItem::Memory {
        target: backupset::MASTER_KEY_PATH.into(),
        bytes: Zeroizing::new(secrets.master_key.key.expose().as_bytes().to_vec()),
        mode: 0o600,
    }];
    if !secrets.license_text.is_empty() {
        items.push(SourceItem::Memory {
            target: backupset::LICENSE_PATH.into(),
            bytes: Zeroizing::new(secrets.license_text.expose().as_bytes().to_vec()),
            mode: 0o600,
        });
    }
    // Sealed to the escrow keys too, so a second administrator can recover them without the
    // repository password (kept in the set, and beside the repository once the set is sealed).
    let sealed = crate::backupset::escrow::sealed_items(
        &job.escrow_recipients,
        &secrets.master_key.key,
        Some(&secrets.license_text),
    )?;
    m.secrets.escrow_recipients = job.escrow_recipients.len();
    items.extend(sealed.iter().cloned());
    m.finished = Some(chrono::Utc::now());
    m.complete = true;
    m.steps = steps.records.clone();
    items.push(SourceItem::Memory {
        target: backupset::MANIFEST_PATH.into(),
        bytes: Zeroizing::new(serde_json::to_vec_pretty(&*m).expect("manifest serializes")),
        mode: 0o644,
    });
    let meta = steps
        .run(
            "store manifest and secrets",
            store_part(job, job.repo.clone(), set_id, &hostname, items, "manifest"),
        )
        .await?;
    Ok(Stored {
        folders,
        database: stored,
        meta,
        sealed,
    })
}

/// The parts stored after the window, waiting to be sealed into the set.
pub(super) struct Stored {
    folders: octobackup_repo::BackupSummary,
    database: octobackup_repo::BackupSummary,
    meta: octobackup_repo::BackupSummary,
    sealed: Vec<SourceItem>,
}

/// What the run says when a stop arrived while the set was being sealed: the truth, the set is
/// complete (and the exit code is 0).
fn sealed_despite_stop(sig: &str) -> String {
    format!(
        "{sig} arrived while the set was being sealed; the seal was finished, so the set IS complete"
    )
}

/// Merges the parts into the set's single snapshot, tagged `complete`, and publishes the escrow
/// copy. Not cancellable: once the merge has run the set is complete.
pub(super) async fn seal(
    job: &BackupJob,
    set_id: &str,
    c: &Captured,
    stored: Stored,
    m: &mut Manifest,
    steps: &mut Steps,
) -> Result<(String, u64), Failure> {
    let Stored {
        folders,
        database: stored,
        meta,
        sealed,
    } = stored;
    let hostname = m.hostname.clone();
    let r = steps.start("seal the set");
    let mut tags = base_tags(job, set_id);
    tags.push(backupset::TAG_COMPLETE.into());
    let opts = SetOptions {
        tags,
        hostname,
        parent_tags: vec![],
        time: m.started.map(|t| t.into()),
        compression: job.compression,
    };
    let parts = vec![
        folders.snapshot_id.clone(),
        stored.snapshot_id.clone(),
        meta.snapshot_id.clone(),
    ];
    let mut obsolete = parts.clone();
    obsolete.extend(c.pre_pass.clone());
    obsolete.sort();
    obsolete.dedup();
    let repo = job.repo.clone();
    let (merged, left_over) = crate::run::blocking::blocking("sealing the set", move || {
        let merged = repo.merge_snapshots(&parts, &opts);
        // Once the merged snapshot exists the set is complete: parts that cannot be deleted now
        // are only clutter (tagged `part`; `forget` drops them), not a failed backup.
        let left_over = merged
            .is_ok()
            .then(|| repo.delete_snapshots(&obsolete).err())
            .flatten();
        (merged, left_over)
    })
    .await?;
    steps.finish(
        r,
        merged.is_ok(),
        merged.as_ref().err().map(|e| e.to_string()),
    );
    let merged = merged?;
    if let Some(e) = left_over {
        job.ui.note(&format!("warning: the set is complete, but its parts could not be removed ({e}); `octobackup forget` removes them"));
    }
    if let Err(e) = crate::backupset::escrow::publish(job.repo.as_ref(), set_id, &sealed) {
        job.ui.note(&format!("warning: the set is complete, but its escrow copy beside the repository was not written: {}", e.message));
    }
    Ok((
        merged.id,
        folders.data_added + stored.data_added + meta.data_added,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_side_paths_use_the_sql_hosts_separator() {
        assert_eq!(sql_side_path(r"D:\Backups\", "a.bak"), r"D:\Backups\a.bak");
        assert_eq!(sql_side_path(r"\\nas\octo", "a.bak"), r"\\nas\octo\a.bak");
        assert_eq!(
            sql_side_path("/var/opt/mssql/backup/", "a.bak"),
            "/var/opt/mssql/backup/a.bak"
        );
        assert_eq!(sql_side_path("C:", "a.bak"), r"C:\a.bak");
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
        let inst = InstanceConfig {
            staging: crate::config::StagingConfig {
                sql_path: dir.path().display().to_string(),
                local_path: None,
            },
            ..Default::default()
        };
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
        let inst = InstanceConfig {
            staging: crate::config::StagingConfig {
                sql_path: dir.path().display().to_string(),
                local_path: None,
            },
            ..Default::default()
        };
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

    #[test]
    fn a_set_sealed_before_the_stop_is_reported_complete() {
        let note = sealed_despite_stop("SIGTERM");
        assert!(note.contains("IS complete"), "{note}");
        assert!(!note.contains("nothing was marked complete"), "{note}");
    }
}
