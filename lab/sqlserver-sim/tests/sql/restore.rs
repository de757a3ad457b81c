//! RESTORE HEADERONLY/FILELISTONLY/DATABASE, the REPLACE rules, DROP DATABASE, DBCC CHECKDB,
//! and a restarted server keeping its catalog.

use crate::common::*;
use sqlserver_files::image;
use sqlserver_sim::{Edition, TlsSupport};
use tiberius::numeric::Numeric;

async fn backup(client: &mut TdsClient, database: &str, path: &str) {
    query(
        client,
        &format!(
            "BACKUP DATABASE {} TO DISK = {} WITH FORMAT, INIT, CHECKSUM",
            quote_ident(database),
            quote_str(path)
        ),
    )
    .await
    .unwrap();
}

fn restore_with_move(target: &str, bak: &str, data: &str, log: &str, extra: &str) -> String {
    format!(
        "RESTORE DATABASE {} FROM DISK = {} WITH MOVE N'Octopus' TO {}, MOVE N'Octopus_log' TO {}{extra}, RECOVERY, STATS = 10",
        quote_ident(target),
        quote_str(bak),
        quote_str(data),
        quote_str(log)
    )
}

#[tokio::test]
async fn headeronly_and_filelistonly_describe_the_set() {
    let lab = start_lab("headers", Edition::Developer, TlsSupport::NotSupported).await;
    let (data, log) = attach_octopus(&lab, "Octopus");
    let mut client = connect(&lab).await;
    let bak = lab.dir().join("h.bak").to_string_lossy().into_owned();
    backup(&mut client, "Octopus", &bak).await;
    let rows = query(
        &mut client,
        &format!("RESTORE HEADERONLY FROM DISK = {}", quote_str(&bak)),
    )
    .await
    .unwrap();
    let h = &rows[0][0];
    assert_eq!(h.get::<&str, _>("DatabaseName"), Some("Octopus"));
    assert_eq!(h.get::<i16, _>("Position"), Some(1));
    assert_eq!(h.get::<bool, _>("HasBackupChecksums"), Some(true));
    assert_eq!(
        h.get::<&str, _>("ServerName"),
        query(&mut client, "SELECT @@SERVERNAME").await.unwrap()[0][0].get::<&str, _>(0)
    );
    assert_eq!(h.get::<i32, _>("SoftwareVersionMajor"), Some(16));
    assert_eq!(h.get::<&str, _>("RecoveryModel"), Some("FULL"));
    assert_eq!(h.get::<&str, _>("BackupTypeDescription"), Some("Database"));
    let size: Numeric = h.get("BackupSize").unwrap();
    assert!(size.value() > 0);
    let msdb_uuid: uuid::Uuid = query(
        &mut client,
        "SELECT backup_set_uuid FROM msdb.dbo.backupset",
    )
    .await
    .unwrap()[0][0]
        .get(0)
        .unwrap();
    assert_eq!(h.get::<uuid::Uuid, _>("BackupSetGUID"), Some(msdb_uuid));

    let rows = query(
        &mut client,
        &format!("RESTORE FILELISTONLY FROM DISK = {}", quote_str(&bak)),
    )
    .await
    .unwrap();
    assert_eq!(rows[0].len(), 2);
    let (d, l) = (&rows[0][0], &rows[0][1]);
    assert_eq!(
        (d.get::<&str, _>("LogicalName"), d.get::<&str, _>("Type")),
        (Some("Octopus"), Some("D"))
    );
    assert_eq!(
        (l.get::<&str, _>("LogicalName"), l.get::<&str, _>("Type")),
        (Some("Octopus_log"), Some("L"))
    );
    assert_eq!(
        d.get::<&str, _>("PhysicalName"),
        Some(data.to_str().unwrap())
    );
    assert_eq!(
        l.get::<&str, _>("PhysicalName"),
        Some(log.to_str().unwrap())
    );
    assert_eq!(d.get::<&str, _>("FileGroupName"), Some("PRIMARY"));
    assert_eq!(l.get::<&str, _>("FileGroupName"), None);
    let data_size: Numeric = d.get("Size").unwrap();
    assert_eq!(
        data_size.value() as u64,
        std::fs::metadata(&data).unwrap().len()
    );

    let missing = lab.dir().join("nope.bak").to_string_lossy().into_owned();
    let e = server_error(
        &mut client,
        &format!("RESTORE HEADERONLY FROM DISK = {}", quote_str(&missing)),
    )
    .await;
    assert_eq!(e.code(), 3201);
    lab.server.shutdown().await;
}

#[tokio::test]
async fn restore_with_move_creates_a_new_database() {
    let lab = start_lab("restore", Edition::Developer, TlsSupport::NotSupported).await;
    attach_octopus(&lab, "Octopus");
    let mut client = connect(&lab).await;
    let bak = lab.dir().join("r.bak").to_string_lossy().into_owned();
    backup(&mut client, "Octopus", &bak).await;
    let data = lab.dir().join("Scratch.mdf").to_string_lossy().into_owned();
    let log = lab.dir().join("Scratch.ldf").to_string_lossy().into_owned();
    query(
        &mut client,
        &restore_with_move("OctopusDrill", &bak, &data, &log, ""),
    )
    .await
    .unwrap();
    assert_eq!(
        lab.server.databases(),
        vec!["Octopus".to_string(), "OctopusDrill".to_string()]
    );
    assert_eq!(
        lab.server.database_files("OctopusDrill").map(|(d, l)| (
            d.to_string_lossy().into_owned(),
            l.to_string_lossy().into_owned()
        )),
        Some((data.clone(), log.clone()))
    );
    assert_eq!(
        image::read_header(std::path::Path::new(&data))
            .unwrap()
            .name,
        "OctopusDrill"
    );
    let rows = query(
        &mut client,
        "SELECT [Id] FROM [OctopusDrill].[dbo].[Configuration] ORDER BY [Id] DESC",
    )
    .await
    .unwrap();
    let ids: Vec<&str> = rows[0]
        .iter()
        .map(|r| r.get::<&str, _>(0).unwrap())
        .collect();
    assert_eq!(ids, vec!["upgrade-availability", "server-folders"]);
    assert_eq!(
        query(&mut client, "SELECT DB_ID(N'OctopusDrill')")
            .await
            .unwrap()[0][0]
            .get::<i32, _>(0),
        Some(6)
    );
    let history = query(
        &mut client,
        "SELECT destination_database_name, restore_type, [replace] FROM msdb.dbo.restorehistory",
    )
    .await
    .unwrap();
    assert_eq!(history[0][0].get::<&str, _>(0), Some("OctopusDrill"));
    assert_eq!(history[0][0].get::<&str, _>(1), Some("D"));
    let started = lab.events_of("restore_started");
    assert_eq!(started[0]["database"], "OctopusDrill");
    let finished = lab.events_of("restore_finished");
    assert_eq!(finished[0]["ok"], true);
    // CHECKDB on the restored copy is clean
    query(
        &mut client,
        "DBCC CHECKDB (N'OctopusDrill') WITH NO_INFOMSGS",
    )
    .await
    .unwrap();
    query(&mut client, "DBCC CHECKDB ([OctopusDrill])")
        .await
        .unwrap();
    lab.server.shutdown().await;
}

#[tokio::test]
async fn restore_refuses_to_overwrite_without_replace() {
    let lab = start_lab("replace", Edition::Developer, TlsSupport::NotSupported).await;
    attach_octopus(&lab, "Octopus");
    attach_octopus(&lab, "Other");
    let mut client = connect(&lab).await;
    let bak = lab.dir().join("o.bak").to_string_lossy().into_owned();
    backup(&mut client, "Octopus", &bak).await;

    // another database's name: Msg 3154
    let data = lab.dir().join("x.mdf").to_string_lossy().into_owned();
    let log = lab.dir().join("x.ldf").to_string_lossy().into_owned();
    let e = server_error(
        &mut client,
        &restore_with_move("Other", &bak, &data, &log, ""),
    )
    .await;
    assert_eq!(
        (e.code(), e.message()),
        (
            3154,
            "The backup set holds a backup of a database other than the existing 'Other' database."
        )
    );

    // the same database in FULL recovery: the tail of the log, Msg 3159
    let e = server_error(
        &mut client,
        &format!("RESTORE DATABASE [Octopus] FROM DISK = {}", quote_str(&bak)),
    )
    .await;
    assert_eq!(e.code(), 3159);

    // a new name without MOVE: the original files belong to Octopus, Msg 1834
    let e = server_error(
        &mut client,
        &format!("RESTORE DATABASE [Third] FROM DISK = {}", quote_str(&bak)),
    )
    .await;
    assert_eq!(e.code(), 1834);
    assert!(
        e.message()
            .contains("It is being used by database 'Octopus'."),
        "{}",
        e.message()
    );

    // a file that exists but belongs to no database: Msg 3142 unless REPLACE
    std::fs::write(&data, b"old junk").unwrap();
    let e = server_error(
        &mut client,
        &restore_with_move("Third", &bak, &data, &log, ""),
    )
    .await;
    assert_eq!(e.code(), 3142);
    // a folder that does not exist: Msg 5133
    let nowhere = lab
        .dir()
        .join("no")
        .join("where.mdf")
        .to_string_lossy()
        .into_owned();
    let e = server_error(
        &mut client,
        &restore_with_move("Third", &bak, &nowhere, &log, ""),
    )
    .await;
    assert_eq!(e.code(), 5133);
    // a logical name that is not in the backup: Msg 3234
    let e = server_error(
        &mut client,
        &format!(
            "RESTORE DATABASE [Third] FROM DISK = {} WITH MOVE N'Nope' TO {}",
            quote_str(&bak),
            quote_str(&data)
        ),
    )
    .await;
    assert_eq!(e.code(), 3234);

    // in use by another session: Msg 3101; by this one: Msg 3102
    let mut other = connect(&lab).await;
    query(&mut other, "USE [Other]").await.unwrap();
    let e = server_error(
        &mut client,
        &restore_with_move("Other", &bak, &data, &log, ", REPLACE"),
    )
    .await;
    assert_eq!(e.code(), 3101);
    drop(other);
    query(&mut client, "USE [Other]").await.unwrap();
    let e = server_error(
        &mut client,
        &restore_with_move("Other", &bak, &data, &log, ", REPLACE"),
    )
    .await;
    assert_eq!(e.code(), 3102);
    query(&mut client, "USE [master]").await.unwrap();

    // REPLACE overwrites: Other now holds Octopus' content under its own name
    let mut replaced = false;
    for _ in 0..100 {
        match query(
            &mut client,
            &restore_with_move("Other", &bak, &data, &log, ", REPLACE"),
        )
        .await
        {
            Ok(_) => {
                replaced = true;
                break;
            }
            // the closed session may not be gone yet
            Err(tiberius::error::Error::Server(e)) if e.code() == 3101 => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(replaced);
    assert_eq!(
        lab.server
            .database_files("Other")
            .unwrap()
            .0
            .to_string_lossy(),
        data
    );
    assert_eq!(
        image::read_header(std::path::Path::new(&data))
            .unwrap()
            .name,
        "Other"
    );
    lab.server.shutdown().await;
}

#[tokio::test]
async fn drop_database_removes_files_and_entry() {
    let lab = start_lab("drop", Edition::Developer, TlsSupport::NotSupported).await;
    let (data, log) = attach_octopus(&lab, "Gone");
    let mut client = connect(&lab).await;
    query(&mut client, "DROP DATABASE [Gone]").await.unwrap();
    assert!(!data.exists() && !log.exists());
    assert!(lab.server.databases().is_empty());
    assert_eq!(lab.events_of("database_dropped")[0]["database"], "Gone");
    let e = server_error(&mut client, "DROP DATABASE [Gone]").await;
    assert_eq!(
        (e.code(), e.message()),
        (
            3701,
            "Cannot drop the database 'Gone', because it does not exist or you do not have permission."
        )
    );
    query(&mut client, "DROP DATABASE IF EXISTS [Gone]")
        .await
        .unwrap();
    let e = server_error(&mut client, "DROP DATABASE [master]").await;
    assert_eq!(e.code(), 3708);
    attach_octopus(&lab, "Busy");
    query(&mut client, "USE [Busy]").await.unwrap();
    let e = server_error(&mut client, "DROP DATABASE [Busy]").await;
    assert_eq!(
        (e.code(), e.message()),
        (
            3702,
            "Cannot drop database \"Busy\" because it is currently in use."
        )
    );
    lab.server.shutdown().await;
}

#[tokio::test]
async fn checkdb_reports_a_corrupt_page() {
    let lab = start_lab("checkdb", Edition::Developer, TlsSupport::NotSupported).await;
    let (data, _) = attach_octopus(&lab, "Octopus");
    let mut client = connect(&lab).await;
    query(&mut client, "DBCC CHECKDB (N'Octopus') WITH NO_INFOMSGS")
        .await
        .unwrap();
    let page = image::corrupt_one_page(&data).unwrap();
    let e = server_error(&mut client, "DBCC CHECKDB (N'Octopus') WITH NO_INFOMSGS").await;
    assert_eq!(e.code(), 8928);
    assert!(
        e.message().contains(&format!("Page (1:{page})")),
        "{}",
        e.message()
    );
    let e = server_error(&mut client, "DBCC CHECKDB (N'Nope')").await;
    assert_eq!(e.code(), 2520);
    let mut reader = connect_as(
        &lab,
        "reader",
        READER_PASSWORD,
        tiberius::EncryptionLevel::NotSupported,
    )
    .await
    .unwrap();
    let e = server_error(&mut reader, "DBCC CHECKDB (N'Octopus')").await;
    assert_eq!(e.code(), 7983);
    lab.server.shutdown().await;
}

#[tokio::test]
async fn a_restarted_server_keeps_databases_and_history() {
    let scratch = Scratch::new("restart");
    let events: Events = Default::default();
    let first = sqlserver_sim::start(config(
        scratch.path(),
        Edition::Developer,
        TlsSupport::NotSupported,
        events.clone(),
    ))
    .await
    .unwrap();
    let lab = TestServer {
        server: first,
        scratch,
        events,
    };
    attach_octopus(&lab, "Octopus");
    let mut client = connect(&lab).await;
    let bak = lab.dir().join("keep.bak").to_string_lossy().into_owned();
    backup(&mut client, "Octopus", &bak).await;
    drop(client);
    let TestServer {
        server,
        scratch,
        events,
    } = lab;
    server.shutdown().await;

    let second = sqlserver_sim::start(config(
        scratch.path(),
        Edition::Developer,
        TlsSupport::NotSupported,
        events.clone(),
    ))
    .await
    .unwrap();
    let lab = TestServer {
        server: second,
        scratch,
        events,
    };
    assert_eq!(lab.server.databases(), vec!["Octopus".to_string()]);
    let mut client = connect(&lab).await;
    let rows = query(&mut client, "SELECT database_name FROM msdb.dbo.backupset")
        .await
        .unwrap();
    assert_eq!(rows[0][0].get::<&str, _>(0), Some("Octopus"));
    assert_eq!(
        query(&mut client, "SELECT DB_ID(N'Octopus')")
            .await
            .unwrap()[0][0]
            .get::<i32, _>(0),
        Some(5)
    );
    lab.server.shutdown().await;
}

#[tokio::test]
async fn alter_database_modify_name_renames_in_place() {
    let lab = start_lab("rename", Edition::Developer, TlsSupport::NotSupported).await;
    let (data, _log) = attach_octopus(&lab, "Octo]pus_restoring");
    attach_octopus(&lab, "Taken");
    let mut client = connect(&lab).await;
    query(
        &mut client,
        "ALTER DATABASE [Octo]]pus_restoring] MODIFY NAME = [Octo]]pus]",
    )
    .await
    .unwrap();
    assert!(lab.server.databases().contains(&"Octo]pus".to_string()));
    assert!(
        !lab.server
            .databases()
            .contains(&"Octo]pus_restoring".to_string())
    );
    assert_eq!(
        sqlserver_files::image::read_header(&data).unwrap().name,
        "Octo]pus"
    );
    assert_eq!(
        lab.server.database_files("Octo]pus").unwrap().0,
        data,
        "files stay where they are"
    );
    assert_eq!(lab.events_of("database_renamed")[0]["new_name"], "Octo]pus");
    let e = server_error(
        &mut client,
        "ALTER DATABASE [Octo]]pus] MODIFY NAME = [Taken]",
    )
    .await;
    assert_eq!(e.code(), 1801);
    let e = server_error(
        &mut client,
        "ALTER DATABASE [Missing] MODIFY NAME = [Other]",
    )
    .await;
    assert_eq!(e.code(), 5011);
    let e = server_error(&mut client, "ALTER DATABASE [Taken] SET OFFLINE").await;
    assert!(e.code() == 102 || e.code() == 156, "{}", e.message());
}
