//! RESTORE DATABASE from a differential backup.

use std::io;
use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;
use sqlserver_files::bak::{self, BackupSetHeader};
use sqlserver_files::image;

use super::*;
use crate::engine::catalog::RestoreRecord;
use crate::engine::errors::{self, SqlError};
use crate::engine::session::{Outcome, Session, raise};
use crate::tds::response::Response;

/// RESTORE DATABASE from a differential backup: only onto a database left RESTORING (WITH
/// NORECOVERY) by the restore of the differential's own base. Otherwise SQL Server refuses with
/// Msg 3117 (nothing to roll forward: the database was recovered or does not exist) or Msg 3136
/// (the database was restored from another full backup) (Microsoft Learn, "Database engine events
/// and errors 3000 to 3999"; "Restore a differential database backup").
pub(super) async fn restore_differential(
    session: &mut Session,
    target: &str,
    header: &BackupSetHeader,
    devices: &[PathBuf],
    norecovery: bool,
    resp: &mut Response<'_>,
    line: i32,
) -> io::Result<Outcome> {
    const OP: &str = "RESTORE DATABASE";
    let engine = session.engine.clone();
    let existing = engine.database_entry(target);
    let Some(existing) = existing.filter(|e| e.restoring_from.is_some()) else {
        return Ok(fail(
            resp,
            &[SqlError::new(
                3117,
                16,
                1,
                "The log or differential backup cannot be restored because no files are ready to rollforward.",
            )],
            OP,
            line,
        ));
    };
    if existing.restoring_from != header.differential_base_guid {
        return Ok(fail(
            resp,
            &[SqlError::new(
                3136,
                16,
                1,
                "This differential backup cannot be restored because the database has not been restored to the correct earlier state.",
            )],
            OP,
            line,
        ));
    }
    if !may_alter_database(session, &existing.name) {
        return Ok(fail(
            resp,
            &[SqlError::new(
                3110,
                14,
                1,
                format!(
                    "User does not have permission to RESTORE database '{}'.",
                    existing.name
                ),
            )],
            OP,
            line,
        ));
    }
    let name = existing.name.clone();
    engine.emit(
        "restore_started",
        json!({ "database": name, "from": devices.iter().map(|d| path_text(d)).collect::<Vec<_>>(), "differential": true, "spid": session.spid }),
    );
    let guard = engine.database_lock(&name).write_owned().await;
    let mut reporter = StatsReporter::new(None);
    let started = Instant::now();
    let (stripes, data_path, log_path, position) = (
        devices.to_vec(),
        existing.data_file.clone(),
        existing.log_file.clone(),
        header.position,
    );
    let run = run_file_operation(session, resp, &mut reporter, line, false, move |progress| {
        bak::restore_differential(&stripes, position, &data_path, &log_path, progress)
    })
    .await?;
    let result = match run {
        RunEnd::Finished(r) => r,
        RunEnd::Cancelled(_) | RunEnd::Dropped(_) => {
            drop(guard);
            engine.emit("restore_finished", json!({ "database": name, "ok": false }));
            return Ok(Outcome::Cancelled);
        }
    };
    let summary = match result {
        Ok(summary) => summary,
        Err(err) => {
            drop(guard);
            let errs = shown(&engine, bak_errors(&err, &header.database_name, true));
            engine.emit("restore_finished", json!({ "database": name, "ok": false }));
            return Ok(fail(resp, &errs, OP, line));
        }
    };
    let now = chrono::Local::now().naive_local();
    let user = session.login.name.clone();
    let recorded = engine.update_catalog(|catalog| {
        if let Some(entry) = catalog
            .databases
            .iter_mut()
            .find(|d| d.name.eq_ignore_ascii_case(&name))
        {
            // WITH RECOVERY ends the restore sequence; NORECOVERY keeps the base for more.
            if !norecovery {
                entry.restoring_from = None;
            }
        }
        let backup_set_id = match catalog
            .backupsets
            .iter()
            .find(|b| b.backup_set_uuid == header.backup_set_uuid)
        {
            Some(b) => b.backup_set_id,
            None => record_backup(catalog, header, &sql_devices(&engine, devices)),
        };
        let id = catalog.next_restore_id();
        catalog.restores.push(RestoreRecord {
            restore_history_id: id,
            restore_date: now,
            destination_database_name: name.clone(),
            user_name: user,
            backup_set_id,
            replace: false,
            recovery: !norecovery,
        });
    });
    drop(guard);
    let pages = summary.data_pages as u64 + summary.log_pages as u64;
    raise(
        resp,
        &errors::successfully_processed(
            "RESTORE DATABASE",
            pages,
            pages * image::PAGE_SIZE as u64,
            started.elapsed().as_secs_f64(),
        ),
        line,
    );
    if let Err(e) = recorded {
        raise(
            resp,
            &SqlError::lab(format!(
                "the restore succeeded but the catalog could not be saved: {e:#}"
            )),
            line,
        );
    }
    engine.emit(
        "restore_finished",
        json!({ "database": name, "ok": true, "bytes": pages * image::PAGE_SIZE as u64 }),
    );
    Ok(Outcome::ok())
}
