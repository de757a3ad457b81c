//! Server properties, table reads, every column type through tiberius, syntax and name errors.

use crate::common::*;
use sqlserver_sim::{Edition, TlsSupport};
use tiberius::numeric::Numeric;

#[tokio::test]
async fn server_properties_and_session_functions() {
    let lab = start_lab("props", Edition::Standard, TlsSupport::NotSupported).await;
    attach_octopus(&lab, "Octopus");
    let mut client = connect(&lab).await;
    let rows = query(
        &mut client,
        "SELECT SERVERPROPERTY('ProductVersion') AS v, SERVERPROPERTY('Edition') AS e, \
         SERVERPROPERTY('EngineEdition') AS ee, SERVERPROPERTY('ProductMajorVersion') AS major, \
         SERVERPROPERTY('InstanceName') AS instance, SERVERPROPERTY('IsClustered') AS clustered, \
         SERVERPROPERTY('MachineName') AS machine, @@SERVERNAME AS server, @@SPID AS spid, \
         DB_ID(N'Octopus') AS octo, DB_ID(N'nope') AS nope, DB_ID('master') AS master, DB_NAME() AS db, \
         SUSER_SNAME() AS who, IS_SRVROLEMEMBER('sysadmin') AS admin, @@VERSION AS version, 42 AS answer, \
         CAST(SERVERPROPERTY('EngineEdition') AS int) AS ee_int",
    )
    .await
    .unwrap();
    let row = &rows[0][0];
    assert_eq!(row.get::<&str, _>("v"), Some("16.0.4135.4"));
    assert_eq!(row.get::<&str, _>("e"), Some("Standard Edition (64-bit)"));
    assert_eq!(row.get::<i32, _>("ee"), Some(2));
    assert_eq!(row.get::<&str, _>("major"), Some("16"));
    assert_eq!(row.get::<&str, _>("instance"), None);
    assert_eq!(row.get::<i32, _>("clustered"), Some(0));
    assert_eq!(row.get::<&str, _>("machine"), row.get::<&str, _>("server"));
    assert!(row.get::<i16, _>("spid").unwrap() >= 51);
    assert_eq!(row.get::<i32, _>("octo"), Some(5));
    assert_eq!(row.get::<i32, _>("nope"), None);
    assert_eq!(row.get::<i32, _>("master"), Some(1));
    assert_eq!(row.get::<&str, _>("db"), Some("master"));
    assert_eq!(row.get::<&str, _>("who"), Some("sa"));
    assert_eq!(row.get::<i32, _>("admin"), Some(1));
    assert!(
        row.get::<&str, _>("version")
            .unwrap()
            .starts_with("Microsoft SQL Server 2022")
    );
    assert_eq!(row.get::<i32, _>("answer"), Some(42));
    assert_eq!(row.get::<i32, _>("ee_int"), Some(2));
    lab.server.shutdown().await;
}

#[tokio::test]
async fn engine_edition_follows_the_edition() {
    for (edition, expected) in [
        (Edition::Express, 4),
        (Edition::Standard, 2),
        (Edition::Developer, 3),
        (Edition::Enterprise, 3),
        (Edition::AzureSqlDatabase, 5),
    ] {
        let lab = start_lab("edition", edition, TlsSupport::NotSupported).await;
        let mut client = connect(&lab).await;
        let rows = query(&mut client, "SELECT SERVERPROPERTY('EngineEdition')")
            .await
            .unwrap();
        assert_eq!(rows[0][0].get::<i32, _>(0), Some(expected), "{edition:?}");
        lab.server.shutdown().await;
    }
}

#[tokio::test]
async fn non_sysadmin_login_is_not_srvrolemember() {
    let lab = start_lab("reader", Edition::Developer, TlsSupport::NotSupported).await;
    let mut client = connect_as(
        &lab,
        "reader",
        READER_PASSWORD,
        tiberius::EncryptionLevel::NotSupported,
    )
    .await
    .unwrap();
    let rows = query(&mut client, "SELECT IS_SRVROLEMEMBER('sysadmin'), IS_SRVROLEMEMBER('public'), IS_SRVROLEMEMBER('nonsense')")
        .await
        .unwrap();
    assert_eq!(rows[0][0].get::<i32, _>(0), Some(0));
    assert_eq!(rows[0][0].get::<i32, _>(1), Some(1));
    assert_eq!(rows[0][0].get::<i32, _>(2), None);
    lab.server.shutdown().await;
}

#[tokio::test]
async fn is_rolemember_answers_database_roles_as_sql_server_does() {
    let lab = start_lab("roles", Edition::Developer, TlsSupport::NotSupported).await;
    let sql = "SELECT IS_ROLEMEMBER(N'db_owner'), IS_ROLEMEMBER(N'db_backupoperator'), IS_ROLEMEMBER(N'public'), IS_ROLEMEMBER(N'db_denydatareader'), IS_ROLEMEMBER(N'nonsense')";
    let mut admin = connect(&lab).await;
    let rows = query(&mut admin, sql).await.unwrap();
    let got: Vec<Option<i32>> = (0..5).map(|i| rows[0][0].get::<i32, _>(i)).collect();
    assert_eq!(got, [Some(1), Some(1), Some(1), Some(0), None]);
    let mut reader = connect_as(
        &lab,
        "reader",
        READER_PASSWORD,
        tiberius::EncryptionLevel::NotSupported,
    )
    .await
    .unwrap();
    let rows = query(&mut reader, sql).await.unwrap();
    let got: Vec<Option<i32>> = (0..5).map(|i| rows[0][0].get::<i32, _>(i)).collect();
    assert_eq!(got, [Some(0), Some(0), Some(1), Some(0), None]);
    lab.server.shutdown().await;
}

#[tokio::test]
async fn table_select_decodes_every_column_type() {
    let lab = start_lab("types", Edition::Developer, TlsSupport::NotSupported).await;
    attach_octopus(&lab, "Octopus");
    let mut client = connect(&lab).await;
    let rows = query(&mut client, "SELECT * FROM [Octopus].[dbo].[Project]")
        .await
        .unwrap();
    let row = &rows[0][0];
    assert_eq!(row.get::<&str, _>("Id"), Some("Projects-1"));
    assert_eq!(row.get::<&str, _>("Name"), Some("Hello 'world'"));
    assert_eq!(row.get::<&[u8], _>("DataVersion"), Some(&[1u8, 2, 3][..]));
    assert_eq!(row.get::<bool, _>("IsDisabled"), Some(false));
    assert_eq!(row.get::<i32, _>("Version"), Some(7));
    assert_eq!(row.get::<i64, _>("Count"), Some(1 << 40));
    let created: chrono::NaiveDateTime = row.get("Created").unwrap();
    assert_eq!(created.to_string(), "2024-05-06 07:08:09.123456");
    let space: uuid::Uuid = row.get("SpaceId").unwrap();
    assert_eq!(space.to_string(), "6f9619ff-8b86-d011-b42d-00c04fc964ff");

    // after USE, two-part names; WHERE on a string is case-insensitive
    let rows = query(
        &mut client,
        "USE [Octopus]; SELECT [JSON] FROM dbo.Configuration WHERE [Id] = N'UPGRADE-availability'",
    )
    .await
    .unwrap();
    assert_eq!(rows[0].len(), 1);
    assert_eq!(rows[0][0].get::<&str, _>(0), Some("{\"Enabled\":true}"));
    let rows = query(
        &mut client,
        "SELECT DB_NAME(), COUNT(*) AS n FROM Configuration",
    )
    .await
    .unwrap();
    assert_eq!(rows[0][0].get::<&str, _>(0), Some("Octopus"));
    assert_eq!(rows[0][0].get::<i32, _>("n"), Some(2));
    lab.server.shutdown().await;
}

#[tokio::test]
async fn numeric_real_datetime_and_variant_columns_decode() {
    let lab = start_lab("numeric", Edition::Developer, TlsSupport::NotSupported).await;
    let mut client = connect(&lab).await;
    let rows = query(
        &mut client,
        "SELECT CAST(N'x' AS sql_variant) AS v, CAST(7 AS sql_variant) AS i",
    )
    .await
    .unwrap();
    assert_eq!(rows[0][0].get::<&str, _>("v"), Some("x"));
    assert_eq!(rows[0][0].get::<i32, _>("i"), Some(7));
    let e = server_error(&mut client, "SELECT CAST(1 AS widget)").await;
    assert_eq!(
        (e.code(), e.message()),
        (243, "Type widget is not a defined system type.")
    );
    let rows = query(
        &mut client,
        "SELECT CAST(37000000801600001 AS numeric(25,0)) AS lsn, CAST('12.5' AS real) AS r, \
         CAST('2024-01-02 03:04:05' AS datetime) AS dt, 1.50 AS d, CAST(1 AS bit) AS b, CAST(3 AS tinyint) AS t",
    )
    .await
    .unwrap();
    let row = &rows[0][0];
    let lsn: Numeric = row.get("lsn").unwrap();
    assert_eq!(lsn.value(), 37_000_000_801_600_001);
    assert_eq!(row.get::<f32, _>("r"), Some(12.5));
    let dt: chrono::NaiveDateTime = row.get("dt").unwrap();
    assert_eq!(dt.to_string(), "2024-01-02 03:04:05");
    let d: Numeric = row.get("d").unwrap();
    assert_eq!((d.value(), d.scale()), (150, 2));
    assert_eq!(row.get::<bool, _>("b"), Some(true));
    assert_eq!(row.get::<u8, _>("t"), Some(3));
    lab.server.shutdown().await;
}

#[tokio::test]
async fn update_configuration_for_a_clone() {
    let lab = start_lab("update", Edition::Developer, TlsSupport::NotSupported).await;
    attach_octopus(&lab, "Octopus");
    let mut client = connect(&lab).await;
    // execute() sends sp_executesql, an RPC, with its parameters
    let result = client
        .execute(
            "UPDATE [Octopus].[dbo].[Configuration] SET [JSON] = @P1 WHERE [Id] = @P2",
            &[&"{\"Enabled\":true}", &"upgrade-availability"],
        )
        .await
        .unwrap();
    assert_eq!(result.rows_affected(), &[1]);
    query(
        &mut client,
        "SET NOCOUNT OFF; UPDATE [Octopus].[dbo].[Configuration] SET [JSON] = N'{\"Enabled\":false}' WHERE [Id] = N'Upgrade-Availability'",
    )
    .await
    .unwrap();
    let rows = query(
        &mut client,
        "SELECT [JSON] FROM [Octopus].[dbo].[Configuration] WHERE [Id] = 'upgrade-availability'",
    )
    .await
    .unwrap();
    assert_eq!(rows[0][0].get::<&str, _>(0), Some("{\"Enabled\":false}"));
    let other = query(
        &mut client,
        "SELECT [JSON] FROM [Octopus].[dbo].[Configuration] WHERE [Id] = 'server-folders'",
    )
    .await
    .unwrap();
    assert!(other[0][0].get::<&str, _>(0).unwrap().contains("Packages"));
    lab.server.shutdown().await;
}

#[tokio::test]
async fn syntax_and_name_errors_carry_sql_server_numbers() {
    let lab = start_lab("errors", Edition::Developer, TlsSupport::NotSupported).await;
    attach_octopus(&lab, "Octopus");
    let mut client = connect(&lab).await;
    let cases: &[(&str, i32, &str)] = &[
        (
            "SELECT FROM x",
            156,
            "Incorrect syntax near the keyword 'FROM'.",
        ),
        ("SELEKT 1", 102, "Incorrect syntax near 'SELEKT'."),
        (
            "SELECT 'abc",
            105,
            "Unclosed quotation mark after the character string 'abc'.",
        ),
        (
            "SELECT FROM sys.databases",
            156,
            "Incorrect syntax near the keyword 'FROM'.",
        ),
        // valid T-SQL the lab does not run is the lab's own message, not a syntax error
        (
            "INSERT INTO t VALUES (1)",
            50000,
            "[octobackup lab] 'INSERT' here is valid T-SQL that the lab SQL Server does not run (it takes the statements octobackup and the lab's tests send; see lab/sqlserver-sim/README.md).",
        ),
        (
            "SELECT * FROM [Octopus].[dbo].[Nope]",
            208,
            "Invalid object name 'Octopus.dbo.Nope'.",
        ),
        (
            "SELECT [Nope] FROM [Octopus].[dbo].[Configuration]",
            207,
            "Invalid column name 'Nope'.",
        ),
        (
            "USE [NoSuchDb]",
            911,
            "Database 'NoSuchDb' does not exist. Make sure that the name is entered correctly.",
        ),
        (
            "SELECT NOSUCH(1)",
            195,
            "'NOSUCH' is not a recognized built-in function name.",
        ),
        (
            "SELECT CAST('x' AS int)",
            245,
            "Conversion failed when converting the varchar value 'x' to data type int.",
        ),
        (
            "COMMIT",
            3902,
            "The COMMIT TRANSACTION request has no corresponding BEGIN TRANSACTION.",
        ),
    ];
    for (sql, number, text) in cases {
        let e = server_error(&mut client, sql).await;
        assert_eq!((e.code(), e.message()), (*number as u32, *text), "{sql}");
    }
    // a syntax error anywhere stops the whole batch: nothing ran
    let e = server_error(&mut client, "USE [Octopus]; SELECT 1 1").await;
    assert_eq!(e.code(), 102);
    let rows = query(&mut client, "SELECT DB_NAME()").await.unwrap();
    assert_eq!(rows[0][0].get::<&str, _>(0), Some("master"));
    lab.server.shutdown().await;
}

#[tokio::test]
async fn sys_views_list_databases_and_files() {
    let lab = start_lab("sysviews", Edition::Developer, TlsSupport::NotSupported).await;
    let (data, _log) = attach_octopus(&lab, "Octopus");
    let mut client = connect(&lab).await;
    let rows = query(
        &mut client,
        "SELECT name, database_id, recovery_model_desc FROM sys.databases ORDER BY database_id",
    )
    .await
    .unwrap();
    let names: Vec<&str> = rows[0]
        .iter()
        .map(|r| r.get::<&str, _>("name").unwrap())
        .collect();
    assert_eq!(names, vec!["master", "tempdb", "model", "msdb", "Octopus"]);
    assert_eq!(
        rows[0][4].get::<&str, _>("recovery_model_desc"),
        Some("FULL")
    );
    let rows = query(
        &mut client,
        "SELECT mf.name, mf.physical_name, mf.type_desc FROM sys.master_files AS mf WHERE mf.database_id = DB_ID(N'Octopus') ORDER BY mf.file_id",
    )
    .await
    .unwrap();
    assert_eq!(rows[0].len(), 2);
    assert_eq!(rows[0][0].get::<&str, _>("name"), Some("Octopus"));
    assert_eq!(
        rows[0][0].get::<&str, _>("physical_name"),
        Some(data.to_str().unwrap())
    );
    assert_eq!(rows[0][1].get::<&str, _>("type_desc"), Some("LOG"));
    lab.server.shutdown().await;
}
