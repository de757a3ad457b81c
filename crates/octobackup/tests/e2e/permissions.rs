//! A least-privilege SQL login, as a DBA creates one (a user in the Octopus database, nothing
//! more): `doctor` names each missing grant as T-SQL; backup refuses before maintenance mode is
//! touched; once a DBA ran the grants `doctor` printed, doctor, backup, drill and restore pass.

use crate::common::*;
use tiberius::{AuthMethod, Client, Config, EncryptionLevel};
use tokio_util::compat::TokioAsyncWriteCompatExt;

async fn doctor(t: &TestLab) -> (Option<i32>, serde_json::Value) {
    let out = t.run(&["--json", "doctor"]).await;
    let report = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("doctor printed no JSON ({e}): {}", stderr(&out)));
    (out.status.code(), report)
}

fn check<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {report:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_each_grant_and_after_them_backup_drill_and_restore_pass() {
    let t = TestLab::start_with(|o| o.sql_least_privilege = true).await;
    t.init().await;
    let login = t.lab.info().sql_login.clone();

    // Before any grant: each gap is named with the T-SQL that closes it.
    let (code, report) = doctor(&t).await;
    assert_eq!(code, Some(8), "{report:#}");
    assert_eq!(check(&report, "sql-login")["status"], "pass", "{report:#}");
    let expected = [
        (
            "sql-permission",
            "fail",
            format!("USE [OctopusDeploy]; ALTER ROLE db_backupoperator ADD MEMBER [{login}];"),
        ),
        (
            "sql-create-database",
            "fail",
            format!("USE master; GRANT CREATE ANY DATABASE TO [{login}];"),
        ),
        (
            "sql-msdb-history",
            "fail",
            format!("GRANT SELECT ON dbo.backupset TO [{login}];"),
        ),
        (
            "sql-server-state",
            "warn",
            format!("USE master; GRANT VIEW SERVER STATE TO [{login}];"),
        ),
    ];
    let mut grants = Vec::new();
    for (name, status, grant) in &expected {
        let c = check(&report, name);
        assert_eq!(c["status"], *status, "{name}: {c:#}");
        let fix = c["fix"].as_str().unwrap();
        assert!(fix.contains(grant.as_str()), "{name}: {fix}");
        if *status == "fail" {
            grants.push(fix.to_string());
        }
    }

    // Backup without them: a clear SQL error (exit 4) before maintenance mode is touched.
    let out = t.run(&["backup"]).await;
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("GRANT CREATE ANY DATABASE")
            && stderr(&out).contains("db_backupoperator"),
        "{}",
        stderr(&out)
    );
    assert!(seqs(&t.events(), "maintenance_changed").is_empty());
    assert!(seqs(&t.events(), "backup_started").is_empty());
    assert!(!t.lab.octopus().maintenance());
    assert!(t.sets().await.is_empty());

    // The DBA runs exactly what doctor printed; the optional VIEW SERVER STATE stays ungranted.
    for grant in &grants {
        t.as_dba(grant).await;
    }
    let (code, report) = doctor(&t).await;
    assert_eq!(code, Some(0), "{report:#}");
    for name in ["sql-permission", "sql-create-database", "sql-msdb-history"] {
        assert_eq!(check(&report, name)["status"], "pass", "{report:#}");
    }
    assert_eq!(check(&report, "sql-server-state")["status"], "warn");

    let out = t.ok(&["--json", "backup"]).await;
    let sets = t.sets().await;
    assert_eq!(sets.len(), 1);
    assert!(!t.lab.octopus().maintenance());
    // The history row was readable: no warning about msdb.
    assert!(
        !stderr(&out).contains("msdb history row"),
        "{}",
        stderr(&out)
    );

    t.ok(&["--json", "drill"]).await;

    let data_dir = t.dir.path().join("restored-data");
    std::fs::create_dir_all(&data_dir).unwrap();
    t.ok(&[
        "restore",
        "--database",
        "--database-name",
        "OctoRestored",
        "--data-dir",
        data_dir.to_str().unwrap(),
    ])
    .await;
    assert!(t.lab.sql().databases().iter().any(|d| d == "OctoRestored"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_with_only_public_reads_and_writes_no_octopus_table() {
    let t = TestLab::start_with(|o| o.sql_least_privilege = true).await;
    let info = t.lab.info().clone();
    let addr: std::net::SocketAddr = info.sql_address.parse().unwrap();
    let mut config = Config::new();
    config.host(addr.ip().to_string());
    config.port(addr.port());
    config.database(&info.database);
    config.authentication(AuthMethod::sql_server(&info.sql_login, &info.sql_password));
    config.trust_cert();
    config.encryption(EncryptionLevel::NotSupported);
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut client = Client::connect(config, tcp.compat_write()).await.unwrap();
    for (sql, what) in [
        ("SELECT TOP (1) [Id] FROM dbo.Configuration", "SELECT"),
        (
            "UPDATE dbo.Configuration SET [JSON] = [JSON] WHERE [Id] = N'installation'",
            "UPDATE",
        ),
    ] {
        let err = match client.simple_query(sql).await {
            Ok(stream) => stream.into_results().await.map(|_| ()).unwrap_err(),
            Err(e) => e,
        };
        match err {
            tiberius::error::Error::Server(e) => {
                assert_eq!(e.code(), 229, "{sql}: {e}");
                assert!(e.message().contains(what), "{}", e.message());
            }
            other => panic!("{sql}: {other}"),
        }
    }
    // No user in a database: 916 on USE.
    let err = match client.simple_query("USE [model]").await {
        Ok(stream) => stream.into_results().await.map(|_| ()).unwrap_err(),
        Err(e) => e,
    };
    assert!(
        matches!(&err, tiberius::error::Error::Server(e) if e.code() == 916),
        "{err}"
    );
}
