//! The T-SQL of an owned backup chain (`sql.chain = "owned"`): the full backup that is the
//! differential base, the differential inside the window, the restore of both, and the msdb
//! history that says whether anyone else takes full backups of the database.
//!
//! A full backup that is not COPY_ONLY becomes the database's differential base; a differential
//! holds the extents changed since that base, and restores only onto it: RESTORE ... WITH
//! NORECOVERY from the base, then the differential WITH RECOVERY (Microsoft Learn, "Differential
//! backups (SQL Server)", "Restore a differential database backup").

use super::client::{Session, SqlError};
use super::tsql::{quote_ident, quote_str};

/// The DESCRIPTION of octobackup's base backups: how its own full backups are told from others'
/// in msdb.
pub const BASE_DESCRIPTION_PREFIX: &str = "octobackup base ";

pub fn base_description(set_id: &str) -> String {
    format!("{BASE_DESCRIPTION_PREFIX}{set_id}")
}

fn disks(paths: &[String]) -> String {
    paths
        .iter()
        .map(|p| format!("DISK = {}", quote_str(p)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The base: a full backup WITHOUT COPY_ONLY (so it becomes the differential base), checksummed,
/// uncompressed (compressed backups do not deduplicate), into fresh files.
pub fn backup_base(database: &str, stripes: &[String], description: &str) -> String {
    format!(
        "BACKUP DATABASE {} TO {} WITH CHECKSUM, NO_COMPRESSION, FORMAT, INIT, STATS = 5, NAME = {}, DESCRIPTION = {}",
        quote_ident(database),
        disks(stripes),
        quote_str(&format!("{database} octobackup base")),
        quote_str(description)
    )
}

/// Inside the window: only the extents changed since the base.
pub fn backup_differential(database: &str, stripes: &[String], description: &str) -> String {
    format!(
        "BACKUP DATABASE {} TO {} WITH DIFFERENTIAL, CHECKSUM, NO_COMPRESSION, FORMAT, INIT, STATS = 5, NAME = {}, DESCRIPTION = {}",
        quote_ident(database),
        disks(stripes),
        quote_str(&format!("{database} octobackup differential")),
        quote_str(description)
    )
}

/// The base, left RESTORING for the differential.
pub fn restore_base(database: &str, stripes: &[String], moves: &[(String, String)]) -> String {
    let mut opts: Vec<String> = moves
        .iter()
        .map(|(l, p)| format!("MOVE {} TO {}", quote_str(l), quote_str(p)))
        .collect();
    opts.push("NORECOVERY".into());
    opts.push("STATS = 5".into());
    format!(
        "RESTORE DATABASE {} FROM {} WITH {}",
        quote_ident(database),
        disks(stripes),
        opts.join(", ")
    )
}

/// The differential onto the restored base, and recovery.
pub fn restore_differential(database: &str, stripes: &[String]) -> String {
    format!(
        "RESTORE DATABASE {} FROM {} WITH RECOVERY, STATS = 5",
        quote_ident(database),
        disks(stripes)
    )
}

/// Full backups of the database that are not COPY_ONLY, newest first: each one became the
/// differential base when it was taken.
pub fn full_backups(database: &str) -> String {
    format!(
        "SELECT bs.backup_set_uuid, bs.backup_finish_date, bs.user_name, bs.description, mf.physical_device_name \
FROM msdb.dbo.backupset AS bs JOIN msdb.dbo.backupmediafamily AS mf ON mf.media_set_id = bs.media_set_id \
WHERE bs.database_name = {} AND bs.type = 'D' AND bs.is_copy_only = 0 ORDER BY bs.backup_finish_date DESC",
        quote_str(database)
    )
}

/// One full, non-COPY_ONLY backup from msdb.
#[derive(Clone, Debug, PartialEq)]
pub struct FullBackup {
    pub backup_set_uuid: String,
    pub finished: String,
    pub user: String,
    pub description: String,
    pub device: String,
}

impl FullBackup {
    /// Taken by octobackup as a base (its DESCRIPTION says so).
    pub fn is_octobackups(&self) -> bool {
        self.description.starts_with(BASE_DESCRIPTION_PREFIX)
    }

    /// "2026-11-29 21:00:00 by sa to D:\Backups\Octopus.bak"
    pub fn describe(&self) -> String {
        format!("{} by {} to {}", self.finished, self.user, self.device)
    }
}

/// msdb's full, non-COPY_ONLY backups of the database, newest first (one row per stripe is
/// folded into the first).
pub async fn full_backups_of(
    session: &mut Session,
    database: &str,
) -> Result<Vec<FullBackup>, SqlError> {
    let rows = session
        .query_text("msdb full backup history", &full_backups(database))
        .await?;
    let mut out: Vec<FullBackup> = Vec::new();
    for r in rows {
        let s = |k: &str| r.get(k).cloned().flatten().unwrap_or_default();
        let uuid = s("backup_set_uuid");
        if out
            .iter()
            .any(|b| b.backup_set_uuid.eq_ignore_ascii_case(&uuid))
        {
            continue;
        }
        out.push(FullBackup {
            backup_set_uuid: uuid,
            finished: s("backup_finish_date"),
            user: s("user_name"),
            description: s("description"),
            device: s("physical_device_name"),
        });
    }
    Ok(out)
}

/// What RESTORE HEADERONLY says of the (first) backup set on the files.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Header {
    /// 1 full, 5 differential.
    pub backup_type: u32,
    pub backup_set_guid: String,
    pub differential_base_guid: Option<String>,
    pub backup_size: u64,
}

pub async fn header(session: &mut Session, stripes: &[String]) -> Result<Header, SqlError> {
    let rows = session
        .query_text(
            "RESTORE HEADERONLY",
            &super::tsql::restore_headeronly(stripes),
        )
        .await?;
    let Some(r) = rows.into_iter().next() else {
        return Err(SqlError::Server {
            statement: "RESTORE HEADERONLY".into(),
            number: 0,
            message: "no backup set on the files".into(),
        });
    };
    let s = |k: &str| r.get(k).cloned().flatten();
    Ok(Header {
        backup_type: s("BackupType").and_then(|v| v.parse().ok()).unwrap_or(0),
        backup_set_guid: s("BackupSetGUID").unwrap_or_default(),
        differential_base_guid: s("DifferentialBaseGUID").filter(|g| !g.is_empty()),
        backup_size: s("BackupSize").and_then(|v| v.parse().ok()).unwrap_or(0),
    })
}

/// GUIDs compare without regard to case or braces.
pub fn same_guid(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.trim_matches(['{', '}']).to_ascii_lowercase();
    norm(a) == norm(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_is_not_copy_only_and_the_differential_says_so() {
        let base = backup_base(
            "Octo]pus",
            &["D:\\b's\\base.bak".into()],
            "octobackup base x",
        );
        assert!(!base.contains("COPY_ONLY"), "{base}");
        assert!(base.contains("[Octo]]pus]") && base.contains("N'D:\\b''s\\base.bak'"));
        assert!(base.contains("CHECKSUM, NO_COMPRESSION, FORMAT, INIT"));
        let diff = backup_differential("Octopus", &["a".into(), "b".into()], "d");
        assert!(diff.contains("WITH DIFFERENTIAL, CHECKSUM, NO_COMPRESSION"));
        assert!(diff.contains("DISK = N'a', DISK = N'b'"));
        assert!(!diff.contains("COPY_ONLY"));
        let r = restore_base(
            "T",
            &["a".into()],
            &[("Octopus".into(), "C:\\t.mdf".into())],
        );
        assert!(
            r.ends_with("MOVE N'Octopus' TO N'C:\\t.mdf', NORECOVERY, STATS = 5"),
            "{r}"
        );
        assert!(restore_differential("T", &["d".into()]).contains("WITH RECOVERY"));
    }

    #[test]
    fn octobackups_bases_are_known_by_description() {
        let ours = FullBackup {
            backup_set_uuid: "A".into(),
            finished: "2026-11-29 21:00:00".into(),
            user: "sa".into(),
            description: base_description("20261129T210000Z-0a1b2c"),
            device: "D:\\x.bak".into(),
        };
        assert!(ours.is_octobackups());
        let theirs = FullBackup {
            description: "Nightly full backup (maintenance plan)".into(),
            ..ours.clone()
        };
        assert!(!theirs.is_octobackups());
        assert_eq!(theirs.describe(), "2026-11-29 21:00:00 by sa to D:\\x.bak");
        assert!(same_guid("{ABC-d}", "abc-D"));
    }
}
