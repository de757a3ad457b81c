//! Permissions through TDS: a login a DBA just created can do nothing until the grants that
//! backup needs are given, and each refusal carries SQL Server's number.

use crate::common::*;
use sqlserver_sim::{Edition, TlsSupport};
use tiberius::{AuthMethod, Client, Config, EncryptionLevel};
use tokio_util::compat::TokioAsyncWriteCompatExt;

const PASSWORD: &str = "Backup-Passw0rd!";

/// `backup` logging in with Octopus as its database.
async fn connect_backup(lab: &TestServer) -> tiberius::Result<TdsClient> {
    let mut config = Config::new();
    config.host("127.0.0.1");
    config.port(lab.server.addr().port());
    config.database("Octopus");
    config.authentication(AuthMethod::sql_server("backup", PASSWORD));
    config.trust_cert();
    config.encryption(EncryptionLevel::NotSupported);
    let tcp = tokio::net::TcpStream::connect(lab.server.addr())
        .await
        .unwrap();
    Client::connect(config, tcp.compat_write()).await
}

async fn flags(client: &mut TdsClient) -> Vec<i32> {
    let rows = query(
        client,
        "SELECT HAS_PERMS_BY_NAME(N'Octopus', 'DATABASE', 'BACKUP DATABASE') AS a, \
         HAS_PERMS_BY_NAME(NULL, NULL, 'CREATE ANY DATABASE') AS b, \
         IS_ROLEMEMBER(N'db_backupoperator') AS c, IS_SRVROLEMEMBER(N'dbcreator') AS d, \
         HAS_PERMS_BY_NAME(N'msdb.dbo.backupset', 'OBJECT', 'SELECT') AS e",
    )
    .await
    .unwrap();
    let row = &rows[0][0];
    ["a", "b", "c", "d", "e"]
        .iter()
        .map(|k| row.get::<i32, _>(*k).unwrap())
        .collect()
}

#[tokio::test]
async fn a_new_login_gets_exactly_what_it_is_granted() {
    let lab = start_lab("permissions", Edition::Developer, TlsSupport::Supported).await;
    attach_octopus(&lab, "Octopus");
    let mut sa = connect(&lab).await;
    query(
        &mut sa,
        &format!("CREATE LOGIN [backup] WITH PASSWORD = N'{PASSWORD}'"),
    )
    .await
    .unwrap();

    // No user in Octopus: 4060 at login.
    match connect_backup(&lab).await {
        Err(tiberius::error::Error::Server(e)) => assert_eq!(e.code(), 4060, "{e}"),
        other => panic!("expected 4060, got {:?}", other.map(|_| ())),
    }
    query(
        &mut sa,
        "USE [Octopus]; CREATE USER [backup] FOR LOGIN [backup]",
    )
    .await
    .unwrap();
    let mut b = connect_backup(&lab).await.unwrap();
    assert_eq!(flags(&mut b).await, [0, 0, 0, 0, 0]);
    let backup = "BACKUP DATABASE [Octopus] TO DISK = N'perm.bak' WITH INIT";
    assert_eq!(server_error(&mut b, backup).await.code(), 262);
    let e = server_error(&mut b, "SELECT TOP (1) * FROM dbo.Configuration").await;
    assert_eq!(e.code(), 229, "{e}");
    assert_eq!(server_error(&mut b, "USE [model]").await.code(), 916);
    // Only sysadmin manages security.
    let e = server_error(&mut b, "CREATE LOGIN [x] WITH PASSWORD = N'y'").await;
    assert_eq!(e.code(), 15247);

    query(
        &mut sa,
        "USE [Octopus]; ALTER ROLE db_backupoperator ADD MEMBER [backup]",
    )
    .await
    .unwrap();
    query(&mut b, backup).await.unwrap();
    let verify = "RESTORE VERIFYONLY FROM DISK = N'perm.bak'";
    let e = server_error(&mut b, verify).await;
    assert_eq!(e.code(), 262, "{e}");
    assert!(e.message().contains("CREATE DATABASE"), "{e}");
    let e = server_error(&mut b, "DBCC CHECKDB (N'Octopus') WITH NO_INFOMSGS").await;
    assert_eq!(e.code(), 7983, "{e}");

    // Server permissions are granted from master only.
    let grant = "GRANT CREATE ANY DATABASE TO [backup]";
    let e = server_error(&mut sa, grant).await;
    assert_eq!(e.code(), 4621, "{e}");
    query(&mut sa, &format!("USE master; {grant}"))
        .await
        .unwrap();
    query(&mut b, verify).await.unwrap();
    query(
        &mut sa,
        "USE msdb; CREATE USER [backup] FOR LOGIN [backup]; GRANT SELECT ON dbo.backupset TO [backup]",
    )
    .await
    .unwrap();
    assert_eq!(flags(&mut b).await, [1, 1, 1, 0, 1]);
    query(&mut sa, "ALTER SERVER ROLE dbcreator ADD MEMBER [backup]")
        .await
        .unwrap();
    assert_eq!(flags(&mut b).await, [1, 1, 1, 1, 1]);
    query(&mut b, "SELECT COUNT(*) FROM msdb.dbo.backupset")
        .await
        .unwrap();
}
