//! The SQL side of a restore: RESTORE under a temporary name, DBCC CHECKDB, then the rename (after
//! dropping the old database with `--replace`); an interrupted restore's temporary database found
//! and finished or dropped; a clone's new InstallationId.

use super::plan::{BackupFile, file_list, instance_default_paths, plan_moves};
use super::set::ChosenSet;
use super::staging::{Staged, copies_ended, stage_database};
use super::{DatabaseRestored, RestoreJob};
use crate::error::{Exit, Failure};
use crate::run::names::{short_hash, temporary_name};
use crate::run::progress::Ui;
use crate::run::stop::lab_point;
use crate::sqlserver::admin::{database_files, database_state, drop_quietly};
use crate::sqlserver::client::{self as sql, Session, SqlError};
use crate::sqlserver::{SqlServer, tsql};

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
pub(super) async fn restore_as_sql(
    server: &SqlServer,
    session: &mut Session,
    name: &str,
    staged: &Staged,
    moves: &[(String, String)],
    ui: &Ui,
) -> Result<(), SqlError> {
    let spid = session.server_info().await?.spid;
    // One RESTORE statement with SQL Server's progress on a bar.
    let mut step = async |label: &str, statement: String| {
        let bar = ui.percent_bar(label);
        let r = sql::run_with_progress(server, session, spid, label, &statement, None, &|p| {
            bar.set(p)
        })
        .await;
        bar.finish();
        r
    };
    if !staged.base_sql_paths.is_empty() {
        // An owned chain's set: the base WITH NORECOVERY, then the differential WITH RECOVERY.
        step(
            "RESTORE DATABASE (base)",
            crate::sqlserver::chain::restore_base(name, &staged.base_sql_paths, moves),
        )
        .await?;
        return step(
            "RESTORE DATABASE (differential)",
            crate::sqlserver::chain::restore_differential(name, &staged.sql_paths),
        )
        .await;
    }
    step(
        "RESTORE DATABASE",
        tsql::restore_database(name, &staged.sql_paths, moves, false, 5),
    )
    .await
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

pub(super) fn restore_failure(name: &str, moves: &[(String, String)], e: SqlError) -> Failure {
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

pub(super) struct DbTarget<'a> {
    pub(super) set: &'a ChosenSet,
    pub(super) target: String,
    pub(super) replace: bool,
    pub(super) data_dir: Option<String>,
    pub(super) clone: bool,
}

pub(super) struct DbOutcome {
    pub(super) restored: DatabaseRestored,
    pub(super) installation_id: Option<String>,
}

pub(super) async fn restore_database(
    job: &RestoreJob,
    server: &SqlServer,
    session: &mut Session,
    t: DbTarget<'_>,
) -> Result<DbOutcome, Failure> {
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
    // A failure from here on drops the temporary database, here and only here, unless the old
    // database is already gone and the checked copy is the only one (`Unfinished::Keep`).
    match into_place(job, server, session, &t, &temp, exists, resumed).await {
        Ok(done) => Ok(done),
        Err(Unfinished::Keep(e)) => Err(e),
        Err(Unfinished::Drop(e)) => {
            // Best effort: a database left behind is found by `recover` through its marker.
            let _ = drop_quietly(session, &temp).await;
            Err(e)
        }
    }
}

/// How a restore that got as far as its temporary database failed.
enum Unfinished {
    /// The temporary database goes: the target is as it was.
    Drop(Failure),
    /// The temporary database stays: it is the only copy (the old one was dropped), or none was
    /// made yet.
    Keep(Failure),
}

impl From<Failure> for Unfinished {
    fn from(e: Failure) -> Self {
        Unfinished::Drop(e)
    }
}

/// Restores the set under `temp` (unless `resumed`), checks it, and renames it to the target.
async fn into_place(
    job: &RestoreJob,
    server: &SqlServer,
    session: &mut Session,
    t: &DbTarget<'_>,
    temp: &str,
    exists: bool,
    resumed: bool,
) -> Result<DbOutcome, Unfinished> {
    let original = &t.set.manifest.database.name;
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
        let marker = crate::run::leftovers::Marker {
            instance: job.instance_name.clone(),
            kind: crate::run::leftovers::Kind::Restore,
            database: temp.to_string(),
            replaces: exists.then(|| t.target.clone()),
            scratch_folder: None,
        };
        let dir = job.instance.staging_local().join(&folder);
        crate::run::leftovers::write(&dir, &marker).map_err(|e| {
            Failure::new(
                Exit::Failed,
                format!(
                    "cannot write {} on the staging share: {e}. Check staging.local_path in the config.",
                    dir.join(crate::run::leftovers::MARKER).display()
                ),
            )
        })
        .map_err(Unfinished::Keep)?;
        // Nothing was restored yet: nothing to drop if the copy fails.
        let staged = stage_database(&job.repo, t.set, &job.instance, &folder, &job.ui, &job.stop)
            .await
            .map_err(Unfinished::Keep)?;
        let restored = async {
            lab_point("restore: staged").await;
            let files = file_list(session, &staged.sql_paths).await?;
            // The files keep their names after the rename: name them for the target now. The
            // original names only when the original database comes back under its own name onto a
            // server that does not have it; files of a database being replaced stay untouched.
            let base = if t.target == *original && !exists {
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
                temp,
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
        crate::run::leftovers::remove_copies(&staged.local_dir);
        if let Err(e) = restored {
            return Err(Unfinished::Drop(e));
        }
    }

    // From here on, a failure drops the temporary database unless the old one is already gone.
    let checked = async {
        lab_point("restore: checkdb").await;
        job.ui.status(&format!("DBCC CHECKDB on [{temp}]"));
        checkdb(server, session, temp, &job.ui).await?;
        let id = if t.clone {
            Some(new_installation_id(session, temp).await?)
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
            return Err(Unfinished::Drop(Failure {
                message: format!(
                    "{}; the restored copy was dropped and [{}] is unchanged",
                    e.message, t.target
                ),
                ..e
            }));
        }
    };
    let files = database_files(session, temp).await.unwrap_or_default();
    if exists
        && let Err(e) = session
            .execute("DROP DATABASE", &tsql::drop_database(&t.target), None)
            .await
    {
        return Err(Unfinished::Drop(Failure::new(
            Exit::Sql,
            format!(
                "cannot drop the existing [{}] to replace it: {e}. Stop the Octopus Server (every node) that uses it and run the restore again; nothing was changed.",
                t.target
            ),
        )));
    }
    lab_point("restore: rename").await;
    if let Err(e) = session
        .execute(
            "rename the restored database",
            &tsql::rename_database(temp, &t.target),
            None,
        )
        .await
    {
        if exists {
            // The old database is gone: the checked copy is the only one, keep it.
            return Err(Unfinished::Keep(Failure::new(
                Exit::Sql,
                format!(
                    "the restored database is complete and checked under the name [{temp}], but renaming it to [{}] failed: {e}. Run the same restore again to finish (it reuses [{temp}]).",
                    t.target
                ),
            )));
        }
        return Err(Unfinished::Drop(Failure::new(
            Exit::Sql,
            format!(
                "renaming the restored database [{temp}] to [{}] failed: {e}. The restored copy was dropped; nothing was changed.",
                t.target
            ),
        )));
    }
    Ok(DbOutcome {
        restored: DatabaseRestored {
            name: t.target.clone(),
            server: server.server_display(),
            files,
            replaced_existing: exists,
            resumed,
            checkdb: true,
        },
        installation_id,
    })
}

/// Removes the restore's staging folder and marker once its temporary database is gone (renamed
/// or dropped); a temporary database still there keeps its marker, for `recover` and `doctor`.
pub(super) async fn settle_marker(
    job: &RestoreJob,
    session: &mut Session,
    set: &ChosenSet,
    target: &str,
) {
    let dir = job.instance.staging_local().join(format!(
        "octobackup-restore-{}",
        short_hash(&[&set.set_id, target])
    ));
    crate::run::leftovers::remove_copies(&dir);
    let temp = temporary_name(&set.set_id, target);
    if let Ok(None) = database_state(session, &temp).await {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Ctrl-C or SIGTERM during the database part: the partly restored copy goes, unless the old
/// database was already dropped (then the checked copy under the temporary name is the only one
/// left, and running the same restore again finishes it).
pub(super) async fn interrupted(
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
    crate::run::leftovers::remove_copies(&dir);
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
