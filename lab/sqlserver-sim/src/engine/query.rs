//! SELECT and UPDATE: name resolution to the tables the lab has (database
//! image tables, msdb history, sys views), joins, filters, ordering, TOP,
//! projection, COUNT(*).

use std::cmp::Ordering;
use std::path::Path;

use sqlserver_files::image;

use super::catalog::{Catalog, DatabaseEntry};
use super::errors::{self, SqlError};
use super::scalar::{self, EvalContext, RowScope, ScopedColumn};
use super::{Engine, system_database};
use crate::sql::ast::{Condition, Expr, Literal, ObjectName, Select, SelectItem, Update};
use crate::tds::token::Column;
use crate::tds::types::{SqlType, Value};

/// A table the lab can read.
#[derive(Debug, Clone)]
pub enum Source {
    /// msdb.dbo.<table>
    Msdb(&'static str),
    /// sys.<view>
    System(&'static str),
    /// A table of a user database's image.
    User {
        database: DatabaseEntry,
        schema: String,
        table: String,
    },
}

const MSDB_TABLES: &[&str] = &[
    "backupset",
    "backupmediafamily",
    "backupmediaset",
    "restorehistory",
];
const SYS_VIEWS: &[&str] = &[
    "databases",
    "master_files",
    "dm_exec_requests",
    "dm_os_host_info",
];

/// Resolves a table name against the current database, as SQL Server does.
pub fn resolve_source(
    engine: &Engine,
    name: &ObjectName,
    current_db: &str,
) -> Result<Source, SqlError> {
    let invalid = || errors::invalid_object(&name.to_string());
    let (db, schema, table) = match name.parts.as_slice() {
        [t] => (None, "", t.as_str()),
        [s, t] => (None, s.as_str(), t.as_str()),
        [d, s, t] => (Some(d.as_str()), s.as_str(), t.as_str()),
        _ => return Err(invalid()),
    };
    let database = db.unwrap_or(current_db);
    if engine.database_id(database).is_none() {
        return Err(invalid());
    }
    if schema.eq_ignore_ascii_case("sys") {
        return SYS_VIEWS
            .iter()
            .find(|v| v.eq_ignore_ascii_case(table))
            .map(|v| Source::System(v))
            .ok_or_else(invalid);
    }
    let schema = if schema.is_empty() { "dbo" } else { schema };
    if let Some((system, _)) = system_database(database) {
        if system == "msdb"
            && schema.eq_ignore_ascii_case("dbo")
            && let Some(t) = MSDB_TABLES.iter().find(|t| t.eq_ignore_ascii_case(table))
        {
            return Ok(Source::Msdb(t));
        }
        return Err(invalid());
    }
    let entry = engine.database_entry(database).ok_or_else(invalid)?;
    Ok(Source::User {
        database: entry,
        schema: schema.to_string(),
        table: table.to_string(),
    })
}

/// The image's column types as result-set types.
pub fn column_type(ty: image::ColumnType) -> SqlType {
    match ty {
        image::ColumnType::Int => SqlType::Int,
        image::ColumnType::BigInt => SqlType::BigInt,
        image::ColumnType::NVarChar => SqlType::NVarChar(None),
        image::ColumnType::VarBinary => SqlType::VarBinary(None),
        image::ColumnType::Bit => SqlType::Bit,
        image::ColumnType::DateTime2 => SqlType::DateTime2(7),
        image::ColumnType::UniqueIdentifier => SqlType::UniqueIdentifier,
    }
}

fn from_image(value: &image::Value, ty: image::ColumnType) -> Value {
    match value {
        image::Value::Null => Value::Null,
        image::Value::Int(n) if ty == image::ColumnType::Int => Value::Int(*n as i32),
        image::Value::Int(n) => Value::BigInt(*n),
        image::Value::Text(s) => Value::Str(s.clone()),
        image::Value::Binary(b) => Value::Bytes(b.clone()),
        image::Value::Bit(b) => Value::Bit(*b),
        image::Value::DateTime(dt) => Value::DateTime(*dt),
        image::Value::Guid(g) => Value::Guid(*g),
    }
}

fn to_image(value: &Value) -> image::Value {
    match value {
        Value::Null => image::Value::Null,
        Value::TinyInt(n) => image::Value::Int(*n as i64),
        Value::SmallInt(n) => image::Value::Int(*n as i64),
        Value::Int(n) => image::Value::Int(*n as i64),
        Value::BigInt(n) => image::Value::Int(*n),
        Value::Bit(b) => image::Value::Bit(*b),
        Value::Str(s) => image::Value::Text(s.clone()),
        Value::Bytes(b) => image::Value::Binary(b.clone()),
        Value::Guid(g) => image::Value::Guid(*g),
        Value::DateTime(dt) => image::Value::DateTime(*dt),
        Value::Variant(inner, _) => to_image(inner),
        Value::Numeric(n) => image::Value::Int(*n as i64),
        Value::Real(f) => image::Value::Int(*f as i64),
        Value::Float(f) => image::Value::Int(*f as i64),
    }
}

/// Msg 824 for a page that fails its checksum while a statement reads it.
fn read_error(err: anyhow::Error, entry: &DatabaseEntry) -> SqlError {
    if let Some(corrupt) = err.downcast_ref::<image::CorruptPage>() {
        return SqlError::new(
            824,
            24,
            2,
            format!(
                "SQL Server detected a logical consistency-based I/O error: incorrect checksum. It occurred during a read of page (1:{}) in database ID {} at offset {:#018x} in file '{}'.  Additional messages in the SQL Server error log or operating system error log may provide more detail. This is a severe error condition that threatens database integrity and must be corrected immediately. Complete a full database consistency check (DBCC CHECKDB).",
                corrupt.page,
                entry.database_id,
                corrupt.page as u64 * image::PAGE_SIZE as u64,
                corrupt.file.display()
            ),
        );
    }
    SqlError::lab(format!("cannot read database '{}': {err:#}", entry.name))
}

/// Reads a user table (blocking file I/O): its columns and rows, or Msg 208 when it does not exist.
fn read_user_table(
    entry: &DatabaseEntry,
    schema: &str,
    table: &str,
    full_name: &str,
) -> Result<(Vec<Column>, Vec<Vec<Value>>), SqlError> {
    let tables = image::list_tables(&entry.data_file).map_err(|e| read_error(e, entry))?;
    if !tables
        .iter()
        .any(|(s, t)| s.eq_ignore_ascii_case(schema) && t.eq_ignore_ascii_case(table))
    {
        return Err(errors::invalid_object(full_name));
    }
    let t = image::read_table(&entry.data_file, schema, table).map_err(|e| read_error(e, entry))?;
    let columns: Vec<Column> = t
        .columns
        .iter()
        .map(|(name, ty)| Column::new(name.clone(), column_type(*ty)))
        .collect();
    let rows = t
        .rows
        .iter()
        .map(|row| {
            row.iter()
                .zip(&t.columns)
                .map(|(v, (_, ty))| from_image(v, *ty))
                .collect()
        })
        .collect();
    Ok((columns, rows))
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

fn text(s: &str) -> Value {
    Value::Str(s.to_string())
}

fn opt_text(s: &Option<String>) -> Value {
    s.as_ref().map_or(Value::Null, |s| Value::Str(s.clone()))
}

fn msdb_table(table: &str, catalog: &Catalog) -> (Vec<Column>, Vec<Vec<Value>>) {
    match table {
        "backupset" => {
            let columns = vec![
                Column::not_null("backup_set_id", SqlType::Int),
                Column::not_null("backup_set_uuid", SqlType::UniqueIdentifier),
                Column::new("media_set_id", SqlType::Int),
                Column::new("first_family_number", SqlType::TinyInt),
                Column::new("first_media_number", SqlType::SmallInt),
                Column::new("last_family_number", SqlType::TinyInt),
                Column::new("last_media_number", SqlType::SmallInt),
                Column::new("catalog_family_number", SqlType::TinyInt),
                Column::new("catalog_media_number", SqlType::SmallInt),
                Column::new("position", SqlType::Int),
                Column::new("expiration_date", SqlType::DateTime),
                Column::new("software_vendor_id", SqlType::Int),
                Column::new("name", nv(128)),
                Column::new("description", nv(255)),
                Column::new("user_name", nv(128)),
                Column::new("software_major_version", SqlType::TinyInt),
                Column::new("software_minor_version", SqlType::TinyInt),
                Column::new("software_build_version", SqlType::SmallInt),
                Column::new("time_zone", SqlType::SmallInt),
                Column::new("mtf_minor_version", SqlType::TinyInt),
                Column::new("first_lsn", LSN),
                Column::new("last_lsn", LSN),
                Column::new("checkpoint_lsn", LSN),
                Column::new("database_backup_lsn", LSN),
                Column::new("database_creation_date", SqlType::DateTime),
                Column::new("backup_start_date", SqlType::DateTime),
                Column::new("backup_finish_date", SqlType::DateTime),
                Column::new("type", SqlType::Char(1)),
                Column::new("sort_order", SqlType::SmallInt),
                Column::new("code_page", SqlType::SmallInt),
                Column::new("compatibility_level", SqlType::TinyInt),
                Column::new("database_version", SqlType::Int),
                Column::new("backup_size", SIZE),
                Column::new("database_name", nv(128)),
                Column::new("server_name", nv(128)),
                Column::new("machine_name", nv(128)),
                Column::new("flags", SqlType::Int),
                Column::new("unicode_locale", SqlType::Int),
                Column::new("unicode_compare_style", SqlType::Int),
                Column::new("collation_name", nv(128)),
                Column::new("is_password_protected", SqlType::Bit),
                Column::new("recovery_model", nv(60)),
                Column::new("has_bulk_logged_data", SqlType::Bit),
                Column::new("is_snapshot", SqlType::Bit),
                Column::new("is_readonly", SqlType::Bit),
                Column::new("is_single_user", SqlType::Bit),
                Column::new("has_backup_checksums", SqlType::Bit),
                Column::new("is_damaged", SqlType::Bit),
                Column::new("begins_log_chain", SqlType::Bit),
                Column::new("has_incomplete_metadata", SqlType::Bit),
                Column::new("is_force_offline", SqlType::Bit),
                Column::new("is_copy_only", SqlType::Bit),
                Column::new("first_recovery_fork_guid", SqlType::UniqueIdentifier),
                Column::new("last_recovery_fork_guid", SqlType::UniqueIdentifier),
                Column::new("fork_point_lsn", LSN),
                Column::new("database_guid", SqlType::UniqueIdentifier),
                Column::new("family_guid", SqlType::UniqueIdentifier),
                Column::new("differential_base_lsn", LSN),
                Column::new("differential_base_guid", SqlType::UniqueIdentifier),
                Column::new("compressed_backup_size", SIZE),
                Column::new("key_algorithm", nv(32)),
                Column::new("encryptor_thumbprint", SqlType::VarBinary(Some(20))),
                Column::new("encryptor_type", nv(32)),
                // SQL Server 2022 adds two (Microsoft Learn, "backupset (Transact-SQL)").
                Column::new("last_valid_restore_time", SqlType::DateTime),
                Column::new("compression_algorithm", nv(32)),
            ];
            let time_zone = (chrono::Local::now().offset().local_minus_utc() / (15 * 60)) as i16;
            let rows = catalog
                .backupsets
                .iter()
                .map(|b| {
                    let families = catalog
                        .mediasets
                        .iter()
                        .find(|m| m.media_set_id == b.media_set_id)
                        .map_or(1, |m| m.media_family_count);
                    let version = super::ProductVersion::parse(&b.software_version).ok();
                    vec![
                        Value::Int(b.backup_set_id),
                        Value::Guid(b.backup_set_uuid),
                        Value::Int(b.media_set_id),
                        Value::TinyInt(1),
                        Value::SmallInt(1),
                        Value::TinyInt(families),
                        Value::SmallInt(1),
                        Value::TinyInt(1),
                        Value::SmallInt(1),
                        Value::Int(b.position),
                        Value::Null,
                        Value::Int(4608),
                        opt_text(&b.name),
                        opt_text(&b.description),
                        text(&b.user_name),
                        version
                            .as_ref()
                            .map_or(Value::Null, |v| Value::TinyInt(v.major)),
                        version
                            .as_ref()
                            .map_or(Value::Null, |v| Value::TinyInt(v.minor)),
                        version
                            .as_ref()
                            .map_or(Value::Null, |v| Value::SmallInt(v.build as i16)),
                        // the offset from UTC in 15-minute steps, as HEADERONLY's TimeZone
                        Value::SmallInt(time_zone),
                        Value::TinyInt(0),
                        Value::Numeric(b.first_lsn as i128),
                        Value::Numeric(b.last_lsn as i128),
                        Value::Numeric(b.checkpoint_lsn as i128),
                        Value::Numeric(b.database_backup_lsn as i128),
                        Value::DateTime(b.database_creation_date),
                        Value::DateTime(b.backup_start_date),
                        Value::DateTime(b.backup_finish_date),
                        text(&b.backup_type),
                        Value::SmallInt(52),
                        Value::SmallInt(0),
                        Value::TinyInt(b.compatibility_level.min(255) as u8),
                        Value::Int(b.database_version as i32),
                        Value::Numeric(b.backup_size as i128),
                        text(&b.database_name),
                        text(&b.server_name),
                        text(&b.machine_name),
                        // as HEADERONLY's Flags: 16 checksums, 512 copy-only
                        Value::Int(
                            (if b.has_backup_checksums { 16 } else { 0 })
                                | (if b.is_copy_only { 512 } else { 0 }),
                        ),
                        Value::Int(1033),
                        Value::Int(196609),
                        text(&b.collation_name),
                        Value::Bit(false),
                        text(&b.recovery_model),
                        Value::Bit(false),
                        Value::Bit(false),
                        Value::Bit(false),
                        Value::Bit(false),
                        Value::Bit(b.has_backup_checksums),
                        Value::Bit(b.is_damaged),
                        Value::Bit(false),
                        Value::Bit(false),
                        Value::Bit(false),
                        Value::Bit(b.is_copy_only),
                        Value::Guid(b.family_guid),
                        Value::Guid(b.family_guid),
                        Value::Null,
                        Value::Guid(b.database_guid),
                        Value::Guid(b.family_guid),
                        if b.differential_base_lsn == 0 {
                            Value::Null
                        } else {
                            Value::Numeric(b.differential_base_lsn as i128)
                        },
                        b.differential_base_guid.map_or(Value::Null, Value::Guid),
                        Value::Numeric(b.compressed_backup_size as i128),
                        Value::Null,
                        Value::Null,
                        Value::Null,
                        Value::Null,
                        if b.compressed_backup_size < b.backup_size {
                            text("MS_XPRESS")
                        } else {
                            Value::Null
                        },
                    ]
                })
                .collect();
            (columns, rows)
        }
        "backupmediafamily" => {
            let columns = vec![
                Column::not_null("media_set_id", SqlType::Int),
                Column::not_null("family_sequence_number", SqlType::TinyInt),
                Column::new("media_family_id", SqlType::UniqueIdentifier),
                Column::new("media_count", SqlType::Int),
                Column::new("logical_device_name", nv(128)),
                Column::new("physical_device_name", nv(260)),
                Column::new("device_type", SqlType::TinyInt),
                Column::new("physical_block_size", SqlType::Int),
                Column::not_null("mirror", SqlType::TinyInt),
            ];
            let rows = catalog
                .mediafamilies
                .iter()
                .map(|f| {
                    vec![
                        Value::Int(f.media_set_id),
                        Value::TinyInt(f.family_sequence_number),
                        Value::Guid(f.media_family_id),
                        Value::Int(1),
                        Value::Null,
                        text(&f.physical_device_name),
                        Value::TinyInt(2),
                        Value::Int(512),
                        Value::TinyInt(0),
                    ]
                })
                .collect();
            (columns, rows)
        }
        "backupmediaset" => {
            let columns = vec![
                Column::not_null("media_set_id", SqlType::Int),
                Column::new("media_uuid", SqlType::UniqueIdentifier),
                Column::new("media_family_count", SqlType::TinyInt),
                Column::new("name", nv(128)),
                Column::new("description", nv(255)),
                Column::new("software_name", nv(128)),
                Column::new("software_vendor_id", SqlType::Int),
                Column::new("MTF_major_version", SqlType::TinyInt),
                Column::new("mirror_count", SqlType::TinyInt),
                Column::new("is_password_protected", SqlType::Bit),
                Column::new("is_compressed", SqlType::Bit),
                Column::new("is_encrypted", SqlType::Bit),
            ];
            let rows = catalog
                .mediasets
                .iter()
                .map(|m| {
                    vec![
                        Value::Int(m.media_set_id),
                        Value::Guid(m.media_uuid),
                        Value::TinyInt(m.media_family_count),
                        opt_text(&m.name),
                        opt_text(&m.description),
                        text("Microsoft SQL Server"),
                        Value::Int(4608),
                        Value::TinyInt(1),
                        Value::TinyInt(1),
                        Value::Bit(false),
                        Value::Bit(m.is_compressed),
                        Value::Bit(false),
                    ]
                })
                .collect();
            (columns, rows)
        }
        _ => {
            let columns = vec![
                Column::not_null("restore_history_id", SqlType::Int),
                Column::new("restore_date", SqlType::DateTime),
                Column::new("destination_database_name", nv(128)),
                Column::new("user_name", nv(128)),
                Column::new("backup_set_id", SqlType::Int),
                Column::new("restore_type", SqlType::Char(1)),
                Column::new("replace", SqlType::Bit),
                Column::new("recovery", SqlType::Bit),
                Column::new("restart", SqlType::Bit),
                Column::new("stop_at", SqlType::DateTime),
                Column::new("device_count", SqlType::TinyInt),
                Column::new("stop_at_mark_name", nv(128)),
                Column::new("stop_before", SqlType::Bit),
            ];
            let rows = catalog
                .restores
                .iter()
                .map(|r| {
                    let devices = catalog
                        .backupsets
                        .iter()
                        .find(|b| b.backup_set_id == r.backup_set_id)
                        .and_then(|b| {
                            catalog
                                .mediasets
                                .iter()
                                .find(|m| m.media_set_id == b.media_set_id)
                        })
                        .map_or(1, |m| m.media_family_count);
                    vec![
                        Value::Int(r.restore_history_id),
                        Value::DateTime(r.restore_date),
                        text(&r.destination_database_name),
                        text(&r.user_name),
                        Value::Int(r.backup_set_id),
                        text("D"),
                        Value::Bit(r.replace),
                        Value::Bit(r.recovery),
                        Value::Bit(false),
                        Value::Null,
                        Value::TinyInt(devices),
                        Value::Null,
                        Value::Bit(false),
                    ]
                })
                .collect();
            (columns, rows)
        }
    }
}

/// What sys.databases and sys.master_files show of a user database, from its image header.
struct DatabaseFacts {
    entry: DatabaseEntry,
    header: Option<image::DatabaseHeader>,
    data_size: u64,
    log_size: u64,
}

fn database_facts(catalog: &Catalog) -> Vec<DatabaseFacts> {
    catalog
        .databases
        .iter()
        .map(|entry| DatabaseFacts {
            entry: entry.clone(),
            header: image::read_header(&entry.data_file).ok(),
            data_size: file_len(&entry.data_file),
            log_size: file_len(&entry.log_file),
        })
        .collect()
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn recovery_model_id(model: &str) -> u8 {
    match model.to_ascii_uppercase().as_str() {
        "FULL" => 1,
        "BULK_LOGGED" => 2,
        _ => 3,
    }
}

fn sys_databases(engine: &Engine, facts: &[DatabaseFacts]) -> (Vec<Column>, Vec<Vec<Value>>) {
    let columns = vec![
        Column::not_null("name", nv(128)),
        Column::not_null("database_id", SqlType::Int),
        Column::new("source_database_id", SqlType::Int),
        Column::not_null("create_date", SqlType::DateTime),
        Column::new("compatibility_level", SqlType::TinyInt),
        Column::new("collation_name", nv(128)),
        Column::new("user_access", SqlType::TinyInt),
        Column::new("user_access_desc", nv(60)),
        Column::new("is_read_only", SqlType::Bit),
        Column::new("state", SqlType::TinyInt),
        Column::new("state_desc", nv(60)),
        Column::new("recovery_model", SqlType::TinyInt),
        Column::new("recovery_model_desc", nv(60)),
        Column::new("is_encrypted", SqlType::Bit),
    ];
    let level = match engine.version.major {
        13 => 130,
        14 => 140,
        15 => 150,
        17 => 170,
        _ => 160,
    };
    let epoch = chrono::NaiveDate::from_ymd_opt(2003, 4, 8)
        .and_then(|d| d.and_hms_opt(9, 13, 36))
        .expect("valid date");
    let mut rows: Vec<Vec<Value>> = super::SYSTEM_DATABASES
        .iter()
        .map(|(name, id)| {
            // model is FULL; msdb, like master and tempdb, is SIMPLE (Microsoft Learn,
            // "msdb Database": "By default, msdb uses the simple recovery model").
            let model = if *name == "model" { "FULL" } else { "SIMPLE" };
            vec![
                text(name),
                Value::Int(*id),
                Value::Null,
                Value::DateTime(epoch),
                Value::TinyInt(level),
                text("SQL_Latin1_General_CP1_CI_AS"),
                Value::TinyInt(0),
                text("MULTI_USER"),
                Value::Bit(false),
                Value::TinyInt(0),
                text("ONLINE"),
                Value::TinyInt(recovery_model_id(model)),
                text(model),
                // tempdb is encrypted as soon as any user database is (Microsoft Learn, TDE).
                Value::Bit(*name == "tempdb" && engine.any_encrypted()),
            ]
        })
        .collect();
    for f in facts {
        let model = f.header.as_ref().map_or("FULL".to_string(), |h| {
            h.recovery_model.to_ascii_uppercase()
        });
        rows.push(vec![
            text(&f.entry.name),
            Value::Int(f.entry.database_id),
            Value::Null,
            Value::DateTime(f.entry.create_date),
            f.header.as_ref().map_or(Value::Null, |h| {
                Value::TinyInt(h.compatibility_level.min(255) as u8)
            }),
            f.header
                .as_ref()
                .map_or(Value::Null, |h| text(&h.collation)),
            Value::TinyInt(0),
            text("MULTI_USER"),
            Value::Bit(false),
            // sys.databases.state: 0 ONLINE, 1 RESTORING, 4 SUSPECT.
            Value::TinyInt(if f.header.is_none() {
                4
            } else if f.entry.restoring_from.is_some() {
                1
            } else {
                0
            }),
            text(if f.header.is_none() {
                "SUSPECT"
            } else if f.entry.restoring_from.is_some() {
                "RESTORING"
            } else {
                "ONLINE"
            }),
            Value::TinyInt(recovery_model_id(&model)),
            text(&model),
            Value::Bit(engine.is_encrypted(&f.entry.name)),
        ]);
    }
    (columns, rows)
}

fn sys_master_files(engine: &Engine, facts: &[DatabaseFacts]) -> (Vec<Column>, Vec<Vec<Value>>) {
    let columns = vec![
        Column::not_null("database_id", SqlType::Int),
        Column::not_null("file_id", SqlType::Int),
        Column::new("type", SqlType::TinyInt),
        Column::new("type_desc", nv(60)),
        Column::new("data_space_id", SqlType::Int),
        Column::not_null("name", nv(128)),
        Column::not_null("physical_name", nv(260)),
        Column::new("state", SqlType::TinyInt),
        Column::new("state_desc", nv(60)),
        Column::not_null("size", SqlType::Int),
        Column::not_null("max_size", SqlType::Int),
        Column::not_null("growth", SqlType::Int),
        Column::not_null("is_percent_growth", SqlType::Bit),
    ];
    let mut rows = Vec::new();
    for f in facts {
        let (data_name, log_name) = f.header.as_ref().map_or_else(
            || (f.entry.name.clone(), format!("{}_log", f.entry.name)),
            |h| (h.logical_data_name.clone(), h.logical_log_name.clone()),
        );
        for (file_id, kind, name, path, size) in [
            (1, 0u8, data_name, &f.entry.data_file, f.data_size),
            (2, 1u8, log_name, &f.entry.log_file, f.log_size),
        ] {
            rows.push(vec![
                Value::Int(f.entry.database_id),
                Value::Int(file_id),
                Value::TinyInt(kind),
                text(if kind == 0 { "ROWS" } else { "LOG" }),
                Value::Int(if kind == 0 { 1 } else { 0 }),
                text(&name),
                text(&engine.sql_path(path)),
                Value::TinyInt(0),
                text("ONLINE"),
                Value::Int((size / image::PAGE_SIZE as u64) as i32),
                Value::Int(-1),
                Value::Int(8192),
                Value::Bit(false),
            ]);
        }
    }
    (columns, rows)
}

/// sys.dm_os_host_info (SQL Server 2017 and later; Microsoft Learn, "sys.dm_os_host_info"): one
/// row naming the operating system.
fn dm_os_host_info(engine: &Engine) -> (Vec<Column>, Vec<Vec<Value>>) {
    let columns = vec![
        Column::not_null("host_platform", nv(256)),
        Column::not_null("host_distribution", nv(256)),
        Column::not_null("host_release", nv(256)),
        Column::not_null("host_service_pack_level", nv(256)),
        Column::new("host_sku", SqlType::Int),
        Column::not_null("os_language_version", SqlType::Int),
        Column::not_null("host_architecture", nv(256)),
    ];
    let (platform, distribution, release) = engine.host_info();
    let linux = platform == "Linux";
    let rows = vec![vec![
        text(platform),
        text(distribution),
        text(release),
        text(""),
        if linux { Value::Null } else { Value::Int(7) },
        Value::Int(1033),
        text("X64"),
    ]];
    (columns, rows)
}

fn dm_exec_requests(engine: &Engine, spid: u16, sysadmin: bool) -> (Vec<Column>, Vec<Vec<Value>>) {
    let columns = vec![
        Column::not_null("session_id", SqlType::SmallInt),
        Column::not_null("request_id", SqlType::Int),
        Column::not_null("start_time", SqlType::DateTime),
        Column::not_null("status", nv(30)),
        Column::not_null("command", nv(32)),
        Column::new("database_id", SqlType::SmallInt),
        Column::new("blocking_session_id", SqlType::SmallInt),
        Column::new("wait_type", nv(60)),
        Column::not_null("wait_time", SqlType::Int),
        Column::not_null("percent_complete", SqlType::Real),
        Column::not_null("estimated_completion_time", SqlType::BigInt),
        Column::not_null("cpu_time", SqlType::Int),
        Column::not_null("total_elapsed_time", SqlType::Int),
    ];
    let rows = engine
        .sessions()
        .into_iter()
        // without VIEW SERVER STATE a login sees only its own session
        .filter(|(id, _)| sysadmin || *id == spid)
        .filter_map(|(id, s)| s.request.map(|r| (id, r)))
        .map(|(id, r)| {
            let elapsed = r.started.elapsed().as_millis() as i64;
            let percent = r.percent_complete;
            let remaining = if percent > 0.0 && percent < 100.0 {
                (elapsed as f64 * (100.0 - percent as f64) / percent as f64) as i64
            } else {
                0
            };
            let busy = r.command.starts_with("BACKUP") || r.command.starts_with("RESTORE");
            vec![
                Value::SmallInt(id as i16),
                Value::Int(0),
                Value::DateTime(r.start_time),
                text(if id == spid { "running" } else { "suspended" }),
                text(&r.command),
                Value::SmallInt(r.database_id as i16),
                Value::SmallInt(0),
                if busy && id != spid {
                    text("BACKUPIO")
                } else {
                    Value::Null
                },
                Value::Int(0),
                Value::Real(percent),
                Value::BigInt(remaining),
                Value::Int((elapsed / 4) as i32),
                Value::Int(elapsed as i32),
            ]
        })
        .collect();
    (columns, rows)
}

/// Loads a source's columns and rows. User tables and file facts are read on a blocking thread
/// under the database's read lock.
pub async fn load(
    engine: &std::sync::Arc<Engine>,
    source: &Source,
    full_name: &str,
    spid: u16,
    sysadmin: bool,
) -> Result<(Vec<Column>, Vec<Vec<Value>>), SqlError> {
    match source {
        Source::Msdb(table) => {
            let (mut columns, mut rows) = msdb_table(table, &engine.catalog());
            // last_valid_restore_time and compression_algorithm came with SQL Server 2022
            if *table == "backupset" && engine.version.major < 16 {
                columns.truncate(columns.len() - 2);
                for row in &mut rows {
                    row.truncate(row.len() - 2);
                }
            }
            Ok((columns, rows))
        }
        Source::System("dm_exec_requests") => Ok(dm_exec_requests(engine, spid, sysadmin)),
        Source::System("dm_os_host_info") => Ok(dm_os_host_info(engine)),
        Source::System(view) => {
            let catalog = engine.catalog();
            let view = *view;
            let engine2 = engine.clone();
            tokio::task::spawn_blocking(move || {
                let facts = database_facts(&catalog);
                if view == "databases" {
                    sys_databases(&engine2, &facts)
                } else {
                    sys_master_files(&engine2, &facts)
                }
            })
            .await
            .map_err(|e| SqlError::lab(format!("reading sys.{view} failed: {e}")))
        }
        Source::User {
            database,
            schema,
            table,
        } => {
            let _guard = engine.database_lock(&database.name).read_owned().await;
            let (entry, schema, table, full) = (
                database.clone(),
                schema.clone(),
                table.clone(),
                full_name.to_string(),
            );
            tokio::task::spawn_blocking(move || read_user_table(&entry, &schema, &table, &full))
                .await
                .map_err(|e| SqlError::lab(format!("reading a table failed: {e}")))?
        }
    }
}

fn contains_count(expr: &Expr) -> bool {
    match expr {
        Expr::Function { name, args } => name == "COUNT" || args.iter().any(contains_count),
        Expr::Cast { expr, .. } | Expr::Negate(expr) => contains_count(expr),
        _ => false,
    }
}

fn first_column(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Column(parts) => Some(parts.join(".")),
        Expr::Function { args, .. } => args.iter().find_map(first_column),
        Expr::Cast { expr, .. } | Expr::Negate(expr) => first_column(expr),
        _ => None,
    }
}

/// Replaces COUNT(*) with its value so the rest evaluates as a scalar.
fn substitute_count(expr: &Expr, count: i128) -> Expr {
    match expr {
        Expr::Function { name, .. } if name == "COUNT" => Expr::Literal(Literal::Integer(count)),
        Expr::Function { name, args } => Expr::Function {
            name: name.clone(),
            args: args.iter().map(|a| substitute_count(a, count)).collect(),
        },
        Expr::Cast { expr, ty } => Expr::Cast {
            expr: Box::new(substitute_count(expr, count)),
            ty: ty.clone(),
        },
        Expr::Negate(inner) => Expr::Negate(Box::new(substitute_count(inner, count))),
        other => other.clone(),
    }
}

/// Msg 916/229 unless the login may read (or write) the table: msdb history and user tables need
/// a user in the database and SELECT through db_datareader or a GRANT; sys views are open.
fn check_source(
    engine: &Engine,
    ctx: &EvalContext<'_>,
    source: &Source,
    permission: &str,
) -> Result<(), SqlError> {
    match source {
        Source::Msdb(table) => {
            engine.check_table(&ctx.login.name, "msdb", "dbo", table, permission)
        }
        Source::User {
            database,
            schema,
            table,
        } => engine.check_table(&ctx.login.name, &database.name, schema, table, permission),
        Source::System(_) => Ok(()),
    }
}

/// Whether the login sees every session in sys.dm_exec_requests (VIEW SERVER STATE).
fn sees_all_sessions(ctx: &EvalContext<'_>) -> bool {
    ctx.engine
        .has_server_permission(&ctx.login.name, "VIEW SERVER STATE")
}

/// Runs a SELECT and returns its result set.
pub async fn select(
    engine: &std::sync::Arc<Engine>,
    ctx: &EvalContext<'_>,
    select: &Select,
) -> Result<(Vec<Column>, Vec<Vec<Value>>), SqlError> {
    // The FROM clause: base table, then joins (nested loops).
    let (scope_columns, mut rows) = match &select.from {
        None => (Vec::new(), vec![Vec::new()]),
        Some(from) => {
            let source = resolve_source(engine, &from.name, ctx.database)?;
            if matches!(source, Source::Msdb("backupset"))
                && engine
                    .take_fault(|f| matches!(f, crate::SqlFault::DenyNextHistoryQuery))
                    .is_some()
            {
                return Err(errors::select_denied("backupset", "msdb", "dbo"));
            }
            check_source(engine, ctx, &source, "SELECT")?;
            let (columns, rows) = load(
                engine,
                &source,
                &from.name.to_string(),
                ctx.spid,
                sees_all_sessions(ctx),
            )
            .await?;
            let qualifier = from
                .alias
                .clone()
                .unwrap_or_else(|| from.name.last().to_string());
            let mut scoped: Vec<ScopedColumn> = columns
                .into_iter()
                .map(|column| ScopedColumn {
                    qualifier: qualifier.clone(),
                    column,
                })
                .collect();
            let mut rows = rows;
            for join in &select.joins {
                let source = resolve_source(engine, &join.table.name, ctx.database)?;
                check_source(engine, ctx, &source, "SELECT")?;
                let (columns, right) = load(
                    engine,
                    &source,
                    &join.table.name.to_string(),
                    ctx.spid,
                    sees_all_sessions(ctx),
                )
                .await?;
                let qualifier = join
                    .table
                    .alias
                    .clone()
                    .unwrap_or_else(|| join.table.name.last().to_string());
                scoped.extend(columns.into_iter().map(|column| ScopedColumn {
                    qualifier: qualifier.clone(),
                    column,
                }));
                let mut joined = Vec::new();
                for left in &rows {
                    for r in &right {
                        let mut combined = left.clone();
                        combined.extend(r.iter().cloned());
                        if scalar::test(
                            &join.on,
                            ctx,
                            Some(&RowScope {
                                columns: &scoped,
                                values: &combined,
                            }),
                        )? {
                            joined.push(combined);
                        }
                    }
                }
                rows = joined;
            }
            (scoped, rows)
        }
    };
    if let Some(filter) = &select.filter {
        let mut kept = Vec::new();
        for row in rows {
            if scalar::test(
                filter,
                ctx,
                Some(&RowScope {
                    columns: &scope_columns,
                    values: &row,
                }),
            )? {
                kept.push(row);
            }
        }
        rows = kept;
    }

    // COUNT(*): one row, every other item must be free of columns.
    let aggregate = select
        .items
        .iter()
        .any(|i| matches!(i, SelectItem::Expr { expr, .. } if contains_count(expr)));
    if aggregate {
        let count = rows.len() as i128;
        let mut columns = Vec::new();
        let mut values = Vec::new();
        for item in &select.items {
            match item {
                SelectItem::Star(_) => return Err(errors::not_in_group_by("*")),
                SelectItem::Expr { expr, alias } => {
                    if !contains_count(expr)
                        && let Some(column) = first_column(expr)
                    {
                        return Err(errors::not_in_group_by(&column));
                    }
                    let (value, ty) = scalar::eval(&substitute_count(expr, count), ctx, None)?;
                    columns.push(Column::new(alias.clone().unwrap_or_default(), ty));
                    values.push(value);
                }
            }
        }
        return Ok((columns, vec![values]));
    }

    // ORDER BY: select-list aliases, ordinals, or expressions over the source row.
    if !select.order_by.is_empty() {
        let mut keyed = Vec::with_capacity(rows.len());
        for row in rows {
            let mut keys = Vec::new();
            for order in &select.order_by {
                let expr = order_expression(&order.expr, &select.items)?;
                keys.push(scalar::eval(
                    &expr,
                    ctx,
                    Some(&RowScope {
                        columns: &scope_columns,
                        values: &row,
                    }),
                )?);
            }
            keyed.push((keys, row));
        }
        let mut failure = None;
        keyed.sort_by(|(a, _), (b, _)| {
            for ((i, (av, at)), (bv, bt)) in a.iter().enumerate().zip(b.iter()) {
                let ord = match scalar::compare(av, at, bv, bt) {
                    Ok(Some(o)) => o,
                    // NULLs sort first
                    Ok(None) => match (av.is_null(), bv.is_null()) {
                        (true, false) => Ordering::Less,
                        (false, true) => Ordering::Greater,
                        _ => Ordering::Equal,
                    },
                    Err(e) => {
                        failure.get_or_insert(e);
                        Ordering::Equal
                    }
                };
                let ord = if select.order_by[i].descending {
                    ord.reverse()
                } else {
                    ord
                };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
            Ordering::Equal
        });
        if let Some(e) = failure {
            return Err(e);
        }
        rows = keyed.into_iter().map(|(_, row)| row).collect();
    }
    if let Some(top) = select.top {
        rows.truncate(top as usize);
    }

    // Projection.
    let null_row: Vec<Value> = vec![Value::Null; scope_columns.len()];
    let mut columns = Vec::new();
    let mut projections: Vec<Projection> = Vec::new();
    for item in &select.items {
        match item {
            SelectItem::Star(qualifier) => {
                if select.from.is_none() {
                    return Err(SqlError::new(
                        263,
                        16,
                        1,
                        "Must specify table to select from.",
                    ));
                }
                let picked: Vec<usize> = scope_columns
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| {
                        qualifier
                            .as_ref()
                            .is_none_or(|q| c.qualifier.eq_ignore_ascii_case(q))
                    })
                    .map(|(i, _)| i)
                    .collect();
                if picked.is_empty() {
                    let q = qualifier.clone().unwrap_or_default();
                    return Err(SqlError::new(
                        107,
                        15,
                        1,
                        format!(
                            "The column prefix '{q}' does not match with a table name or alias name used in the query."
                        ),
                    ));
                }
                for i in picked {
                    columns.push(scope_columns[i].column.clone());
                    projections.push(Projection::Column(i));
                }
            }
            SelectItem::Expr { expr, alias } => {
                let probe = rows.first().unwrap_or(&null_row);
                let (_, ty) = scalar::eval(
                    expr,
                    ctx,
                    Some(&RowScope {
                        columns: &scope_columns,
                        values: probe,
                    }),
                )?;
                let name = alias.clone().unwrap_or_else(|| match expr {
                    Expr::Column(parts) => parts.last().cloned().unwrap_or_default(),
                    _ => String::new(),
                });
                let nullable = match expr {
                    Expr::Column(parts) => scalar::resolve_column(parts, &scope_columns)
                        .map(|i| scope_columns[i].column.nullable)
                        .unwrap_or(true),
                    _ => true,
                };
                columns.push(Column { name, ty, nullable });
                projections.push(Projection::Expr(expr.clone()));
            }
        }
    }
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let scope = RowScope {
            columns: &scope_columns,
            values: row,
        };
        let mut values = Vec::with_capacity(projections.len());
        for (p, column) in projections.iter().zip(&columns) {
            values.push(match p {
                Projection::Column(i) => row[*i].clone(),
                Projection::Expr(expr) => {
                    let (value, ty) = scalar::eval(expr, ctx, Some(&scope))?;
                    if ty == column.ty {
                        value
                    } else {
                        scalar::convert(&value, &ty, &column.ty)?
                    }
                }
            });
        }
        out.push(values);
    }
    Ok((columns, out))
}

enum Projection {
    Column(usize),
    Expr(Expr),
}

/// ORDER BY <alias> or <ordinal> refers to the select list.
fn order_expression(expr: &Expr, items: &[SelectItem]) -> Result<Expr, SqlError> {
    if let Expr::Literal(Literal::Integer(n)) = expr {
        let index = usize::try_from(*n).ok().filter(|i| *i >= 1 && *i <= items.len()).ok_or_else(|| {
            SqlError::new(108, 15, 1, format!("The ORDER BY position number {n} is out of range of the number of items in the select list."))
        })?;
        return match &items[index - 1] {
            SelectItem::Expr { expr, .. } => Ok(expr.clone()),
            SelectItem::Star(_) => Err(SqlError::lab(
                "ORDER BY a position that is * is not supported",
            )),
        };
    }
    if let Expr::Column(parts) = expr
        && parts.len() == 1
    {
        for item in items {
            if let SelectItem::Expr {
                expr: item_expr,
                alias: Some(alias),
            } = item
                && alias.eq_ignore_ascii_case(&parts[0])
            {
                return Ok(item_expr.clone());
            }
        }
    }
    Ok(expr.clone())
}

/// Runs `UPDATE <table> SET col = value [, ...] WHERE <col> = <literal>` on a user table.
/// Returns the rows affected.
pub async fn update(
    engine: &std::sync::Arc<Engine>,
    ctx: &EvalContext<'_>,
    update: &Update,
) -> Result<u64, SqlError> {
    let full_name = update.table.to_string();
    let source = resolve_source(engine, &update.table, ctx.database)?;
    let Source::User {
        database,
        schema,
        table,
    } = source
    else {
        return Err(SqlError::lab(format!(
            "UPDATE of {full_name} is not supported: only user database tables can be updated"
        )));
    };
    ctx.engine
        .check_table(&ctx.login.name, &database.name, &schema, &table, "UPDATE")?;
    let (where_column, where_expr) = match &update.filter {
        Some(Condition::Compare(Expr::Column(parts), crate::sql::ast::CompareOp::Eq, value)) => {
            (parts.clone(), value.clone())
        }
        _ => {
            return Err(SqlError::lab(
                "UPDATE supports one filter of the form WHERE [column] = <literal>; other filters are not implemented",
            ));
        }
    };
    let _guard = engine.database_lock(&database.name).write_owned().await;
    let (entry, schema2, table2, full2) = (
        database.clone(),
        schema.clone(),
        table.clone(),
        full_name.clone(),
    );
    let (columns, rows) =
        tokio::task::spawn_blocking(move || read_user_table(&entry, &schema2, &table2, &full2))
            .await
            .map_err(|e| SqlError::lab(format!("reading a table failed: {e}")))??;
    let scoped: Vec<ScopedColumn> = columns
        .iter()
        .map(|c| ScopedColumn {
            qualifier: table.clone(),
            column: c.clone(),
        })
        .collect();
    let where_index = scalar::resolve_column(&where_column, &scoped)?;
    let (where_value, where_ty) = scalar::eval(&where_expr, ctx, None)?;
    // SQL Server matches with the column's collation (case-insensitive); the image matches exact
    // values, so find the stored values that match.
    let mut stored_matches: Vec<Value> = Vec::new();
    let mut affected = 0u64;
    for row in &rows {
        let cell = &row[where_index];
        if scalar::compare(cell, &columns[where_index].ty, &where_value, &where_ty)?
            == Some(Ordering::Equal)
        {
            affected += 1;
            if !stored_matches.contains(cell) {
                stored_matches.push(cell.clone());
            }
        }
    }
    let mut assignments = Vec::new();
    for (column, expr) in &update.assignments {
        let index = scalar::resolve_column(std::slice::from_ref(column), &scoped)?;
        let (value, ty) = scalar::eval(expr, ctx, None)?;
        let converted = scalar::convert(&value, &ty, &columns[index].ty)?;
        if !columns[index].nullable && converted.is_null() {
            return Err(SqlError::new(
                515,
                16,
                2,
                format!(
                    "Cannot insert the value NULL into column '{}', table '{}.{}.{}'; column does not allow nulls. UPDATE fails.",
                    columns[index].name, database.name, schema, table
                ),
            ));
        }
        assignments.push((columns[index].name.clone(), index, converted));
    }
    // the filter column last, so the other assignments still find their rows
    assignments.sort_by_key(|(_, index, _)| *index == where_index);
    let where_name = columns[where_index].name.clone();
    let data_file = database.data_file.clone();
    let entry = database.clone();
    tokio::task::spawn_blocking(move || -> Result<(), SqlError> {
        for stored in &stored_matches {
            let mut key = stored.clone();
            for (name, index, value) in &assignments {
                image::update_rows(
                    &data_file,
                    &schema,
                    &table,
                    name,
                    &to_image(value),
                    &where_name,
                    &to_image(&key),
                )
                .map_err(|e| read_error(e, &entry))?;
                if *index == where_index {
                    key = value.clone();
                }
            }
        }
        Ok(())
    })
    .await
    .map_err(|e| SqlError::lab(format!("updating a table failed: {e}")))??;
    Ok(affected)
}
