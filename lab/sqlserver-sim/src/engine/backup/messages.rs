//! The SQL Server messages for the errors `sqlserver-files` reports on backup media.

use std::path::PathBuf;

use sqlserver_files::bak::{self, BakError};

use super::*;
use crate::engine::errors::{self, SqlError};

/// The SQL Server messages for a backup-file error.
pub(super) fn bak_errors(err: &BakError, database: &str, reading: bool) -> Vec<SqlError> {
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
pub(super) fn position_errors(
    err: &BakError,
    database: &str,
    devices: &[PathBuf],
) -> Vec<SqlError> {
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
