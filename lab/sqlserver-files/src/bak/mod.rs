//! Backup files (.bak): backup sets on one or more stripe files (a media set), as
//! `BACKUP DATABASE ... TO DISK = ..., DISK = ...` writes them.
//!
//! [`write_backup`] writes (or appends) a backup set; [`read_headers`] is RESTORE HEADERONLY (and
//! FILELISTONLY via [`BackupSetHeader::files`]); [`verify`] is RESTORE VERIFYONLY; [`restore`]
//! writes the database files back. The layout is described in `format.rs`.

mod checksum;
mod error;
mod format;
mod media;
mod restore;
mod write;

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use error::{BakError, os_error};
pub use media::{corrupt_one_page, read_headers, verify};
pub use restore::{RestoreSummary, restore, restore_differential};
pub use write::write_backup;

/// Most stripes SQL Server accepts in one BACKUP.
pub const MAX_STRIPES: usize = 64;

/// One file of the backed-up database, as RESTORE FILELISTONLY lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupFileEntry {
    pub logical_name: String,
    /// The path the file had when it was backed up.
    pub physical_name: String,
    /// 'D' data, 'L' log.
    pub file_type: char,
    /// 1 for the data file, 2 for the log file.
    pub file_id: u32,
    pub size: u64,
}

/// One backup set, as RESTORE HEADERONLY and `msdb.dbo.backupset` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupSetHeader {
    pub backup_set_uuid: Uuid,
    pub media_set_id: Uuid,
    /// 1-based position of the set on the media (RESTORE ... WITH FILE = position).
    pub position: u32,
    pub name: String,
    pub description: String,
    /// 1 = database (full), 5 = differential database (RESTORE HEADERONLY's BackupType).
    pub backup_type: u8,
    pub database_name: String,
    pub database_guid: Uuid,
    pub family_guid: Uuid,
    pub database_creation_date: NaiveDateTime,
    pub server_name: String,
    pub machine_name: String,
    pub user_name: String,
    /// e.g. "16.0.4135.4".
    pub software_version: String,
    /// Internal database version (957 for SQL Server 2022).
    pub database_version: u32,
    pub compatibility_level: u16,
    pub collation: String,
    pub recovery_model: String,
    pub backup_start_date: NaiveDateTime,
    pub backup_finish_date: NaiveDateTime,
    /// LSNs as SQL Server prints them (numeric(25,0)); see [`sql_lsn`].
    #[serde(with = "lsn_text")]
    pub first_lsn: u128,
    #[serde(with = "lsn_text")]
    pub last_lsn: u128,
    #[serde(with = "lsn_text")]
    pub checkpoint_lsn: u128,
    /// Checkpoint LSN of the last full backup that was not COPY_ONLY (0 = none).
    #[serde(with = "lsn_text")]
    pub database_backup_lsn: u128,
    /// A differential's base: the checkpoint LSN and BackupSetGUID of the full backup it builds
    /// on (0 and None for a full backup, as HEADERONLY shows NULL there).
    #[serde(with = "lsn_text", default)]
    pub differential_base_lsn: u128,
    #[serde(default)]
    pub differential_base_guid: Option<Uuid>,
    pub is_copy_only: bool,
    pub has_backup_checksums: bool,
    pub is_compressed: bool,
    /// Bytes of the backup set before compression, over all stripes.
    pub backup_size: u64,
    /// Bytes on disk, over all stripes (equal to `backup_size` when not compressed).
    pub compressed_backup_size: u64,
    pub files: Vec<BackupFileEntry>,
    pub stripe_count: u32,
    pub max_transfer_size: u32,
}

impl BackupSetHeader {
    /// Pages in the database when it was backed up.
    pub fn page_count(&self) -> u64 {
        self.files
            .iter()
            .map(|f| f.size / crate::image::PAGE_SIZE as u64)
            .sum()
    }

    /// Whether this is a differential backup (BackupType 5).
    pub fn is_differential(&self) -> bool {
        self.backup_type == 5
    }
}

/// The options of one BACKUP DATABASE statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupOptions {
    /// COPY_ONLY: leaves the differential base alone.
    pub copy_only: bool,
    /// DIFFERENTIAL: only the extents changed since the differential base.
    pub differential: bool,
    /// CHECKSUM: verify every page checksum while reading, write a backup checksum.
    pub checksum: bool,
    /// COMPRESSION: zstd-compressed blocks (the server decides whether its edition allows it).
    pub compression: bool,
    /// FORMAT or INIT: start a new media set, overwriting the files; otherwise append.
    pub init: bool,
    pub name: String,
    pub description: String,
    /// `@@SERVERNAME`, e.g. `SQL01` or `SQL01\OCTOPUS`.
    pub server_name: String,
    pub user_name: String,
    pub software_version: String,
    /// MAXTRANSFERSIZE: bytes per block, a multiple of 64 KiB up to 4 MiB. Blocks go round-robin
    /// to the stripes.
    pub max_transfer_size: u32,
}

impl Default for BackupOptions {
    fn default() -> Self {
        Self {
            copy_only: false,
            differential: false,
            checksum: false,
            compression: false,
            init: false,
            name: String::new(),
            description: String::new(),
            server_name: "LABSQL".to_string(),
            user_name: "sa".to_string(),
            software_version: "16.0.4135.4".to_string(),
            max_transfer_size: 1 << 20,
        }
    }
}

/// An LSN counter of the lab database as SQL Server prints LSNs: virtual log file number
/// × 10^15 + log block × 10^5 + slot. Increasing with the counter.
pub fn sql_lsn(counter: u64) -> u128 {
    let vlf = 37 + counter / 100_000;
    let block = (counter % 100_000) * 8 + 16;
    vlf as u128 * 1_000_000_000_000_000 + block as u128 * 100_000 + 1
}

/// Internal database version SQL Server stamps for a product major version.
fn database_version(software_version: &str) -> u32 {
    match software_version
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok())
    {
        Some(13) => 852,
        Some(14) => 869,
        Some(15) => 904,
        Some(17) => 998,
        _ => 957,
    }
}

/// LSNs travel as decimal strings in the set header (JSON numbers lose precision past 2^53 in
/// most readers).
mod lsn_text {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(value: &u128, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&value.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u128, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_lsns_increase_and_look_like_sql_server_lsns() {
        let mut previous = 0;
        for counter in [0u64, 1, 99_999, 100_000, 100_001, 5_000_000] {
            let lsn = sql_lsn(counter);
            assert!(lsn > previous);
            previous = lsn;
        }
        assert_eq!(sql_lsn(1_000).to_string(), "37000000801600001");
    }

    #[test]
    fn database_version_follows_the_major_version() {
        assert_eq!(database_version("16.0.4135.4"), 957);
        assert_eq!(database_version("15.0.2000.5"), 904);
    }
}
