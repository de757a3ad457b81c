//! The stand-in driven by TDS clients its authors did not write against: Microsoft's Node.js
//! driver tedious, FreeTDS (through pymssql) and Microsoft's mssql-python (bundled ODBC Driver
//! 18). Each script in tests/clients/ logs in over TLS as Octopus's connection string does
//! (the server's self-signed fallback certificate, trusted as Octopus does when the string does
//! not say), runs a query and a parameterized one, a BACKUP DATABASE WITH STATS (its INFO
//! messages), an error with its number, and a cancel, then prints one JSON line per check.
//! scripts/test.sh installs the clients; a missing one fails its test saying what to install.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use sqlserver_sim::{Edition, TlsSupport};

use crate::common::*;

/// The one lab the module's tests share: started on a thread of its own with its own runtime
/// (each #[tokio::test] has a runtime that ends with the test), alive until the binary exits.
struct SharedServer {
    port: u16,
    dir: PathBuf,
    events: Events,
}

fn shared_lab() -> &'static SharedServer {
    static LAB: OnceLock<SharedServer> = OnceLock::new();
    LAB.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async move {
                // Under the target directory, emptied at each start: the lab outlives every
                // test, and the process ends without dropping it.
                let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sqlserver-sim-clients");
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir).unwrap();
                let events: Events = Default::default();
                let server = sqlserver_sim::start(config(
                    &dir,
                    Edition::Developer,
                    TlsSupport::Supported,
                    events.clone(),
                ))
                .await
                .unwrap();
                let lab = TestServer {
                    server,
                    scratch: Scratch(dir),
                    events,
                };
                for client in ["tedious", "pymssql", "mssql_python"] {
                    attach_octopus(&lab, &format!("Octopus_{client}"));
                    // big enough that a throttled BACKUP is still running when it is cancelled
                    attach_with_pages(&lab, &format!("Big_{client}"), 4096);
                }
                // 8 MB/s: the small databases back up in well under a second, the big ones in
                // about four, so a cancel has a statement to stop.
                lab.server.set_backup_rate(Some(8 << 20));
                tx.send(SharedServer {
                    port: lab.server.addr().port(),
                    dir: lab.dir().to_path_buf(),
                    events: lab.events.clone(),
                })
                .unwrap();
                std::future::pending::<()>().await;
            });
        });
        rx.recv().unwrap()
    })
}

fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// Runs a client script with the connection settings on stdin (never in its arguments or
/// environment: the password is a secret) and returns its JSON lines.
fn run_client(program: &str, args: &[&str], client: &str) -> Vec<serde_json::Value> {
    let lab = shared_lab();
    let settings = serde_json::json!({
        "host": "127.0.0.1",
        "port": lab.port,
        "user": "sa",
        "password": SA_PASSWORD,
        "database": format!("Octopus_{client}"),
        "big_database": format!("Big_{client}"),
        "backup_dir": lab.dir.join(format!("backups-{client}")),
    });
    std::fs::create_dir_all(lab.dir.join(format!("backups-{client}"))).unwrap();
    let mut child = Command::new(program)
        .args(args)
        .current_dir(scripts_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{program} cannot be started ({e}): install it (scripts/test.sh does)")
        });
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(settings.to_string().as_bytes())
        .unwrap();
    let (status, stdout, stderr) = wait_bounded(child, CLIENT_LIMIT);
    let Some(status) = status else {
        panic!(
            "{client} script still running after {CLIENT_LIMIT:?}: killed (the last check it \
             printed is where it hung)\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
    };
    assert!(
        status.success(),
        "{client} script failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// How long a client script may take: each runs in seconds; a hang (a step the stand-in never
/// answers) fails its test instead of holding the whole run until CI's limit.
const CLIENT_LIMIT: std::time::Duration = std::time::Duration::from_secs(180);

/// Waits for `child` at most `limit`, killing it then; its output read meanwhile (so a full pipe
/// cannot stall it). `None` status: it was killed.
fn wait_bounded(
    mut child: std::process::Child,
    limit: std::time::Duration,
) -> (Option<std::process::ExitStatus>, String, String) {
    fn drain(pipe: Option<impl std::io::Read + Send + 'static>) -> std::thread::JoinHandle<String> {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    (status, stdout.join().unwrap(), stderr.join().unwrap())
}

#[cfg(unix)]
#[test]
fn a_client_that_hangs_is_killed_at_the_limit() {
    let child = Command::new("sh")
        .args(["-c", "echo started; exec sleep 60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (status, stdout, _) = wait_bounded(child, std::time::Duration::from_millis(500));
    assert!(status.is_none(), "the sleeping child was not killed");
    assert_eq!(stdout, "started\n");
}

#[test]
#[ignore = "a lab for trying clients by hand: prints its port and waits"]
fn lab_for_probing() {
    let lab = shared_lab();
    println!("port {} dir {}", lab.port, lab.dir.display());
    std::fs::write("/tmp/clients-lab-port", lab.port.to_string()).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3600));
}

/// The check named `name` of a script's output.
fn check<'a>(lines: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    lines
        .iter()
        .find(|l| l["check"] == name)
        .unwrap_or_else(|| panic!("no '{name}' check in {lines:?}"))
}

fn numbers(v: &serde_json::Value) -> Vec<i64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|n| n.as_i64().unwrap())
        .collect()
}

/// BACKUP ... STATS = 10 sent its progress (3211), the pages of each file (4035) and the
/// completion (3014) as INFO messages, in SQL Server's order.
fn assert_backup_messages(infos: &[i64]) {
    assert!(
        infos.iter().filter(|n| **n == 3211).count() >= 2,
        "{infos:?}"
    );
    let rest: Vec<i64> = infos.iter().copied().filter(|n| *n != 3211).collect();
    assert_eq!(rest, vec![4035, 4035, 3014], "{infos:?}");
}

/// The cancelled BACKUP of `database` ended on the server as cancelled, not completed.
fn assert_backup_cancelled(database: &str) {
    let events = shared_lab().events.lock().unwrap().clone();
    let finished: Vec<&serde_json::Value> = events
        .iter()
        .filter(|(k, v)| k == "backup_finished" && v["database"] == database)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(finished.len(), 1, "{events:?}");
    assert_eq!(finished[0]["ok"], false, "{finished:?}");
}

fn node_program() -> &'static str {
    "node"
}

#[test]
fn tedious_logs_in_queries_backs_up_and_cancels() {
    let module =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-tools/node_modules/tedious");
    let found = module.exists()
        || Command::new(node_program())
            .args(["-e", "require.resolve('tedious')"])
            .output()
            .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "tedious is not installed: npm install --prefix target/test-tools tedious (scripts/test.sh does)"
    );
    let out = run_client(node_program(), &["tedious.js"], "tedious");

    // A client that checks certificates refuses the self-signed fallback one, as with a real
    // server; with TrustServerCertificate (what Octopus adds) the TLS login works.
    let untrusted = check(&out, "untrusted_certificate");
    assert_eq!(untrusted["refused"], true, "{untrusted}");
    assert!(
        untrusted["message"]
            .as_str()
            .unwrap()
            .contains("self-signed certificate")
    );
    // tedious' login batch (SET DATEFIRST 7 and the other SET options) raises nothing.
    assert_eq!(check(&out, "login")["errors"], serde_json::json!([]));
    let query = check(&out, "query");
    assert_eq!(
        query["rows"],
        serde_json::json!([["16.0.4135.4", "Octopus_tedious"]]),
        "{query}"
    );
    // sp_executesql with NVARCHAR, INT and BIT parameters
    let params = check(&out, "parameters");
    assert_eq!(
        params["rows"],
        serde_json::json!([["Octopus_tedious", 42, true]]),
        "{params}"
    );
    let pool = check(&out, "pool_check");
    assert_eq!(pool["rows"], serde_json::json!([[1]]), "{pool}");
    // sp_executesql takes its statement as Unicode only: VARCHAR is Msg 214, NVARCHAR runs
    let varchar = check(&out, "varchar_statement");
    assert_eq!(varchar["errors"][0]["number"], 214, "{varchar}");
    assert_eq!(
        varchar["errors"][0]["message"],
        "Procedure expects parameter '@statement' of type 'ntext/nchar/nvarchar'."
    );
    assert_eq!(varchar["rows"], serde_json::json!([]), "{varchar}");
    let nvarchar = check(&out, "nvarchar_statement");
    assert_eq!(nvarchar["rows"], serde_json::json!([[1]]), "{nvarchar}");
    // D13: SET LANGUAGE sends the language ENVCHANGE and Msg 5703
    let language = check(&out, "set_language");
    assert_eq!(
        language["languages"],
        serde_json::json!(["us_english"]),
        "{language}"
    );
    assert_eq!(language["infos"][0]["number"], 5703, "{language}");
    assert_eq!(
        language["infos"][0]["message"],
        "Changed language setting to us_english."
    );
    // D13: SAVE TRANSACTION outside a transaction is Msg 628; a rollback to a savepoint keeps
    // the transaction
    let save = check(&out, "savepoint");
    assert_eq!(
        save["outside"]["errors"],
        serde_json::json!([628]),
        "{save}"
    );
    assert_eq!(save["inside"]["error"], serde_json::Value::Null, "{save}");
    assert_eq!(save["back"]["error"], serde_json::Value::Null, "{save}");
    assert_eq!(save["open"], serde_json::json!([[1]]), "{save}");
    assert_eq!(save["commit"]["error"], serde_json::Value::Null, "{save}");
    assert_eq!(save["closed"], serde_json::json!([[0]]), "{save}");

    let backup = check(&out, "backup");
    assert_eq!(backup["error"], serde_json::Value::Null, "{backup}");
    assert_eq!(backup["errors"], serde_json::json!([]), "{backup}");
    assert_backup_messages(&numbers(&backup["infos"]));

    let error = check(&out, "error");
    assert_eq!(error["error"]["number"], 208, "{error}");
    assert_eq!(
        error["errors"][0]["message"],
        "Invalid object name 'dbo.NoSuchTable'."
    );

    // The cancel is acknowledged in a message of its own: the request ends cancelled and the
    // connection stays usable.
    let cancel = check(&out, "cancel");
    assert_eq!(cancel["error"]["code"], "ECANCEL", "{cancel}");
    assert_eq!(cancel["after"], serde_json::json!([[1]]), "{cancel}");
    assert_backup_cancelled("Big_tedious");
}

/// Python with `module` importable, or a panic saying how to install it.
fn python_with(module: &str, package: &str) -> &'static str {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{package} is not installed: python3 -m pip install {package} (scripts/test.sh does)"
    );
    "python3"
}

#[test]
fn freetds_through_pymssql_logs_in_queries_backs_up_and_cancels() {
    let python = python_with("pymssql", "pymssql");
    let out = run_client(python, &["pymssql_client.py"], "pymssql");
    let query = check(&out, "query");
    assert_eq!(
        query["rows"],
        serde_json::json!([["16.0.4135.4", "Octopus_pymssql"]]),
        "{query}"
    );
    let params = check(&out, "parameters");
    assert_eq!(
        params["rows"],
        serde_json::json!([["Octopus_pymssql", 42]]),
        "{params}"
    );
    let callproc = check(&out, "callproc");
    assert_eq!(callproc["error"], serde_json::Value::Null, "{callproc}");
    assert_eq!(callproc["rows"], serde_json::json!([[7]]), "{callproc}");
    assert_backup_messages(&numbers(&check(&out, "backup")["infos"]));
    let error = check(&out, "error");
    assert_eq!(error["number"], 208, "{error}");
    let cancel = check(&out, "cancel");
    assert_eq!(cancel["after"], 1, "{cancel}");
    assert_backup_cancelled("Big_pymssql");
}

/// Down-level clients (tds-divergences.md D10, D11), through FreeTDS: TDS 7.1 sends batches
/// without ALL_HEADERS and reads 32-bit DONE row counts and (max) values as ntext; TDS 7.1 and
/// 7.2 see datetime2 as nvarchar; 7.3 and 7.4 get datetime2 itself.
#[test]
fn freetds_down_level_tds_versions_read_what_sql_server_sends_them() {
    let python = python_with("pymssql", "pymssql");
    let out = run_client(python, &["pymssql_tds_versions.py"], "pymssql");
    let version = |v: &str| {
        out.iter()
            .find(|l| l["version"] == v)
            .unwrap_or_else(|| panic!("no line for TDS {v}: {out:?}"))
            .clone()
    };
    for v in ["7.1", "7.2", "7.3", "7.4"] {
        let line = version(v);
        assert_eq!(line["connected"], true, "{line}");
        assert_eq!(line["error"], serde_json::Value::Null, "{line}");
        assert_eq!(line["product_version"], "16.0.4135.4", "{line}");
        assert_eq!(line["long_length"], 5000, "{line}");
        assert_eq!(line["big"], 7, "{line}");
        assert_eq!(
            line["names"],
            serde_json::json!(["master", "tempdb", "model", "msdb"]),
            "{line}"
        );
        let expected = if v == "7.1" || v == "7.2" {
            "str"
        } else {
            "datetime"
        };
        assert_eq!(line["now_type"], expected, "{line}");
    }
    // datetime2 as text: 'YYYY-MM-DD hh:mm:ss.fffffff'
    let now = version("7.2")["now"].as_str().unwrap().to_string();
    assert_eq!(now.len(), 27, "{now}");
    assert_eq!(&now[4..5], "-", "{now}");
    assert_eq!(&now[19..20], ".", "{now}");
}

#[test]
fn mssql_python_logs_in_queries_backs_up_and_cancels() {
    let python = python_with("mssql_python", "mssql-python");
    let out = run_client(python, &["mssql_python_client.py"], "mssql_python");
    let untrusted = check(&out, "untrusted_certificate");
    assert_eq!(untrusted["refused"], true, "{untrusted}");
    let query = check(&out, "query");
    assert_eq!(
        query["rows"],
        serde_json::json!([["16.0.4135.4", "Octopus_mssql_python"]]),
        "{query}"
    );
    let params = check(&out, "parameters");
    assert_eq!(
        params["rows"],
        serde_json::json!([["Octopus_mssql_python", 42, true]]),
        "{params}"
    );
    assert_backup_messages(&numbers(&check(&out, "backup")["infos"]));
    // ODBC names Msg 208 by its SQLSTATE, 42S02 "Base table or view not found".
    let error = check(&out, "error")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.contains("Base table or view not found"), "{error}");
    assert!(
        error.contains("Invalid object name 'dbo.NoSuchTable'."),
        "{error}"
    );
    // the query timeout sends ATTENTION
    let cancel = check(&out, "cancel");
    assert!(
        cancel["error"]
            .as_str()
            .unwrap()
            .contains("Query timeout expired"),
        "{cancel}"
    );
    assert_eq!(cancel["after"], 1, "{cancel}");
    assert_backup_cancelled("Big_mssql_python");
}

/// Divergences from SQL Server that other clients found beside RPC and ATTENTION (D3, D5, D7 and
/// D9, each named at its check below), checked here through tiberius.
#[tokio::test]
async fn divergences_found_by_other_clients_are_fixed() {
    let lab = start_lab("divergences", Edition::Developer, TlsSupport::NotSupported).await;
    attach_octopus(&lab, "Octopus");
    let mut client = connect(&lab).await;

    // D5: literals longer than nvarchar(4000) / varchar(8000) come back whole, as (n)varchar(max)
    let long = "x".repeat(9000);
    let rows = query(
        &mut client,
        &format!("SELECT N'{long}' AS n, '{long}' AS v"),
    )
    .await
    .unwrap();
    assert_eq!(rows[0][0].get::<&str, _>("n").map(str::len), Some(9000));
    assert_eq!(rows[0][0].get::<&str, _>("v").map(str::len), Some(9000));

    // D9: msdb is in SIMPLE recovery, model in FULL, as a fresh install has them
    let rows = query(
        &mut client,
        "SELECT name, recovery_model_desc FROM sys.databases WHERE database_id <= 4 ORDER BY database_id",
    )
    .await
    .unwrap();
    let models: Vec<(String, String)> = rows[0]
        .iter()
        .map(|r| {
            (
                r.get::<&str, _>(0).unwrap().to_string(),
                r.get::<&str, _>(1).unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        models,
        [
            ("master", "SIMPLE"),
            ("tempdb", "SIMPLE"),
            ("model", "FULL"),
            ("msdb", "SIMPLE")
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );

    // D7: RESTORE HEADERONLY has SQL Server 2022's 59 columns
    let bak = lab.dir().join("h.bak").to_string_lossy().into_owned();
    query(
        &mut client,
        &format!(
            "BACKUP DATABASE [Octopus] TO DISK = {} WITH FORMAT",
            quote_str(&bak)
        ),
    )
    .await
    .unwrap();
    let rows = query(
        &mut client,
        &format!("RESTORE HEADERONLY FROM DISK = {}", quote_str(&bak)),
    )
    .await
    .unwrap();
    let columns: Vec<String> = rows[0][0]
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    assert_eq!(columns.len(), 59, "{columns:?}");
    assert_eq!(
        &columns[56..],
        ["LastValidRestoreTime", "TimeZone", "CompressionAlgorithm"]
    );
    assert_eq!(rows[0][0].get::<&str, _>("CompressionAlgorithm"), None);

    // D3: valid T-SQL the lab lacks is its own Msg 50000; a typo is still Msg 102
    query(&mut client, "SET DATEFIRST 7").await.unwrap();
    for sql in [
        "SELECT NEWID()",
        "SELECT CAST(N'2024-01-02' AS date)",
        "IF DB_ID(N'Octopus') IS NOT NULL BEGIN SELECT 1 END",
        "DECLARE @n int = 1",
    ] {
        let e = server_error(&mut client, sql).await;
        assert_eq!(e.code(), 50000, "{sql}: {e:?}");
        assert!(e.message().starts_with("[octobackup lab] "), "{e:?}");
    }
    assert_eq!(server_error(&mut client, "SELEKT 1").await.code(), 102);
    lab.server.shutdown().await;
}
