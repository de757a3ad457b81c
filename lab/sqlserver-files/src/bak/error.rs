//! Backup errors, carrying what the SQL Server stand-in needs to raise the right message.

use std::io;
use std::path::{Path, PathBuf};

/// Why a backup, verify, header read or restore failed. Each variant maps to one SQL Server
/// message (noted per variant); the server composes the text.
#[derive(Debug, thiserror::Error)]
pub enum BakError {
    /// Msg 3201 "Cannot open backup device '{path}'. Operating system error {code}({message})."
    #[error("Cannot open backup device '{}'. Operating system error {os_error_code}({os_message}).", path.display())]
    CannotOpen {
        path: PathBuf,
        os_error_code: u32,
        os_message: String,
    },
    /// Msg 3241 "The media family on device '{path}' is incorrectly formed."
    #[error("The media family on device '{}' is incorrectly formed. SQL Server cannot process this media family. ({detail})", path.display())]
    NotABackup { path: PathBuf, detail: String },
    /// Msg 3203 (read failure, truncation) or 3189 (backup checksum mismatch).
    #[error("The backup on device '{}' is damaged: {detail}", path.display())]
    Damaged { path: PathBuf, detail: String },
    /// Msg 3132 "The media set has {expected} media families but only {found} are provided."
    #[error(
        "The media set has {expected} media families but only {found} are provided. All members must be provided."
    )]
    MissingStripe { expected: u32, found: u32 },
    /// Msg 3231/3227: the devices do not form one media set (other media set, duplicate family,
    /// more devices than families, some devices new and some not).
    #[error("The media loaded on '{}' does not match the other backup devices: {detail}", path.display())]
    MismatchedStripes { path: PathBuf, detail: String },
    /// Msg 3206 "No entry in sysdevices ..." is for names; for a FILE = n past the end SQL Server
    /// says Msg 4038-like "Cannot find file ID {position} on device".
    #[error(
        "Cannot find backup set {position} on the device: the media holds {available} backup set(s)."
    )]
    NoSuchPosition { position: u32, available: u32 },
    /// Msg 3043 during BACKUP WITH CHECKSUM (the database page is bad) or Msg 3183 during
    /// RESTORE/VERIFYONLY (the page read from the backup is bad). `file_id` is 1 for the data file,
    /// 2 for the log file; `path` is the database file (BACKUP) or the backup device (RESTORE).
    #[error("An error was detected on page ({file_id}:{page}) in file '{}': {problem}", path.display())]
    PageChecksum {
        path: PathBuf,
        file_id: u32,
        page: u32,
        problem: String,
    },
    /// Msg 3187 "RESTORE WITH CHECKSUM cannot be specified because the backup set does not contain
    /// checksum information."
    #[error(
        "RESTORE WITH CHECKSUM cannot be specified because the backup set does not contain checksum information."
    )]
    NoChecksums,
    /// BACKUP WITH DIFFERENTIAL of a database with no differential base (no full backup that
    /// was not COPY_ONLY): Msg 3035.
    #[error("a differential backup needs a full backup that is not COPY_ONLY first")]
    NoDifferentialBase,
    /// The progress callback asked to stop (Msg 3204 "The backup or restore was aborted.").
    #[error("The backup or restore was aborted.")]
    Cancelled,
    /// The database files to back up are not usable (missing, not a lab database).
    #[error("The database file '{}' cannot be used: {detail}", path.display())]
    Database { path: PathBuf, detail: String },
    /// A request the server should have refused (no devices, more than 64, bad MAXTRANSFERSIZE).
    #[error("{0}")]
    InvalidRequest(String),
    /// Any other I/O failure (Msg 3202 "Write on '{path}' failed: {code}({message})" and 3203 for
    /// reads); [`os_error`] gives the code and message.
    #[error("I/O error on '{}': {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// The Windows error code and message SQL Server would print for an I/O error on `path`.
/// `creating` says whether the file was being created (a missing file is then a missing folder).
pub fn os_error(err: &io::Error, path: &Path, creating: bool) -> (u32, String) {
    match err.kind() {
        io::ErrorKind::NotFound => {
            let parent_exists = path
                .parent()
                .is_none_or(|p| p.as_os_str().is_empty() || p.is_dir());
            if creating || !parent_exists {
                (3, "The system cannot find the path specified.".to_string())
            } else {
                (2, "The system cannot find the file specified.".to_string())
            }
        }
        io::ErrorKind::PermissionDenied | io::ErrorKind::IsADirectory => {
            (5, "Access is denied.".to_string())
        }
        // ERROR_DISK_FULL (Microsoft Learn, "System Error Codes (0-499)"); SQL Server reports it
        // inside Msg 3202 "Write on \"%ls\" failed: %ls" (Microsoft Learn, "Database Engine
        // events and errors (3000 to 3999)").
        io::ErrorKind::StorageFull => (112, "There is not enough space on the disk.".to_string()),
        io::ErrorKind::UnexpectedEof => (38, "Reached the end of the file.".to_string()),
        _ => (err.raw_os_error().map_or(31, |c| c as u32), err.to_string()),
    }
}

impl BakError {
    pub(crate) fn cannot_open(path: &Path, err: &io::Error, creating: bool) -> Self {
        let (os_error_code, os_message) = os_error(err, path, creating);
        Self::CannotOpen {
            path: path.to_path_buf(),
            os_error_code,
            os_message,
        }
    }

    pub(crate) fn io(path: &Path) -> impl FnOnce(io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn damaged(path: &Path, detail: impl Into<String>) -> Self {
        Self::Damaged {
            path: path.to_path_buf(),
            detail: detail.into(),
        }
    }

    pub(crate) fn mismatched(path: &Path, detail: impl Into<String>) -> Self {
        Self::MismatchedStripes {
            path: path.to_path_buf(),
            detail: detail.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_map_to_windows_codes() {
        let dir = tempfile::tempdir().unwrap();
        let missing_file = dir.path().join("nope.bak");
        let missing_dir = dir.path().join("nodir").join("x.bak");
        let not_found = io::Error::from(io::ErrorKind::NotFound);
        assert_eq!(os_error(&not_found, &missing_file, false).0, 2);
        assert_eq!(os_error(&not_found, &missing_dir, false).0, 3);
        assert_eq!(os_error(&not_found, &missing_file, true).0, 3);
        assert_eq!(
            os_error(
                &io::Error::from(io::ErrorKind::PermissionDenied),
                &missing_file,
                true
            )
            .0,
            5
        );
    }
}
