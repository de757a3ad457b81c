//! Defaults of real installs the stand-in reproduces: the fallback certificate, TDS 8.0, SQL
//! Browser for named instances, `backup compression default`, SQL Server 2014's syntax, Managed
//! Instance and Amazon RDS, and history rows left by other backups.

use std::sync::Arc;

use crate::common::*;
use sqlserver_sim::{
    BrowserInstance, Edition, ServerOptions, SqlFault, TlsSupport, random_loopback, start_browser,
};
use tiberius::{AuthMethod, Client, Config, EncryptionLevel, SqlBrowser};
use tokio::net::TcpStream;
use tokio_util::compat::TokioAsyncWriteCompatExt;

async fn start_with(
    name: &str,
    edition: Edition,
    version: &str,
    options: ServerOptions,
) -> TestServer {
    let scratch = Scratch::new(name);
    let events: Events = Arc::default();
    let mut config = config(
        scratch.path(),
        edition,
        TlsSupport::Supported,
        events.clone(),
    );
    config.product_version = version.into();
    config.options = options;
    let server = sqlserver_sim::start(config).await.unwrap();
    TestServer {
        server,
        scratch,
        events,
    }
}

fn sa_config(lab: &TestServer, encryption: EncryptionLevel) -> Config {
    let mut config = Config::new();
    config.host("127.0.0.1");
    config.port(lab.server.addr().port());
    config.authentication(AuthMethod::sql_server("sa", SA_PASSWORD));
    config.encryption(encryption);
    config
}

async fn try_connect(config: Config, lab: &TestServer) -> tiberius::Result<TdsClient> {
    let tcp = TcpStream::connect(lab.server.addr()).await.unwrap();
    Client::connect(config, tcp.compat_write()).await
}

#[tokio::test]
async fn the_certificate_is_self_signed_and_names_no_host() {
    let lab = start_lab("fallback-cert", Edition::Developer, TlsSupport::Supported).await;
    // Validating clients fail whatever the encryption level, as against a default install.
    for level in [
        EncryptionLevel::Off,
        EncryptionLevel::Required,
        EncryptionLevel::Strict,
    ] {
        let e = try_connect(sa_config(&lab, level), &lab)
            .await
            .err()
            .unwrap_or_else(|| panic!("{level:?} validated the fallback certificate"));
        assert!(
            matches!(e, tiberius::error::Error::Tls(_)),
            "{level:?}: {e:?}"
        );
    }
    // The certificate carries SQL Server's fallback subject and no DNS name or address.
    let pem = lab.server.certificate_pem().unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    let der = pem_body(&pem);
    let needle = b"SSL_Self_Signed_Fallback";
    assert!(der.windows(needle.len()).any(|w| w == needle));
    assert!(!der.windows(9).any(|w| w == b"localhost"));
}

fn pem_body(pem: &str) -> Vec<u8> {
    use tokio_rustls::rustls::pki_types::{CertificateDer, pem::PemObject};
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn tds_8_strict_encryption_starts_with_tls() {
    let lab = start_lab("tds8", Edition::Developer, TlsSupport::Supported).await;
    let mut config = sa_config(&lab, EncryptionLevel::Strict);
    config.trust_cert();
    let mut client = try_connect(config, &lab).await.unwrap();
    let rows = query(&mut client, "SELECT @@SPID AS spid").await.unwrap();
    assert_eq!(rows[0].len(), 1);
    // A server without TLS cannot speak TDS 8.0: the client sees the connection end.
    let plain = start_lab("tds8-off", Edition::Developer, TlsSupport::NotSupported).await;
    let mut config = sa_config(&plain, EncryptionLevel::Strict);
    config.trust_cert();
    assert!(try_connect(config, &plain).await.is_err());
}

#[tokio::test]
async fn sql_browser_resolves_a_named_instance_for_tiberius() {
    // SQL Server and its Browser on a loopback address of their own, as the lab runs them.
    let ip = random_loopback();
    let browser = start_browser(ip, Vec::new()).await.unwrap();
    assert_eq!(browser.addr().port(), 1434);
    let lab = start_with(
        "browser",
        Edition::Express,
        "16.0.4135.4",
        ServerOptions {
            listen: Some(ip),
            ..Default::default()
        },
    )
    .await;
    let instance = |tcp_port| BrowserInstance {
        server_name: "OCTOLAB-SQL".into(),
        instance_name: "SQLEXPRESS".into(),
        version: "16.0.4135.4".into(),
        tcp_port,
    };
    browser.set_instances(vec![instance(Some(lab.server.addr().port()))]);
    let mut config = Config::new();
    config.host(ip.to_string());
    config.instance_name("SQLEXPRESS");
    config.authentication(AuthMethod::sql_server("sa", SA_PASSWORD));
    config.trust_cert();
    let tcp = TcpStream::connect_named(&config).await.unwrap();
    assert_eq!(tcp.peer_addr().unwrap(), lab.server.addr());
    let mut client = Client::connect(config.clone(), tcp.compat_write())
        .await
        .unwrap();
    query(&mut client, "SELECT 1 AS one").await.unwrap();
    // TCP/IP disabled: SQL Browser lists named pipes only, so no port can be found.
    browser.set_instances(vec![instance(None)]);
    let e = TcpStream::connect_named(&config).await.unwrap_err();
    assert!(e.to_string().contains("SQLEXPRESS"), "{e}");
    // An unknown instance gets no answer.
    config.instance_name("OTHER");
    let e = TcpStream::connect_named(&config).await.unwrap_err();
    assert!(e.to_string().contains("OTHER"), "{e}");
    browser.shutdown();
}

#[tokio::test]
async fn backup_compression_default_compresses_backups_that_do_not_say() {
    let lab = start_with(
        "compression-default",
        Edition::Developer,
        "16.0.4135.4",
        ServerOptions::default(),
    )
    .await;
    attach_octopus(&lab, "Octopus");
    let mut client = connect(&lab).await;
    async fn compressed(lab: &TestServer, client: &mut TdsClient, file: &str, with: &str) -> bool {
        let path = lab.dir().join(file).to_string_lossy().into_owned();
        let sql = format!(
            "BACKUP DATABASE [Octopus] TO DISK = {} WITH FORMAT, INIT, COPY_ONLY{with}",
            quote_str(&path)
        );
        query(client, &sql).await.unwrap();
        let header = format!("RESTORE HEADERONLY FROM DISK = {}", quote_str(&path));
        let rows = query(client, &header).await.unwrap();
        rows[0][0].get::<bool, _>("Compressed").unwrap()
    }
    assert!(!compressed(&lab, &mut client, "a.bak", "").await);
    // sp_configure alone changes nothing until RECONFIGURE installs it.
    query(
        &mut client,
        "EXEC sp_configure 'backup compression default', 1",
    )
    .await
    .unwrap();
    assert!(!compressed(&lab, &mut client, "b.bak", "").await);
    query(&mut client, "RECONFIGURE").await.unwrap();
    assert!(compressed(&lab, &mut client, "c.bak", "").await);
    assert!(!compressed(&lab, &mut client, "d.bak", ", NO_COMPRESSION").await);
    // Unknown options and logins without ALTER SETTINGS are refused with SQL Server's numbers.
    let e = server_error(&mut client, "EXEC sp_configure 'backup compressions', 1").await;
    assert_eq!(e.code(), 15123);
    let mut reader = connect_as(
        &lab,
        "reader",
        READER_PASSWORD,
        EncryptionLevel::NotSupported,
    )
    .await
    .unwrap();
    assert_eq!(server_error(&mut reader, "RECONFIGURE").await.code(), 15247);

    // A server started with the option on.
    let on = start_with(
        "compression-default-on",
        Edition::Developer,
        "16.0.4135.4",
        ServerOptions {
            backup_compression_default: true,
            ..Default::default()
        },
    )
    .await;
    attach_octopus(&on, "Octopus");
    let mut client = connect(&on).await;
    let path = on.dir().join("x.bak").to_string_lossy().into_owned();
    query(
        &mut client,
        &format!(
            "BACKUP DATABASE [Octopus] TO DISK = {} WITH FORMAT, INIT",
            quote_str(&path)
        ),
    )
    .await
    .unwrap();
    let rows = query(
        &mut client,
        &format!("RESTORE HEADERONLY FROM DISK = {}", quote_str(&path)),
    )
    .await
    .unwrap();
    assert!(rows[0][0].get::<bool, _>("Compressed").unwrap());
}

#[tokio::test]
async fn sql_server_2014_has_no_drop_database_if_exists() {
    let lab = start_with(
        "sql2014",
        Edition::Standard,
        "12.0.6024.0",
        ServerOptions::default(),
    )
    .await;
    attach_octopus(&lab, "Gone");
    let mut client = connect(&lab).await;
    let e = server_error(&mut client, "DROP DATABASE IF EXISTS [Gone]").await;
    assert_eq!(
        (e.code(), e.message()),
        (156, "Incorrect syntax near the keyword 'IF'.")
    );
    assert!(lab.server.databases().contains(&"Gone".to_string()));
    // The form every version takes.
    query(
        &mut client,
        "IF DB_ID(N'Gone') IS NOT NULL DROP DATABASE [Gone]",
    )
    .await
    .unwrap();
    assert!(!lab.server.databases().contains(&"Gone".to_string()));
    query(
        &mut client,
        "IF DB_ID(N'Gone') IS NOT NULL DROP DATABASE [Gone]",
    )
    .await
    .unwrap();
    // 2016 and later take both.
    let lab = start_lab("sql2022-drop", Edition::Developer, TlsSupport::NotSupported).await;
    attach_octopus(&lab, "Gone");
    let mut client = connect(&lab).await;
    query(&mut client, "DROP DATABASE IF EXISTS [Gone]")
        .await
        .unwrap();
    assert!(lab.server.databases().is_empty());
}

#[tokio::test]
async fn managed_instance_and_rds_show_what_they_are() {
    let mi = start_with(
        "mi",
        Edition::AzureSqlManagedInstance,
        "16.0.4135.4",
        ServerOptions::default(),
    )
    .await;
    let mut client = connect(&mi).await;
    let rows = query(
        &mut client,
        "SELECT CAST(SERVERPROPERTY('EngineEdition') AS int) AS e, DB_ID(N'rdsadmin') AS r",
    )
    .await
    .unwrap();
    assert_eq!(rows[0][0].get::<i32, _>("e"), Some(8));
    assert_eq!(rows[0][0].get::<i32, _>("r"), None);

    let rds = start_with(
        "rds",
        Edition::Standard,
        "15.0.4355.3",
        ServerOptions {
            amazon_rds: true,
            ..Default::default()
        },
    )
    .await;
    let mut client = connect(&rds).await;
    let rows = query(
        &mut client,
        "SELECT CAST(SERVERPROPERTY('EngineEdition') AS int) AS e, DB_ID(N'rdsadmin') AS r",
    )
    .await
    .unwrap();
    assert_eq!(rows[0][0].get::<i32, _>("e"), Some(2));
    assert!(rows[0][0].get::<i32, _>("r").is_some());
}

#[tokio::test]
async fn other_backups_can_land_in_msdb_and_history_can_be_denied() {
    let lab = start_lab("history", Edition::Developer, TlsSupport::NotSupported).await;
    attach_octopus(&lab, "Octopus");
    let mut client = connect(&lab).await;
    let path = lab.dir().join("ours.bak").to_string_lossy().into_owned();
    lab.server.inject(SqlFault::OtherBackupsAfterNextBackup);
    query(
        &mut client,
        &format!(
            "BACKUP DATABASE [Octopus] TO DISK = {} WITH FORMAT, INIT, COPY_ONLY, DESCRIPTION = N'ours'",
            quote_str(&path)
        ),
    )
    .await
    .unwrap();
    let rows = query(
        &mut client,
        "SELECT bs.type, bs.description, mf.physical_device_name FROM msdb.dbo.backupset AS bs \
         JOIN msdb.dbo.backupmediafamily AS mf ON mf.media_set_id = bs.media_set_id \
         WHERE bs.database_name = N'Octopus' ORDER BY bs.backup_finish_date DESC",
    )
    .await
    .unwrap();
    let seen: Vec<(String, String)> = rows[0]
        .iter()
        .map(|r| {
            (
                r.get::<&str, _>("type").unwrap().to_string(),
                r.get::<&str, _>("description").unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0].0, "L");
    assert_eq!(seen[2].1, "ours");
    assert_ne!(
        rows[0][1].get::<&str, _>("physical_device_name"),
        Some(path.as_str())
    );

    lab.server.inject(SqlFault::DenyNextHistoryQuery);
    let e = server_error(
        &mut client,
        "SELECT TOP (1) backup_set_id FROM msdb.dbo.backupset",
    )
    .await;
    assert_eq!(e.code(), 229);
    query(
        &mut client,
        "SELECT TOP (1) backup_set_id FROM msdb.dbo.backupset",
    )
    .await
    .unwrap();
}
