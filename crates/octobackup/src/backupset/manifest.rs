//! The manifest: what a set holds, stored inside it as JSON. It never contains a secret: the master
//! key and license are separate files of the set, and only their presence and shape are recorded here.

use super::check::Check;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, Default)]
pub struct Manifest {
    pub format: u32,
    pub set_id: String,
    pub tool_version: String,
    pub instance: String,
    pub hostname: String,
    pub started: Option<DateTime<Utc>>,
    pub finished: Option<DateTime<Utc>>,
    pub octopus: OctopusInfo,
    pub database: DatabaseInfo,
    pub folders: Vec<FolderInfo>,
    pub secrets: SecretsInfo,
    pub window: WindowInfo,
    /// The run's steps, as they ended.
    pub steps: Vec<Check>,
    /// Tasks still running when the wait gave up (only with on_timeout = continue).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks_running_at_backup: Vec<String>,
    pub complete: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, Default)]
pub struct OctopusInfo {
    pub url: String,
    pub version: String,
    pub installation_id: String,
    pub nodes: Vec<String>,
    /// Maintenance mode as octobackup found it (and put it back to).
    pub maintenance_before: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, Default)]
pub struct DatabaseInfo {
    pub name: String,
    pub server: String,
    pub product_version: String,
    pub edition: String,
    /// Files of the backup inside the set, under /database.
    pub files: Vec<String>,
    pub bytes: u64,
    pub verified: bool,
    pub backupset: Option<BackupSetRow>,
    /// `sys.databases.is_encrypted`: Transparent Data Encryption was on, so a restore on another
    /// server needs the certificate that protects the database encryption key. None when it could
    /// not be read (and in sets made before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tde_encrypted: Option<bool>,
    /// `sql.chain = "owned"`: the base and differential (see [`ChainInfo`]). None with
    /// `copy_only`, and in sets made before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainInfo>,
}

/// An owned chain's night: `files` (above) is the differential, `base_files` the full backup it
/// builds on. A set is a base + differential only when the differential's DifferentialBaseGUID
/// (RESTORE HEADERONLY) was checked to be the base's BackupSetGUID; when someone else's full
/// backup moved the base, the night's backup is a copy-only full and `fallback` says why.
#[derive(Clone, Debug, Serialize, Deserialize, Default, PartialEq)]
pub struct ChainInfo {
    /// Files of the base inside the set, under /database/base. Empty when the night fell back to
    /// a full backup.
    #[serde(default)]
    pub base_files: Vec<String>,
    #[serde(default)]
    pub base_bytes: u64,
    /// The base's BackupSetGUID (RESTORE HEADERONLY).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_backup_set_guid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_taken: Option<DateTime<Utc>>,
    /// The base was taken by this run (before its window), and why.
    #[serde(default)]
    pub new_base: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_reason: Option<String>,
    /// The differential's BackupSetGUID and DifferentialBaseGUID (RESTORE HEADERONLY).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub differential_backup_set_guid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub differential_base_guid: Option<String>,
    /// Why this night's backup is a (copy-only) full instead of a differential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

impl DatabaseInfo {
    /// The base files of a differential set, as stored in it (restored first, WITH NORECOVERY);
    /// none for a full.
    pub fn base_files(&self) -> &[String] {
        match &self.chain {
            Some(c) if c.is_differential() => &c.base_files,
            _ => &[],
        }
    }
}

impl ChainInfo {
    /// The set restores as base (NORECOVERY) then differential (RECOVERY).
    pub fn is_differential(&self) -> bool {
        self.fallback.is_none() && !self.base_files.is_empty()
    }
}

/// The msdb.dbo.backupset row of the backup (LSNs as SQL Server prints them).
#[derive(Clone, Debug, Serialize, Deserialize, Default, PartialEq)]
pub struct BackupSetRow {
    pub backup_set_uuid: String,
    pub database_guid: String,
    pub first_lsn: String,
    pub last_lsn: String,
    pub checkpoint_lsn: String,
    pub database_backup_lsn: String,
    pub backup_start_date: String,
    pub backup_finish_date: String,
    pub backup_type: String,
    pub is_copy_only: bool,
    pub has_backup_checksums: bool,
    pub is_damaged: bool,
    pub backup_size: u64,
    pub compressed_backup_size: u64,
    pub recovery_model: String,
    pub physical_device_name: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, Default)]
pub struct FolderInfo {
    pub name: String,
    pub source_path: String,
    pub files: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, Default)]
pub struct SecretsInfo {
    pub master_key: bool,
    /// 16 (AES-128) or 32 (AES-256).
    pub master_key_bytes: usize,
    pub license: bool,
    /// When the license's maintenance ends (an expired license can block start-up after an upgrade).
    pub license_expiry: Option<String>,
    /// How many age keys the master key and license are also sealed to.
    #[serde(default)]
    pub escrow_recipients: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize, Default)]
pub struct WindowInfo {
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub seconds: f64,
    /// What ran while maintenance mode was on.
    pub inside: Vec<String>,
    /// False when maintenance mode was already on and octobackup left it alone.
    pub changed_by_octobackup: bool,
    /// Folder files read inside the window (new or changed since the pass before it).
    #[serde(default)]
    pub folder_files_read: u64,
    /// Someone else set maintenance mode during the window (who, when); octobackup left it so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_by_others: Option<String>,
}

pub const FORMAT: u32 = 1;
