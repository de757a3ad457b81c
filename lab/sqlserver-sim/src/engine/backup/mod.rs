//! BACKUP DATABASE, RESTORE VERIFYONLY/HEADERONLY/FILELISTONLY/DATABASE and
//! DROP DATABASE: the checks SQL Server makes, the file work through
//! `sqlserver-files` on a blocking thread, STATS progress, throttling,
//! ATTENTION, faults, msdb history and events.

use std::io;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use sqlserver_files::bak::{self, BackupSetHeader, BakError};
use sqlserver_files::image;
use uuid::Uuid;

use super::catalog::{
    BackupSetRecord, Catalog, DatabaseEntry, MediaFamilyRecord, MediaSetRecord, RestoreRecord,
    same_path,
};
use super::errors::{self, SqlError};
use super::session::{Outcome, Session, raise};
use super::{Engine, SERVER_NAME, system_database};
use crate::sql::ast::{Backup, BackupOption, Restore, RestoreKind, RestoreOption};
use crate::tds::response::Response;
use crate::tds::token::Column;
use crate::tds::types::{SqlType, Value};
use crate::{Edition, SqlFault};

/// How a file operation on the blocking pool ended.
enum RunEnd<T> {
    Finished(T),
    /// ATTENTION (or a vanished client) stopped it.
    Cancelled(T),
    /// The drop-connection fault stopped it.
    Dropped(T),
}

/// Sets the cancel flag when dropped, so a session torn down mid-operation stops its blocking work.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// STATS = n: "N percent processed." each time another n percent completes.
struct StatsReporter {
    step: Option<u32>,
    next: u32,
}

impl StatsReporter {
    fn new(step: Option<u32>) -> Self {
        let step = step.map(|s| s.clamp(1, 100));
        Self {
            step,
            next: step.unwrap_or(u32::MAX),
        }
    }

    /// The percentage to print now, if a threshold was crossed.
    fn advance(&mut self, percent: u32) -> Option<u32> {
        let step = self.step?;
        if percent < self.next {
            return None;
        }
        self.next = (percent / step + 1) * step;
        Some(percent)
    }

    fn progress(&mut self, resp: &mut Response<'_>, percent: u32, line: i32) -> bool {
        match self.advance(percent) {
            Some(p) => {
                raise(resp, &errors::percent_processed(p), line);
                true
            }
            None => false,
        }
    }

    fn finished(&mut self, resp: &mut Response<'_>, line: i32) {
        if self.step.is_some() && self.next <= 100 {
            raise(resp, &errors::percent_processed(100), line);
            self.next = u32::MAX;
        }
    }
}

/// Runs `work` on the blocking pool with a progress callback that throttles to the configured
/// rate, stops on ATTENTION, and drops the connection part-way when `drop_midway`.
async fn run_file_operation<T: Send + 'static>(
    session: &Session,
    resp: &mut Response<'_>,
    stats: &mut StatsReporter,
    line: i32,
    drop_midway: bool,
    work: impl FnOnce(&mut dyn FnMut(u64, u64) -> ControlFlow<()>) -> T + Send + 'static,
) -> io::Result<RunEnd<T>> {
    let cancel = Arc::new(AtomicBool::new(false));
    let _cancel_guard = CancelOnDrop(cancel.clone());
    let dropped = Arc::new(AtomicBool::new(false));
    let (progress_tx, mut progress_rx) = tokio::sync::mpsc::unbounded_channel::<(u64, u64)>();
    let engine = session.engine.clone();
    let permit = engine
        .operations
        .clone()
        .acquire_owned()
        .await
        .expect("the operations semaphore is never closed");
    let handle = {
        let cancel = cancel.clone();
        let dropped = dropped.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut last = Instant::now();
            let mut last_done = 0u64;
            let mut callback = |done: u64, total: u64| -> ControlFlow<()> {
                let delta = done.saturating_sub(last_done);
                last_done = done;
                if let Some(rate) = engine.backup_rate() {
                    let due = last + Duration::from_secs_f64(delta as f64 / rate as f64);
                    while Instant::now() < due {
                        if cancel.load(Ordering::SeqCst) {
                            return ControlFlow::Break(());
                        }
                        std::thread::sleep((due - Instant::now()).min(Duration::from_millis(20)));
                        // a changed rate applies at once
                        if engine.backup_rate().is_none_or(|r| r != rate) {
                            break;
                        }
                    }
                }
                last = Instant::now();
                let _ = progress_tx.send((done, total));
                if drop_midway && total > 0 && done * 10 >= total * 3 {
                    dropped.store(true, Ordering::SeqCst);
                    return ControlFlow::Break(());
                }
                if cancel.load(Ordering::SeqCst) {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            };
            work(&mut callback)
        })
    };
    tokio::pin!(handle);
    let mut cancelled = false;
    let mut report = |resp: &mut Response<'_>, done: u64, total: u64| -> bool {
        let percent = done
            .saturating_mul(100)
            .checked_div(total)
            .map_or(100, |p| p.min(100) as u32);
        let exact = if total == 0 {
            100.0
        } else {
            (done as f64 * 100.0 / total as f64) as f32
        };
        session.engine.set_percent_complete(session.spid, exact);
        !dropped.load(Ordering::SeqCst) && stats.progress(resp, percent, line)
    };
    let result = loop {
        tokio::select! {
            biased;
            Some((done, total)) = progress_rx.recv() => {
                if !cancelled && report(resp, done, total) {
                    resp.flush().await?;
                }
            }
            _ = session.attention.stopped(), if !cancelled => {
                cancel.store(true, Ordering::SeqCst);
                cancelled = true;
            }
            result = &mut handle => break result,
        }
    };
    // progress the operation made just before it ended
    while let Ok((done, total)) = progress_rx.try_recv() {
        if !cancelled {
            report(resp, done, total);
        }
    }
    let value = result.map_err(|e| io::Error::other(format!("a file operation panicked: {e}")))?;
    Ok(if dropped.load(Ordering::SeqCst) {
        RunEnd::Dropped(value)
    } else if cancelled || session.attention.should_stop() {
        RunEnd::Cancelled(value)
    } else {
        RunEnd::Finished(value)
    })
}

/// Backup device paths as given, relative ones resolved against the default backup directory.
fn device_paths(engine: &Engine, disks: &[String]) -> Vec<PathBuf> {
    disks
        .iter()
        .map(|d| {
            let p = PathBuf::from(d);
            if p.is_absolute() {
                p
            } else {
                engine.backup_directory().join(p)
            }
        })
        .collect()
}

fn path_text(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Raises each error, then the operation's Msg 3013, and reports failure.
fn fail(resp: &mut Response<'_>, errs: &[SqlError], operation: &str, line: i32) -> Outcome {
    for e in errs {
        raise(resp, e, line);
    }
    if !operation.is_empty() {
        raise(resp, &errors::terminating(operation), line);
    }
    Outcome::failed()
}

/// The SQL Server messages for a backup-file error.
fn bak_errors(err: &BakError, database: &str, reading: bool) -> Vec<SqlError> {
    match err {
        BakError::CannotOpen {
            path,
            os_error_code,
            os_message,
        } => vec![errors::cannot_open_device(
            &path_text(path),
            &format!("{os_error_code}({os_message})"),
            if reading { 2 } else { 1 },
        )],
        BakError::NotABackup { path, .. } => {
            vec![errors::media_incorrectly_formed(&path_text(path))]
        }
        // The detail is text; it tells a short file from an unfinished set from bad content.
        BakError::Damaged { path, detail } => {
            if detail.contains("Reached the end of the file") || detail.contains("truncated") {
                vec![errors::read_failed(
                    &path_text(path),
                    "38(Reached the end of the file.)",
                )]
            } else if detail.contains("incomplete") {
                vec![SqlError::new(
                    3256,
                    16,
                    1,
                    format!(
                        "The backup set on device '{}' was terminated while it was being created and is incomplete. RESTORE sequence is terminated abnormally.",
                        path_text(path)
                    ),
                )]
            } else {
                vec![errors::damaged_backup_set()]
            }
        }
        BakError::MissingStripe { expected, found } => {
            vec![errors::missing_media_families(*expected, *found)]
        }
        BakError::MismatchedStripes { path, detail } => vec![SqlError::new(
            3231,
            16,
            1,
            format!(
                "The media loaded on \"{}\" is formatted to support a different set of media families than the backup device specification expects ({detail}).",
                path_text(path)
            ),
        )],
        BakError::NoSuchPosition { position, .. } => {
            vec![errors::no_such_backup_set(*position, "")]
        }
        BakError::PageChecksum {
            path,
            file_id,
            page,
            ..
        } => {
            if reading {
                vec![SqlError::new(
                    3183,
                    16,
                    1,
                    format!(
                        "RESTORE detected an error on page ({file_id}:{page}) in database \"{database}\" as read from the backup set."
                    ),
                )]
            } else {
                vec![SqlError::new(
                    3043,
                    16,
                    1,
                    format!(
                        "BACKUP '{database}' detected an error on page ({file_id}:{page}) in file '{}'.",
                        path_text(path)
                    ),
                )]
            }
        }
        // Microsoft Learn, "Database engine events and errors 3000 to 3999": Msg 3035.
        BakError::NoDifferentialBase => vec![SqlError::new(
            3035,
            16,
            1,
            format!(
                "Cannot perform a differential backup for database \"{database}\", because a current database backup does not exist. Perform a full database backup by reissuing BACKUP DATABASE, omitting the WITH DIFFERENTIAL option."
            ),
        )],
        BakError::NoChecksums => vec![SqlError::new(
            3187,
            16,
            1,
            "RESTORE WITH CHECKSUM cannot be specified because the backup set does not contain checksum information.",
        )],
        BakError::Cancelled => vec![SqlError::new(
            3204,
            16,
            1,
            "The backup or restore was aborted.",
        )],
        BakError::Database { path, detail } => {
            vec![SqlError::lab(format!(
                "the database file '{}' cannot be used: {detail}",
                path_text(path)
            ))]
        }
        BakError::InvalidRequest(detail) => vec![SqlError::lab(detail.clone())],
        BakError::Io { path, source } => {
            let (code, message) = bak::os_error(source, path, false);
            let os = format!("{code}({message})");
            if reading {
                vec![errors::read_failed(&path_text(path), &os)]
            } else {
                vec![errors::write_failed(&path_text(path), &os)]
            }
        }
    }
}

/// Fixes the device path of Msg 4038 (the error does not carry it).
fn position_errors(err: &BakError, database: &str, devices: &[PathBuf]) -> Vec<SqlError> {
    match err {
        BakError::NoSuchPosition { position, .. } => {
            vec![errors::no_such_backup_set(
                *position,
                &devices.first().map(|p| path_text(p)).unwrap_or_default(),
            )]
        }
        other => bak_errors(other, database, true),
    }
}

/// Whether the login may create databases: sysadmin, dbcreator or GRANT CREATE ANY DATABASE.
/// RESTORE VERIFYONLY, HEADERONLY and FILELISTONLY need it too since SQL Server 2008 (Microsoft
/// Learn, "RESTORE Statements", Important).
fn may_create_database(session: &Session) -> bool {
    session
        .engine
        .has_server_permission(&session.login.name, "CREATE ANY DATABASE")
}

/// DROP, rename or RESTORE over an existing database: sysadmin, its owner, db_owner, or ALTER ANY
/// DATABASE (dbcreator) (Microsoft Learn, DROP DATABASE and RESTORE: Permissions).
fn may_alter_database(session: &Session, database: &str) -> bool {
    let engine = &session.engine;
    let login = &session.login.name;
    engine.has_server_permission(login, "ALTER ANY DATABASE")
        || engine.is_database_role_member(login, database, "db_owner") == Some(true)
}

pub async fn backup_database(
    session: &mut Session,
    backup: &Backup,
    resp: &mut Response<'_>,
    line: i32,
) -> io::Result<Outcome> {
    const OP: &str = "BACKUP DATABASE";
    let engine = session.engine.clone();
    if engine.edition == Edition::AzureSqlDatabase {
        raise(resp, &errors::azure_not_supported(OP), line);
        return Ok(Outcome::failed());
    }
    if engine.edition == Edition::AzureSqlManagedInstance {
        // Managed Instance takes BACKUP TO URL only (Microsoft Learn, "T-SQL differences between
        // SQL Server and Azure SQL Managed Instance"); its error number is not documented.
        return Ok(fail(
            resp,
            &[SqlError::lab(
                "Azure SQL Managed Instance backs up only TO URL (BACKUP TO DISK is not supported there)",
            )],
            OP,
            line,
        ));
    }
    if session.tran_count > 0 {
        return Ok(fail(resp, &[errors::in_transaction()], OP, line));
    }
    let Some(name) = engine.canonical_database_name(&backup.database) else {
        return Ok(fail(
            resp,
            &[errors::database_does_not_exist(&backup.database)],
            OP,
            line,
        ));
    };
    // sysadmin, db_owner or db_backupoperator (Microsoft Learn, BACKUP: Permissions).
    if !engine.has_database_permission(&session.login.name, &name, "BACKUP DATABASE") {
        return Ok(fail(
            resp,
            &[errors::permission_denied(OP, &name)],
            OP,
            line,
        ));
    }
    if name == "tempdb" {
        return Ok(fail(
            resp,
            &[SqlError::new(
                3147,
                16,
                1,
                "Backup and restore operations are not allowed on database tempdb.",
            )],
            OP,
            line,
        ));
    }
    let Some(entry) = engine.database_entry(&name) else {
        return Ok(fail(
            resp,
            &[SqlError::lab(format!(
                "the lab holds no files for system database '{name}'"
            ))],
            OP,
            line,
        ));
    };
    // Not backed up while RESTORING: SQL Server cannot open it (927, then 3013).
    if entry.restoring_from.is_some() {
        return Ok(fail(resp, &[errors::database_restoring(&name)], OP, line));
    }
    let has = |o: &BackupOption| backup.options.contains(o);
    // Neither COMPRESSION nor NO_COMPRESSION: the server option `backup compression default`
    // decides (Microsoft Learn, "View or configure the backup compression default server
    // configuration option"). Express cannot compress, so its default stays off.
    let compression = if has(&BackupOption::NoCompression) {
        false
    } else if has(&BackupOption::Compression) {
        true
    } else {
        engine.backup_compression_default() && engine.edition != Edition::Express
    };
    if compression && engine.edition == Edition::Express {
        return Ok(fail(
            resp,
            &[errors::compression_not_supported(
                engine.edition.edition_name(),
            )],
            OP,
            line,
        ));
    }
    if backup.disks.len() > bak::MAX_STRIPES {
        return Ok(fail(
            resp,
            &[SqlError::new(
                3205,
                16,
                1,
                format!(
                    "Too many backup devices specified for backup or restore; only {} are allowed.",
                    bak::MAX_STRIPES
                ),
            )],
            OP,
            line,
        ));
    }
    let mut options = bak::BackupOptions {
        copy_only: has(&BackupOption::CopyOnly),
        differential: has(&BackupOption::Differential),
        checksum: has(&BackupOption::Checksum) && !has(&BackupOption::NoChecksum),
        compression,
        init: has(&BackupOption::Format) || has(&BackupOption::Init),
        server_name: SERVER_NAME.to_string(),
        user_name: session.login.name.clone(),
        software_version: engine.version.text.clone(),
        ..Default::default()
    };
    let mut stats = None;
    for option in &backup.options {
        match option {
            BackupOption::Stats(n) => stats = Some(n.unwrap_or(10)),
            BackupOption::Name(n) => options.name = n.clone(),
            BackupOption::Description(d) => options.description = d.clone(),
            BackupOption::MaxTransferSize(n) => {
                if *n < 65536 || *n > 4 * 1024 * 1024 || n % 65536 != 0 {
                    return Ok(fail(
                        resp,
                        &[SqlError::new(
                            3250,
                            16,
                            1,
                            format!(
                                "The value '{n}' is not within range for the MAXTRANSFERSIZE parameter."
                            ),
                        )],
                        OP,
                        line,
                    ));
                }
                options.max_transfer_size = *n as u32;
            }
            _ => {}
        }
    }
    let devices = device_paths(&engine, &backup.disks);
    engine.emit(
        "backup_started",
        json!({ "database": name, "files": devices.iter().map(|d| path_text(d)).collect::<Vec<_>>(), "spid": session.spid, "compressed": options.compression }),
    );
    let finished = |ok: bool, error: Option<String>, bytes: u64| {
        let mut detail = json!({ "database": name, "ok": ok, "bytes": bytes });
        if let Some(e) = error {
            detail["error"] = json!(e);
        }
        engine.emit("backup_finished", detail);
    };
    if let Some(SqlFault::FailNextBackup { number, message }) =
        engine.take_fault(|f| matches!(f, SqlFault::FailNextBackup { .. }))
    {
        finished(false, Some(format!("Msg {number}: {message}")), 0);
        return Ok(fail(
            resp,
            &[SqlError::new(number, 16, 1, message)],
            OP,
            line,
        ));
    }
    let corrupt = engine
        .take_fault(|f| matches!(f, SqlFault::CorruptNextBackup))
        .is_some();
    let drop_midway = engine
        .take_fault(|f| matches!(f, SqlFault::DropConnectionDuringNextBackup))
        .is_some();

    let guard = engine.database_lock(&name).read_owned().await;
    let started = Instant::now();
    let mut reporter = StatsReporter::new(stats);
    let (data_file, log_file, stripes) = (
        entry.data_file.clone(),
        entry.log_file.clone(),
        devices.clone(),
    );
    let run = run_file_operation(
        session,
        resp,
        &mut reporter,
        line,
        drop_midway,
        move |progress| {
            let result = bak::write_backup(&data_file, &log_file, &stripes, &options, progress);
            if corrupt
                && result.is_ok()
                && let Err(e) = bak::corrupt_one_page(&stripes[0])
            {
                tracing::warn!("could not corrupt the backup as the fault asked: {e}");
            }
            result
        },
    )
    .await?;
    drop(guard);
    let result = match run {
        RunEnd::Dropped(_) => {
            finished(
                false,
                Some("connection dropped (fault injection)".into()),
                0,
            );
            return Ok(Outcome::DropConnection);
        }
        RunEnd::Cancelled(_) => {
            finished(false, Some("cancelled by ATTENTION".into()), 0);
            return Ok(Outcome::Cancelled);
        }
        RunEnd::Finished(result) => result,
    };
    let header = match result {
        Ok(header) => header,
        Err(err) => {
            let errs = bak_errors(&err, &name, false);
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
    reporter.finished(resp, line);
    let position = header.position;
    for file in &header.files {
        let pages = if header.is_differential() && file.file_type == 'D' {
            set_data_pages(&header)
        } else {
            file.size / image::PAGE_SIZE as u64
        };
        raise(
            resp,
            &errors::processed_pages(pages, &name, &file.logical_name, position),
            line,
        );
    }
    raise(
        resp,
        &errors::successfully_processed(
            if header.is_differential() {
                "BACKUP DATABASE WITH DIFFERENTIAL"
            } else {
                OP
            },
            set_pages(&header),
            header.backup_size,
            started.elapsed().as_secs_f64(),
        ),
        line,
    );
    let others = engine
        .take_fault(|f| matches!(f, SqlFault::OtherBackupsAfterNextBackup))
        .is_some();
    let record = engine.update_catalog(|catalog| {
        let id = record_backup(catalog, &header, &devices);
        if others {
            record_other_backups(catalog, id, &engine.backup_directory());
        }
        id
    });
    if let Err(e) = record {
        raise(
            resp,
            &SqlError::new(
                3009,
                16,
                1,
                format!(
                    "Could not insert a backup or restore history/detail record in the msdb database. This may indicate a problem with the msdb database. The backup/restore operation was still successful. ({e:#})"
                ),
            ),
            line,
        );
    }
    finished(true, None, header.compressed_backup_size);
    Ok(Outcome::ok())
}

/// Pages a backup set holds (a differential holds only the changed extents and the log).
fn set_pages(header: &BackupSetHeader) -> u64 {
    if !header.is_differential() {
        return header.page_count();
    }
    let overhead = header.stripe_count as u64 * (64 * 1024 + 8192);
    header.backup_size.saturating_sub(overhead) / image::PAGE_SIZE as u64
}

/// Data pages a backup set holds.
fn set_data_pages(header: &BackupSetHeader) -> u64 {
    let log_pages: u64 = header
        .files
        .iter()
        .filter(|f| f.file_type == 'L')
        .map(|f| f.size / image::PAGE_SIZE as u64)
        .sum();
    set_pages(header).saturating_sub(log_pages)
}

/// Inserts the msdb rows for a backup set (media set and families when new). Returns the backup_set_id.
fn record_backup(catalog: &mut Catalog, header: &BackupSetHeader, devices: &[PathBuf]) -> i32 {
    let media_set_id = match catalog
        .mediasets
        .iter()
        .find(|m| m.media_uuid == header.media_set_id)
    {
        Some(m) => m.media_set_id,
        None => {
            let id = catalog.next_media_set_id();
            catalog.mediasets.push(MediaSetRecord {
                media_set_id: id,
                media_uuid: header.media_set_id,
                media_family_count: header.stripe_count.min(255) as u8,
                name: None,
                description: None,
                is_compressed: header.is_compressed,
            });
            for (i, device) in devices.iter().enumerate() {
                catalog.mediafamilies.push(MediaFamilyRecord {
                    media_set_id: id,
                    family_sequence_number: (i + 1) as u8,
                    media_family_id: Uuid::new_v4(),
                    physical_device_name: path_text(device),
                });
            }
            id
        }
    };
    let id = catalog.next_backup_set_id();
    catalog.backupsets.push(BackupSetRecord {
        backup_set_id: id,
        backup_set_uuid: header.backup_set_uuid,
        media_set_id,
        position: header.position as i32,
        name: (!header.name.is_empty()).then(|| header.name.clone()),
        description: (!header.description.is_empty()).then(|| header.description.clone()),
        user_name: header.user_name.clone(),
        database_name: header.database_name.clone(),
        database_guid: header.database_guid,
        family_guid: header.family_guid,
        database_creation_date: header.database_creation_date,
        backup_start_date: header.backup_start_date,
        backup_finish_date: header.backup_finish_date,
        first_lsn: header.first_lsn,
        last_lsn: header.last_lsn,
        checkpoint_lsn: header.checkpoint_lsn,
        database_backup_lsn: header.database_backup_lsn,
        differential_base_lsn: header.differential_base_lsn,
        differential_base_guid: header.differential_base_guid,
        // msdb.dbo.backupset.type: D database, I differential database.
        backup_type: if header.is_differential() { "I" } else { "D" }.to_string(),
        is_copy_only: header.is_copy_only,
        backup_size: header.backup_size,
        compressed_backup_size: header.compressed_backup_size,
        has_backup_checksums: header.has_backup_checksums,
        is_damaged: false,
        recovery_model: header.recovery_model.to_ascii_uppercase(),
        compatibility_level: header.compatibility_level,
        database_version: header.database_version,
        collation_name: header.collation.clone(),
        server_name: header.server_name.clone(),
        machine_name: header.machine_name.clone(),
        software_version: header.software_version.clone(),
    });
    id
}

/// The history a DBA's jobs leave when they end right after backup `id`: a full backup of the
/// same database to another device, then a log backup, both finishing later.
fn record_other_backups(catalog: &mut Catalog, id: i32, backup_dir: &Path) {
    let Some(ours) = catalog
        .backupsets
        .iter()
        .find(|b| b.backup_set_id == id)
        .cloned()
    else {
        return;
    };
    for (n, (kind, file, description)) in [
        ("D", "full", "Nightly full backup (maintenance plan)"),
        ("L", "log", "Log backup (maintenance plan)"),
    ]
    .into_iter()
    .enumerate()
    {
        let media_set_id = catalog.next_media_set_id();
        catalog.mediasets.push(MediaSetRecord {
            media_set_id,
            media_uuid: Uuid::new_v4(),
            media_family_count: 1,
            name: None,
            description: None,
            is_compressed: false,
        });
        let device = backup_dir.join(format!("{}_{file}.bak", ours.database_name));
        catalog.mediafamilies.push(MediaFamilyRecord {
            media_set_id,
            family_sequence_number: 1,
            media_family_id: Uuid::new_v4(),
            physical_device_name: path_text(&device),
        });
        let later = chrono::Duration::seconds(n as i64 + 1);
        let backup_set_id = catalog.next_backup_set_id();
        catalog.backupsets.push(BackupSetRecord {
            backup_set_id,
            backup_set_uuid: Uuid::new_v4(),
            media_set_id,
            position: 1,
            name: Some(format!("{} {file}", ours.database_name)),
            description: Some(description.to_string()),
            backup_type: kind.to_string(),
            is_copy_only: false,
            backup_start_date: ours.backup_finish_date,
            backup_finish_date: ours.backup_finish_date + later,
            first_lsn: ours.last_lsn + n as u128,
            last_lsn: ours.last_lsn + n as u128 + 1,
            differential_base_lsn: 0,
            differential_base_guid: None,
            ..ours.clone()
        });
    }
}

fn restore_position(options: &[RestoreOption]) -> u32 {
    options
        .iter()
        .find_map(|o| {
            if let RestoreOption::File(n) = o {
                Some(*n)
            } else {
                None
            }
        })
        .unwrap_or(1)
}

/// Reads the headers of the media on a blocking thread.
async fn read_headers(devices: Vec<PathBuf>) -> Result<Vec<BackupSetHeader>, BakError> {
    tokio::task::spawn_blocking(move || bak::read_headers(&devices))
        .await
        .unwrap_or_else(|e| {
            Err(BakError::InvalidRequest(format!(
                "reading backup headers panicked: {e}"
            )))
        })
}

pub async fn verify_only(
    session: &mut Session,
    restore: &Restore,
    resp: &mut Response<'_>,
    line: i32,
) -> io::Result<Outcome> {
    const OP: &str = "VERIFY DATABASE";
    let engine = session.engine.clone();
    if engine.edition == Edition::AzureSqlDatabase {
        raise(
            resp,
            &errors::azure_not_supported("RESTORE VERIFYONLY"),
            line,
        );
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
    let devices = device_paths(&engine, &restore.disks);
    let position = restore_position(&restore.options);
    let checksum = restore.options.contains(&RestoreOption::Checksum)
        && !restore.options.contains(&RestoreOption::NoChecksum);
    let database = read_headers(devices.clone())
        .await
        .ok()
        .and_then(|h| h.into_iter().find(|s| s.position == position))
        .map(|h| h.database_name)
        .unwrap_or_default();
    let permit = engine
        .operations
        .clone()
        .acquire_owned()
        .await
        .expect("the operations semaphore is never closed");
    let stripes = devices.clone();
    let result = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        bak::verify(&stripes, position, checksum)
    })
    .await
    .unwrap_or_else(|e| Err(BakError::InvalidRequest(format!("verify panicked: {e}"))));
    let files: Vec<String> = devices.iter().map(|d| path_text(d)).collect();
    match result {
        Ok(()) => {
            engine.emit("verify_finished", json!({ "files": files, "ok": true }));
            raise(resp, &errors::backup_set_valid(position), line);
            Ok(Outcome::ok())
        }
        Err(err) => {
            let errs = position_errors(&err, &database, &devices);
            engine.emit(
                "verify_finished",
                json!({ "files": files, "ok": false, "error": errs.iter().map(|e| format!("Msg {}: {}", e.number, e.text)).collect::<Vec<_>>().join(" ") }),
            );
            Ok(fail(resp, &errs, OP, line))
        }
    }
}

fn nv(n: u16) -> SqlType {
    SqlType::NVarChar(Some(n))
}

const LSN: SqlType = SqlType::Numeric {
    precision: 25,
    scale: 0,
};
const SIZE: SqlType = SqlType::Numeric {
    precision: 20,
    scale: 0,
};

fn header_columns() -> Vec<Column> {
    vec![
        Column::new("BackupName", nv(128)),
        Column::new("BackupDescription", nv(255)),
        Column::new("BackupType", SqlType::SmallInt),
        Column::new("ExpirationDate", SqlType::DateTime),
        Column::new("Compressed", SqlType::Bit),
        Column::new("Position", SqlType::SmallInt),
        Column::new("DeviceType", SqlType::TinyInt),
        Column::new("UserName", nv(128)),
        Column::new("ServerName", nv(128)),
        Column::new("DatabaseName", nv(128)),
        Column::new("DatabaseVersion", SqlType::Int),
        Column::new("DatabaseCreationDate", SqlType::DateTime),
        Column::new("BackupSize", SIZE),
        Column::new("FirstLSN", LSN),
        Column::new("LastLSN", LSN),
        Column::new("CheckpointLSN", LSN),
        Column::new("DatabaseBackupLSN", LSN),
        Column::new("BackupStartDate", SqlType::DateTime),
        Column::new("BackupFinishDate", SqlType::DateTime),
        Column::new("SortOrder", SqlType::SmallInt),
        Column::new("CodePage", SqlType::SmallInt),
        Column::new("UnicodeLocaleId", SqlType::Int),
        Column::new("UnicodeComparisonStyle", SqlType::Int),
        Column::new("CompatibilityLevel", SqlType::TinyInt),
        Column::new("SoftwareVendorId", SqlType::Int),
        Column::new("SoftwareVersionMajor", SqlType::Int),
        Column::new("SoftwareVersionMinor", SqlType::Int),
        Column::new("SoftwareVersionBuild", SqlType::Int),
        Column::new("MachineName", nv(128)),
        Column::new("Flags", SqlType::Int),
        Column::new("BindingID", SqlType::UniqueIdentifier),
        Column::new("RecoveryForkID", SqlType::UniqueIdentifier),
        Column::new("Collation", nv(128)),
        Column::new("FamilyGUID", SqlType::UniqueIdentifier),
        Column::new("HasBulkLoggedData", SqlType::Bit),
        Column::new("IsSnapshot", SqlType::Bit),
        Column::new("IsReadOnly", SqlType::Bit),
        Column::new("IsSingleUser", SqlType::Bit),
        Column::new("HasBackupChecksums", SqlType::Bit),
        Column::new("IsDamaged", SqlType::Bit),
        Column::new("BeginsLogChain", SqlType::Bit),
        Column::new("HasIncompleteMetaData", SqlType::Bit),
        Column::new("IsForceOffline", SqlType::Bit),
        Column::new("IsCopyOnly", SqlType::Bit),
        Column::new("FirstRecoveryForkID", SqlType::UniqueIdentifier),
        Column::new("ForkPointLSN", LSN),
        Column::new("RecoveryModel", nv(60)),
        Column::new("DifferentialBaseLSN", LSN),
        Column::new("DifferentialBaseGUID", SqlType::UniqueIdentifier),
        Column::new("BackupTypeDescription", nv(60)),
        Column::new("BackupSetGUID", SqlType::UniqueIdentifier),
        Column::new("CompressedBackupSize", SqlType::BigInt),
        Column::new("Containment", SqlType::TinyInt),
        Column::new("KeyAlgorithm", nv(32)),
        Column::new("EncryptorThumbprint", SqlType::VarBinary(Some(20))),
        Column::new("EncryptorType", nv(32)),
        // SQL Server 2022 adds three (Microsoft Learn, RESTORE HEADERONLY: 59 columns).
        Column::new("LastValidRestoreTime", SqlType::DateTime),
        Column::new("TimeZone", SqlType::SmallInt),
        Column::new("CompressionAlgorithm", nv(32)),
    ]
}

fn header_row(h: &BackupSetHeader) -> Vec<Value> {
    let version = super::ProductVersion::parse(&h.software_version).ok();
    let text = |s: &str| {
        if s.is_empty() {
            Value::Null
        } else {
            Value::Str(s.to_string())
        }
    };
    // HEADERONLY Flags: 16 checksums, 512 copy-only
    let flags =
        (if h.has_backup_checksums { 16 } else { 0 }) | (if h.is_copy_only { 512 } else { 0 });
    vec![
        text(&h.name),
        text(&h.description),
        Value::SmallInt(h.backup_type as i16),
        Value::Null,
        Value::Bit(h.is_compressed),
        Value::SmallInt(h.position as i16),
        Value::TinyInt(2),
        Value::Str(h.user_name.clone()),
        Value::Str(h.server_name.clone()),
        Value::Str(h.database_name.clone()),
        Value::Int(h.database_version as i32),
        Value::DateTime(h.database_creation_date),
        Value::Numeric(h.backup_size as i128),
        Value::Numeric(h.first_lsn as i128),
        Value::Numeric(h.last_lsn as i128),
        Value::Numeric(h.checkpoint_lsn as i128),
        Value::Numeric(h.database_backup_lsn as i128),
        Value::DateTime(h.backup_start_date),
        Value::DateTime(h.backup_finish_date),
        Value::SmallInt(52),
        Value::SmallInt(0),
        Value::Int(1033),
        Value::Int(196609),
        Value::TinyInt(h.compatibility_level.min(255) as u8),
        Value::Int(4608),
        version
            .as_ref()
            .map_or(Value::Null, |v| Value::Int(v.major as i32)),
        version
            .as_ref()
            .map_or(Value::Null, |v| Value::Int(v.minor as i32)),
        version
            .as_ref()
            .map_or(Value::Null, |v| Value::Int(v.build as i32)),
        Value::Str(h.machine_name.clone()),
        Value::Int(flags),
        Value::Guid(h.database_guid),
        Value::Guid(h.family_guid),
        Value::Str(h.collation.clone()),
        Value::Guid(h.family_guid),
        Value::Bit(false),
        Value::Bit(false),
        Value::Bit(false),
        Value::Bit(false),
        Value::Bit(h.has_backup_checksums),
        Value::Bit(false),
        Value::Bit(false),
        Value::Bit(false),
        Value::Bit(false),
        Value::Bit(h.is_copy_only),
        Value::Guid(h.family_guid),
        Value::Null,
        Value::Str(h.recovery_model.to_ascii_uppercase()),
        if h.differential_base_lsn == 0 {
            Value::Null
        } else {
            Value::Numeric(h.differential_base_lsn as i128)
        },
        h.differential_base_guid.map_or(Value::Null, Value::Guid),
        Value::Str(
            if h.is_differential() {
                "Database Differential"
            } else {
                "Database"
            }
            .to_string(),
        ),
        Value::Guid(h.backup_set_uuid),
        Value::BigInt(h.compressed_backup_size as i64),
        Value::TinyInt(0),
        Value::Null,
        Value::Null,
        Value::Null,
        // a full backup has no last valid restore time (a log backup's stop point)
        Value::Null,
        // the server's offset from UTC in 15-minute steps, as msdb's backupset.time_zone
        Value::SmallInt((chrono::Local::now().offset().local_minus_utc() / (15 * 60)) as i16),
        if h.is_compressed {
            Value::Str("MS_XPRESS".into())
        } else {
            Value::Null
        },
    ]
}

fn file_list_columns() -> Vec<Column> {
    vec![
        Column::not_null("LogicalName", nv(128)),
        Column::not_null("PhysicalName", nv(260)),
        Column::not_null("Type", SqlType::Char(1)),
        Column::new("FileGroupName", nv(128)),
        Column::not_null("Size", SIZE),
        Column::not_null("MaxSize", SIZE),
        Column::not_null("FileID", SqlType::BigInt),
        Column::not_null("CreateLSN", LSN),
        Column::new("DropLSN", LSN),
        Column::not_null("UniqueID", SqlType::UniqueIdentifier),
        Column::new("ReadOnlyLSN", LSN),
        Column::new("ReadWriteLSN", LSN),
        Column::not_null("BackupSizeInBytes", SqlType::BigInt),
        Column::not_null("SourceBlockSize", SqlType::Int),
        Column::not_null("FileGroupID", SqlType::Int),
        Column::new("LogGroupGUID", SqlType::UniqueIdentifier),
        Column::new("DifferentialBaseLSN", LSN),
        Column::new("DifferentialBaseGUID", SqlType::UniqueIdentifier),
        Column::not_null("IsReadOnly", SqlType::Bit),
        Column::not_null("IsPresent", SqlType::Bit),
        Column::new("TDEThumbprint", SqlType::VarBinary(Some(32))),
        Column::new("SnapshotURL", nv(360)),
    ]
}

fn file_list_rows(h: &BackupSetHeader) -> Vec<Vec<Value>> {
    h.files
        .iter()
        .map(|f| {
            let data = f.file_type == 'D';
            vec![
                Value::Str(f.logical_name.clone()),
                Value::Str(f.physical_name.clone()),
                Value::Str(f.file_type.to_string()),
                if data {
                    Value::Str("PRIMARY".into())
                } else {
                    Value::Null
                },
                Value::Numeric(f.size as i128),
                Value::Numeric(if data {
                    35_184_372_080_640
                } else {
                    2_199_023_255_552
                }),
                Value::BigInt(f.file_id as i64),
                Value::Numeric(0),
                Value::Numeric(0),
                Value::Guid(Uuid::from_u128(
                    h.database_guid.as_u128() ^ f.file_id as u128,
                )),
                Value::Numeric(0),
                Value::Numeric(0),
                Value::BigInt(f.size as i64),
                Value::Int(512),
                Value::Int(if data { 1 } else { 0 }),
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Bit(false),
                Value::Bit(true),
                Value::Null,
                Value::Null,
            ]
        })
        .collect()
}

/// RESTORE HEADERONLY / FILELISTONLY.
pub async fn list_backup(
    session: &mut Session,
    restore: &Restore,
    resp: &mut Response<'_>,
    line: i32,
) -> io::Result<Outcome> {
    let (statement, op) = match restore.kind {
        RestoreKind::HeaderOnly => ("RESTORE HEADERONLY", "RESTORE HEADERONLY"),
        _ => ("RESTORE FILELISTONLY", "RESTORE FILELIST"),
    };
    let engine = session.engine.clone();
    if engine.edition == Edition::AzureSqlDatabase {
        raise(resp, &errors::azure_not_supported(statement), line);
        return Ok(Outcome::failed());
    }
    if !may_create_database(session) {
        return Ok(fail(
            resp,
            &[errors::permission_denied("CREATE DATABASE", "master")],
            op,
            line,
        ));
    }
    let devices = device_paths(&engine, &restore.disks);
    let headers = match read_headers(devices.clone()).await {
        Ok(h) => h,
        Err(err) => return Ok(fail(resp, &position_errors(&err, "", &devices), op, line)),
    };
    let explicit = restore.options.iter().find_map(|o| {
        if let RestoreOption::File(n) = o {
            Some(*n)
        } else {
            None
        }
    });
    let selected: Vec<&BackupSetHeader> = match (restore.kind.clone(), explicit) {
        (RestoreKind::HeaderOnly, None) => headers.iter().collect(),
        (_, position) => {
            let position = position.unwrap_or(1);
            match headers.iter().find(|h| h.position == position) {
                Some(h) => vec![h],
                None => {
                    let err = errors::no_such_backup_set(
                        position,
                        &devices.first().map(|p| path_text(p)).unwrap_or_default(),
                    );
                    return Ok(fail(resp, &[err], op, line));
                }
            }
        }
    };
    let (columns, rows) = if matches!(restore.kind, RestoreKind::HeaderOnly) {
        (
            header_columns(),
            selected.iter().map(|h| header_row(h)).collect::<Vec<_>>(),
        )
    } else {
        (
            file_list_columns(),
            selected
                .iter()
                .flat_map(|h| file_list_rows(h))
                .collect::<Vec<_>>(),
        )
    };
    match resp.result_set(&columns, &rows).await? {
        Ok(count) => Ok(Outcome::Done {
            cur_cmd: crate::tds::token::cur_cmd::SELECT,
            count: Some(count),
            error: false,
        }),
        Err(detail) => {
            raise(
                resp,
                &SqlError::lab(format!("a value could not be sent: {detail}")),
                line,
            );
            Ok(Outcome::failed())
        }
    }
}

/// A file a restore will write.
struct RestoreTarget {
    logical: String,
    path: PathBuf,
    file_type: char,
}

fn resolve_target(engine: &Engine, physical: &str) -> PathBuf {
    let p = PathBuf::from(physical);
    if p.is_absolute() {
        p
    } else {
        engine.data_dir.join(p)
    }
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
        Err(err) => return Ok(fail(resp, &position_errors(&err, "", &devices), OP, line)),
    };
    let Some(header) = headers.into_iter().find(|h| h.position == position) else {
        let err = errors::no_such_backup_set(
            position,
            &devices.first().map(|p| path_text(p)).unwrap_or_default(),
        );
        return Ok(fail(resp, &[err], OP, line));
    };
    if header.is_differential() {
        return restore_differential(session, target, &header, &devices, norecovery, resp, line)
            .await;
    }
    // WITH NORECOVERY leaves the database RESTORING, waiting for a differential (or log)
    // restore; its base is this backup set.
    let restoring_from = norecovery.then_some(header.backup_set_uuid);

    // WITH MOVE: every logical name must be in the backup.
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
    let targets: Vec<RestoreTarget> = header
        .files
        .iter()
        .map(|f| {
            let physical = moves
                .iter()
                .rev()
                .find(|(l, _)| l.eq_ignore_ascii_case(&f.logical_name))
                .map(|(_, p)| p.as_str())
                .unwrap_or(&f.physical_name);
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
        let path = path_text(&t.path);
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
                "3(The system cannot find the path specified.)",
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
            finished(false, Some("cancelled by ATTENTION".into()), 0);
            return Ok(Outcome::Cancelled);
        }
    };
    let summary = match result {
        Ok(summary) => summary,
        Err(err) => {
            forget_if_gone(&engine, existing.as_ref());
            drop(guard);
            let errs = bak_errors(&err, &header.database_name, true);
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
            None => record_backup(catalog, &header, &devices),
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

/// RESTORE DATABASE from a differential backup: only onto a database left RESTORING (WITH
/// NORECOVERY) by the restore of the differential's own base. Otherwise SQL Server refuses with
/// Msg 3117 (nothing to roll forward: the database was recovered or does not exist) or Msg 3136
/// (the database was restored from another full backup) (Microsoft Learn, "Database engine events
/// and errors 3000 to 3999"; "Restore a differential database backup").
async fn restore_differential(
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
            let errs = bak_errors(&err, &header.database_name, true);
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
            None => record_backup(catalog, header, devices),
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

/// After a failed restore over an existing database whose files are gone, drop it from the catalog.
fn forget_if_gone(engine: &Engine, existing: Option<&DatabaseEntry>) {
    if let Some(e) = existing
        && (!e.data_file.exists() || !e.log_file.exists())
    {
        let id = e.database_id;
        if let Err(err) = engine.update_catalog(|c| c.databases.retain(|d| d.database_id != id)) {
            tracing::warn!("could not save the catalog: {err:#}");
        }
    }
}

pub async fn drop_databases(
    session: &mut Session,
    names: &[String],
    if_exists: bool,
    resp: &mut Response<'_>,
    line: i32,
) -> Outcome {
    let engine = session.engine.clone();
    if session.tran_count > 0 {
        raise(
            resp,
            &SqlError::new(
                226,
                16,
                1,
                "DROP DATABASE statement cannot be used inside a user transaction.",
            ),
            line,
        );
        return Outcome::failed();
    }
    let mut error = false;
    for requested in names {
        if let Some((system, _)) = system_database(requested) {
            raise(resp, &errors::cannot_drop_system(system), line);
            error = true;
            continue;
        }
        let entry = match engine.database_entry(requested) {
            Some(e) if may_alter_database(session, &e.name) => e,
            None if if_exists => continue,
            _ => {
                raise(resp, &errors::cannot_drop_missing(requested), line);
                error = true;
                continue;
            }
        };
        if session.database.eq_ignore_ascii_case(&entry.name)
            || !engine.sessions_using(&entry.name, session.spid).is_empty()
        {
            raise(resp, &errors::cannot_drop_in_use(&entry.name), line);
            error = true;
            continue;
        }
        let guard = engine.database_lock(&entry.name).write_owned().await;
        for file in [&entry.data_file, &entry.log_file] {
            if let Err(e) = std::fs::remove_file(file)
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!("DROP DATABASE could not remove {}: {e}", file.display());
            }
        }
        let id = entry.database_id;
        let saved = engine.update_catalog(|c| c.databases.retain(|d| d.database_id != id));
        drop(guard);
        if let Err(e) = saved {
            raise(
                resp,
                &SqlError::lab(format!("the catalog could not be saved: {e:#}")),
                line,
            );
            error = true;
        }
        engine.forget_database_principals(&entry.name);
        engine.emit("database_dropped", json!({ "database": entry.name }));
    }
    if error {
        Outcome::failed()
    } else {
        Outcome::ok()
    }
}

/// `ALTER DATABASE [a] MODIFY NAME = [b]`: renames in the catalog and in the data file's header,
/// as SQL Server keeps the files where they are. Msg 5011/5069 for a missing database, 1801 when
/// the new name is taken, 5030 while another session uses it.
pub async fn rename_database(
    session: &mut Session,
    name: &str,
    new_name: &str,
    resp: &mut Response<'_>,
    line: i32,
) -> Outcome {
    let engine = session.engine.clone();
    let failed = |resp: &mut Response<'_>, err: SqlError| {
        raise(resp, &err, line);
        raise(
            resp,
            &SqlError::new(5069, 16, 1, "ALTER DATABASE statement failed."),
            line,
        );
        Outcome::failed()
    };
    let entry = match engine.database_entry(name) {
        Some(e) if may_alter_database(session, &e.name) && system_database(name).is_none() => e,
        _ => {
            return failed(
                resp,
                SqlError::new(
                    5011,
                    14,
                    5,
                    format!(
                        "User does not have permission to alter database '{name}', the database does not exist, or the database is not in a state that allows access checks."
                    ),
                ),
            );
        }
    };
    if engine.database_entry(new_name).is_some() || system_database(new_name).is_some() {
        return failed(
            resp,
            SqlError::new(
                1801,
                16,
                3,
                format!("Database '{new_name}' already exists. Choose a different database name."),
            ),
        );
    }
    if !engine.sessions_using(&entry.name, session.spid).is_empty() {
        return failed(
            resp,
            SqlError::new(
                5030,
                16,
                2,
                "The database could not be exclusively locked to perform the operation.",
            ),
        );
    }
    let guard = engine.database_lock(&entry.name).write_owned().await;
    let data_file = entry.data_file.clone();
    let renamed = new_name.to_string();
    let header = tokio::task::spawn_blocking(move || {
        sqlserver_files::image::set_database_name(&data_file, &renamed)
    })
    .await;
    if let Err(e) = header.map_err(anyhow::Error::from).and_then(|r| r) {
        drop(guard);
        return failed(
            resp,
            SqlError::lab(format!("the data file could not be renamed: {e:#}")),
        );
    }
    let id = entry.database_id;
    let saved = engine.update_catalog(|c| {
        if let Some(d) = c.databases.iter_mut().find(|d| d.database_id == id) {
            d.name = new_name.to_string();
        }
    });
    drop(guard);
    if let Err(e) = saved {
        return failed(
            resp,
            SqlError::lab(format!("the catalog could not be saved: {e:#}")),
        );
    }
    engine.rename_database_principals(&entry.name, new_name);
    if session.database.eq_ignore_ascii_case(&entry.name) {
        session.database = new_name.to_string();
    }
    raise(
        resp,
        &SqlError::new(
            5022,
            0,
            1,
            format!("The database name '{new_name}' has been set."),
        ),
        line,
    );
    engine.emit(
        "database_renamed",
        json!({ "database": entry.name, "new_name": new_name }),
    );
    Outcome::ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_print_at_thresholds_with_the_actual_percent() {
        let mut r = StatsReporter::new(Some(10));
        let printed: Vec<u32> = [3, 11, 12, 25, 100]
            .into_iter()
            .filter_map(|p| r.advance(p))
            .collect();
        assert_eq!(printed, vec![11, 25, 100]);
        let mut five = StatsReporter::new(Some(5));
        let printed: Vec<u32> = [5, 9, 10, 50]
            .into_iter()
            .filter_map(|p| five.advance(p))
            .collect();
        assert_eq!(printed, vec![5, 10, 50]);
        let mut none = StatsReporter::new(None);
        assert_eq!(none.advance(100), None);
    }
}
