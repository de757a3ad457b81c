//! Shared test helpers: a server in a scratch directory, a lab database image,
//! tiberius clients at every encryption level, and a python-tds runner.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sqlserver_files::image::{self, ColumnType, DatabaseSpec, Table, Value};
use sqlserver_sim::{Edition, EventSink, SqlLogin, SqlServerConfig, SqlServerHandle, TlsSupport};
use tiberius::{AuthMethod, Client, Config, EncryptionLevel};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

pub const SA_PASSWORD: &str = "Lab-Passw0rd!";
pub const READER_PASSWORD: &str = "Reader-Passw0rd!";

/// A directory removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("sqlsim-{name}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Events the server sent, in order.
pub type Events = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

pub struct TestServer {
    pub server: SqlServerHandle,
    pub scratch: Scratch,
    pub events: Events,
}

impl TestServer {
    pub fn dir(&self) -> &Path {
        self.scratch.path()
    }

    pub fn events_of(&self, kind: &str) -> Vec<serde_json::Value> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

pub fn config(dir: &Path, edition: Edition, tls: TlsSupport, events: Events) -> SqlServerConfig {
    let sink: EventSink =
        Arc::new(move |kind, detail| events.lock().unwrap().push((kind.to_string(), detail)));
    SqlServerConfig {
        data_dir: dir.join("data"),
        logins: vec![
            SqlLogin::new("sa", SA_PASSWORD, true),
            SqlLogin::new("reader", READER_PASSWORD, false),
        ],
        edition,
        product_version: "16.0.4135.4".into(),
        tls,
        events: Some(sink),
        options: Default::default(),
    }
}

pub async fn start_lab(name: &str, edition: Edition, tls: TlsSupport) -> TestServer {
    let scratch = Scratch::new(name);
    let events: Events = Arc::default();
    let server = sqlserver_sim::start(config(scratch.path(), edition, tls, events.clone()))
        .await
        .unwrap();
    TestServer {
        server,
        scratch,
        events,
    }
}

/// A small Octopus-like database: a Configuration table and some bulk.
pub fn octopus_spec(name: &str) -> DatabaseSpec {
    let text = |s: &str| Value::Text(s.to_string());
    DatabaseSpec {
        name: name.to_string(),
        database_guid: uuid::Uuid::new_v4(),
        tables: vec![
            Table {
                schema: "dbo".into(),
                name: "Configuration".into(),
                columns: vec![
                    ("Id".into(), ColumnType::NVarChar),
                    ("JSON".into(), ColumnType::NVarChar),
                ],
                rows: vec![
                    vec![text("upgrade-availability"), text("{\"Enabled\":true}")],
                    vec![
                        text("server-folders"),
                        text("{\"Packages\":\"C:\\\\Octopus\\\\Packages\"}"),
                    ],
                ],
            },
            Table {
                schema: "dbo".into(),
                name: "Project".into(),
                columns: vec![
                    ("Id".into(), ColumnType::NVarChar),
                    ("Name".into(), ColumnType::NVarChar),
                    ("DataVersion".into(), ColumnType::VarBinary),
                    ("IsDisabled".into(), ColumnType::Bit),
                    ("Version".into(), ColumnType::Int),
                    ("Count".into(), ColumnType::BigInt),
                    ("Created".into(), ColumnType::DateTime2),
                    ("SpaceId".into(), ColumnType::UniqueIdentifier),
                ],
                rows: vec![vec![
                    text("Projects-1"),
                    text("Hello 'world'"),
                    Value::Binary(vec![1, 2, 3]),
                    Value::Bit(false),
                    Value::Int(7),
                    Value::Int(1 << 40),
                    Value::DateTime(
                        chrono::NaiveDate::from_ymd_opt(2024, 5, 6)
                            .unwrap()
                            .and_hms_micro_opt(7, 8, 9, 123_456)
                            .unwrap(),
                    ),
                    Value::Guid(
                        uuid::Uuid::parse_str("6f9619ff-8b86-d011-b42d-00c04fc964ff").unwrap(),
                    ),
                ]],
            },
        ],
        filler_pages: 256,
        seed: 42,
    }
}

/// Creates image files for `name` under `dir` and attaches them.
pub fn attach_octopus(lab: &TestServer, name: &str) -> (PathBuf, PathBuf) {
    attach_with_pages(lab, name, 256)
}

pub fn attach_with_pages(lab: &TestServer, name: &str, filler_pages: u32) -> (PathBuf, PathBuf) {
    let files = lab.dir().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let safe: String = name
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { '_' })
        .collect();
    let data = files.join(format!("{safe}.mdf"));
    let log = files.join(format!("{safe}_log.ldf"));
    let mut spec = octopus_spec(name);
    spec.filler_pages = filler_pages;
    image::create(&spec, &data, &log).unwrap();
    lab.server.attach_database(name, &data, &log).unwrap();
    (data, log)
}

pub type TdsClient = Client<Compat<TcpStream>>;

pub async fn connect_as(
    lab: &TestServer,
    user: &str,
    password: &str,
    encryption: EncryptionLevel,
) -> tiberius::Result<TdsClient> {
    let mut config = Config::new();
    config.host("127.0.0.1");
    config.port(lab.server.addr().port());
    config.authentication(AuthMethod::sql_server(user, password));
    config.trust_cert();
    config.encryption(encryption);
    let tcp = TcpStream::connect(lab.server.addr()).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    Client::connect(config, tcp.compat_write()).await
}

/// sa over TLS-free TDS (the fastest for tests that are not about TLS).
pub async fn connect(lab: &TestServer) -> TdsClient {
    connect_as(lab, "sa", SA_PASSWORD, EncryptionLevel::NotSupported)
        .await
        .unwrap()
}

/// Runs a batch and collects every result set.
pub async fn query(client: &mut TdsClient, sql: &str) -> tiberius::Result<Vec<Vec<tiberius::Row>>> {
    client.simple_query(sql).await?.into_results().await
}

/// The server error of a failed batch (tiberius keeps the first ERROR token).
pub async fn server_error(client: &mut TdsClient, sql: &str) -> tiberius::error::TokenError {
    match query(client, sql).await {
        Err(tiberius::error::Error::Server(e)) => e,
        other => panic!("expected a server error from {sql:?}, got {other:?}"),
    }
}

/// Quotes an identifier the way octobackup must: [name] with ] doubled.
pub fn quote_ident(name: &str) -> String {
    format!("[{}]", name.replace(']', "]]"))
}

/// Quotes a string literal: N'text' with ' doubled.
pub fn quote_str(text: &str) -> String {
    format!("N'{}'", text.replace('\'', "''"))
}

/// Runs a python-tds script on a blocking thread (the server keeps serving meanwhile);
/// `pytds` must be importable (pip install python-tds).
pub async fn python_tds(lab: &TestServer, script: &str) -> String {
    let (port, script) = (lab.server.addr().port(), script.to_string());
    tokio::task::spawn_blocking(move || run_python_tds(port, &script))
        .await
        .unwrap()
}

fn run_python_tds(port: u16, script: &str) -> String {
    let prelude = format!(
        "import pytds, sys\nHOST='127.0.0.1'\nPORT={}\nUSER='sa'\nPASSWORD={:?}\n",
        port, SA_PASSWORD
    );
    let check = std::process::Command::new("python3")
        .args(["-c", "import pytds"])
        .output();
    match check {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "python-tds is not importable; install it with: pip install python-tds\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!(
            "python3 is not available ({e}); install python3 and then: pip install python-tds"
        ),
    }
    let output = std::process::Command::new("python3")
        .args(["-c", &format!("{prelude}{script}")])
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "python-tds script failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
