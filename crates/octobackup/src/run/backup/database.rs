//! The database's part of a set: BACKUP DATABASE to the staging share inside the window (stopped
//! on the server when the run is stopped or the window's budget cuts it short), and after the
//! window RESTORE VERIFYONLY, the msdb row and the staged files as octobackup sees them.

use super::staging::{SetFolder, keep_if_running};
use super::window_capture;
use super::{BackupJob, chain};
use crate::backupset::{self, manifest};
use crate::error::{Exit, Failure};
use crate::run::stop::Stop;
use crate::sqlserver::{SqlServer, client as sql, tsql};
use std::path::Path;
use std::time::Duration;

/// The DESCRIPTION octobackup gives its BACKUP, by which it finds its own msdb row.
fn backup_description(set_id: &str) -> String {
    format!("octobackup set {set_id}")
}

pub(super) async fn backup_database(
    job: &BackupJob,
    sqlserver: &SqlServer,
    database: &str,
    set: &SetFolder,
    set_id: &str,
    differential: bool,
) -> Result<(), Failure> {
    let bak_sql = &set.bak_sql;
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
            let kept = keep_if_running(&stopped, &set.local);
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
    if let Err(e) = ran {
        return Err(explain(job, &mut session, database, set, e).await);
    }
    bar.finish();
    Ok(())
}

/// A BACKUP DATABASE that failed, said with its likely cause where octobackup can tell it.
async fn explain(
    job: &BackupJob,
    session: &mut sql::Session,
    database: &str,
    set: &SetFolder,
    e: crate::sqlserver::SqlError,
) -> Failure {
    if let crate::sqlserver::SqlError::StagingNotWritable { path, message, .. } = &e
        // Windows reports a missing folder as OS error 3, SQL Server on Linux as error 2
        && (message.contains("error 3(") || message.contains("error 2("))
    {
        // octobackup created the set's folder through its own view of the share; SQL Server cannot find it.
        let local = set.local.display();
        return Failure::new(
            Exit::Sql,
            format!(
                "SQL Server cannot find the staging folder: octobackup created {local}, but SQL Server sees no {} (Msg 3201: {message}). staging.sql_path and staging.local_path must name the same folder (a share both can reach).",
                path.rsplit_once(['\\', '/'])
                    .map(|(d, _)| d)
                    .unwrap_or(path)
            ),
        );
    }
    // The staging share filled up (Msg 3202, operating system error 112): say where, how much.
    if crate::run::space::is_disk_full(&e.to_string()) {
        let needed = database_size(session, database).await;
        return crate::run::space::full(
            Exit::Sql,
            "the staging folder",
            &job.instance.staging_local(),
            needed,
            &format!(
                "BACKUP DATABASE could not write its file there ({}). Free space on the staging share or point staging at a bigger one; nothing was marked complete.",
                e.to_string().trim_end_matches('.')
            ),
        );
    }
    e.into()
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
pub(super) async fn verify_database(
    job: &BackupJob,
    sqlserver: &SqlServer,
    database: &str,
    set: &SetFolder,
    set_id: &str,
    info: &mut manifest::DatabaseInfo,
) -> Result<(), Failure> {
    let (bak_sql, bak_local) = (&set.bak_sql, &set.bak_local);
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

/// The window's budget ran out, and with BACKUP DATABASE still running its statement was dropped:
/// SQL Server is told to stop it (ATTENTION on its connection, and its acknowledgment awaited),
/// and the message says what became of it. Without the acknowledgment the BACKUP may still be
/// writing in the staging folder, so the folder is kept with its marker for the next run's
/// leftover clean-up rather than removed under SQL Server's feet.
pub(super) async fn stop_cut_backup(job: &BackupJob, staging: &Path, mut f: Failure) -> Failure {
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

/// A stop request; while BACKUP DATABASE runs, heard only after its step had the time to stop
/// the statement on the server and return.
pub(super) async fn stop_after_backup(stop: &Stop, track: &window_capture::Track) -> &'static str {
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
