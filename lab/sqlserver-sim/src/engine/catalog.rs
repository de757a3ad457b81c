//! What the server remembers across restarts, in `data_dir/catalog.json`: the
//! user databases and their files, and msdb's backup and restore history.

use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A user database: its id and files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseEntry {
    pub name: String,
    pub database_id: i32,
    pub data_file: PathBuf,
    pub log_file: PathBuf,
    pub create_date: NaiveDateTime,
    /// RESTORING (restored WITH NORECOVERY): the BackupSetGUID of the full backup restored, the
    /// only base a differential may be restored onto.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restoring_from: Option<Uuid>,
}

/// A row of msdb.dbo.backupset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupSetRecord {
    pub backup_set_id: i32,
    pub backup_set_uuid: Uuid,
    pub media_set_id: i32,
    pub position: i32,
    pub name: Option<String>,
    pub description: Option<String>,
    pub user_name: String,
    pub database_name: String,
    pub database_guid: Uuid,
    pub family_guid: Uuid,
    pub database_creation_date: NaiveDateTime,
    pub backup_start_date: NaiveDateTime,
    pub backup_finish_date: NaiveDateTime,
    #[serde(with = "lsn_text")]
    pub first_lsn: u128,
    #[serde(with = "lsn_text")]
    pub last_lsn: u128,
    #[serde(with = "lsn_text")]
    pub checkpoint_lsn: u128,
    #[serde(with = "lsn_text")]
    pub database_backup_lsn: u128,
    /// A differential's base (msdb: NULL for other backups).
    #[serde(default, with = "lsn_text")]
    pub differential_base_lsn: u128,
    #[serde(default)]
    pub differential_base_guid: Option<Uuid>,
    pub backup_type: String,
    pub is_copy_only: bool,
    pub backup_size: u64,
    pub compressed_backup_size: u64,
    pub has_backup_checksums: bool,
    pub is_damaged: bool,
    pub recovery_model: String,
    pub compatibility_level: u16,
    pub database_version: u32,
    pub collation_name: String,
    pub server_name: String,
    pub machine_name: String,
    pub software_version: String,
}

/// LSNs are numeric(25,0): kept as decimal text so no JSON reader rounds them.
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

/// A row of msdb.dbo.backupmediaset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaSetRecord {
    pub media_set_id: i32,
    pub media_uuid: Uuid,
    pub media_family_count: u8,
    pub name: Option<String>,
    pub description: Option<String>,
    pub is_compressed: bool,
}

/// A row of msdb.dbo.backupmediafamily: one per stripe of a media set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaFamilyRecord {
    pub media_set_id: i32,
    pub family_sequence_number: u8,
    pub media_family_id: Uuid,
    pub physical_device_name: String,
}

/// A row of msdb.dbo.restorehistory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreRecord {
    pub restore_history_id: i32,
    pub restore_date: NaiveDateTime,
    pub destination_database_name: String,
    pub user_name: String,
    pub backup_set_id: i32,
    pub replace: bool,
    pub recovery: bool,
}

/// Everything in catalog.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    pub version: u32,
    pub databases: Vec<DatabaseEntry>,
    pub next_database_id: i32,
    pub backupsets: Vec<BackupSetRecord>,
    pub mediasets: Vec<MediaSetRecord>,
    pub mediafamilies: Vec<MediaFamilyRecord>,
    pub restores: Vec<RestoreRecord>,
}

/// First id given to a user database: 1-4 are master, tempdb, model and msdb.
pub const FIRST_USER_DATABASE_ID: i32 = 5;

impl Default for Catalog {
    fn default() -> Self {
        Self {
            version: 1,
            databases: Vec::new(),
            next_database_id: FIRST_USER_DATABASE_ID,
            backupsets: Vec::new(),
            mediasets: Vec::new(),
            mediafamilies: Vec::new(),
            restores: Vec::new(),
        }
    }
}

impl Catalog {
    /// Loads the catalog, or an empty one when the file does not exist yet.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a valid catalog", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Writes the catalog atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(self)?;
        std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
        Ok(())
    }

    /// A user database by name, case-insensitively as the default collation compares.
    pub fn database(&self, name: &str) -> Option<&DatabaseEntry> {
        self.databases
            .iter()
            .find(|d| d.name.eq_ignore_ascii_case(name))
    }

    pub fn database_by_id(&self, id: i32) -> Option<&DatabaseEntry> {
        self.databases.iter().find(|d| d.database_id == id)
    }

    /// The database whose data or log file is `path`, if any.
    pub fn database_using_file(&self, path: &Path) -> Option<&DatabaseEntry> {
        self.databases
            .iter()
            .find(|d| same_path(&d.data_file, path) || same_path(&d.log_file, path))
    }

    pub fn next_backup_set_id(&self) -> i32 {
        self.backupsets
            .iter()
            .map(|b| b.backup_set_id)
            .max()
            .unwrap_or(0)
            + 1
    }

    pub fn next_media_set_id(&self) -> i32 {
        self.mediasets
            .iter()
            .map(|m| m.media_set_id)
            .max()
            .unwrap_or(0)
            + 1
    }

    pub fn next_restore_id(&self) -> i32 {
        self.restores
            .iter()
            .map(|r| r.restore_history_id)
            .max()
            .unwrap_or(0)
            + 1
    }
}

/// Paths compare as the file system would see them: canonical when they exist,
/// otherwise as written (case-insensitively on Windows).
pub fn same_path(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => {
            if cfg!(windows) {
                a.to_string_lossy()
                    .eq_ignore_ascii_case(&b.to_string_lossy())
            } else {
                a == b
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json() {
        let dir = std::env::temp_dir().join(format!("sqlsim-catalog-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("catalog.json");
        assert_eq!(Catalog::load(&path).unwrap(), Catalog::default());
        let mut catalog = Catalog::default();
        catalog.databases.push(DatabaseEntry {
            name: "Octo]pus".into(),
            database_id: 5,
            data_file: dir.join("a.mdf"),
            log_file: dir.join("a.ldf"),
            create_date: chrono::NaiveDate::from_ymd_opt(2024, 1, 1)
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap(),
            restoring_from: None,
        });
        catalog.save(&path).unwrap();
        let loaded = Catalog::load(&path).unwrap();
        assert_eq!(loaded, catalog);
        assert!(loaded.database("octo]PUS").is_some());
        assert!(loaded.database_using_file(&dir.join("a.ldf")).is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn garbage_is_an_error() {
        let dir = std::env::temp_dir().join(format!("sqlsim-catalog-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("catalog.json");
        std::fs::write(&path, b"{not json").unwrap();
        assert!(Catalog::load(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
