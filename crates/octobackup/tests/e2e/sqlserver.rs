//! SQL Server as real installs ship it: a self-signed fallback certificate, named instances found
//! through SQL Browser, TCP/IP off, `backup compression default` on, other backups in msdb, msdb
//! out of reach, Managed Instance, Amazon RDS and SQL Server 2014. The real binary against the lab.

use crate::common::*;
use octobackup_lab::sqlserver_sim::{Edition, ServerOptions, SqlFault};

/// Sets the instance's connection string.
fn set_connection_string(t: &TestLab, cs: &str) {
    t.edit_config(|c| {
        TestLab::instance_table(c)["sql"]
            .as_table_mut()
            .unwrap()
            .insert("connection_string".into(), cs.into());
    });
}

/// The lab's connection string with another server part and encryption settings.
fn connection_string(t: &TestLab, server: &str, tail: &str) -> String {
    let info = t.lab.info();
    format!(
        "Server={server};Database={};User ID={};{tail}",
        info.database, info.sql_login
    )
}

fn host_port(t: &TestLab) -> String {
    let (host, port) = t.lab.info().sql_address.rsplit_once(':').unwrap();
    format!("{host},{port}")
}

async fn manifest(t: &TestLab) -> serde_json::Value {
    let show = t.ok(&["--json", "show", "latest"]).await;
    serde_json::from_slice(&show.stdout).unwrap()
}

/// A run refused before anything changed: the exit code, the message, maintenance mode never
/// touched, no BACKUP, no set.
async fn assert_refused_up_front(t: &TestLab, out: &std::process::Output, needle: &str) {
    assert_eq!(out.status.code(), Some(4), "{}", stderr(out));
    assert!(stderr(out).contains(needle), "{}", stderr(out));
    let events = t.events();
    assert!(
        maintenance_changes(&events).is_empty(),
        "maintenance mode touched"
    );
    assert!(seqs(&events, "backup_started").is_empty());
    assert!(!t.lab.octopus().maintenance());
    assert!(t.sets().await.iter().all(|s| s["complete"] != true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_trusted_as_octopus_trusts_them_and_validated_when_asked() {
    let t = TestLab::start().await;
    t.init().await;
    let cs = std::fs::read_to_string(&t.config).unwrap();
    assert!(
        !cs.contains("TrustServerCertificate"),
        "the lab's string is Octopus's form"
    );
    // Octopus's form: Encrypt=True, no TrustServerCertificate, against a self-signed certificate
    // that names no host.
    t.ok(&["backup"]).await;
    // Login-only encryption is never validated, even with TrustServerCertificate=False.
    set_connection_string(
        &t,
        &connection_string(
            &t,
            &host_port(&t),
            "Encrypt=False;TrustServerCertificate=False",
        ),
    );
    t.ok(&["backup"]).await;
    // The most common Octopus string: no Encrypt either (SqlClient's default is Mandatory).
    set_connection_string(&t, &connection_string(&t, &host_port(&t), ""));
    t.ok(&["backup"]).await;
    assert_eq!(t.sets().await.len(), 3);

    // Asked for: validated, and the lab's certificate fails, before maintenance mode.
    for tail in [
        "Encrypt=True;TrustServerCertificate=False",
        "Encrypt=Strict",
    ] {
        set_connection_string(&t, &connection_string(&t, &host_port(&t), tail));
        let before = t.events().len();
        let out = t.run(&["backup"]).await;
        assert_eq!(out.status.code(), Some(4), "{tail}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("certificate failed validation"),
            "{tail}: {}",
            stderr(&out)
        );
        let events = &t.events()[before..];
        assert!(maintenance_changes(events).is_empty(), "{tail}");
        // Strict speaks TDS 8.0: TLS before PRELOGIN.
        assert_eq!(
            !seqs(events, "tds8_connection").is_empty(),
            tail.ends_with("Strict"),
            "{tail}"
        );
        assert!(!stderr(&out).contains(&t.lab.info().sql_password));
    }
    assert_eq!(t.sets().await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg(target_os = "linux")]
async fn a_named_instance_is_found_through_sql_browser() {
    let t = TestLab::start().await;
    t.init().await;
    let info = t.lab.info().clone();
    let instance = info
        .sql_instance
        .clone()
        .expect("the lab runs a named instance");
    let browser: std::net::SocketAddr = info.sql_browser_address.unwrap().parse().unwrap();
    // HOST\INSTANCE without a port, as Octopus's installer writes it.
    let server = format!("{}\\{instance}", browser.ip());
    set_connection_string(&t, &connection_string(&t, &server, ""));
    t.ok(&["backup"]).await;
    let m = manifest(&t).await;
    assert_eq!(m["complete"], true);
    assert_eq!(m["database"]["server"], server.as_str());
    assert_backups_inside_window(&t.events());

    // An instance SQL Browser does not know: the error names Browser and TCP/IP.
    set_connection_string(
        &t,
        &connection_string(&t, &format!("{}\\SQLEXPRESS", browser.ip()), ""),
    );
    let before = t.events().len();
    t.fails(&["backup"], 4, "SQL Server Browser").await;
    assert!(maintenance_changes(&t.events()[before..]).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg(target_os = "linux")]
async fn tcp_ip_disabled_is_named_with_the_way_to_enable_it() {
    let t = TestLab::start_with(|o| o.sql_tcp = false).await;
    t.init().await;
    let info = t.lab.info().clone();
    let browser: std::net::SocketAddr = info.sql_browser_address.unwrap().parse().unwrap();
    let server = format!("{}\\{}", browser.ip(), info.sql_instance.unwrap());
    set_connection_string(&t, &connection_string(&t, &server, ""));
    let out = t.run(&["backup"]).await;
    assert_refused_up_front(&t, &out, "TCP/IP protocol may be disabled").await;
    assert!(
        stderr(&out).contains("SQL Server Configuration Manager"),
        "{}",
        stderr(&out)
    );
    // doctor says the same.
    let out = t.run(&["doctor"]).await;
    assert!(!out.status.success());
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(text.contains("TCP/IP protocol may be disabled"), "{text}");
    assert!(text.contains("enable TCP/IP for the instance"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_compression_default_on_the_server_does_not_compress_our_backup() {
    let t = TestLab::start_with(|o| {
        o.sql_options = ServerOptions {
            backup_compression_default: true,
            ..Default::default()
        }
    })
    .await;
    t.init().await;
    t.ok(&["backup"]).await;
    let started = t
        .events()
        .into_iter()
        .find(|e| e.kind == "backup_started")
        .unwrap();
    assert_eq!(started.detail["compressed"], false, "{:?}", started.detail);
    let m = manifest(&t).await;
    let row = &m["database"]["backupset"];
    assert_eq!(row["backup_size"], row["compressed_backup_size"], "{row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_msdb_row_is_our_own_and_a_missing_msdb_permission_is_a_warning() {
    let t = TestLab::start().await;
    t.init().await;
    // A DBA's full backup and a log backup end between our BACKUP and the history query.
    t.lab.sql().inject(SqlFault::OtherBackupsAfterNextBackup);
    t.ok(&["backup"]).await;
    let m = manifest(&t).await;
    let row = &m["database"]["backupset"];
    assert_eq!(row["backup_type"], "D", "{row}");
    assert_eq!(row["is_copy_only"], true, "{row}");
    let device = row["physical_device_name"].as_str().unwrap();
    assert!(
        device.contains(&format!("octobackup-{}", m["set_id"].as_str().unwrap())),
        "{device}"
    );

    // No SELECT in msdb: the set is complete and verified, with a warning.
    t.lab.sql().inject(SqlFault::DenyNextHistoryQuery);
    let out = t.ok(&["backup"]).await;
    assert!(
        stderr(&out).contains("msdb history row could not be read") && stderr(&out).contains("229"),
        "{}",
        stderr(&out)
    );
    let m = manifest(&t).await;
    assert_eq!(m["complete"], true);
    assert_eq!(m["database"]["verified"], true);
    assert!(m["database"]["backupset"].is_null(), "{m:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_instance_is_refused_before_maintenance_mode() {
    let t = TestLab::start_with(|o| o.edition = Edition::AzureSqlManagedInstance).await;
    t.init().await;
    let out = t.run(&["backup"]).await;
    assert_refused_up_front(&t, &out, "Azure SQL Managed Instance (EngineEdition 8)").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amazon_rds_is_refused_before_maintenance_mode() {
    let t = TestLab::start_with(|o| {
        o.edition = Edition::Standard;
        o.sql_options = ServerOptions {
            amazon_rds: true,
            ..Default::default()
        };
    })
    .await;
    t.init().await;
    let out = t.run(&["backup"]).await;
    assert_refused_up_front(&t, &out, "Amazon RDS for SQL Server").await;
    assert!(
        stderr(&out).contains("rds_backup_database"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_server_2014_backs_up_and_drills_without_drop_database_if_exists() {
    let t = TestLab::start_with(|o| {
        o.edition = Edition::Standard;
        o.sql_product_version = "12.0.6024.0".into();
    })
    .await;
    t.init().await;
    t.ok(&["backup"]).await;
    let report = t.json(&["--json", "drill"]).await;
    assert_eq!(report["ok"], true, "{report:#}");
    // The scratch database was dropped by the statement 2014 accepts.
    assert_eq!(t.lab.sql().databases(), [t.lab.info().database.clone()]);
}

/// `sql.command_timeout` far below the silences the lab is given.
fn short_command_timeout(t: &TestLab) {
    t.edit_config(|c| {
        TestLab::instance_table(c)["sql"]
            .as_table_mut()
            .unwrap()
            .insert("command_timeout".into(), "1s".into());
    });
}

fn silence(t: &TestLab, command: &str) {
    t.lab.sql().inject(SqlFault::SilenceBeforeNext {
        command: command.into(),
        silence: std::time::Duration::from_secs(3),
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_silent_statements_are_not_cut_off_by_the_command_timeout() {
    let t = TestLab::start().await;
    t.init().await;
    short_command_timeout(&t);
    // BACKUP and VERIFYONLY silent for longer than the timeout, as on a big database.
    silence(&t, "BACKUP DATABASE");
    silence(&t, "RESTORE VERIFYON");
    t.ok(&["backup"]).await;
    let m = manifest(&t).await;
    assert_eq!(m["complete"], true);
    assert_eq!(m["database"]["verified"], true);
    // The drill's RESTORE and CHECKDB WITH NO_INFOMSGS too.
    silence(&t, "RESTORE DATABASE");
    silence(&t, "DBCC TABLE CHECK");
    let report = t.json(&["--json", "drill"]).await;
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(t.lab.sql().databases(), [t.lab.info().database.clone()]);
}

/// An Availability Group listener's string (MultiSubnetFailover=True) backs up; an
/// `Authentication=Active Directory ...` string is refused up front naming what works, with no
/// failed SQL login and maintenance mode never touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_subnet_failover_works_and_entra_id_authentication_is_refused_up_front() {
    let t = TestLab::start().await;
    t.init().await;
    // the lab listens on one address of its own; the name-to-many-addresses race is the unit
    // test of sqlserver::client
    set_connection_string(
        &t,
        &connection_string(
            &t,
            &format!("tcp:{}", host_port(&t)),
            "MultiSubnetFailover=True",
        ),
    );
    t.ok(&["backup"]).await;
    assert_eq!(t.sets().await.len(), 1);

    set_connection_string(
        &t,
        &connection_string(
            &t,
            &host_port(&t),
            "Authentication=Active Directory Password",
        ),
    );
    let before = t.events().len();
    let out = t.fails(&["backup"], 2, "Authentication=Active Directory Password (Microsoft Entra ID) is not supported by octobackup: use a SQL Server login").await;
    let events = &t.events()[before..];
    assert!(maintenance_changes(events).is_empty());
    assert!(seqs(events, "login_failed").is_empty());
    assert!(!stderr(&out).contains(&t.lab.info().sql_password));
    assert_eq!(t.sets().await.len(), 1);
}

/// The versions and editions an Octopus database lives on (Octopus supports SQL Server 2016 and
/// later): each backs up, drills, and is recorded as what it said it was. Versions are the RTM
/// build numbers (Microsoft Learn, "Determine which version and edition of SQL Server Database
/// Engine is running"): 13.0 2016, 14.0 2017, 15.0 2019, 16.0 2022.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_server_2016_to_2022_in_each_edition_back_up_and_drill() {
    for (version, edition, edition_name) in [
        ("13.0.1601.5", Edition::Express, "Express Edition (64-bit)"),
        (
            "14.0.1000.169",
            Edition::Standard,
            "Standard Edition (64-bit)",
        ),
        (
            "15.0.2000.5",
            Edition::Developer,
            "Developer Edition (64-bit)",
        ),
        (
            "16.0.1000.6",
            Edition::Enterprise,
            "Enterprise Edition (64-bit)",
        ),
    ] {
        let t = TestLab::start_with(|o| {
            o.edition = edition;
            o.sql_product_version = version.into();
        })
        .await;
        t.init().await;
        let out = t.run(&["backup"]).await;
        assert!(out.status.success(), "{version}: {}", stderr(&out));
        let m = manifest(&t).await;
        assert_eq!(m["complete"], true, "{m:#}");
        let db = &m["database"];
        assert_eq!(db["product_version"], version, "{m:#}");
        assert_eq!(db["edition"], edition_name, "{m:#}");
        let out = t.run(&["--json", "drill"]).await;
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        assert!(
            out.status.success() && report["ok"] == true,
            "{version}: {report:#} {}",
            stderr(&out)
        );
    }
}
