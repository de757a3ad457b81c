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

use super::connect::{sql_server, sql_side_path};
use super::stop::{Stop, lab_point};
use crate::backupset::{self, Manifest, list};
use crate::config::InstanceConfig;
use crate::error::{Exit, Failure};
use crate::octopus::master_key;
use crate::run::progress::Ui;
use crate::secret::Secret;
use crate::sqlserver::client::{self as sql, Session, SqlError};
use crate::sqlserver::connstr::Authentication;
use crate::sqlserver::{SqlServer, tsql};
use base64::Engine;
use octobackup_repo::{EntryKind, FileEntry, Repo};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// A complete set of the instance with its manifest.
pub struct ChosenSet {
    pub set_id: String,
    pub snapshot_id: String,
    pub manifest: Manifest,
}

fn join_err(e: tokio::task::JoinError) -> Failure {
    Failure::new(Exit::Failed, format!("a worker stopped: {e}"))
}

/// Finds the set to restore: `wanted` (set id, its start, a snapshot id's start: of any
/// instance) or the newest complete set of the instance ("latest" or `None`).
pub async fn choose_set(
    repo: &Arc<Repo>,
    instance: &str,
    wanted: Option<&str>,
) -> Result<ChosenSet, Failure> {
    let repo = repo.clone();
    let instance = instance.to_string();
    let wanted = wanted.unwrap_or("latest").to_string();
    tokio::task::spawn_blocking(move || {
        // A set named by id may come from another instance (a move to a new server whose config
        // names it differently); "latest" is the newest of this instance.
        let any_instance = wanted != "latest";
        let sets = list::list(&repo, (!any_instance).then_some(instance.as_str()))?;
        let Some(set) = list::find(&sets, &wanted) else {
            return Err(Failure::new(
                Exit::Usage,
                if any_instance || sets.iter().any(|s| s.complete) {
                    format!("no complete backup set matches '{wanted}' (see `octobackup snapshots`)")
                } else {
                    format!(
                        "the repository holds no complete backup set of instance '{instance}': run `octobackup backup` first"
                    )
                },
            ));
        };
        if !set.complete {
            return Err(Failure::new(
                Exit::Failed,
                format!(
                    "set {} is incomplete (its run did not finish) and cannot be restored; choose a complete one (see `octobackup snapshots`)",
                    set.set_id
                ),
            ));
        }
        let manifest = list::read_manifest(&repo, &set.snapshot_id)?;
        Ok(ChosenSet {
            set_id: set.set_id.clone(),
            snapshot_id: set.snapshot_id.clone(),
            manifest,
        })
    })
    .await
    .map_err(join_err)?
}

/// A short, stable tag from some texts (the same inputs always give the same tag).
pub fn short_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())[..8].to_string()
}

/// The temporary name a restore of `set_id` to `target` uses until it is checked.
pub fn temporary_name(set_id: &str, target: &str) -> String {
    marked_name(
        target,
        &format!("_octobackup_restoring_{}", short_hash(&[set_id, target])),
    )
}

/// `base` + `suffix`, with `base` shortened so the whole fits SQL Server's 128-character names
/// (the suffix carries a hash of what was cut).
pub fn marked_name(base: &str, suffix: &str) -> String {
    let room = 128usize.saturating_sub(suffix.chars().count());
    let head: String = base.chars().take(room).collect();
    format!("{head}{suffix}")
}

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
static COPYING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

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
fn copy_gate(stop: Stop) -> impl Fn(u64) -> bool + Sync {
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
    let base_files = super::chain::set_base_files(&set.manifest.database);
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
        let r = tokio::task::spawn_blocking(move || {
            let r = repo.restore_gated(&snap, &path, &dest, &*sink, &gate);
            COPYING.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            r
        })
        .await
        .map_err(join_err)?;
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

/// One file of a backup, from RESTORE FILELISTONLY.
#[derive(Clone, Debug, PartialEq)]
pub struct BackupFile {
    pub logical: String,
    pub physical: String,
    /// `D` data, `L` log.
    pub kind: char,
}

pub async fn file_list(
    session: &mut Session,
    stripes: &[String],
) -> Result<Vec<BackupFile>, Failure> {
    let rows = session
        .query_text("RESTORE FILELISTONLY", &tsql::restore_filelistonly(stripes))
        .await?;
    let files: Vec<BackupFile> = rows
        .iter()
        .map(|r| {
            let get = |k: &str| r.get(k).cloned().flatten().unwrap_or_default();
            BackupFile {
                logical: get("LogicalName"),
                physical: get("PhysicalName"),
                kind: get("Type").chars().next().unwrap_or('D'),
            }
        })
        .collect();
    if files.is_empty() {
        return Err(Failure::new(
            Exit::Sql,
            "RESTORE FILELISTONLY listed no files in the backup",
        ));
    }
    Ok(files)
}

/// `(folder, file name)` of a path as SQL Server sees it (either separator).
fn split_sql_path(p: &str) -> (&str, &str) {
    match p.rfind(['\\', '/']) {
        Some(i) => (&p[..i.max(1)], &p[i + 1..]),
        None => ("", p),
    }
}

/// Where each logical file goes: in `data_dir` (log files in `log_dir`, else `data_dir` too) or
/// beside the original file; named after `base` (`base.mdf`, `base_log.ldf`, `base_2.ndf`...) or,
/// with `base` None, keeping the original names.
pub fn plan_moves(
    files: &[BackupFile],
    base: Option<&str>,
    data_dir: Option<&str>,
    log_dir: Option<&str>,
) -> Vec<(String, String)> {
    let safe = base.map(|b| {
        b.chars()
            .map(|c| {
                if c.is_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect::<String>()
    });
    let (mut data_n, mut log_n) = (0, 0);
    files
        .iter()
        .map(|f| {
            let (dir, name) = split_sql_path(&f.physical);
            let ext = name
                .rsplit_once('.')
                .map(|(_, e)| format!(".{e}"))
                .unwrap_or_else(|| if f.kind == 'L' { ".ldf" } else { ".mdf" }.into());
            let new_name = match &safe {
                None => name.to_string(),
                Some(b) if f.kind == 'L' => {
                    log_n += 1;
                    if log_n == 1 {
                        format!("{b}_log{ext}")
                    } else {
                        format!("{b}_log{log_n}{ext}")
                    }
                }
                Some(b) => {
                    data_n += 1;
                    if data_n == 1 {
                        format!("{b}{ext}")
                    } else {
                        format!("{b}_{data_n}{ext}")
                    }
                }
            };
            let chosen = if f.kind == 'L' {
                log_dir.or(data_dir)
            } else {
                data_dir
            };
            let dir = chosen.unwrap_or(dir);
            let path = if dir.is_empty() {
                new_name
            } else {
                sql_side_path(dir, &new_name)
            };
            (f.logical.clone(), path)
        })
        .collect()
}

pub async fn database_state(session: &mut Session, name: &str) -> Result<Option<String>, Failure> {
    let rows = session
        .query_text("database lookup", &tsql::database_state(name))
        .await?;
    Ok(rows
        .first()
        .map(|r| r.get("state_desc").cloned().flatten().unwrap_or_default()))
}

/// Every database on the server with its state.
pub async fn databases(session: &mut Session) -> Result<Vec<(String, String)>, Failure> {
    let rows = session
        .query_text("databases", "SELECT name, state_desc FROM sys.databases")
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let get = |k: &str| r.get(k).cloned().flatten().unwrap_or_default();
            (get("name"), get("state_desc"))
        })
        .collect())
}

/// RESTORE DATABASE `[name]` from the staged files with the planned MOVEs (never REPLACE: the
/// name and the files must be free), with progress.
pub async fn restore_as(
    server: &SqlServer,
    session: &mut Session,
    name: &str,
    staged: &Staged,
    moves: &[(String, String)],
    ui: &Ui,
) -> Result<(), Failure> {
    restore_as_sql(server, session, name, staged, moves, ui)
        .await
        .map_err(|e| restore_failure(name, moves, e))
}

/// [`restore_as`] with SQL Server's own error, for callers that act on its number.
async fn restore_as_sql(
    server: &SqlServer,
    session: &mut Session,
    name: &str,
    staged: &Staged,
    moves: &[(String, String)],
    ui: &Ui,
) -> Result<(), SqlError> {
    let spid = session.server_info().await?.spid;
    if !staged.base_sql_paths.is_empty() {
        // An owned chain's set: the base WITH NORECOVERY, then the differential WITH RECOVERY.
        let statement = crate::sqlserver::chain::restore_base(name, &staged.base_sql_paths, moves);
        let bar = ui.percent_bar("RESTORE DATABASE (base)");
        let r = sql::run_with_progress(
            server,
            session,
            spid,
            "RESTORE DATABASE (base)",
            &statement,
            None,
            &|p| bar.set(p),
        )
        .await;
        bar.finish();
        r?;
        let statement = crate::sqlserver::chain::restore_differential(name, &staged.sql_paths);
        let bar = ui.percent_bar("RESTORE DATABASE (differential)");
        let r = sql::run_with_progress(
            server,
            session,
            spid,
            "RESTORE DATABASE (differential)",
            &statement,
            None,
            &|p| bar.set(p),
        )
        .await;
        bar.finish();
        return r;
    }
    let statement = tsql::restore_database(name, &staged.sql_paths, moves, false, 5);
    let bar = ui.percent_bar("RESTORE DATABASE");
    let r = sql::run_with_progress(
        server,
        session,
        spid,
        "RESTORE DATABASE",
        &statement,
        None,
        &|p| bar.set(p),
    )
    .await;
    bar.finish();
    r
}

/// `SERVERPROPERTY('InstanceDefaultDataPath')` and `'InstanceDefaultLogPath'` (SQL Server 2012
/// and later): where the target server puts new databases' files.
pub async fn instance_default_paths(session: &mut Session) -> Result<(String, String), Failure> {
    let rows = session
        .query_text(
            "instance default paths",
            "SELECT CAST(SERVERPROPERTY('InstanceDefaultDataPath') AS nvarchar(4000)) AS DataPath, \
             CAST(SERVERPROPERTY('InstanceDefaultLogPath') AS nvarchar(4000)) AS LogPath",
        )
        .await?;
    let get = |k: &str| {
        rows.first()
            .and_then(|r| r.get(k).cloned().flatten())
            .filter(|p| !p.trim().is_empty())
    };
    match (get("DataPath"), get("LogPath")) {
        (Some(data), log) => {
            let log = log.unwrap_or_else(|| data.clone());
            Ok((data, log))
        }
        _ => Err(Failure::new(
            Exit::Sql,
            "the target server does not say where new databases go (SERVERPROPERTY('InstanceDefaultDataPath') is NULL: SQL Server 2008 R2 or older); give the folder with --data-dir",
        )),
    }
}

/// Restores `name` with its files beside the originals' folders, or in `data_dir` when given.
/// When the original folders do not exist on this server (a set from another host, Windows paths
/// on a Linux server), SQL Server refuses the plan with Msg 5133 and nothing is created: the files
/// then go to the instance's default data and log folders. Returns where the files went.
#[allow(clippy::too_many_arguments)]
pub async fn restore_planned(
    server: &SqlServer,
    session: &mut Session,
    name: &str,
    staged: &Staged,
    files: &[BackupFile],
    base: Option<&str>,
    data_dir: Option<&str>,
    ui: &Ui,
) -> Result<Vec<(String, String)>, Failure> {
    let moves = plan_moves(files, base, data_dir, None);
    match restore_as_sql(server, session, name, staged, &moves, ui).await {
        Ok(()) => Ok(moves),
        Err(e) if data_dir.is_none() && e.number() == Some(5133) => {
            let (data, log) = instance_default_paths(session).await?;
            ui.note(&format!(
                "the backup's original folders do not exist on {} ({e}); restoring into the instance's default folders: data {data}, log {log}",
                server.server_display()
            ));
            let moves = plan_moves(files, base, Some(&data), Some(&log));
            restore_as(server, session, name, staged, &moves, ui).await?;
            Ok(moves)
        }
        Err(e) => Err(restore_failure(name, &moves, e)),
    }
}

fn restore_failure(name: &str, moves: &[(String, String)], e: SqlError) -> Failure {
    let files: Vec<&str> = moves.iter().map(|(_, p)| p.as_str()).collect();
    Failure::new(
        Exit::Sql,
        format!(
            "RESTORE DATABASE [{name}] to {} failed: {e}",
            files.join(", ")
        ),
    )
}

/// DBCC CHECKDB WITH NO_INFOMSGS sends nothing until it ends (minutes on a big database): its
/// progress comes from sys.dm_exec_requests on a second connection, as for RESTORE.
pub async fn checkdb(
    server: &SqlServer,
    session: &mut Session,
    name: &str,
    ui: &Ui,
) -> Result<(), Failure> {
    let checked = async {
        let spid = session.server_info().await?.spid;
        let bar = ui.percent_bar("DBCC CHECKDB");
        let r = sql::run_with_progress(
            server,
            session,
            spid,
            "DBCC CHECKDB",
            &tsql::dbcc_checkdb(name),
            None,
            &|p| bar.set(p),
        )
        .await;
        bar.finish();
        r
    };
    checked.await.map_err(|e| match e.checkdb_verdict() {
            sql::CheckDbVerdict::Damaged => Failure::new(
                Exit::CheckFailed,
                format!("DBCC CHECKDB found the restored database [{name}] damaged: {e}"),
            ),
            sql::CheckDbVerdict::NotChecked(why) => Failure::new(
                Exit::Sql,
                format!(
                    "DBCC CHECKDB could not check the restored database [{name}], which says nothing about the backup: {why} ({e})"
                ),
            ),
        })
}

pub async fn drop_quietly(session: &mut Session, name: &str) -> Result<(), Failure> {
    session
        .execute("DROP DATABASE", &tsql::drop_database_if_exists(name), None)
        .await
        .map_err(|e| Failure::new(Exit::Sql, format!("cannot drop [{name}]: {e}")))
}

/// The files of a database, as SQL Server sees them.
async fn database_files(session: &mut Session, name: &str) -> Result<Vec<String>, Failure> {
    let sql = format!(
        "SELECT physical_name FROM sys.master_files WHERE database_id = DB_ID({})",
        tsql::quote_str(name)
    );
    let rows = session.query_text("database files", &sql).await?;
    Ok(rows
        .iter()
        .filter_map(|r| r.get("physical_name").cloned().flatten())
        .collect())
}

/// A clone must not pose as the original: a new InstallationId.
///
/// UNCONFIRMED: Octopus documents this as a SQL script it hands out; the lab keeps the
/// InstallationId in `dbo.Configuration`, row `installation` (see lab/instance/src/database.rs),
/// and this follows the lab. Check the row against a real Octopus database before relying on it.
pub async fn new_installation_id(session: &mut Session, database: &str) -> Result<String, Failure> {
    let rows = session
        .query_text(
            "read the InstallationId",
            &tsql::select_json(database, "Configuration", Some("installation")),
        )
        .await?;
    let text = rows
        .first()
        .and_then(|r| r.get("JSON").cloned().flatten())
        .ok_or_else(|| {
            Failure::new(
                Exit::Failed,
                format!(
                    "the restored database [{database}] has no dbo.Configuration row 'installation': cannot give the clone a new InstallationId"
                ),
            )
        })?;
    let mut json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        Failure::new(
            Exit::Failed,
            format!("the 'installation' configuration row is not JSON ({e})"),
        )
    })?;
    let id = uuid::Uuid::new_v4().to_string();
    let Some(obj) = json.as_object_mut() else {
        return Err(Failure::new(
            Exit::Failed,
            "the 'installation' configuration row is not a JSON object",
        ));
    };
    obj.insert(
        "InstallationId".into(),
        serde_json::Value::String(id.clone()),
    );
    session
        .execute(
            "set a new InstallationId",
            &tsql::update_json(database, "Configuration", "installation", &json.to_string()),
            None,
        )
        .await?;
    Ok(id)
}

struct DbTarget<'a> {
    set: &'a ChosenSet,
    target: String,
    replace: bool,
    data_dir: Option<String>,
    clone: bool,
}

struct DbOutcome {
    restored: DatabaseRestored,
    installation_id: Option<String>,
}

async fn restore_database(
    job: &RestoreJob,
    server: &SqlServer,
    session: &mut Session,
    t: DbTarget<'_>,
) -> Result<DbOutcome, Failure> {
    let original = t.set.manifest.database.name.clone();
    let exists = database_state(session, &t.target).await?.is_some();
    if exists && !t.replace {
        return Err(Failure::new(
            Exit::Usage,
            format!(
                "the database [{}] already exists on {}; nothing was changed. Restore under another name with --database-name, or replace it with --replace (stop the Octopus Server that uses it first).",
                t.target,
                server.server_display()
            ),
        ));
    }
    let temp = temporary_name(&t.set.set_id, &t.target);
    let mut resumed = false;
    match database_state(session, &temp).await? {
        Some(state) if state.eq_ignore_ascii_case("ONLINE") => {
            job.ui.note(&format!(
                "found [{temp}] from an interrupted restore of this set: checking and finishing it"
            ));
            resumed = true;
        }
        Some(_) => drop_quietly(session, &temp).await?,
        None => {}
    }
    if !resumed {
        let folder = format!(
            "octobackup-restore-{}",
            short_hash(&[&t.set.set_id, &t.target])
        );
        // The files of a database being replaced keep their names until it is dropped: the new
        // names must differ from them, also when that database came from this very set.
        let in_use = if exists {
            database_files(session, &t.target).await.unwrap_or_default()
        } else {
            Vec::new()
        };
        // The marker first: a killed run's copy and temporary database are then found by `recover`.
        let marker = super::leftovers::Marker {
            instance: job.instance_name.clone(),
            kind: super::leftovers::Kind::Restore,
            database: temp.clone(),
            replaces: exists.then(|| t.target.clone()),
            scratch_folder: None,
        };
        let dir = job.instance.staging_local().join(&folder);
        super::leftovers::write(&dir, &marker).map_err(|e| {
            Failure::new(
                Exit::Failed,
                format!(
                    "cannot write {} on the staging share: {e}. Check staging.local_path in the config.",
                    dir.join(super::leftovers::MARKER).display()
                ),
            )
        })?;
        let staged =
            stage_database(&job.repo, t.set, &job.instance, &folder, &job.ui, &job.stop).await?;
        let restored = async {
            lab_point("restore: staged").await;
            let files = file_list(session, &staged.sql_paths).await?;
            // The files keep their names after the rename: name them for the target now. The
            // original names only when the original database comes back under its own name onto a
            // server that does not have it; files of a database being replaced stay untouched.
            let base = if t.target == original && !exists {
                None
            } else if exists {
                let mut parts = vec![t.set.set_id.as_str()];
                parts.extend(in_use.iter().map(String::as_str));
                Some(format!("{}_{}", t.target, short_hash(&parts)))
            } else {
                Some(t.target.clone())
            };
            restore_planned(
                server,
                session,
                &temp,
                &staged,
                &files,
                base.as_deref(),
                t.data_dir.as_deref(),
                &job.ui,
            )
            .await
            .map(|_| ())
        }
        .await;
        // The marker stays as long as the temporary database may (see `settle_marker`).
        super::leftovers::remove_copies(&staged.local_dir);
        if let Err(e) = restored {
            let _ = drop_quietly(session, &temp).await;
            return Err(e);
        }
    }

    // From here on, a failure drops the temporary database unless the old one is already gone.
    let checked = async {
        lab_point("restore: checkdb").await;
        job.ui.status(&format!("DBCC CHECKDB on [{temp}]"));
        checkdb(server, session, &temp, &job.ui).await?;
        let id = if t.clone {
            Some(new_installation_id(session, &temp).await?)
        } else {
            None
        };
        Ok::<_, Failure>(id)
    }
    .await;
    job.ui.clear_status();
    let installation_id = match checked {
        Ok(id) => id,
        Err(e) => {
            let _ = drop_quietly(session, &temp).await;
            return Err(Failure {
                message: format!(
                    "{}; the restored copy was dropped and [{}] is unchanged",
                    e.message, t.target
                ),
                ..e
            });
        }
    };
    let files = database_files(session, &temp).await.unwrap_or_default();
    if exists
        && let Err(e) = session
            .execute("DROP DATABASE", &tsql::drop_database(&t.target), None)
            .await
    {
        let _ = drop_quietly(session, &temp).await;
        return Err(Failure::new(
            Exit::Sql,
            format!(
                "cannot drop the existing [{}] to replace it: {e}. Stop the Octopus Server (every node) that uses it and run the restore again; nothing was changed.",
                t.target
            ),
        ));
    }
    lab_point("restore: rename").await;
    if let Err(e) = session
        .execute(
            "rename the restored database",
            &tsql::rename_database(&temp, &t.target),
            None,
        )
        .await
    {
        let msg = if exists {
            // The old database is gone: the checked copy is the only one, keep it.
            format!(
                "the restored database is complete and checked under the name [{temp}], but renaming it to [{}] failed: {e}. Run the same restore again to finish (it reuses [{temp}]).",
                t.target
            )
        } else {
            let _ = drop_quietly(session, &temp).await;
            format!(
                "renaming the restored database [{temp}] to [{}] failed: {e}. The restored copy was dropped; nothing was changed.",
                t.target
            )
        };
        return Err(Failure::new(Exit::Sql, msg));
    }
    Ok(DbOutcome {
        restored: DatabaseRestored {
            name: t.target,
            server: server.server_display(),
            files,
            replaced_existing: exists,
            resumed,
            checkdb: true,
        },
        installation_id,
    })
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

/// Removes the restore's staging folder and marker once its temporary database is gone (renamed
/// or dropped); a temporary database still there keeps its marker, for `recover` and `doctor`.
async fn settle_marker(job: &RestoreJob, session: &mut Session, set: &ChosenSet, target: &str) {
    let dir = job.instance.staging_local().join(format!(
        "octobackup-restore-{}",
        short_hash(&[&set.set_id, target])
    ));
    super::leftovers::remove_copies(&dir);
    let temp = temporary_name(&set.set_id, target);
    if let Ok(None) = database_state(session, &temp).await {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Ctrl-C or SIGTERM during the database part: the partly restored copy goes, unless the old
/// database was already dropped (then the checked copy under the temporary name is the only one
/// left, and running the same restore again finishes it).
async fn interrupted(
    job: &RestoreJob,
    server: &SqlServer,
    set: &ChosenSet,
    target: &str,
    existed: bool,
    sig: &str,
) -> Failure {
    let temp = temporary_name(&set.set_id, target);
    let dir = job.instance.staging_local().join(format!(
        "octobackup-restore-{}",
        short_hash(&[&set.set_id, target])
    ));
    // A copy from the repository ends at its next write: then its file can go.
    copies_ended().await;
    super::leftovers::remove_copies(&dir);
    let outcome = async {
        let mut s = server.connect().await?;
        let target_now = database_state(&mut s, target).await?.is_some();
        if existed && !target_now {
            return Ok::<_, Failure>(format!(
                "[{target}] was already dropped; the restored copy is kept as [{temp}]: run the same restore again to finish"
            ));
        }
        // The server may still be ending the RESTORE of the dropped connection: retry a little.
        for attempt in 0..10 {
            match drop_quietly(&mut s, &temp).await {
                Ok(()) => break,
                Err(e) if attempt == 9 => return Err(e),
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
            }
        }
        // The temporary database is gone: its marker goes too.
        let _ = std::fs::remove_dir_all(&dir);
        Ok(format!(
            "the partly restored copy was dropped and [{target}] is unchanged"
        ))
    }
    .await;
    let detail = match outcome {
        Ok(d) => d,
        Err(e) => format!(
            "{}; run the same restore again to finish or clean up [{temp}]",
            e.message
        ),
    };
    Failure::new(
        Exit::Interrupted,
        format!("the restore was interrupted by {sig}: {detail}"),
    )
}

/// Moves what is at the paths a folder restore would write into `aside`, keeping relative paths.
/// Returns how many entries were moved.
pub fn move_aside(
    dest: &Path,
    entries: &[FileEntry],
    prefix: &str,
    aside: &Path,
) -> Result<u64, Failure> {
    let mut moved = 0;
    for e in entries {
        let Some(rel) = e.path.strip_prefix(prefix) else {
            continue;
        };
        let rel = rel.trim_start_matches('/');
        if rel.is_empty() {
            continue;
        }
        let local = rel.split('/').fold(dest.to_path_buf(), |p, c| p.join(c));
        let Ok(meta) = std::fs::symlink_metadata(&local) else {
            continue;
        };
        let in_the_way = match e.kind {
            EntryKind::Dir => !meta.is_dir(),
            _ => true,
        };
        if !in_the_way {
            continue;
        }
        let target = rel.split('/').fold(aside.to_path_buf(), |p, c| p.join(c));
        let moved_ok = target
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|_| std::fs::rename(&local, &target));
        if let Err(err) = moved_ok {
            return Err(Failure::new(
                Exit::Failed,
                format!(
                    "cannot move {} aside to {}: {err}. {moved} file(s) were already moved there; nothing was overwritten.",
                    local.display(),
                    target.display()
                ),
            ));
        }
        moved += 1;
    }
    Ok(moved)
}

pub fn aside_dir(dest: &Path, stamp: &str) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "folder".into());
    dest.with_file_name(format!("{name}.octobackup-before-{stamp}"))
}

async fn restore_folders(
    job: &RestoreJob,
    set: &ChosenSet,
) -> Result<Vec<FolderRestored>, Failure> {
    let entries = {
        let (repo, snap) = (job.repo.clone(), set.snapshot_id.clone());
        tokio::task::spawn_blocking(move || repo.list_files(&snap, backupset::FOLDERS_DIR))
            .await
            .map_err(join_err)??
    };
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let mut out = Vec::new();
    for f in &set.manifest.folders {
        let dest = match &job.folders_to {
            Some(dir) => dir.join(&f.name),
            None => PathBuf::from(&f.source_path),
        };
        let prefix = format!("{}/{}", backupset::FOLDERS_DIR, f.name);
        let mine: Vec<FileEntry> = entries
            .iter()
            .filter(|e| e.path == prefix || e.path.starts_with(&format!("{prefix}/")))
            .cloned()
            .collect();
        let aside = aside_dir(&dest, &stamp);
        let moved = move_aside(&dest, &mine, &prefix, &aside)?;
        lab_point("restore: folders").await;
        std::fs::create_dir_all(&dest).map_err(|e| {
            Failure::new(
                Exit::Failed,
                format!("cannot create the folder {}: {e}", dest.display()),
            )
        })?;
        let (repo, snap, path, d, sink) = (
            job.repo.clone(),
            set.snapshot_id.clone(),
            prefix.clone(),
            dest.clone(),
            job.ui.repo_sink(&format!("folder {}", f.name)),
        );
        let summary = tokio::task::spawn_blocking(move || repo.restore(&snap, &path, &d, &*sink))
            .await
            .map_err(join_err)??;
        if moved > 0 {
            job.ui.note(&format!(
                "{}: moved {moved} existing file(s) aside to {}",
                f.name,
                aside.display()
            ));
        }
        out.push(FolderRestored {
            name: f.name.clone(),
            path: dest.display().to_string(),
            files_restored: summary.files_restored,
            files_unchanged: summary.files_unchanged,
            moved_aside: moved,
            moved_aside_to: (moved > 0).then(|| aside.display().to_string()),
        });
    }
    Ok(out)
}

/// The master key and license of a set (`None` when the set has none).
pub async fn read_secrets(
    repo: &Arc<Repo>,
    set: &ChosenSet,
) -> Result<(Option<Secret>, Option<Secret>), Failure> {
    let (repo, snap) = (repo.clone(), set.snapshot_id.clone());
    let (has_key, has_license) = (
        set.manifest.secrets.master_key,
        set.manifest.secrets.license,
    );
    tokio::task::spawn_blocking(move || {
        let read = |path: &str| -> Result<Secret, Failure> {
            let bytes = repo.read_file(&snap, path)?;
            let text = std::str::from_utf8(&bytes).map_err(|_| {
                Failure::new(Exit::Repository, format!("{path} in the set is not text"))
            })?;
            Ok(Secret::new(text.trim_end_matches(['\r', '\n'])))
        };
        let key = if has_key {
            Some(read(backupset::MASTER_KEY_PATH)?)
        } else {
            None
        };
        let license = if has_license {
            Some(read(backupset::LICENSE_PATH)?)
        } else {
            None
        };
        Ok((key, license))
    })
    .await
    .map_err(join_err)?
}

/// The connection string Octopus should use for the restored database, with the password left
/// out (a placeholder the user fills in).
pub fn octopus_connection_string(server: &SqlServer, database: &str) -> String {
    let c = &server.conn;
    let mut s = format!("Server={};Database={database};", c.server_display());
    match &c.auth {
        Authentication::SqlLogin { user } => {
            s.push_str(&format!("User ID={user};Password=<SQL password>;"))
        }
        Authentication::Integrated => s.push_str("Trusted_Connection=True;"),
    }
    match c.encrypt {
        crate::sqlserver::connstr::Encrypt::Optional => s.push_str("Encrypt=False;"),
        crate::sqlserver::connstr::Encrypt::Mandatory => s.push_str("Encrypt=True;"),
        crate::sqlserver::connstr::Encrypt::Strict => s.push_str("Encrypt=Strict;"),
    }
    if c.trust_server_certificate == Some(true) {
        s.push_str("TrustServerCertificate=True;");
    }
    s
}

/// What a restore of a TDE-encrypted database needs on the target server. SQL Server refuses to
/// restore such a backup without the certificate (Msg 33111, "Cannot find server certificate with
/// thumbprint"), and the certificate lives in the source server's [master], not in the backup.
pub fn tde_note(manifest: &Manifest) -> Option<String> {
    (manifest.database.tde_encrypted == Some(true)).then(|| format!(
        "[{db}] was encrypted with Transparent Data Encryption when it was backed up: the certificate that protects its database encryption key (with its private key) must exist in [master] on the target server before the restore, or SQL Server refuses it (Msg 33111). On {server}: BACKUP CERTIFICATE <name> TO FILE = '...' WITH PRIVATE KEY (FILE = '...', ENCRYPTION BY PASSWORD = '...'); on the target: CREATE CERTIFICATE <name> FROM FILE = '...' WITH PRIVATE KEY (FILE = '...', DECRYPTION BY PASSWORD = '...').",
        db = manifest.database.name,
        server = manifest.database.server
    ))
}

/// The login Octopus connects as, for `database --grant`: the SQL login of the connection string,
/// or, with Windows authentication, the Octopus service's account, which only the user knows.
pub fn octopus_grant_login(server: &SqlServer) -> String {
    match &server.conn.auth {
        Authentication::SqlLogin { user } => user.clone(),
        Authentication::Integrated => {
            "<the Octopus service account, e.g. NT AUTHORITY\\SYSTEM>".to_string()
        }
    }
}

pub const KEY_PLACEHOLDER: &str = "<master key: see the secrets file>";
pub const LICENSE_PLACEHOLDER: &str = "<license, base64: see the secrets file>";

/// The commands that finish a restore, per Octopus's "restore, move, clone" procedure.
pub fn next_steps(
    octopus_version: &str,
    octopus_instance: &str,
    connection_string: &str,
    grant_login: &str,
    folders: &[(String, String)],
    master_key: &str,
    license_b64: Option<&str>,
) -> (Vec<String>, Vec<String>) {
    let folder = |name: &str| {
        folders
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.clone())
            .unwrap_or_else(|| format!("<{name} folder>"))
    };
    let q = |s: &str| format!("\"{}\"", s.replace('"', "\\\""));
    let mut windows = vec![
        format!(
            "Octopus.Server.exe database --instance {} --connectionString {} --masterKey {}",
            q(octopus_instance),
            q(connection_string),
            q(master_key)
        ),
        // A database restored on another SQL Server keeps its users, but they are orphaned: their
        // logins' SIDs differ there. `--grant` gives the login db_owner on the database (Octopus
        // docs, *database* command); a SQL login must exist on the server first.
        format!(
            "Octopus.Server.exe database --instance {} --grant {}",
            q(octopus_instance),
            q(grant_login)
        ),
        format!(
            "Octopus.Server.exe path --instance {} --nugetRepository {} --artifacts {} --taskLogs {} --eventExports {}",
            q(octopus_instance),
            q(&folder("Packages")),
            q(&folder("Artifacts")),
            q(&folder("TaskLogs")),
            q(&folder("EventExports"))
        ),
    ];
    if let Some(l) = license_b64 {
        windows.push(format!(
            "Octopus.Server.exe license --instance {} --licenseBase64 {}",
            q(octopus_instance),
            q(l)
        ));
    }
    windows.push(format!(
        "Octopus.Server.exe service --instance {} --stop --start",
        q(octopus_instance)
    ));
    let mut linux = vec![
        "docker run --detach --name octopus --publish 8080:8080 \\".to_string(),
        "  --env ACCEPT_EULA=Y \\".to_string(),
        format!("  --env DB_CONNECTION_STRING={} \\", q(connection_string)),
        format!("  --env MASTER_KEY={} \\", q(master_key)),
    ];
    if let Some(l) = license_b64 {
        linux.push(format!("  --env OCTOPUS_SERVER_BASE64_LICENSE={} \\", q(l)));
    }
    for (name, mount) in [
        ("Packages", "/repository"),
        ("Artifacts", "/artifacts"),
        ("TaskLogs", "/taskLogs"),
        ("EventExports", "/eventExports"),
    ] {
        linux.push(format!("  --volume {}:{mount} \\", q(&folder(name))));
    }
    linux.push(format!("  octopusdeploy/octopusdeploy:{octopus_version}"));
    (windows, linux)
}

/// Creates `path` for secrets: owner-only permissions, never over an existing file.
pub fn write_secrets_file(path: &Path, content: &str) -> Result<(), Failure> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| {
        Failure::new(
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Exit::Usage
            } else {
                Exit::Failed
            },
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                format!(
                    "the secrets file {} already exists; octobackup never overwrites one. Choose another path or remove it.",
                    path.display()
                )
            } else {
                format!("cannot create the secrets file {}: {e}", path.display())
            },
        )
    })?;
    f.write_all(content.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| {
            Failure::new(
                Exit::Failed,
                format!("cannot write the secrets file {}: {e}", path.display()),
            )
        })
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
                session.cancel(std::time::Duration::from_secs(30)).await;
                return Err(interrupted(&job, &server, &set, &target, existed, sig).await);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> Vec<BackupFile> {
        vec![
            BackupFile {
                logical: "OctopusDeploy".into(),
                physical: r"D:\Data\OctopusDeploy.mdf".into(),
                kind: 'D',
            },
            BackupFile {
                logical: "OctopusDeploy_log".into(),
                physical: r"D:\Logs\OctopusDeploy_log.ldf".into(),
                kind: 'L',
            },
        ]
    }

    #[test]
    fn moves_keep_names_or_follow_the_new_name() {
        assert_eq!(
            plan_moves(&files(), None, None, None),
            vec![
                ("OctopusDeploy".into(), r"D:\Data\OctopusDeploy.mdf".into()),
                (
                    "OctopusDeploy_log".into(),
                    r"D:\Logs\OctopusDeploy_log.ldf".into()
                )
            ]
        );
        assert_eq!(
            plan_moves(&files(), Some("Octo Clone"), None, None),
            vec![
                ("OctopusDeploy".into(), r"D:\Data\Octo_Clone.mdf".into()),
                (
                    "OctopusDeploy_log".into(),
                    r"D:\Logs\Octo_Clone_log.ldf".into()
                )
            ]
        );
        assert_eq!(
            plan_moves(&files(), Some("X"), Some("/var/opt/mssql/data"), None),
            vec![
                ("OctopusDeploy".into(), "/var/opt/mssql/data/X.mdf".into()),
                (
                    "OctopusDeploy_log".into(),
                    "/var/opt/mssql/data/X_log.ldf".into()
                )
            ]
        );
        // The instance's default folders (with SQL Server's trailing separator): logs apart.
        assert_eq!(
            plan_moves(
                &files(),
                None,
                Some("/var/opt/mssql/data/"),
                Some("/var/opt/mssql/log/")
            ),
            vec![
                (
                    "OctopusDeploy".into(),
                    "/var/opt/mssql/data/OctopusDeploy.mdf".into()
                ),
                (
                    "OctopusDeploy_log".into(),
                    "/var/opt/mssql/log/OctopusDeploy_log.ldf".into()
                )
            ]
        );
    }

    #[test]
    fn temporary_names_are_stable_per_set_and_target() {
        let a = temporary_name("20260101T000000Z-abc123", "Octo");
        assert_eq!(a, temporary_name("20260101T000000Z-abc123", "Octo"));
        assert_ne!(a, temporary_name("20260101T000000Z-abc124", "Octo"));
        assert!(a.starts_with("Octo_octobackup_restoring_"));
        let long = "x".repeat(128);
        let t = temporary_name("s", &long);
        assert_eq!(t.chars().count(), 128);
        assert_ne!(t, temporary_name("s", &format!("{}y", &long[..127])));
    }

    #[test]
    fn next_steps_name_every_folder_and_hide_placeholders() {
        let folders = vec![
            ("Packages".to_string(), "/n/Packages".to_string()),
            ("Artifacts".to_string(), "/n/Artifacts".to_string()),
            ("TaskLogs".to_string(), "/n/TaskLogs".to_string()),
            ("EventExports".to_string(), "/n/EventExports".to_string()),
        ];
        let (w, l) = next_steps(
            "2024.1.6928",
            "OctopusServer",
            "Server=s;Database=d;",
            "octopus",
            &folders,
            KEY_PLACEHOLDER,
            Some(LICENSE_PLACEHOLDER),
        );
        assert!(w[0].starts_with("Octopus.Server.exe database --instance \"OctopusServer\" --connectionString \"Server=s;Database=d;\" --masterKey"));
        assert_eq!(
            w[1],
            "Octopus.Server.exe database --instance \"OctopusServer\" --grant \"octopus\""
        );
        assert_eq!(
            w[2],
            "Octopus.Server.exe path --instance \"OctopusServer\" --nugetRepository \"/n/Packages\" --artifacts \"/n/Artifacts\" --taskLogs \"/n/TaskLogs\" --eventExports \"/n/EventExports\""
        );
        assert!(w[3].starts_with(
            "Octopus.Server.exe license --instance \"OctopusServer\" --licenseBase64"
        ));
        assert!(l.iter().any(|x| x.contains("MASTER_KEY=")));
        assert!(l.iter().any(|x| x.contains("\"/n/Packages\":/repository")));
    }

    #[test]
    fn a_tde_set_names_the_certificate_and_others_say_nothing() {
        let mut m = Manifest::default();
        m.database.name = "OctopusDeploy".into();
        m.database.server = "SQL01".into();
        assert_eq!(tde_note(&m), None);
        m.database.tde_encrypted = Some(false);
        assert_eq!(tde_note(&m), None);
        m.database.tde_encrypted = Some(true);
        let note = tde_note(&m).unwrap();
        assert!(note.contains("[OctopusDeploy]") && note.contains("On SQL01: BACKUP CERTIFICATE"));
        // Older manifests without the field read as unknown.
        let old: crate::backupset::manifest::DatabaseInfo =
            serde_json::from_str(r#"{"name":"d","server":"s","product_version":"16","edition":"e","files":[],"bytes":0,"verified":true,"backupset":null}"#).unwrap();
        assert_eq!(old.tde_encrypted, None);
    }

    #[test]
    fn sql_paths_split_on_either_separator() {
        assert_eq!(split_sql_path(r"D:\Data\a.mdf"), (r"D:\Data", "a.mdf"));
        assert_eq!(split_sql_path("/var/a.mdf"), ("/var", "a.mdf"));
        assert_eq!(split_sql_path("a.mdf"), ("", "a.mdf"));
    }
}
