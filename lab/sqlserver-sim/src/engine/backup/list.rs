//! RESTORE HEADERONLY and RESTORE FILELISTONLY: their columns and rows.

use std::io;

use sqlserver_files::bak::BackupSetHeader;
use uuid::Uuid;

use super::*;
use crate::Edition;
use crate::engine::errors::{self, SqlError};
use crate::engine::session::{Outcome, Session, raise};
use crate::sql::ast::{Restore, RestoreKind, RestoreOption};
use crate::tds::response::Response;
use crate::tds::token::Column;
use crate::tds::types::{SqlType, Value};

pub(super) fn nv(n: u16) -> SqlType {
    SqlType::NVarChar(Some(n))
}

pub(super) const LSN: SqlType = SqlType::Numeric {
    precision: 25,
    scale: 0,
};
pub(super) const SIZE: SqlType = SqlType::Numeric {
    precision: 20,
    scale: 0,
};

pub(super) fn header_columns() -> Vec<Column> {
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

pub(super) fn header_row(h: &BackupSetHeader) -> Vec<Value> {
    let version = crate::engine::ProductVersion::parse(&h.software_version).ok();
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

pub(super) fn file_list_columns() -> Vec<Column> {
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

pub(super) fn file_list_rows(engine: &Engine, h: &BackupSetHeader) -> Vec<Vec<Value>> {
    h.files
        .iter()
        .map(|f| {
            let data = f.file_type == 'D';
            vec![
                Value::Str(f.logical_name.clone()),
                Value::Str(engine.sql_path(std::path::Path::new(&f.physical_name))),
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
        Err(err) => {
            let errs = shown(&engine, position_errors(&err, "", &devices));
            return Ok(fail(resp, &errs, op, line));
        }
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
                        &devices
                            .first()
                            .map(|p| engine.sql_path(p))
                            .unwrap_or_default(),
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
                .flat_map(|h| file_list_rows(&engine, h))
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
