//! What the server says about itself and where it runs: the update level and build date of known
//! builds (tds-divergences.md D13), msdb.dbo.backupset's documented columns (D8), and SQL Server
//! 2022 on Linux in its container: its banner, host info, default folders, paths seen through
//! volumes and OS error 2 for a missing folder (D6).

use std::sync::Arc;

use crate::common::*;
use sqlserver_files::image;
use sqlserver_sim::{Edition, Platform, ServerOptions, TlsSupport, Volume};

async fn start_as(name: &str, version: &str, platform: Platform) -> TestServer {
    let scratch = Scratch::new(name);
    let events: Events = Arc::default();
    let mut config = config(
        scratch.path(),
        Edition::Developer,
        TlsSupport::NotSupported,
        events.clone(),
    );
    config.product_version = version.into();
    config.options = ServerOptions {
        platform,
        ..Default::default()
    };
    let server = sqlserver_sim::start(config).await.unwrap();
    TestServer {
        server,
        scratch,
        events,
    }
}

async fn text(client: &mut TdsClient, sql: &str) -> Vec<Option<String>> {
    let rows = query(client, sql).await.unwrap();
    let row = &rows[0][0];
    (0..row.len())
        .map(|i| row.try_get::<&str, _>(i).ok().flatten().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn known_builds_say_their_update_level_and_build_date() {
    let sql = "SELECT CAST(SERVERPROPERTY('ProductLevel') AS nvarchar(128)), \
               CAST(SERVERPROPERTY('ProductUpdateLevel') AS nvarchar(128)), \
               CAST(SERVERPROPERTY('ProductUpdateReference') AS nvarchar(128)), @@VERSION";
    for (version, level, update, reference, banner) in [
        (
            "16.0.4135.4",
            "RTM",
            Some("CU14"),
            Some("KB5038325"),
            "Microsoft SQL Server 2022 (RTM-CU14) (KB5038325) - 16.0.4135.4 (X64) \n\tJul 10 2024 14:09:09 \n\tCopyright (C) 2022 Microsoft Corporation\n\tDeveloper Edition (64-bit) on ",
        ),
        (
            "16.0.1000.6",
            "RTM",
            None,
            None,
            "Microsoft SQL Server 2022 (RTM) - 16.0.1000.6 (X64) \n\tOct  8 2022 05:58:25 \n\tCopyright (C) 2022 Microsoft Corporation\n\t",
        ),
        (
            "12.0.6024.0",
            "SP3",
            None,
            Some("KB4022619"),
            "Microsoft SQL Server 2014 (SP3) (KB4022619) - 12.0.6024.0 (X64) \n\tSep  7 2018 01:37:51 \n\tCopyright (c) Microsoft Corporation\n\t",
        ),
    ] {
        let lab = start_as(&format!("build-{version}"), version, Platform::Native).await;
        let mut client = connect(&lab).await;
        let got = text(&mut client, sql).await;
        assert_eq!(got[0].as_deref(), Some(level), "{version}");
        assert_eq!(got[1].as_deref(), update, "{version}");
        assert_eq!(got[2].as_deref(), reference, "{version}");
        let v = got[3].clone().unwrap();
        assert!(v.starts_with(banner), "{version}: {v:?}");
        lab.server.shutdown().await;
    }
}

#[tokio::test]
async fn msdb_backupset_has_every_documented_column() {
    for (version, count) in [("16.0.4135.4", 65), ("15.0.2000.5", 63)] {
        let lab = start_as(&format!("backupset-{version}"), version, Platform::Native).await;
        attach_octopus(&lab, "Octopus");
        let mut client = connect(&lab).await;
        let bak = lab.dir().join("b.bak");
        query(
            &mut client,
            &format!(
                "BACKUP DATABASE [Octopus] TO DISK = {} WITH CHECKSUM",
                quote_str(&bak.to_string_lossy())
            ),
        )
        .await
        .unwrap();
        let rows = query(&mut client, "SELECT * FROM msdb.dbo.backupset")
            .await
            .unwrap();
        let row = &rows[0][0];
        let names: Vec<&str> = row.columns().iter().map(|c| c.name()).collect();
        // Microsoft Learn, "backupset (Transact-SQL)": 63 columns, and two more from 2022
        assert_eq!(names.len(), count, "{version}: {names:?}");
        for (at, name) in [
            (7, "catalog_family_number"),
            (8, "catalog_media_number"),
            (18, "time_zone"),
            (19, "mtf_minor_version"),
            (28, "sort_order"),
            (29, "code_page"),
            (36, "flags"),
            (37, "unicode_locale"),
            (38, "unicode_compare_style"),
            (52, "first_recovery_fork_guid"),
            (53, "last_recovery_fork_guid"),
            (54, "fork_point_lsn"),
            (62, "encryptor_type"),
        ] {
            assert_eq!(names[at], name, "{version}: {names:?}");
        }
        if count == 65 {
            assert_eq!(
                &names[63..],
                ["last_valid_restore_time", "compression_algorithm"]
            );
        }
        assert_eq!(row.get::<i32, _>("flags"), Some(16), "checksums");
        assert_eq!(row.get::<i32, _>("unicode_locale"), Some(1033));
        lab.server.shutdown().await;
    }
}

/// The native lab on this machine: a missing backup folder is the OS error of its system.
#[tokio::test]
async fn a_missing_folder_is_the_os_error_of_the_platform() {
    let lab = start_as("missing-folder", "16.0.4135.4", Platform::Native).await;
    attach_octopus(&lab, "Octopus");
    let mut client = connect(&lab).await;
    let host = text(&mut client, "SELECT host_platform FROM sys.dm_os_host_info").await;
    let nowhere = lab.dir().join("no").join("such").join("x.bak");
    let e = server_error(
        &mut client,
        &format!(
            "BACKUP DATABASE [Octopus] TO DISK = {}",
            quote_str(&nowhere.to_string_lossy())
        ),
    )
    .await;
    assert_eq!(e.code(), 3201);
    if cfg!(windows) {
        assert_eq!(host[0].as_deref(), Some("Windows"));
        assert!(
            e.message()
                .contains("error 3(The system cannot find the path specified.)")
        );
    } else {
        assert_eq!(host[0].as_deref(), Some("Linux"));
        assert!(
            e.message()
                .contains("error 2(The system cannot find the file specified.)"),
            "{}",
            e.message()
        );
    }
}

/// SQL Server 2022 in its Linux container, with a host folder mounted at
/// /var/opt/mssql/backup: it names its own paths, writes through the volume, and keeps what it
/// writes elsewhere to itself.
#[tokio::test]
async fn sql_server_on_linux_sees_container_paths() {
    let scratch_host = Scratch::new("linux-share");
    let share = scratch_host.path().to_path_buf();
    std::fs::create_dir_all(&share).unwrap();
    let lab = start_as(
        "linux",
        "16.0.4135.4",
        Platform::Linux {
            volumes: vec![Volume {
                container_path: "/var/opt/mssql/backup".into(),
                host_path: share.clone(),
            }],
        },
    )
    .await;
    // the database's files in the data folder, as a container keeps them
    let data_dir = lab.dir().join("data");
    let (mdf, ldf) = (
        data_dir.join("Octopus.mdf"),
        data_dir.join("Octopus_log.ldf"),
    );
    image::create(&octopus_spec("Octopus"), &mdf, &ldf).unwrap();
    lab.server.attach_database("Octopus", &mdf, &ldf).unwrap();
    let mut client = connect(&lab).await;

    let v = text(&mut client, "SELECT @@VERSION").await[0]
        .clone()
        .unwrap();
    assert!(
        v.ends_with("Developer Edition (64-bit) on Linux (Ubuntu 22.04.4 LTS) <X64>"),
        "{v:?}"
    );
    let host = text(
        &mut client,
        "SELECT host_platform, host_distribution, host_release FROM sys.dm_os_host_info",
    )
    .await;
    assert_eq!(
        host,
        [
            Some("Linux".into()),
            Some("Ubuntu".into()),
            Some("22.04".into())
        ]
    );
    let paths = text(
        &mut client,
        "SELECT CAST(SERVERPROPERTY('InstanceDefaultDataPath') AS nvarchar(4000)), \
         CAST(SERVERPROPERTY('InstanceDefaultLogPath') AS nvarchar(4000))",
    )
    .await;
    assert_eq!(
        paths,
        [
            Some("/var/opt/mssql/data/".into()),
            Some("/var/opt/mssql/data/".into())
        ]
    );
    let files = text(
        &mut client,
        "SELECT physical_name FROM sys.master_files WHERE file_id = 1 AND database_id = DB_ID(N'Octopus')",
    )
    .await;
    assert_eq!(files[0].as_deref(), Some("/var/opt/mssql/data/Octopus.mdf"));

    // through the volume: the host sees the file, msdb the container's name for it
    query(
        &mut client,
        "BACKUP DATABASE [Octopus] TO DISK = N'/var/opt/mssql/backup/set1/Octopus.bak' WITH CHECKSUM",
    )
    .await
    .expect_err("set1 does not exist yet");
    std::fs::create_dir_all(share.join("set1")).unwrap();
    query(
        &mut client,
        "BACKUP DATABASE [Octopus] TO DISK = N'/var/opt/mssql/backup/set1/Octopus.bak' WITH CHECKSUM",
    )
    .await
    .unwrap();
    assert!(share.join("set1/Octopus.bak").is_file());
    let device = text(
        &mut client,
        "SELECT TOP (1) physical_device_name FROM msdb.dbo.backupmediafamily ORDER BY media_set_id DESC",
    )
    .await;
    assert_eq!(
        device[0].as_deref(),
        Some("/var/opt/mssql/backup/set1/Octopus.bak")
    );
    let listed = text(
        &mut client,
        "RESTORE FILELISTONLY FROM DISK = N'/var/opt/mssql/backup/set1/Octopus.bak'",
    )
    .await;
    assert_eq!(
        listed[1].as_deref(),
        Some("/var/opt/mssql/data/Octopus.mdf")
    );

    // a missing folder: OS error 2 with the path as SQL Server was given it
    let e = server_error(
        &mut client,
        "BACKUP DATABASE [Octopus] TO DISK = N'/var/opt/mssql/backup/nowhere/x.bak'",
    )
    .await;
    assert_eq!(e.code(), 3201);
    assert_eq!(
        e.message(),
        "Cannot open backup device '/var/opt/mssql/backup/nowhere/x.bak'. Operating system error 2(The system cannot find the file specified.)."
    );
    // the host's own folders are not the container's
    let host_path = share.join("set1").join("host.bak");
    let e = server_error(
        &mut client,
        &format!(
            "BACKUP DATABASE [Octopus] TO DISK = {}",
            quote_str(&host_path.to_string_lossy())
        ),
    )
    .await;
    assert_eq!(e.code(), 3201, "{e:?}");
    assert!(!host_path.exists());
    // the container's /tmp takes a backup the host never sees
    query(
        &mut client,
        "BACKUP DATABASE [Octopus] TO DISK = N'/tmp/inside.bak'",
    )
    .await
    .unwrap();
    assert!(!std::path::Path::new("/tmp/inside.bak").exists());
    // a relative path lands in the default backup folder, the data folder
    query(
        &mut client,
        "BACKUP DATABASE [Octopus] TO DISK = N'relative.bak'",
    )
    .await
    .unwrap();
    assert!(data_dir.join("relative.bak").is_file());

    // RESTORE WITH MOVE to container paths writes in the data folder
    query(
        &mut client,
        "RESTORE DATABASE [Copy] FROM DISK = N'/var/opt/mssql/backup/set1/Octopus.bak' \
         WITH MOVE N'Octopus' TO N'/var/opt/mssql/data/Copy.mdf', \
         MOVE N'Octopus_log' TO N'/var/opt/mssql/data/Copy_log.ldf'",
    )
    .await
    .unwrap();
    assert!(data_dir.join("Copy.mdf").is_file());
    let e = server_error(
        &mut client,
        "RESTORE DATABASE [Elsewhere] FROM DISK = N'/var/opt/mssql/backup/set1/Octopus.bak' \
         WITH MOVE N'Octopus' TO N'/var/opt/mssql/nope/E.mdf', \
         MOVE N'Octopus_log' TO N'/var/opt/mssql/nope/E_log.ldf'",
    )
    .await;
    assert_eq!(e.code(), 5133, "{e:?}");
    assert!(
        e.message()
            .contains("\"/var/opt/mssql/nope/E.mdf\" failed with the operating system error 2(The system cannot find the file specified.)"),
        "{}",
        e.message()
    );
}
