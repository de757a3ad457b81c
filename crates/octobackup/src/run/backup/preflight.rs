//! Before maintenance mode is touched: the instance's lock, what killed runs left (a journal,
//! staging folders), the checks that can be made without the window (Octopus answers, the
//! database exists and the login may back it up, the folders and staging are reachable), the
//! secrets, the sets kept for this run, the differential base and the pass over the server
//! folders. A failure here leaves maintenance mode untouched.

use super::staging::{SetFolder, remove_staging_leftovers};
use super::store::{backup_folders, walk_folders};
use super::window_capture::Listing;
use super::{BackupJob, Folders, Secrets, Servers, chain, kept};
use crate::backupset::Manifest;
use crate::error::{Exit, Failure};
use crate::octopus::{OctopusClient, master_key};
use crate::run::journal::JournalError;
use crate::run::maintenance::{self, MaintenanceError};
use crate::run::steps::Steps;
use crate::secret::Secret;
use crate::sqlserver::SqlServer;
use crate::sqlserver::lock::{InstanceLock, LockError};
use std::path::PathBuf;
use std::sync::Arc;

/// The lock every runner meets, on any machine, before anything touches maintenance mode.
pub(super) async fn lock_instance(
    job: &BackupJob,
    servers: &Servers,
) -> Result<InstanceLock, Failure> {
    match servers.sql.lock_instance(&job.instance_name).await {
        Ok(lock) => Ok(lock),
        // Another run is going on: its journal is not ours to judge, nothing is touched.
        Err(e @ LockError::Held { .. }) => Err(e.into()),
        // SQL Server down or refusing must not keep maintenance mode as a killed run of ours left
        // it: its journal is here, under our local lock, so it is undone before this run stops.
        Err(e) => {
            let mut f = Failure::from(e);
            if let Some(action) = recover_earlier_run(job, &servers.octopus).await? {
                f.message = format!(
                    "{} (Before stopping, octobackup put back what an interrupted earlier run left: {action}.)",
                    f.message.trim_end_matches('.')
                );
            }
            Err(f)
        }
    }
}

/// Undoes what killed runs left: maintenance mode changed (its journal), and their folders on the
/// staging share. `Some(what was done)` about maintenance mode.
pub(super) async fn clean_up_earlier_runs(
    job: &BackupJob,
    servers: &Servers,
) -> Result<Option<String>, Failure> {
    // A run that died with maintenance mode changed is undone before anything else.
    let recovered = recover_earlier_run(job, &servers.octopus).await?;

    // What killed runs left on the staging share (full, unencrypted copies of the database).
    for note in remove_staging_leftovers(&job.instance_name, &job.instance) {
        job.ui.note(&note);
    }
    // And what killed restores and drills left (a drill's only when no drill is going on).
    let drill_lock = job.state.lock(&format!("{} drill", job.instance_name));
    let allowed = crate::run::leftovers::Allowed {
        restore: true,
        drill: drill_lock.is_ok(),
        except: None,
    };
    let staging = job.instance.staging_local();
    for note in
        crate::run::leftovers::remove(&job.instance_name, &staging, &servers.sql, allowed).await
    {
        job.ui.note(&note);
    }
    drop(drill_lock);
    if let Some(sig) = job.stop.requested() {
        return Err(interrupted(sig));
    }
    Ok(recovered)
}

/// A stop heard before the window: nothing changed.
pub(super) fn interrupted(sig: &str) -> Failure {
    Failure::new(
        Exit::Interrupted,
        format!("interrupted by {sig} before the maintenance window; nothing changed"),
    )
}

/// The checks before the window (the step "preflight"), the escrow keys, the secrets and the sets
/// kept on staging by earlier runs. Returns the server folders and the secrets.
pub(super) async fn check(
    job: &BackupJob,
    servers: &Servers,
    m: &mut Manifest,
    steps: &mut Steps,
) -> Result<(Vec<(String, PathBuf)>, Secrets), Failure> {
    let stop = &job.stop;
    // Preflight, outside the window: everything that can be checked without maintenance mode.
    let pre = steps.start("preflight");
    let preflight = tokio::select! {
        r = preflight(job, &servers.octopus, &servers.sql, m) => r,
        sig = stop.wait() => Err(interrupted(sig)),
    };
    steps.finish_with(pre, &preflight);
    let folders = preflight?;

    // A bad escrow key is a config error: refuse before anything changes.
    if !job.escrow_recipients.is_empty() {
        crate::backupset::escrow::parse_recipients(&job.escrow_recipients)?;
    }

    // The master key and the license do not change while Octopus runs: read them before the
    // window, so a missing right or a wrong command stops the run before maintenance mode is touched.
    let secrets = tokio::select! {
        r = capture_secrets(job, &servers.octopus, m, steps) => r?,
        sig = stop.wait() => return Err(interrupted(sig)),
    };
    // Sets kept on staging by earlier runs whose storage stopped after their window.
    kept::store_kept_sets(job, &servers.sql, &secrets, &m.database.name).await?;
    Ok((folders, secrets))
}

/// In the run's staging folder, before the window: the differential base (`sql.chain =
/// "owned"`, run/backup/chain.rs) and the pass over the server folders.
pub(super) async fn before_window(
    job: &BackupJob,
    servers: &Servers,
    list: Vec<(String, PathBuf)>,
    set: &SetFolder,
    m: &mut Manifest,
    steps: &mut Steps,
) -> Result<Folders, Failure> {
    let stop = &job.stop;
    let set_id = m.set_id.clone();
    tokio::select! {
        r = chain::before_window(job, &servers.sql, &set_id, &set.names, m, steps) => r,
        sig = stop.wait() => Err(interrupted(sig)),
    }?;

    // The folders are mostly immutable (packages) or append-only (logs): a first full pass before
    // the window leaves only the changes to copy inside it (the window is what users feel). The
    // listing the window is judged by is written by the pass's walk, each entry before the pass
    // reads it, and kept on local staging.
    let pre_pass = if job.instance.folders_before_window {
        let r = steps.start("server folders (before the window)");
        let pass = tokio::select! {
            r = async {
                let (recorder, listing) = Listing::recorder(&set.local)?;
                // Walked while the key is derived.
                let walked = walk_folders(&list, recorder)?;
                repository_ready(job).await?;
                let id = backup_folders(job, walked, &list, &set_id, &m.hostname).await?;
                let listing = listing.finished().await?;
                Ok::<_, Failure>((id, Arc::new(listing)))
            } => r,
            sig = stop.wait() => Err(interrupted(sig)),
        };
        steps.finish_with(r, &pass);
        Some(pass?)
    } else {
        tokio::select! {
            r = repository_ready(job) => r,
            sig = stop.wait() => Err(interrupted(sig)),
        }?;
        None
    };

    if let Some(sig) = stop.requested() {
        return Err(interrupted(sig));
    }
    Ok(Folders { list, pre_pass })
}

/// Waits for the repository the run opened while it checked the servers (and listed the
/// folders): a wrong password or a missing repository ends the run here, before the window.
async fn repository_ready(job: &BackupJob) -> Result<(), Failure> {
    let repo = job.repo.clone();
    crate::run::blocking::blocking("opening the repository", move || repo.ready())
        .await?
        .map_err(Failure::from)
}

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

/// What can be checked before the window: Octopus answers, the database can be backed up, the
/// server folders and the staging folder are reachable from here. Returns the server folders.
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

    check_database(sqlserver, m).await?;

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

/// The database exists on a SQL Server that can back up to disk, and the login may back it up
/// (and VERIFYONLY it); what the manifest records of it.
async fn check_database(sqlserver: &SqlServer, m: &mut Manifest) -> Result<(), Failure> {
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
    Ok(())
}
