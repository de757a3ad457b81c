//! BACKUP DATABASE, RESTORE VERIFYONLY/HEADERONLY/FILELISTONLY/DATABASE and
//! DROP DATABASE: the checks SQL Server makes, the file work through
//! `sqlserver-files` on a blocking thread, STATS progress, throttling,
//! ATTENTION, faults, msdb history and events.
//!
//! One file per statement: `backup_database`, `verify`, `list` (HEADERONLY, FILELISTONLY),
//! `restore` and `differential` (RESTORE DATABASE), `drop`, `rename`; `operation` runs the file
//! work, `messages` turns media errors into SQL Server's.

mod backup_database;
mod differential;
mod drop;
mod list;
mod messages;
mod operation;
mod rename;
mod restore;
mod verify;

pub use backup_database::backup_database;
pub use drop::drop_databases;
pub use list::list_backup;
pub use rename::rename_database;
pub use restore::restore_database;
pub use verify::verify_only;

use backup_database::record_backup;
use differential::restore_differential;
use messages::{bak_errors, position_errors};
use operation::{RunEnd, StatsReporter, run_file_operation};

use std::path::{Path, PathBuf};

use sqlserver_files::bak::{self, BackupSetHeader, BakError};

use crate::engine::Engine;
use crate::engine::errors::{self, SqlError};
use crate::engine::session::{Outcome, Session, raise};
use crate::sql::ast::RestoreOption;
use crate::tds::response::Response;

/// Backup device paths on the host, relative ones resolved against the default backup directory.
fn device_paths(engine: &Engine, disks: &[String]) -> Vec<PathBuf> {
    let default_dir = engine.backup_directory();
    disks
        .iter()
        .map(|d| engine.host_path(d, &default_dir))
        .collect()
}

/// Errors as SQL Server prints them on this platform (container paths, Linux's OS errors).
fn shown(engine: &Engine, errs: Vec<SqlError>) -> Vec<SqlError> {
    errs.into_iter()
        .map(|mut e| {
            e.text = engine.shown(&e.text);
            e
        })
        .collect()
}

/// The devices as SQL Server names them, for msdb.
fn sql_devices(engine: &Engine, devices: &[PathBuf]) -> Vec<PathBuf> {
    devices
        .iter()
        .map(|d| PathBuf::from(engine.sql_path(d)))
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
