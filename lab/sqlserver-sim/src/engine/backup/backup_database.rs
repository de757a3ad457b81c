//! BACKUP DATABASE and the msdb history rows it leaves.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;
use sqlserver_files::bak::{self, BackupSetHeader};
use sqlserver_files::image;
use uuid::Uuid;

use super::*;
use crate::engine::SERVER_NAME;
use crate::engine::catalog::{BackupSetRecord, Catalog, MediaFamilyRecord, MediaSetRecord};
use crate::engine::errors::{self, SqlError};
use crate::engine::session::{Outcome, Session, raise};
use crate::sql::ast::{Backup, BackupOption};
use crate::tds::response::Response;
use crate::{Edition, SqlFault};

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
            finished(false, Some(session.attention.why_stopped().into()), 0);
            return Ok(Outcome::Cancelled);
        }
        RunEnd::Finished(result) => result,
    };
    let header = match result {
        Ok(header) => header,
        Err(err) => {
            let errs = shown(&engine, bak_errors(&err, &name, false));
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
        let id = record_backup(catalog, &header, &sql_devices(&engine, &devices));
        if others {
            record_other_backups(
                catalog,
                id,
                Path::new(&engine.sql_path(&engine.backup_directory())),
            );
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
pub(super) fn set_pages(header: &BackupSetHeader) -> u64 {
    if !header.is_differential() {
        return header.page_count();
    }
    let overhead = header.stripe_count as u64 * (64 * 1024 + 8192);
    header.backup_size.saturating_sub(overhead) / image::PAGE_SIZE as u64
}

/// Data pages a backup set holds.
pub(super) fn set_data_pages(header: &BackupSetHeader) -> u64 {
    let log_pages: u64 = header
        .files
        .iter()
        .filter(|f| f.file_type == 'L')
        .map(|f| f.size / image::PAGE_SIZE as u64)
        .sum();
    set_pages(header).saturating_sub(log_pages)
}

/// Inserts the msdb rows for a backup set (media set and families when new). Returns the backup_set_id.
pub(super) fn record_backup(
    catalog: &mut Catalog,
    header: &BackupSetHeader,
    devices: &[PathBuf],
) -> i32 {
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
pub(super) fn record_other_backups(catalog: &mut Catalog, id: i32, backup_dir: &Path) {
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
