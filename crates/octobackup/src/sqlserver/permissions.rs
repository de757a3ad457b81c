//! What octobackup's SQL login may do, read without changing anything, and the smallest grant
//! for each gap, as T-SQL a DBA can paste.
//!
//! Which command needs what (Microsoft Learn: BACKUP, RESTORE Statements, DBCC CHECKDB, sys.dm_exec_requests):
//! - backup: BACKUP DATABASE on the Octopus database (db_backupoperator or db_owner), and CREATE
//!   ANY DATABASE for the `RESTORE VERIFYONLY` after it (needed since SQL Server 2008). SELECT on
//!   msdb's backupset and backupmediafamily records the set's LSNs (without it: a warning).
//! - drill and restore: CREATE ANY DATABASE (the restored copy is then the login's own, so
//!   DBCC CHECKDB, reading it, renaming and dropping it need nothing more).
//! - progress on long statements: VIEW SERVER STATE (without it: no percentage, only liveness).
//! - ending a statement that does not answer ATTENTION: ALTER ANY CONNECTION for KILL (Microsoft
//!   Learn, KILL; held by sysadmin and processadmin). Without it such a statement may run on
//!   after a stop (a warning).

use super::SqlError;
use super::client::Session;
use super::tsql::{quote_ident, quote_str};

/// What the login holds. `None`: the server did not say (NULL from HAS_PERMS_BY_NAME).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    pub login: String,
    pub database: String,
    pub backup_database: Option<bool>,
    pub create_any_database: Option<bool>,
    pub msdb_history: Option<bool>,
    pub view_server_state: Option<bool>,
    pub alter_any_connection: Option<bool>,
}

/// One missing permission: what it breaks and the grant that fixes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub check: &'static str,
    /// false: the commands still work, with less (a warning).
    pub required: bool,
    pub detail: String,
    pub grant: String,
}

/// One SELECT, answered by any login: HAS_PERMS_BY_NAME checks the caller's effective permissions
/// (roles, grants, ownership, sysadmin).
pub fn query(database: &str) -> String {
    format!(
        "SELECT SUSER_SNAME() AS LoginName, \
HAS_PERMS_BY_NAME({db}, 'DATABASE', 'BACKUP DATABASE') AS BackupDatabase, \
HAS_PERMS_BY_NAME(NULL, NULL, 'CREATE ANY DATABASE') AS CreateAnyDatabase, \
HAS_PERMS_BY_NAME(N'msdb.dbo.backupset', 'OBJECT', 'SELECT') AS MsdbBackupset, \
HAS_PERMS_BY_NAME(N'msdb.dbo.backupmediafamily', 'OBJECT', 'SELECT') AS MsdbMediaFamily, \
HAS_PERMS_BY_NAME(NULL, NULL, 'VIEW SERVER STATE') AS ViewServerState, \
HAS_PERMS_BY_NAME(NULL, NULL, 'ALTER ANY CONNECTION') AS AlterAnyConnection",
        db = quote_str(database)
    )
}

pub async fn read(session: &mut Session, database: &str) -> Result<Permissions, SqlError> {
    let rows = session
        .query_text("permission check", &query(database))
        .await?;
    let row = rows.first().cloned().unwrap_or_default();
    let flag = |k: &str| row.get(k).cloned().flatten().map(|v| v.trim() == "1");
    let both = |a: Option<bool>, b: Option<bool>| match (a, b) {
        (Some(x), Some(y)) => Some(x && y),
        (Some(false), _) | (_, Some(false)) => Some(false),
        _ => None,
    };
    Ok(Permissions {
        login: row.get("LoginName").cloned().flatten().unwrap_or_default(),
        database: database.to_string(),
        backup_database: flag("BackupDatabase"),
        create_any_database: flag("CreateAnyDatabase"),
        msdb_history: both(flag("MsdbBackupset"), flag("MsdbMediaFamily")),
        view_server_state: flag("ViewServerState"),
        alter_any_connection: flag("AlterAnyConnection"),
    })
}

impl Permissions {
    /// Every missing permission with its grant; empty when backup, drill and restore can run.
    pub fn gaps(&self) -> Vec<Gap> {
        let login = quote_ident(&self.login);
        let db = quote_ident(&self.database);
        let mut gaps = Vec::new();
        if self.backup_database != Some(true) {
            gaps.push(Gap {
                check: "sql-permission",
                required: true,
                detail: format!(
                    "the login {} may not BACKUP DATABASE {db} (it needs db_backupoperator or db_owner there): backup is refused",
                    self.login
                ),
                grant: format!("USE {db}; ALTER ROLE db_backupoperator ADD MEMBER {login};"),
            });
        }
        if self.create_any_database != Some(true) {
            gaps.push(Gap {
                check: "sql-create-database",
                required: true,
                detail: format!(
                    "the login {} lacks CREATE ANY DATABASE: backup's RESTORE VERIFYONLY (SQL Server 2008 and later), drill and restore are refused",
                    self.login
                ),
                grant: format!("USE master; GRANT CREATE ANY DATABASE TO {login};"),
            });
        }
        if self.msdb_history != Some(true) {
            gaps.push(Gap {
                check: "sql-msdb-history",
                required: true,
                detail: format!(
                    "the login {} cannot read msdb.dbo.backupset and backupmediafamily: sets record no LSNs or backup GUID",
                    self.login
                ),
                grant: format!(
                    "USE msdb; CREATE USER {login} FOR LOGIN {login}; GRANT SELECT ON dbo.backupset TO {login}; GRANT SELECT ON dbo.backupmediafamily TO {login};"
                ),
            });
        }
        if self.view_server_state != Some(true) {
            gaps.push(Gap {
                check: "sql-server-state",
                required: false,
                detail: format!(
                    "the login {} lacks VIEW SERVER STATE: long BACKUP/RESTORE/CHECKDB show no percentage (they still run)",
                    self.login
                ),
                grant: format!("USE master; GRANT VIEW SERVER STATE TO {login};"),
            });
        }
        if self.alter_any_connection != Some(true) {
            gaps.push(Gap {
                check: "sql-kill",
                required: false,
                detail: format!(
                    "the login {} lacks ALTER ANY CONNECTION: a BACKUP, RESTORE or CHECKDB that does not acknowledge a stop (ATTENTION) cannot be ended with KILL, and may run on after Ctrl-C or a window overrun",
                    self.login
                ),
                grant: format!("USE master; GRANT ALTER ANY CONNECTION TO {login};"),
            });
        }
        gaps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perms(all: Option<bool>) -> Permissions {
        Permissions {
            login: "octo]backup".into(),
            database: "Octopus".into(),
            backup_database: all,
            create_any_database: all,
            msdb_history: all,
            view_server_state: all,
            alter_any_connection: all,
        }
    }

    #[test]
    fn every_gap_names_its_grant() {
        let gaps = perms(Some(false)).gaps();
        let checks: Vec<_> = gaps.iter().map(|g| g.check).collect();
        assert_eq!(
            checks,
            [
                "sql-permission",
                "sql-create-database",
                "sql-msdb-history",
                "sql-server-state",
                "sql-kill"
            ]
        );
        assert_eq!(
            gaps[0].grant,
            "USE [Octopus]; ALTER ROLE db_backupoperator ADD MEMBER [octo]]backup];"
        );
        assert_eq!(
            gaps[1].grant,
            "USE master; GRANT CREATE ANY DATABASE TO [octo]]backup];"
        );
        assert!(!gaps[3].required);
        assert!(!gaps[4].required);
        assert_eq!(
            gaps[4].grant,
            "USE master; GRANT ALTER ANY CONNECTION TO [octo]]backup];"
        );
        // Unknown counts as missing: the grant is harmless if already held.
        assert_eq!(perms(None).gaps().len(), 5);
        assert!(perms(Some(true)).gaps().is_empty());
    }

    #[test]
    fn the_query_quotes_the_database() {
        assert!(query("O'D").contains("HAS_PERMS_BY_NAME(N'O''D', 'DATABASE', 'BACKUP DATABASE')"));
    }
}
