//! BACKUP DATABASE: files, stripes, appending, msdb history, errors, faults, throttling, ATTENTION.

use std::time::Duration;

use crate::common::*;
use sqlserver_sim::{Edition, SqlFault, TlsSupport};
use tiberius::numeric::Numeric;

/// The msdb history query octobackup sends (see README).
fn history_query(database: &str) -> String {
    format!(
        "SELECT TOP (1) bs.backup_set_uuid, bs.database_name, bs.first_lsn, bs.last_lsn, bs.checkpoint_lsn, \
         bs.database_backup_lsn, bs.backup_start_date, bs.backup_finish_date, bs.type, bs.is_copy_only, \
         bs.backup_size, bs.compressed_backup_size, bs.has_backup_checksums, bs.is_damaged, bs.database_guid, \
         bs.recovery_model, mf.physical_device_name FROM msdb.dbo.backupset AS bs JOIN msdb.dbo.backupmediafamily AS mf \
         ON mf.media_set_id = bs.media_set_id WHERE bs.database_name = {} ORDER BY bs.backup_finish_date DESC",
        quote_str(database)
    )
}

fn bak_path(lab: &TestServer, name: &str) -> String {
    lab.dir().join(name).to_string_lossy().into_owned()
}

#[tokio::test]
async fn backup_writes_a_file_and_the_msdb_row() {
    let lab = start_lab("backup", Edition::Developer, TlsSupport::NotSupported).await;
    attach_octopus(&lab, "Octopus");
    let mut client = connect(&lab).await;
    let path = bak_path(&lab, "octopus.bak");
    query(
        &mut client,
        &format!("BACKUP DATABASE [Octopus] TO DISK = {} WITH FORMAT, INIT, COPY_ONLY, CHECKSUM, STATS = 5", quote_str(&path)),
    )
    .await
    .unwrap();
    assert!(std::fs::metadata(&path).unwrap().len() > 256 * 8192);

    let rows = query(&mut client, &history_query("Octopus")).await.unwrap();
    assert_eq!(rows[0].len(), 1);
    let row = &rows[0][0];
    assert_eq!(row.get::<&str, _>("database_name"), Some("Octopus"));
    assert_eq!(row.get::<&str, _>("type"), Some("D"));
    assert_eq!(row.get::<bool, _>("is_copy_only"), Some(true));
    assert_eq!(row.get::<bool, _>("has_backup_checksums"), Some(true));
    assert_eq!(row.get::<bool, _>("is_damaged"), Some(false));
    assert_eq!(row.get::<&str, _>("recovery_model"), Some("FULL"));
    assert_eq!(
        row.get::<&str, _>("physical_device_name"),
        Some(path.as_str())
    );
    let first: Numeric = row.get("first_lsn").unwrap();
    let last: Numeric = row.get("last_lsn").unwrap();
    let checkpoint: Numeric = row.get("checkpoint_lsn").unwrap();
    assert!(
        first.value() > 0
            && first.value() <= checkpoint.value()
            && checkpoint.value() <= last.value()
    );
    let size: Numeric = row.get("backup_size").unwrap();
    let compressed: Numeric = row.get("compressed_backup_size").unwrap();
    assert!(size.value() > 0);
    assert_eq!(size.value(), compressed.value());
    let start: chrono::NaiveDateTime = row.get("backup_start_date").unwrap();
    let finish: chrono::NaiveDateTime = row.get("backup_finish_date").unwrap();
    assert!(start <= finish);
    let uuid: uuid::Uuid = row.get("backup_set_uuid").unwrap();
    let _guid: uuid::Uuid = row.get("database_guid").unwrap();

    // the optional filter on the set's uuid
    let filtered = format!(
        "SELECT bs.backup_set_uuid FROM msdb.dbo.backupset AS bs WHERE bs.database_name = N'Octopus' AND bs.backup_set_uuid = '{uuid}'"
    );
    assert_eq!(query(&mut client, &filtered).await.unwrap()[0].len(), 1);

    let started = lab.events_of("backup_started");
    assert_eq!(started.len(), 1);
    assert_eq!(started[0]["database"], "Octopus");
    assert_eq!(started[0]["files"][0], path.as_str());
    assert!(started[0]["spid"].as_u64().unwrap() >= 51);
    let finished = lab.events_of("backup_finished");
    assert_eq!(finished[0]["ok"], true);
    assert!(finished[0]["bytes"].as_u64().unwrap() > 0);

    // no backup of an unknown database
    let e = server_error(&mut client, "BACKUP DATABASE [Nope] TO DISK = N'x.bak'").await;
    assert_eq!(
        (e.code(), e.message()),
        (
            911,
            "Database 'Nope' does not exist. Make sure that the name is entered correctly."
        )
    );
    lab.server.shutdown().await;
}

#[tokio::test]
async fn striped_backup_needs_every_stripe() {
    let lab = start_lab("stripes", Edition::Enterprise, TlsSupport::NotSupported).await;
    attach_octopus(&lab, "Octopus");
    let mut client = connect(&lab).await;
    let (a, b) = (bak_path(&lab, "s1.bak"), bak_path(&lab, "s2.bak"));
    query(
        &mut client,
        &format!("BACKUP DATABASE [Octopus] TO DISK = {}, DISK = {} WITH FORMAT, INIT, CHECKSUM, MAXTRANSFERSIZE = 65536", quote_str(&a), quote_str(&b)),
    )
    .await
    .unwrap();
    let uuid: uuid::Uuid = query(&mut client, &history_query("Octopus")).await.unwrap()[0][0]
        .get("backup_set_uuid")
        .unwrap();
    let devices = query(
        &mut client,
        &format!(
            "SELECT mf.physical_device_name, mf.family_sequence_number FROM msdb.dbo.backupset AS bs \
             INNER JOIN msdb.dbo.backupmediafamily AS mf ON mf.media_set_id = bs.media_set_id \
             WHERE bs.backup_set_uuid = '{uuid}' ORDER BY mf.family_sequence_number"
        ),
    )
    .await
    .unwrap();
    let paths: Vec<&str> = devices[0]
        .iter()
        .map(|r| r.get::<&str, _>(0).unwrap())
        .collect();
    assert_eq!(paths, vec![a.as_str(), b.as_str()]);

    query(
        &mut client,
        &format!(
            "RESTORE VERIFYONLY FROM DISK = {}, DISK = {} WITH CHECKSUM",
            quote_str(&a),
            quote_str(&b)
        ),
    )
    .await
    .unwrap();
    let e = server_error(
        &mut client,
        &format!("RESTORE VERIFYONLY FROM DISK = {}", quote_str(&a)),
    )
    .await;
    assert_eq!(
        (e.code(), e.message()),
        (
            3132,
            "The media set has 2 media families but only 1 are provided. All members must be provided."
        )
    );
    let verified = lab.events_of("verify_finished");
    assert_eq!(verified.len(), 2);
    assert_eq!(verified[0]["ok"], true);
    assert_eq!(verified[1]["ok"], false);
    lab.server.shutdown().await;
}

#[tokio::test]
async fn backup_without_init_appends_a_set() {
    let lab = start_lab("append", Edition::Developer, TlsSupport::NotSupported).await;
    attach_octopus(&lab, "Octopus");
    let mut client = connect(&lab).await;
    let path = quote_str(&bak_path(&lab, "media.bak"));
    query(
        &mut client,
        &format!("BACKUP DATABASE [Octopus] TO DISK = {path} WITH NAME = N'first'"),
    )
    .await
    .unwrap();
    query(&mut client, &format!("BACKUP DATABASE [Octopus] TO DISK = {path} WITH NOINIT, NAME = N'second', DESCRIPTION = N'it''s the 2nd'"))
        .await
        .unwrap();
    let rows = query(
        &mut client,
        &format!("RESTORE HEADERONLY FROM DISK = {path}"),
    )
    .await
    .unwrap();
    assert_eq!(rows[0].len(), 2);
    assert_eq!(rows[0][0].get::<i16, _>("Position"), Some(1));
    assert_eq!(rows[0][1].get::<i16, _>("Position"), Some(2));
    assert_eq!(rows[0][0].get::<&str, _>("BackupName"), Some("first"));
    assert_eq!(
        rows[0][1].get::<&str, _>("BackupDescription"),
        Some("it's the 2nd")
    );
    assert_eq!(rows[0][1].get::<&str, _>("DatabaseName"), Some("Octopus"));
    assert_eq!(rows[0][1].get::<i16, _>("BackupType"), Some(1));
    assert_eq!(rows[0][1].get::<bool, _>("IsCopyOnly"), Some(false));
    // every backup starts with a checkpoint
    let first_checkpoint: Numeric = rows[0][0].get("CheckpointLSN").unwrap();
    let second_checkpoint: Numeric = rows[0][1].get("CheckpointLSN").unwrap();
    assert!(second_checkpoint.value() > first_checkpoint.value());
    // a full backup that is not COPY_ONLY becomes the differential base: the next one's DatabaseBackupLSN
    let base: Numeric = rows[0][1].get("DatabaseBackupLSN").unwrap();
    assert_eq!(base.value(), first_checkpoint.value());

    let positions = query(
        &mut client,
        "SELECT position FROM msdb.dbo.backupset ORDER BY backup_set_id",
    )
    .await
    .unwrap();
    let positions: Vec<i32> = positions[0]
        .iter()
        .map(|r| r.get::<i32, _>(0).unwrap())
        .collect();
    assert_eq!(positions, vec![1, 2]);
    query(
        &mut client,
        &format!("RESTORE VERIFYONLY FROM DISK = {path} WITH FILE = 2"),
    )
    .await
    .unwrap();
    let e = server_error(
        &mut client,
        &format!("RESTORE VERIFYONLY FROM DISK = {path} WITH FILE = 3"),
    )
    .await;
    assert_eq!(e.code(), 4038);
    // INIT starts over
    query(
        &mut client,
        &format!("BACKUP DATABASE [Octopus] TO DISK = {path} WITH INIT"),
    )
    .await
    .unwrap();
    let rows = query(
        &mut client,
        &format!("RESTORE HEADERONLY FROM DISK = {path}"),
    )
    .await
    .unwrap();
    assert_eq!(rows[0].len(), 1);
    lab.server.shutdown().await;
}

#[tokio::test]
async fn backup_errors_have_sql_server_numbers() {
    let lab = start_lab("backuperrors", Edition::Express, TlsSupport::NotSupported).await;
    attach_octopus(&lab, "Octopus");
    let mut client = connect(&lab).await;
    let good = quote_str(&bak_path(&lab, "ok.bak"));

    let e = server_error(
        &mut client,
        &format!("BACKUP DATABASE [Octopus] TO DISK = {good} WITH COMPRESSION"),
    )
    .await;
    assert_eq!(
        (e.code(), e.message()),
        (
            1844,
            "BACKUP DATABASE WITH COMPRESSION is not supported on Express Edition (64-bit)."
        )
    );

    let missing_dir = quote_str(&bak_path(&lab, "no/such/dir/x.bak"));
    let e = server_error(
        &mut client,
        &format!("BACKUP DATABASE [Octopus] TO DISK = {missing_dir}"),
    )
    .await;
    assert_eq!(e.code(), 3201);
    // Windows says error 3 for a missing folder, Linux error 2 (tds-divergences.md D6)
    let os_error = if cfg!(windows) {
        "Operating system error 3(The system cannot find the path specified.)."
    } else {
        "Operating system error 2(The system cannot find the file specified.)."
    };
    assert!(e.message().ends_with(os_error), "{}", e.message());

    let a_directory = quote_str(lab.dir().to_str().unwrap());
    let e = server_error(
        &mut client,
        &format!("BACKUP DATABASE [Octopus] TO DISK = {a_directory}"),
    )
    .await;
    assert_eq!(e.code(), 3201);
    assert!(
        e.message()
            .ends_with("Operating system error 5(Access is denied.)."),
        "{}",
        e.message()
    );

    let e = server_error(
        &mut client,
        &format!("BEGIN TRAN; BACKUP DATABASE [Octopus] TO DISK = {good}"),
    )
    .await;
    assert_eq!(
        (e.code(), e.message()),
        (
            3021,
            "Cannot perform a backup or restore operation within a transaction."
        )
    );
    query(&mut client, "ROLLBACK").await.unwrap();

    lab.server.inject(SqlFault::FailNextBackup {
        number: 3202,
        message: "Write on \"x\" failed: 112(There is not enough space on the disk.)".into(),
    });
    let e = server_error(
        &mut client,
        &format!("BACKUP DATABASE [Octopus] TO DISK = {good}"),
    )
    .await;
    assert_eq!(e.code(), 3202);
    assert!(e.message().contains("not enough space"));
    let finished = lab.events_of("backup_finished");
    assert_eq!(finished.last().unwrap()["ok"], false);
    assert!(
        finished.last().unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("3202")
    );
    // one-shot
    query(
        &mut client,
        &format!("BACKUP DATABASE [Octopus] TO DISK = {good} WITH FORMAT"),
    )
    .await
    .unwrap();

    let mut reader = connect_as(
        &lab,
        "reader",
        READER_PASSWORD,
        tiberius::EncryptionLevel::NotSupported,
    )
    .await
    .unwrap();
    let e = server_error(
        &mut reader,
        &format!("BACKUP DATABASE [Octopus] TO DISK = {good}"),
    )
    .await;
    assert_eq!(
        (e.code(), e.message()),
        (
            262,
            "BACKUP DATABASE permission denied in database 'Octopus'."
        )
    );
    lab.server.shutdown().await;
}

#[tokio::test]
async fn azure_sql_database_has_no_backup_to_disk() {
    let lab = start_lab("azure", Edition::AzureSqlDatabase, TlsSupport::Supported).await;
    attach_octopus(&lab, "Octopus");
    let mut client = connect(&lab).await;
    let e = server_error(&mut client, "BACKUP DATABASE [Octopus] TO DISK = N'x.bak'").await;
    assert_eq!(
        (e.code(), e.message()),
        (
            40510,
            "Statement 'BACKUP DATABASE' is not supported in this version of SQL Server."
        )
    );
    let e = server_error(&mut client, "USE [Octopus]").await;
    assert_eq!(e.code(), 40508);
    lab.server.shutdown().await;
}

#[tokio::test]
async fn verifyonly_detects_corrupt_truncated_missing_and_foreign_files() {
    let lab = start_lab("verify", Edition::Developer, TlsSupport::NotSupported).await;
    attach_octopus(&lab, "Octopus");
    let mut client = connect(&lab).await;
    let path = bak_path(&lab, "corrupt.bak");
    lab.server.inject(SqlFault::CorruptNextBackup);
    query(
        &mut client,
        &format!(
            "BACKUP DATABASE [Octopus] TO DISK = {} WITH CHECKSUM, FORMAT, INIT",
            quote_str(&path)
        ),
    )
    .await
    .unwrap();
    let e = server_error(
        &mut client,
        &format!(
            "RESTORE VERIFYONLY FROM DISK = {} WITH CHECKSUM",
            quote_str(&path)
        ),
    )
    .await;
    assert!(e.code() == 3183 || e.code() == 3189, "{e:?}");

    let truncated = bak_path(&lab, "truncated.bak");
    query(
        &mut client,
        &format!(
            "BACKUP DATABASE [Octopus] TO DISK = {} WITH CHECKSUM",
            quote_str(&truncated)
        ),
    )
    .await
    .unwrap();
    let len = std::fs::metadata(&truncated).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&truncated)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let e = server_error(
        &mut client,
        &format!("RESTORE VERIFYONLY FROM DISK = {}", quote_str(&truncated)),
    )
    .await;
    assert_eq!(
        (e.code(), e.message().to_string()),
        (
            3203,
            format!("Read on \"{truncated}\" failed: 38(Reached the end of the file.)")
        )
    );

    let missing = bak_path(&lab, "missing.bak");
    let e = server_error(
        &mut client,
        &format!("RESTORE VERIFYONLY FROM DISK = {}", quote_str(&missing)),
    )
    .await;
    assert_eq!(
        (e.code(), e.message().to_string()),
        (
            3201,
            format!(
                "Cannot open backup device '{missing}'. Operating system error 2(The system cannot find the file specified.)."
            )
        )
    );

    let foreign = bak_path(&lab, "foreign.bak");
    std::fs::write(&foreign, vec![0x42u8; 100_000]).unwrap();
    let e = server_error(
        &mut client,
        &format!("RESTORE VERIFYONLY FROM DISK = {}", quote_str(&foreign)),
    )
    .await;
    assert_eq!(e.code(), 3241);
    lab.server.shutdown().await;
}

#[tokio::test]
async fn dropped_connection_abandons_the_backup() {
    let lab = start_lab("dropconn", Edition::Developer, TlsSupport::NotSupported).await;
    attach_octopus(&lab, "Octopus");
    let mut client = connect(&lab).await;
    let path = bak_path(&lab, "dropped.bak");
    lab.server.inject(SqlFault::DropConnectionDuringNextBackup);
    let result = query(
        &mut client,
        &format!(
            "BACKUP DATABASE [Octopus] TO DISK = {} WITH MAXTRANSFERSIZE = 65536",
            quote_str(&path)
        ),
    )
    .await;
    assert!(result.is_err(), "the connection should have been dropped");
    assert!(
        !std::path::Path::new(&path).exists(),
        "an abandoned backup leaves no file"
    );
    let finished = lab.events_of("backup_finished");
    assert_eq!(finished[0]["ok"], false);
    let mut other = connect(&lab).await;
    assert!(query(&mut other, &history_query("Octopus")).await.unwrap()[0].is_empty());
    lab.server.shutdown().await;
}

#[tokio::test]
async fn throttled_backup_shows_progress_and_stops_on_attention() {
    let lab = start_lab("attention", Edition::Developer, TlsSupport::Supported).await;
    attach_with_pages(&lab, "Octopus", 512);
    let mut client = connect_as(&lab, "sa", SA_PASSWORD, tiberius::EncryptionLevel::Required)
        .await
        .unwrap();
    let spid: i16 = query(&mut client, "SELECT @@SPID").await.unwrap()[0][0]
        .get(0)
        .unwrap();
    let path = bak_path(&lab, "slow.bak");
    lab.server.set_backup_rate(Some(256 * 1024));
    let sql = format!(
        "BACKUP DATABASE [Octopus] TO DISK = {} WITH MAXTRANSFERSIZE = 65536, STATS = 1",
        quote_str(&path)
    );

    // Another session watches sys.dm_exec_requests while the backup runs.
    let watcher = {
        let mut monitor = connect(&lab).await;
        tokio::spawn(async move {
            let watch = format!(
                "SELECT percent_complete, estimated_completion_time, command FROM sys.dm_exec_requests WHERE session_id = {spid}"
            );
            loop {
                let rows = query(&mut monitor, &watch).await.unwrap();
                if let Some(row) = rows[0].first() {
                    let percent: f32 = row.get("percent_complete").unwrap();
                    if percent > 0.0 {
                        assert!(percent < 100.0);
                        assert_eq!(row.get::<&str, _>("command"), Some("BACKUP DATABASE"));
                        assert!(row.get::<i64, _>("estimated_completion_time").unwrap() >= 0);
                        return monitor;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let running = tokio::time::timeout(Duration::from_secs(60), async {
        let stream = client.simple_query(&sql).await?;
        // the backup is slow: this only returns when it ends
        stream.into_results().await
    });
    // dropping the in-flight query after the watcher saw progress, then ATTENTION
    let mut monitor = tokio::select! {
        result = running => panic!("the throttled backup finished before the watcher saw it: {result:?}"),
        monitor = watcher => monitor.unwrap(),
    };
    client.cancel_query().await.unwrap();
    // the session answered DONE(ATTN) and is usable again
    assert_eq!(
        query(&mut client, "SELECT 5").await.unwrap()[0][0].get::<i32, _>(0),
        Some(5)
    );
    lab.server.set_backup_rate(None);
    assert!(
        !std::path::Path::new(&path).exists(),
        "a cancelled backup leaves no file"
    );
    let finished = lab.events_of("backup_finished");
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0]["ok"], false);
    let watch =
        format!("SELECT percent_complete FROM sys.dm_exec_requests WHERE session_id = {spid}");
    assert!(query(&mut monitor, &watch).await.unwrap()[0].is_empty());
    assert!(
        query(&mut monitor, &history_query("Octopus"))
            .await
            .unwrap()[0]
            .is_empty()
    );
    lab.server.shutdown().await;
}

#[tokio::test]
async fn quoting_of_brackets_and_apostrophes_end_to_end() {
    let lab = start_lab("quoting", Edition::Developer, TlsSupport::NotSupported).await;
    let name = "Octo]pus";
    attach_octopus(&lab, name);
    let mut client = connect(&lab).await;
    let dir = lab.dir().join("it's");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("x.bak").to_string_lossy().into_owned();
    query(
        &mut client,
        &format!(
            "BACKUP DATABASE {} TO DISK = {} WITH FORMAT, INIT, CHECKSUM",
            quote_ident(name),
            quote_str(&path)
        ),
    )
    .await
    .unwrap();
    let rows = query(&mut client, &history_query(name)).await.unwrap();
    assert_eq!(rows[0][0].get::<&str, _>("database_name"), Some(name));
    assert_eq!(
        rows[0][0].get::<&str, _>("physical_device_name"),
        Some(path.as_str())
    );
    query(
        &mut client,
        &format!(
            "RESTORE VERIFYONLY FROM DISK = {} WITH CHECKSUM",
            quote_str(&path)
        ),
    )
    .await
    .unwrap();
    let copy = "Octo]pus 'copy'";
    let files = query(
        &mut client,
        &format!("RESTORE FILELISTONLY FROM DISK = {}", quote_str(&path)),
    )
    .await
    .unwrap();
    let logical: Vec<String> = files[0]
        .iter()
        .map(|r| r.get::<&str, _>("LogicalName").unwrap().to_string())
        .collect();
    let data = dir.join("copy's.mdf").to_string_lossy().into_owned();
    let log = dir.join("copy's.ldf").to_string_lossy().into_owned();
    query(
        &mut client,
        &format!(
            "RESTORE DATABASE {} FROM DISK = {} WITH MOVE {} TO {}, MOVE {} TO {}, RECOVERY",
            quote_ident(copy),
            quote_str(&path),
            quote_str(&logical[0]),
            quote_str(&data),
            quote_str(&logical[1]),
            quote_str(&log)
        ),
    )
    .await
    .unwrap();
    let rows = query(
        &mut client,
        &format!(
            "SELECT [Id] FROM {}.[dbo].[Configuration] ORDER BY [Id]",
            quote_ident(copy)
        ),
    )
    .await
    .unwrap();
    assert_eq!(rows[0].len(), 2);
    let id: Option<i32> = query(&mut client, &format!("SELECT DB_ID({})", quote_str(copy)))
        .await
        .unwrap()[0][0]
        .get(0);
    assert!(id.is_some());
    assert!(lab.server.databases().contains(&copy.to_string()));
    lab.server.shutdown().await;
}

#[tokio::test]
async fn lock_database_holds_backups_off_the_files() {
    let lab = start_lab("lockdb", Edition::Developer, TlsSupport::NotSupported).await;
    let (data, log) = attach_octopus(&lab, "Octopus");
    assert!(lab.server.lock_database("Nope").await.is_none());
    let guard = lab.server.lock_database("octopus").await.unwrap();
    assert_eq!(
        (guard.data_file.clone(), guard.log_file.clone()),
        (data.clone(), log)
    );
    let path = bak_path(&lab, "locked.bak");
    let backup = {
        let mut client = connect(&lab).await;
        let sql = format!("BACKUP DATABASE [Octopus] TO DISK = {}", quote_str(&path));
        tokio::spawn(async move { query(&mut client, &sql).await.map(|_| ()) })
    };
    // the backup starts (event) but cannot read the files while the guard is held
    while lab.events_of("backup_started").is_empty() {
        tokio::task::yield_now().await;
    }
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert!(lab.events_of("backup_finished").is_empty());
    // work on the files, as the lab's churn does
    sqlserver_files::image::churn(&data, 1, 0.1, 4, 7).unwrap();
    drop(guard);
    backup.await.unwrap().unwrap();
    assert_eq!(lab.events_of("backup_finished")[0]["ok"], true);
    lab.server.shutdown().await;
}

/// CHECKDB WITH NO_INFOMSGS sends nothing for minutes on a big database; a second connection sees
/// it run in sys.dm_exec_requests with a growing percent_complete, and ATTENTION stops it.
#[tokio::test]
async fn silent_checkdb_shows_progress_in_dm_exec_requests_and_stops_on_attention() {
    let lab = start_lab(
        "checkdb-progress",
        Edition::Developer,
        TlsSupport::NotSupported,
    )
    .await;
    attach_octopus(&lab, "Octopus");
    lab.server.inject(SqlFault::SilenceBeforeNext {
        command: "DBCC TABLE CHECK".into(),
        silence: Duration::from_secs(600),
    });
    let mut client = connect(&lab).await;
    let spid: i16 = query(&mut client, "SELECT @@SPID").await.unwrap()[0][0]
        .get(0)
        .unwrap();
    let mut monitor = connect(&lab).await;
    let watch = format!(
        "SELECT percent_complete, command FROM sys.dm_exec_requests WHERE session_id = {spid}"
    );
    let running = async {
        client
            .simple_query("DBCC CHECKDB (N'Octopus') WITH NO_INFOMSGS")
            .await?
            .into_results()
            .await
    };
    let watcher = async {
        loop {
            let rows = query(&mut monitor, &watch).await.unwrap();
            if let Some(row) = rows[0].first() {
                let percent: f32 = row.get("percent_complete").unwrap();
                if percent > 0.0 {
                    assert!(percent < 100.0);
                    assert_eq!(row.get::<&str, _>("command"), Some("DBCC TABLE CHECK"));
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::select! {
        r = running => panic!("CHECKDB ended during its silence: {r:?}"),
        () = watcher => {}
    }
    client.cancel_query().await.unwrap();
    assert_eq!(lab.events_of("attention_acknowledged").len(), 1);
    assert!(query(&mut monitor, &watch).await.unwrap()[0].is_empty());
    assert_eq!(
        query(&mut client, "SELECT 5").await.unwrap()[0][0].get::<i32, _>(0),
        Some(5)
    );
    lab.server.shutdown().await;
}
