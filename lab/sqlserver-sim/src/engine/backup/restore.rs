//! RESTORE DATABASE from a full backup (WITH MOVE, REPLACE, NORECOVERY, FILE, STATS).

use std::io;
use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;
use sqlserver_files::bak::{self};
use sqlserver_files::image;

use super::*;
use crate::Edition;
use crate::engine::catalog::{DatabaseEntry, RestoreRecord, same_path};
use crate::engine::errors::{self, SqlError};
use crate::engine::session::{Outcome, Session, raise};
use crate::engine::{Engine, system_database};
use crate::sql::ast::{Restore, RestoreOption};
use crate::tds::response::Response;

/// A file a restore will write.
pub(super) struct RestoreTarget {
    logical: String,
    path: PathBuf,
    file_type: char,
}

pub(super) fn resolve_target(engine: &Engine, physical: &str) -> PathBuf {
    engine.host_path(physical, &engine.data_dir)
}

pub async fn restore_database(
    session: &mut Session,
    target: &str,
    restore: &Restore,
    resp: &mut Response<'_>,
    line: i32,
) -> io::Result<Outcome> {
    const OP: &str = "RESTORE DATABASE";
    let engine = session.engine.clone();
    if engine.edition == Edition::AzureSqlDatabase {
        raise(resp, &errors::azure_not_supported(OP), line);
        return Ok(Outcome::failed());
    }
    // RECOVERY and NORECOVERY ask for two end states at once: Msg 3031 alone, before anything
    // is read (Microsoft Learn, "Database engine events and errors 3000 to 3999"; the quoted
    // outputs of real servers show no Msg 3013 after it). Which option the text names first is
    // not documented.
    if let Some(conflict) = recovery_conflict(&restore.options) {
        raise(resp, &conflict, line);
        return Ok(Outcome::failed());
    }
    if session.tran_count > 0 {
        return Ok(fail(resp, &[errors::in_transaction()], OP, line));
    }
    if !may_create_database(session) {
        return Ok(fail(
            resp,
            &[errors::permission_denied("CREATE DATABASE", "master")],
            OP,
            line,
        ));
    }
    if let Some((system, _)) = system_database(target) {
        let err = if system == "tempdb" {
            SqlError::new(
                3147,
                16,
                1,
                "Backup and restore operations are not allowed on database tempdb.",
            )
        } else {
            SqlError::lab(format!(
                "restoring system database '{system}' is not supported"
            ))
        };
        return Ok(fail(resp, &[err], OP, line));
    }
    let norecovery = restore.options.contains(&RestoreOption::NoRecovery);
    let replace = restore.options.contains(&RestoreOption::Replace);
    let devices = device_paths(&engine, &restore.disks);
    let position = restore_position(&restore.options);
    let headers = match read_headers(devices.clone()).await {
        Ok(h) => h,
        Err(err) => {
            let errs = shown(&engine, position_errors(&err, "", &devices));
            return Ok(fail(resp, &errs, OP, line));
        }
    };
    let Some(header) = headers.into_iter().find(|h| h.position == position) else {
        let err = errors::no_such_backup_set(
            position,
            &devices
                .first()
                .map(|p| engine.sql_path(p))
                .unwrap_or_default(),
        );
        return Ok(fail(resp, &[err], OP, line));
    };
    // WITH MOVE: every logical name must be in the backup set, a differential's too: SQL Server
    // checks the names against the set whatever its type (Msg 3234; Microsoft Learn, "RESTORE
    // Statements - Arguments", MOVE: supported by RESTORE, "the logical name ... in the backup
    // set"). A differential restores into the files its base was restored to, so a valid MOVE
    // on it changes nothing here.
    let moves: Vec<(&String, &String)> = restore
        .options
        .iter()
        .filter_map(|o| {
            if let RestoreOption::Move { logical, physical } = o {
                Some((logical, physical))
            } else {
                None
            }
        })
        .collect();
    for (logical, _) in &moves {
        if !header
            .files
            .iter()
            .any(|f| f.logical_name.eq_ignore_ascii_case(logical))
        {
            return Ok(fail(
                resp,
                &[errors::logical_file_not_in_backup(
                    logical,
                    &header.database_name,
                )],
                OP,
                line,
            ));
        }
    }
    if header.is_differential() {
        return restore_differential(session, target, &header, &devices, norecovery, resp, line)
            .await;
    }
    // WITH NORECOVERY leaves the database RESTORING, waiting for a differential (or log)
    // restore; its base is this backup set.
    let restoring_from = norecovery.then_some(header.backup_set_uuid);

    let targets: Vec<RestoreTarget> = header
        .files
        .iter()
        .map(|f| {
            // the set records the file where the lab kept it: as SQL Server names it
            let recorded = engine.sql_path(std::path::Path::new(&f.physical_name));
            let physical = moves
                .iter()
                .rev()
                .find(|(l, _)| l.eq_ignore_ascii_case(&f.logical_name))
                .map(|(_, p)| p.as_str())
                .unwrap_or(&recorded);
            RestoreTarget {
                logical: f.logical_name.clone(),
                path: resolve_target(&engine, physical),
                file_type: f.file_type,
            }
        })
        .collect();
    let (Some(data_target), Some(log_target)) = (
        targets.iter().find(|t| t.file_type == 'D'),
        targets.iter().find(|t| t.file_type == 'L'),
    ) else {
        return Ok(fail(
            resp,
            &[SqlError::lab(
                "the backup set does not hold one data file and one log file",
            )],
            OP,
            line,
        ));
    };

    let existing = engine.database_entry(target);
    if let Some(existing) = &existing
        && !replace
    {
        if !existing.name.eq_ignore_ascii_case(&header.database_name) {
            return Ok(fail(
                resp,
                &[errors::backup_of_other_database(&existing.name)],
                OP,
                line,
            ));
        }
        let model = image::read_header(&existing.data_file)
            .map(|h| h.recovery_model.to_ascii_uppercase())
            .unwrap_or_default();
        if model != "SIMPLE" {
            return Ok(fail(
                resp,
                &[errors::tail_of_log_not_backed_up(&existing.name)],
                OP,
                line,
            ));
        }
    }
    // Planning: the files must be free for this database.
    let catalog = engine.catalog();
    let mut planning = Vec::new();
    for t in &targets {
        let path = engine.sql_path(&t.path);
        if let Some(owner) = catalog.database_using_file(&t.path)
            && existing
                .as_ref()
                .is_none_or(|e| e.database_id != owner.database_id)
        {
            planning.push(errors::file_in_use_by_database(&path, &owner.name));
            planning.push(errors::cannot_restore_file_to(&t.logical, &path));
            continue;
        }
        if t.path
            .parent()
            .is_some_and(|p| !p.as_os_str().is_empty() && !p.is_dir())
        {
            planning.push(errors::directory_lookup_failed(
                &path,
                &engine.shown("3(The system cannot find the path specified.)"),
            ));
            planning.push(errors::cannot_restore_file_to(&t.logical, &path));
            continue;
        }
        let belongs_to_target = existing
            .as_ref()
            .is_some_and(|e| same_path(&e.data_file, &t.path) || same_path(&e.log_file, &t.path));
        if t.path.exists() && !belongs_to_target && !replace {
            planning.push(errors::file_exists_without_replace(&t.logical, &path));
        }
    }
    if !planning.is_empty() {
        planning.push(errors::restore_planning_failed());
        return Ok(fail(resp, &planning, OP, line));
    }
    if let Some(existing) = &existing {
        // Over an existing database: sysadmin, dbcreator or its owner (Microsoft Learn, RESTORE:
        // Permissions); Msg 3110.
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
        if session.database.eq_ignore_ascii_case(&existing.name) {
            return Ok(fail(
                resp,
                &[errors::in_use_by_this_session("RESTORE", &existing.name)],
                OP,
                line,
            ));
        }
        if !engine
            .sessions_using(&existing.name, session.spid)
            .is_empty()
        {
            return Ok(fail(resp, &[errors::exclusive_access_failed()], OP, line));
        }
    }

    let name = existing
        .as_ref()
        .map_or_else(|| target.to_string(), |e| e.name.clone());
    let files: Vec<String> = devices.iter().map(|d| path_text(d)).collect();
    engine.emit(
        "restore_started",
        json!({ "database": name, "from": files, "files": targets.iter().map(|t| path_text(&t.path)).collect::<Vec<_>>(), "spid": session.spid }),
    );
    let finished = |ok: bool, error: Option<String>, bytes: u64| {
        let mut detail = json!({ "database": name, "ok": ok, "bytes": bytes });
        if let Some(e) = error {
            detail["error"] = json!(e);
        }
        engine.emit("restore_finished", detail);
    };
    let guard = engine.database_lock(&name).write_owned().await;
    let stats = restore.options.iter().find_map(|o| {
        if let RestoreOption::Stats(n) = o {
            Some(n.unwrap_or(10))
        } else {
            None
        }
    });
    let mut reporter = StatsReporter::new(stats);
    let started = Instant::now();
    let (stripes, data_path, log_path, new_name) = (
        devices.clone(),
        data_target.path.clone(),
        log_target.path.clone(),
        name.clone(),
    );
    let run = run_file_operation(session, resp, &mut reporter, line, false, move |progress| {
        bak::restore(
            &stripes, position, &data_path, &log_path, &new_name, progress,
        )
    })
    .await?;
    let result = match run {
        RunEnd::Finished(r) => r,
        RunEnd::Cancelled(_) | RunEnd::Dropped(_) => {
            forget_if_gone(&engine, existing.as_ref());
            drop(guard);
            finished(false, Some(session.attention.why_stopped().into()), 0);
            return Ok(Outcome::Cancelled);
        }
    };
    let summary = match result {
        Ok(summary) => summary,
        Err(err) => {
            forget_if_gone(&engine, existing.as_ref());
            drop(guard);
            let errs = shown(&engine, bak_errors(&err, &header.database_name, true));
            finished(
                false,
                Some(
                    errs.iter()
                        .map(|e| format!("Msg {}: {}", e.number, e.text))
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
                0,
            );
            return Ok(fail(resp, &errs, OP, line));
        }
    };
    // Old files the restored database no longer uses go, as when SQL Server replaces a database.
    if let Some(e) = &existing {
        for old in [&e.data_file, &e.log_file] {
            if !same_path(old, &data_target.path) && !same_path(old, &log_target.path) {
                let _ = std::fs::remove_file(old);
            }
        }
    }
    let now = chrono::Local::now().naive_local();
    let user = session.login.name.clone();
    let (data_file, log_file) = (
        std::path::absolute(&data_target.path)?,
        std::path::absolute(&log_target.path)?,
    );
    let recorded = engine.update_catalog(|catalog| {
        match catalog
            .databases
            .iter_mut()
            .find(|d| d.name.eq_ignore_ascii_case(&name))
        {
            Some(entry) => {
                entry.data_file = data_file.clone();
                entry.log_file = log_file.clone();
                entry.create_date = now;
                entry.restoring_from = restoring_from;
            }
            None => {
                let id = catalog.next_database_id;
                catalog.next_database_id += 1;
                catalog.databases.push(DatabaseEntry {
                    name: name.clone(),
                    database_id: id,
                    data_file,
                    log_file,
                    create_date: now,
                    restoring_from,
                });
            }
        }
        let backup_set_id = match catalog
            .backupsets
            .iter()
            .find(|b| b.backup_set_uuid == header.backup_set_uuid)
        {
            Some(b) => b.backup_set_id,
            None => record_backup(catalog, &header, &sql_devices(&engine, &devices)),
        };
        let id = catalog.next_restore_id();
        catalog.restores.push(RestoreRecord {
            restore_history_id: id,
            restore_date: now,
            destination_database_name: name.clone(),
            user_name: user,
            backup_set_id,
            replace,
            recovery: restoring_from.is_none(),
        });
    });
    drop(guard);
    reporter.finished(resp, line);
    for (t, pages) in [
        (data_target, summary.data_pages),
        (log_target, summary.log_pages),
    ] {
        raise(
            resp,
            &errors::processed_pages(pages as u64, &name, &t.logical, position),
            line,
        );
    }
    let pages = summary.data_pages as u64 + summary.log_pages as u64;
    raise(
        resp,
        &errors::successfully_processed(
            OP,
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
    if existing.is_none() {
        // The login that creates a database by RESTORE owns it (dbo).
        engine.set_database_owner(&name, Some(&session.login.name));
    }
    finished(true, None, pages * image::PAGE_SIZE as u64);
    Ok(Outcome::ok())
}

/// After a failed restore over an existing database whose files are gone, drop it from the catalog.
pub(super) fn forget_if_gone(engine: &Engine, existing: Option<&DatabaseEntry>) {
    if let Some(e) = existing
        && (!e.data_file.exists() || !e.log_file.exists())
    {
        let id = e.database_id;
        if let Err(err) = engine.update_catalog(|c| c.databases.retain(|d| d.database_id != id)) {
            tracing::warn!("could not save the catalog: {err:#}");
        }
    }
}

/// Msg 3031 when the statement says both RECOVERY and NORECOVERY.
fn recovery_conflict(options: &[RestoreOption]) -> Option<SqlError> {
    let first = options
        .iter()
        .position(|o| matches!(o, RestoreOption::Recovery | RestoreOption::NoRecovery))?;
    let later = options[first + 1..].iter().find(|o| {
        matches!(o, RestoreOption::Recovery | RestoreOption::NoRecovery) && **o != options[first]
    })?;
    let name = |o: &RestoreOption| {
        if *o == RestoreOption::Recovery {
            "recovery"
        } else {
            "norecovery"
        }
    };
    Some(SqlError::new(
        3031,
        16,
        1,
        format!(
            "Option '{}' conflicts with option(s) '{}'. Remove the conflicting option and reissue the statement.",
            name(later),
            name(&options[first])
        ),
    ))
}
