//! `octobackup restore`: a backup set back onto a server, part by part, the way Octopus documents a
//! restore or a move: the database (RESTORE ... WITH MOVE, under its own or a new name), the server
//! folders (to their own or new paths, moving aside what is there), the master key and license
//! (only to a file the user names, or on screen on request), and the exact `Octopus.Server`
//! commands that finish the job. `--clone` makes a second instance with a new InstallationId.
//!
//! A half-restored database never sits under the target name: the set is restored under a
//! temporary name derived from the set id and the target, checked with DBCC CHECKDB, and only then
//! renamed (after dropping the old database when `--replace` is given). A restore that was
//! interrupted finds its temporary database on the next run: an ONLINE one is checked again and
//! finished; any other is dropped and restored afresh.

pub mod database;
pub mod folders;
pub mod next_steps;
pub mod plan;
pub mod secrets;
pub mod set;
pub mod staging;

use super::connect::sql_server;
use super::stop::{Stop, lab_point};
use crate::config::InstanceConfig;
use crate::error::{Exit, Failure};
use crate::octopus::master_key;
use crate::run::names::temporary_name;
use crate::run::progress::Ui;
use crate::secret::Secret;
use crate::sqlserver::SqlServer;
use crate::sqlserver::admin::database_state;
use base64::Engine;
use database::{DbTarget, interrupted, restore_database, settle_marker};
use folders::restore_folders;
use next_steps::{
    KEY_PLACEHOLDER, LICENSE_PLACEHOLDER, next_steps, octopus_connection_string,
    octopus_grant_login, tde_note,
};
use octobackup_repo::Repo;
use secrets::{read_secrets, write_secrets_file};
use set::choose_set;
use std::path::PathBuf;
use std::sync::Arc;

/// How long SQL Server is given to acknowledge ATTENTION on a stopped RESTORE or CHECKDB before
/// octobackup KILLs its session (no maintenance window waits on a restore: longer than a backup's).
pub(crate) const STATEMENT_STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
/// What a restore's or drill's session may be running when it is stopped.
pub(crate) const STATEMENTS: &str = "RESTORE DATABASE or DBCC CHECKDB";
/// Which parts to restore (none chosen on the command line = all).
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Parts {
    pub database: bool,
    pub folders: bool,
    pub secrets: bool,
}

pub struct RestoreJob {
    pub instance_name: String,
    pub instance: InstanceConfig,
    pub repo: Arc<Repo>,
    /// Set id (or prefix), snapshot id prefix, or `None` for the newest complete set.
    pub set: Option<String>,
    pub parts: Parts,
    pub database_name: Option<String>,
    /// Folder for the database files, as SQL Server sees it.
    pub data_dir: Option<String>,
    pub replace: bool,
    pub folders_to: Option<PathBuf>,
    pub secrets_file: Option<PathBuf>,
    pub show_secrets: bool,
    pub clone: bool,
    /// The Octopus Server instance the printed commands name.
    pub octopus_instance: Option<String>,
    pub ui: Ui,
    /// Ctrl-C and SIGTERM, heard from the job's creation to the end of the run.
    pub stop: Stop,
}

#[derive(Debug, serde::Serialize)]
pub struct DatabaseRestored {
    pub name: String,
    pub server: String,
    /// The restored files, as SQL Server sees them.
    pub files: Vec<String>,
    /// The database this replaced (dropped), when `--replace` found one.
    pub replaced_existing: bool,
    /// An interrupted restore's temporary database was found and finished.
    pub resumed: bool,
    pub checkdb: bool,
}

#[derive(Debug, serde::Serialize)]
pub struct FolderRestored {
    pub name: String,
    pub path: String,
    pub files_restored: u64,
    pub files_unchanged: u64,
    /// Files (or folders) that were in the way, moved into `moved_aside_to`.
    pub moved_aside: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moved_aside_to: Option<String>,
}

#[derive(Debug, serde::Serialize)]
pub struct NextSteps {
    pub windows: Vec<String>,
    pub linux_container: Vec<String>,
    /// The commands show placeholders for secrets (see `secrets_file`).
    pub placeholders: bool,
}

#[derive(Debug, serde::Serialize)]
pub struct RestoreReport {
    pub set_id: String,
    pub snapshot_id: String,
    pub instance: String,
    pub octopus_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseRestored>,
    pub folders: Vec<FolderRestored>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secrets_file: Option<String>,
    /// Only with --show-secrets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license_base64: Option<String>,
    /// The clone's new InstallationId.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_installation_id: Option<String>,
    pub notes: Vec<String>,
    pub next_steps: NextSteps,
}

/// The SQL Server lock a backup of the database takes. Without the database part, SQL Server
/// being down is no reason to refuse: then there is no lock, and a warning.
async fn take_lock(
    server: &SqlServer,
    instance: &str,
    database: bool,
) -> Result<Option<crate::sqlserver::lock::InstanceLock>, Failure> {
    use crate::sqlserver::lock::LockError;
    match server.lock_instance(instance).await {
        Ok(l) => Ok(Some(l)),
        Err(e @ LockError::Sql(_)) if !database => {
            tracing::warn!("restoring without the SQL Server instance lock: {e}");
            Ok(None)
        }
        Err(e @ LockError::Held { .. }) => Err(Failure::new(
            Exit::Busy,
            format!(
                "cannot restore now: {}",
                e.to_string().replace(
                    "Nothing was changed: maintenance mode was not touched.",
                    "Nothing was restored or changed."
                )
            ),
        )),
        Err(e) => Err(e.into()),
    }
}

/// A lab test point (see `stop::lab_point`) that a stop request ends: `Err(what asked)`.
async fn lab_point_or_stop(point: &str, stop: &Stop) -> Result<(), &'static str> {
    tokio::select! {
        _ = lab_point(point) => stop.requested().map_or(Ok(()), Err),
        sig = stop.wait() => Err(sig),
    }
}

pub async fn run(job: RestoreJob) -> Result<RestoreReport, Failure> {
    let parts = job.parts;
    if job.clone {
        if !parts.database {
            return Err(Failure::new(
                Exit::Usage,
                "--clone restores the database (it gets a new InstallationId): include --database or choose no part",
            ));
        }
        if job.folders_to.is_none() && parts.folders {
            return Err(Failure::new(
                Exit::Usage,
                "--clone needs --folders-to DIR: a second instance must not share the original's folders",
            ));
        }
    }
    if parts.secrets
        && !parts.database
        && !parts.folders
        && job.secrets_file.is_none()
        && !job.show_secrets
    {
        return Err(Failure::new(
            Exit::Usage,
            "--secrets needs a destination: --secrets-file FILE (created owner-only) or --show-secrets",
        ));
    }
    if let Some(f) = &job.secrets_file
        && f.exists()
    {
        return Err(Failure::new(
            Exit::Usage,
            format!(
                "the secrets file {} already exists; octobackup never overwrites one. Choose another path or remove it.",
                f.display()
            ),
        ));
    }
    let set = choose_set(&job.repo, &job.instance_name, job.set.as_deref()).await?;
    let original_db = set.manifest.database.name.clone();
    let target = job.database_name.clone().unwrap_or(original_db.clone());
    if job.clone && target.eq_ignore_ascii_case(&original_db) {
        return Err(Failure::new(
            Exit::Usage,
            format!(
                "--clone needs a new database name (--database-name): [{original_db}] is the original's"
            ),
        ));
    }
    if target.is_empty() || target.len() > 128 {
        return Err(Failure::new(
            Exit::Usage,
            "the database name must be 1 to 128 characters",
        ));
    }
    let stop = job.stop.clone();
    let nothing_yet = |sig: &str| {
        Failure::new(
            Exit::Interrupted,
            format!(
                "the restore was interrupted by {sig} before anything was restored; nothing was changed"
            ),
        )
    };
    if let Some(sig) = stop.requested() {
        return Err(nothing_yet(sig));
    }
    let server = sql_server(&job.instance)?;
    // A backup and a restore of the same database never run at once: the lock `backup` takes. The
    // database part needs it; folders and secrets alone go on without SQL Server when it is down.
    let _instance_lock = tokio::select! {
        l = take_lock(&server, &job.instance_name, parts.database) => l?,
        sig = stop.wait() => return Err(nothing_yet(sig)),
    };
    lab_point_or_stop("restore: locked", &stop)
        .await
        .map_err(nothing_yet)?;
    // Under the lock: what killed restores and drills left (copies of the database) goes.
    if _instance_lock.is_some() {
        let own = temporary_name(&set.set_id, &target);
        let allowed = super::leftovers::Allowed {
            restore: true,
            drill: false,
            except: Some(&own),
        };
        let staging = job.instance.staging_local();
        for note in super::leftovers::remove(&job.instance_name, &staging, &server, allowed).await {
            job.ui.note(&note);
        }
    }
    let mut notes = Vec::new();
    if let Some(tde) = tde_note(&set.manifest) {
        if parts.database {
            job.ui.note(&tde);
        }
        notes.push(tde);
    }

    // Database first: the step that can refuse (an existing database) before anything changes.
    let mut database = None;
    let mut installation_id = None;
    if parts.database {
        // RESTORE and CHECKDB can be silent for minutes: no client timeout.
        let mut session = server.connect_unbounded().await?;
        let existed = database_state(&mut session, &target).await?.is_some();
        let restore = restore_database(
            &job,
            &server,
            &mut session,
            DbTarget {
                set: &set,
                target: target.clone(),
                replace: job.replace,
                data_dir: job.data_dir.clone(),
                clone: job.clone,
            },
        );
        let out = tokio::select! {
            r = restore => r,
            sig = stop.wait() => {
                job.ui.clear_status();
                // The RESTORE (or CHECKDB) goes on on the server unless stopped: ATTENTION on
                // its connection first (the drill does the same), then clean-up on a fresh one.
                let stopped = session.stop(STATEMENT_STOP_WAIT).await;
                let mut f = interrupted(&job, &server, &set, &target, existed, sig).await;
                f.message.push_str(&stopped.unless_acknowledged(STATEMENTS, STATEMENT_STOP_WAIT));
                return Err(f);
            }
        };
        // A copy from the repository that was stopped may end first, with its own error.
        if out.is_err()
            && let Some(sig) = stop.requested()
        {
            job.ui.clear_status();
            return Err(interrupted(&job, &server, &set, &target, existed, sig).await);
        }
        settle_marker(&job, &mut session, &set, &target).await;
        let out = out?;
        database = Some(out.restored);
        installation_id = out.installation_id;
    }
    // What is done so far, for a stop that comes later.
    let db_done = database
        .as_ref()
        .map(|d| format!("[{}] was restored and checked; ", d.name))
        .unwrap_or_default();

    let folders = if parts.folders {
        tokio::select! {
            r = restore_folders(&job, &set) => r?,
            sig = stop.wait() => return Err(Failure::new(
                Exit::Interrupted,
                format!(
                    "the restore was interrupted by {sig} while restoring the server folders: {db_done}the folders may be partly restored (files that were in the way were moved aside to *.octobackup-before-* beside them, never overwritten). Run `octobackup restore --folders` with the same set to finish."
                ),
            )),
        }
    } else {
        Vec::new()
    };
    if let Err(sig) = lab_point_or_stop("restore: secrets", &stop).await {
        return Err(Failure::new(
            Exit::Interrupted,
            format!(
                "the restore was interrupted by {sig} before the secrets were read: {db_done}{}no secrets file was written",
                if parts.folders {
                    "the folders were restored; "
                } else {
                    ""
                }
            ),
        ));
    }

    let (key, license) = if parts.secrets {
        read_secrets(&job.repo, &set).await?
    } else {
        (None, None)
    };
    if parts.secrets && key.is_none() {
        notes.push("this set holds no master key: Octopus cannot decrypt sensitive values without the original one".into());
    }
    let license_b64 = license
        .as_ref()
        .map(|l| Secret::new(base64::engine::general_purpose::STANDARD.encode(l.expose())));
    if let Some(k) = &key
        && master_key::validate(k.expose()).is_err()
    {
        notes.push(
            "the set's master key is not base64 of 16 or 32 bytes: check it before use".into(),
        );
    }

    // The folders the commands name: the restored ones, else where the set says they were.
    let folder_paths: Vec<(String, String)> = if folders.is_empty() {
        set.manifest
            .folders
            .iter()
            .map(|f| {
                let p = match &job.folders_to {
                    Some(d) => d.join(&f.name).display().to_string(),
                    None => f.source_path.clone(),
                };
                (f.name.clone(), p)
            })
            .collect()
    } else {
        folders
            .iter()
            .map(|f| (f.name.clone(), f.path.clone()))
            .collect()
    };
    let octopus_instance = job.octopus_instance.clone().unwrap_or_else(|| {
        if job.clone {
            format!("{}Clone", job.instance_name)
        } else {
            job.instance_name.clone()
        }
    });
    let cs = octopus_connection_string(&server, &target);
    let grant = octopus_grant_login(&server);
    let real = |s: &Option<Secret>| s.as_ref().map(|s| s.expose().to_string());
    let version = set.manifest.octopus.version.clone();
    let (win_real, linux_real) = next_steps(
        &version,
        &octopus_instance,
        &cs,
        &grant,
        &folder_paths,
        &real(&key).unwrap_or_else(|| "<master key>".into()),
        real(&license_b64).as_deref(),
    );
    let show = job.show_secrets && parts.secrets;
    let (windows, linux) = if show {
        (win_real.clone(), linux_real.clone())
    } else {
        next_steps(
            &version,
            &octopus_instance,
            &cs,
            &grant,
            &folder_paths,
            KEY_PLACEHOLDER,
            license_b64.as_ref().map(|_| LICENSE_PLACEHOLDER),
        )
    };

    let mut secrets_file = None;
    if parts.secrets
        && let Some(path) = &job.secrets_file
    {
        let mut text = format!(
            "# octobackup: the secrets of backup set {} (instance {}, Octopus {}).\n# Keep this file private and delete it once the restore is finished.\n\n",
            set.set_id, set.manifest.instance, set.manifest.octopus.version
        );
        if let Some(k) = &key {
            text.push_str(&format!("MASTER_KEY={}\n", k.expose()));
        }
        if let Some(l) = &license_b64 {
            text.push_str(&format!("OCTOPUS_SERVER_BASE64_LICENSE={}\n", l.expose()));
        }
        text.push_str("\n# Windows (elevated prompt on the Octopus host):\n");
        for c in &win_real {
            text.push_str(c);
            text.push('\n');
        }
        text.push_str("\n# Linux container:\n");
        for c in &linux_real {
            text.push_str(c);
            text.push('\n');
        }
        if let Some(l) = &license {
            text.push_str("\n# The license XML:\n");
            text.push_str(l.expose());
            text.push('\n');
        }
        write_secrets_file(path, &text)?;
        secrets_file = Some(path.display().to_string());
    } else if parts.secrets && !show {
        notes.push("the master key and license were not written: use --secrets-file FILE (created owner-only) or --show-secrets".into());
    }

    // Everything was done before the stop took effect: the report says what is true.
    if let Some(sig) = stop.requested() {
        job.ui.note(&format!(
            "{sig} was heard as the restore ended; it had finished everything it was asked to"
        ));
    }
    Ok(RestoreReport {
        set_id: set.set_id.clone(),
        snapshot_id: set.snapshot_id.clone(),
        instance: set.manifest.instance.clone(),
        octopus_version: set.manifest.octopus.version.clone(),
        database,
        folders,
        secrets_file,
        master_key: if show { real(&key) } else { None },
        license_base64: if show { real(&license_b64) } else { None },
        new_installation_id: installation_id,
        notes,
        next_steps: NextSteps {
            windows,
            linux_container: linux,
            placeholders: !show,
        },
    })
}
