//! T-SQL octobackup sends, built as text with every identifier and string quoted the way SQL Server
//! parses them: a database named `Octo]pus` or a path with a quote must work, and nothing a config
//! holds can change the statement's meaning. (Statements go as plain batches, not sp_executesql,
//! because BACKUP/RESTORE options such as MOVE take no parameters for logical names in older
//! versions and because the batch text is then exactly what `--verbose` logs.)

/// `[name]` with `]` doubled.
pub fn quote_ident(name: &str) -> String {
    format!("[{}]", name.replace(']', "]]"))
}

/// `N'text'` with `'` doubled.
pub fn quote_str(s: &str) -> String {
    format!("N'{}'", s.replace('\'', "''"))
}

fn disks(paths: &[String]) -> String {
    paths
        .iter()
        .map(|p| format!("DISK = {}", quote_str(p)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A full, copy-only, checksummed backup into fresh files: COPY_ONLY keeps the DBA's differential
/// base untouched; FORMAT, INIT never appends to an old file; NO_COMPRESSION said explicitly,
/// because without it the server option `backup compression default` decides (Microsoft Learn,
/// "backup compression default"), and compressed backups do not deduplicate night to night (the
/// repository compresses).
pub fn backup_database(
    database: &str,
    stripes: &[String],
    stats_percent: u8,
    description: &str,
) -> String {
    format!(
        "BACKUP DATABASE {} TO {} WITH COPY_ONLY, CHECKSUM, NO_COMPRESSION, FORMAT, INIT, STATS = {}, NAME = {}, DESCRIPTION = {}",
        quote_ident(database),
        disks(stripes),
        stats_percent.clamp(1, 100),
        quote_str(&format!("{database} octobackup")),
        quote_str(description)
    )
}

/// STATS, as for BACKUP: without it VERIFYONLY sends nothing until it ends (STATS is a valid
/// VERIFYONLY option: Microsoft Learn, RESTORE VERIFYONLY).
pub fn restore_verifyonly(stripes: &[String]) -> String {
    format!(
        "RESTORE VERIFYONLY FROM {} WITH CHECKSUM, STATS = 10",
        disks(stripes)
    )
}

pub fn restore_headeronly(stripes: &[String]) -> String {
    format!("RESTORE HEADERONLY FROM {}", disks(stripes))
}

pub fn restore_filelistonly(stripes: &[String]) -> String {
    format!("RESTORE FILELISTONLY FROM {}", disks(stripes))
}

/// RESTORE DATABASE with a MOVE for every logical file.
pub fn restore_database(
    database: &str,
    stripes: &[String],
    moves: &[(String, String)],
    replace: bool,
    stats_percent: u8,
) -> String {
    let mut opts: Vec<String> = moves
        .iter()
        .map(|(l, p)| format!("MOVE {} TO {}", quote_str(l), quote_str(p)))
        .collect();
    if replace {
        opts.push("REPLACE".into());
    }
    opts.push("RECOVERY".into());
    opts.push(format!("STATS = {}", stats_percent.clamp(1, 100)));
    format!(
        "RESTORE DATABASE {} FROM {} WITH {}",
        quote_ident(database),
        disks(stripes),
        opts.join(", ")
    )
}

pub fn drop_database(database: &str) -> String {
    format!("DROP DATABASE {}", quote_ident(database))
}

pub fn dbcc_checkdb(database: &str) -> String {
    format!("DBCC CHECKDB ({}) WITH NO_INFOMSGS", quote_str(database))
}

/// What the server is: octobackup refuses Azure SQL Database (no BACKUP TO DISK) up front.
pub const SERVER_INFO: &str = "SELECT CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)) AS ProductVersion, \
CAST(SERVERPROPERTY('Edition') AS nvarchar(128)) AS Edition, \
CAST(SERVERPROPERTY('EngineEdition') AS int) AS EngineEdition, @@SERVERNAME AS ServerName, @@SPID AS Spid, \
IS_SRVROLEMEMBER('sysadmin') AS IsSysadmin, DB_ID(N'rdsadmin') AS RdsAdmin";

pub fn database_id(database: &str) -> String {
    format!("SELECT DB_ID({}) AS DatabaseId", quote_str(database))
}

/// The msdb row of the backup just taken, found by the DESCRIPTION octobackup gave it (unique
/// per set) and not a log backup (`type` D, or I for an owned chain's differential): a DBA's
/// backup or a log backup ending after ours is not ours.
pub fn backupset_row(database: &str, description: &str) -> String {
    format!(
        "SELECT TOP (1) bs.backup_set_uuid, bs.database_name, bs.first_lsn, bs.last_lsn, bs.checkpoint_lsn, \
bs.database_backup_lsn, bs.backup_start_date, bs.backup_finish_date, bs.type, bs.is_copy_only, \
bs.backup_size, bs.compressed_backup_size, bs.has_backup_checksums, bs.is_damaged, bs.database_guid, \
bs.recovery_model, mf.physical_device_name \
FROM msdb.dbo.backupset AS bs JOIN msdb.dbo.backupmediafamily AS mf ON mf.media_set_id = bs.media_set_id \
WHERE bs.database_name = {} AND bs.type <> 'L' AND bs.description = {} ORDER BY bs.backup_finish_date DESC",
        quote_str(database),
        quote_str(description)
    )
}

/// Progress of another session's BACKUP/RESTORE (needs VIEW SERVER STATE for other sessions).
pub fn request_progress(spid: i32) -> String {
    format!(
        "SELECT percent_complete, estimated_completion_time, command FROM sys.dm_exec_requests WHERE session_id = {spid}"
    )
}

/// The state of a database (`ONLINE`, `RESTORING`, ...), no row when it does not exist.
pub fn database_state(database: &str) -> String {
    format!(
        "SELECT name, state_desc FROM sys.databases WHERE name = {}",
        quote_str(database)
    )
}

/// `IF DB_ID(...) IS NOT NULL DROP DATABASE`: SQL Server 2014 and older have no `DROP DATABASE
/// IF EXISTS` (Microsoft Learn, DROP DATABASE: IF EXISTS needs SQL Server 2016 (13.x)).
pub fn drop_database_if_exists(database: &str) -> String {
    format!(
        "IF DB_ID({}) IS NOT NULL DROP DATABASE {}",
        quote_str(database),
        quote_ident(database)
    )
}

/// Renames a database (its files keep their names): how a restore under a temporary name takes
/// the target name only once it is complete and checked.
pub fn rename_database(from: &str, to: &str) -> String {
    format!(
        "ALTER DATABASE {} MODIFY NAME = {}",
        quote_ident(from),
        quote_ident(to)
    )
}

/// `SELECT [Id], [JSON] FROM [db].[dbo].[table]`, optionally for one Id.
pub fn select_json(database: &str, table: &str, id: Option<&str>) -> String {
    let mut s = format!(
        "SELECT [Id], [JSON] FROM {}.[dbo].{}",
        quote_ident(database),
        quote_ident(table)
    );
    if let Some(id) = id {
        s.push_str(&format!(" WHERE [Id] = {}", quote_str(id)));
    }
    s
}

/// `UPDATE [db].[dbo].[table] SET [JSON] = N'...' WHERE [Id] = N'...'`.
pub fn update_json(database: &str, table: &str, id: &str, json: &str) -> String {
    format!(
        "UPDATE {}.[dbo].{} SET [JSON] = {} WHERE [Id] = {}",
        quote_ident(database),
        quote_ident(table),
        quote_str(json),
        quote_str(id)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_double_the_closing_bracket() {
        assert_eq!(quote_ident("OctopusDeploy"), "[OctopusDeploy]");
        assert_eq!(quote_ident("Octo]pus"), "[Octo]]pus]");
        assert_eq!(quote_ident("a]]b[c"), "[a]]]]b[c]");
    }

    #[test]
    fn strings_double_the_quote_and_are_unicode() {
        assert_eq!(quote_str(r"C:\it's\x.bak"), r"N'C:\it''s\x.bak'");
        assert_eq!(quote_str("Ünïcödé"), "N'Ünïcödé'");
    }

    #[test]
    fn backup_statement_has_the_safe_options_and_every_stripe() {
        let s = backup_database(
            "Octo]pus",
            &["/s/a'1.bak".into(), "/s/a2.bak".into()],
            5,
            "set 1",
        );
        assert_eq!(
            s,
            "BACKUP DATABASE [Octo]]pus] TO DISK = N'/s/a''1.bak', DISK = N'/s/a2.bak' WITH COPY_ONLY, CHECKSUM, NO_COMPRESSION, FORMAT, INIT, STATS = 5, NAME = N'Octo]pus octobackup', DESCRIPTION = N'set 1'"
        );
    }

    #[test]
    fn restore_statements() {
        assert_eq!(
            restore_verifyonly(&["x.bak".into()]),
            "RESTORE VERIFYONLY FROM DISK = N'x.bak' WITH CHECKSUM, STATS = 10"
        );
        let r = restore_database(
            "New'Db",
            &["x.bak".into()],
            &[
                ("Octo".into(), "/d/n.mdf".into()),
                ("Octo_log".into(), "/d/n.ldf".into()),
            ],
            true,
            10,
        );
        assert_eq!(
            r,
            "RESTORE DATABASE [New'Db] FROM DISK = N'x.bak' WITH MOVE N'Octo' TO N'/d/n.mdf', MOVE N'Octo_log' TO N'/d/n.ldf', REPLACE, RECOVERY, STATS = 10"
        );
        assert!(!restore_database("d", &["x".into()], &[], false, 0).contains("REPLACE"));
        assert_eq!(
            dbcc_checkdb("O'x"),
            "DBCC CHECKDB (N'O''x') WITH NO_INFOMSGS"
        );
        assert_eq!(drop_database("a]b"), "DROP DATABASE [a]]b]");
    }

    #[test]
    fn lookups_quote_their_literals() {
        assert_eq!(database_id("O'D"), "SELECT DB_ID(N'O''D') AS DatabaseId");
        assert!(backupset_row("x'y", "octobackup set 1'2").contains(
            "WHERE bs.database_name = N'x''y' AND bs.type <> 'L' AND bs.description = N'octobackup set 1''2' ORDER BY"
        ));
    }

    #[test]
    fn restore_helpers_quote_names_and_json() {
        assert_eq!(
            rename_database("a]b_tmp", "a]b"),
            "ALTER DATABASE [a]]b_tmp] MODIFY NAME = [a]]b]"
        );
        assert_eq!(
            drop_database_if_exists("x']y"),
            "IF DB_ID(N'x'']y') IS NOT NULL DROP DATABASE [x']]y]"
        );
        assert_eq!(
            database_state("O'x"),
            "SELECT name, state_desc FROM sys.databases WHERE name = N'O''x'"
        );
        assert_eq!(
            select_json("Db", "Configuration", Some("installation")),
            "SELECT [Id], [JSON] FROM [Db].[dbo].[Configuration] WHERE [Id] = N'installation'"
        );
        assert_eq!(
            update_json("Db", "Configuration", "installation", r#"{"A":"it's"}"#),
            r#"UPDATE [Db].[dbo].[Configuration] SET [JSON] = N'{"A":"it''s"}' WHERE [Id] = N'installation'"#
        );
    }
}
