//! The independent client: python-tds (`pip install python-tds`) connects, reads properties and
//! tables, and sees the INFO messages tiberius hides (STATS progress, Msg 3014, CHECKDB output)
//! and every error of a failed statement.

use crate::common::*;
use sqlserver_sim::{Edition, TlsSupport};

/// Connects with autocommit and defines `run(sql)`, which executes a statement, swallows a
/// server error, and prints every message as "number|severity|text".
const PRELUDE: &str = r#"
conn = pytds.connect(server=HOST, port=PORT, user=USER, password=PASSWORD, autocommit=True)
cur = conn.cursor()
def run(sql):
    try:
        cur.execute(sql)
    except pytds.Error:
        pass
    for _, m in cur.messages:
        print('%d|%d|%s' % (m.msg_no, m.severity, m.text))
"#;

/// A Rust string as a Python string literal.
fn py(text: &str) -> String {
    format!("{text:?}")
}

fn messages(output: &str) -> Vec<(i32, i32, String)> {
    output
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, '|');
            let n = parts.next()?.parse().ok()?;
            let s = parts.next()?.parse().ok()?;
            Some((n, s, parts.next()?.to_string()))
        })
        .collect()
}

async fn run_statements(lab: &TestServer, statements: &[String]) -> Vec<(i32, i32, String)> {
    let script: String = statements
        .iter()
        .map(|s| format!("run({})\n", py(s)))
        .collect();
    messages(&python_tds(lab, &format!("{PRELUDE}{script}")).await)
}

#[tokio::test]
async fn python_tds_reads_properties_and_tables() {
    let lab = start_lab("pytds", Edition::Developer, TlsSupport::Supported).await;
    attach_octopus(&lab, "Octopus");
    let script = format!(
        "{PRELUDE}
cur.execute({})
print(repr(cur.fetchone()))
cur.execute('SELECT [Id], [JSON] FROM [Octopus].[dbo].[Configuration] ORDER BY [Id]')
for row in cur.fetchall(): print(row[0])
cur.execute('SELECT * FROM [Octopus].[dbo].[Project]')
print(repr(cur.fetchone()))
",
        py(
            "SELECT SERVERPROPERTY('ProductVersion'), SERVERPROPERTY('EngineEdition'), @@SPID, DB_ID(N'Octopus')"
        )
    );
    let out = python_tds(&lab, &script).await;
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("('16.0.4135.4', 3, "), "{out}");
    assert!(lines[0].ends_with(", 5)"), "{out}");
    assert_eq!(&lines[1..3], &["server-folders", "upgrade-availability"]);
    assert!(
        lines[3].contains("'Projects-1'") && lines[3].contains("\"Hello 'world'\""),
        "{out}"
    );
    assert!(
        lines[3].contains("datetime.datetime(2024, 5, 6, 7, 8, 9, 123456)"),
        "{out}"
    );
    assert!(
        lines[3].contains("UUID('6f9619ff-8b86-d011-b42d-00c04fc964ff')"),
        "{out}"
    );
    lab.server.shutdown().await;
}

#[tokio::test]
async fn python_tds_sees_stats_and_completion_messages() {
    let lab = start_lab("pytds-stats", Edition::Developer, TlsSupport::NotSupported).await;
    attach_octopus(&lab, "Octopus");
    let bak = lab.dir().join("stats.bak").to_string_lossy().into_owned();
    let msgs = run_statements(
        &lab,
        &[format!("BACKUP DATABASE [Octopus] TO DISK = {} WITH FORMAT, INIT, CHECKSUM, STATS, MAXTRANSFERSIZE = 65536", quote_str(&bak))],
    )
    .await;
    let percents: Vec<u32> = msgs
        .iter()
        .filter(|(n, _, _)| *n == 3211)
        .map(|(_, s, t)| {
            assert_eq!(*s, 10);
            t.strip_suffix(" percent processed.")
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(percents.len() >= 5, "{msgs:?}");
    // each message reports the first progress past another multiple of 10 (STATS without a value)
    assert!(
        percents.windows(2).all(|w| w[1] / 10 > w[0] / 10),
        "{percents:?}"
    );
    assert_eq!(*percents.last().unwrap(), 100);
    let processed: Vec<&String> = msgs
        .iter()
        .filter(|(n, _, _)| *n == 4035)
        .map(|(_, _, t)| t)
        .collect();
    assert_eq!(processed.len(), 2, "{msgs:?}");
    assert!(
        processed[0].starts_with("Processed ")
            && processed[0].ends_with(" pages for database 'Octopus', file 'Octopus' on file 1.")
    );
    assert!(processed[1].ends_with(" pages for database 'Octopus', file 'Octopus_log' on file 1."));
    let done = msgs.iter().find(|(n, _, _)| *n == 3014).expect("Msg 3014");
    assert!(
        done.2
            .starts_with("BACKUP DATABASE successfully processed "),
        "{}",
        done.2
    );
    assert!(done.2.ends_with(" MB/sec)."), "{}", done.2);
    // the messages come in SQL Server's order, progress first
    let order: Vec<i32> = msgs
        .iter()
        .map(|(n, _, _)| *n)
        .filter(|n| *n != 3211)
        .collect();
    assert_eq!(order, vec![4035, 4035, 3014]);
    assert_eq!(msgs.iter().position(|m| m.0 == 4035), Some(percents.len()));

    // VERIFYONLY and RESTORE report too
    let data = lab.dir().join("v.mdf").to_string_lossy().into_owned();
    let log = lab.dir().join("v.ldf").to_string_lossy().into_owned();
    let msgs = run_statements(
        &lab,
        &[
            format!("RESTORE VERIFYONLY FROM DISK = {} WITH CHECKSUM", quote_str(&bak)),
            format!(
                "RESTORE DATABASE [Copy] FROM DISK = {} WITH MOVE N'Octopus' TO {}, MOVE N'Octopus_log' TO {}, STATS = 50",
                quote_str(&bak),
                quote_str(&data),
                quote_str(&log)
            ),
        ],
    )
    .await;
    assert_eq!(
        msgs[0],
        (3262, 10, "The backup set on file 1 is valid.".to_string())
    );
    assert!(
        msgs.iter().any(
            |(n, _, t)| *n == 3014 && t.starts_with("RESTORE DATABASE successfully processed ")
        ),
        "{msgs:?}"
    );
    assert!(
        msgs.iter().any(|(n, _, t)| *n == 4035
            && t.contains("for database 'Copy', file 'Octopus_log' on file 1.")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|(n, _, t)| *n == 3211 && t == "100 percent processed."),
        "{msgs:?}"
    );
    lab.server.shutdown().await;
}

#[tokio::test]
async fn python_tds_sees_every_error_of_a_failed_backup() {
    let lab = start_lab("pytds-errors", Edition::Developer, TlsSupport::NotSupported).await;
    attach_octopus(&lab, "Octopus");
    let nowhere = lab
        .dir()
        .join("missing")
        .join("x.bak")
        .to_string_lossy()
        .into_owned();
    let msgs = run_statements(
        &lab,
        &[
            format!(
                "BACKUP DATABASE [Octopus] TO DISK = {}",
                quote_str(&nowhere)
            ),
            "BACKUP DATABASE [Nope] TO DISK = N'x.bak'".into(),
        ],
    )
    .await;
    assert_eq!(msgs.len(), 4, "{msgs:?}");
    assert_eq!(
        msgs[0],
        (
            3201,
            16,
            format!(
                "Cannot open backup device '{nowhere}'. Operating system error {}.",
                if cfg!(windows) {
                    "3(The system cannot find the path specified.)"
                } else {
                    "2(The system cannot find the file specified.)"
                }
            )
        )
    );
    assert_eq!(
        msgs[1],
        (
            3013,
            16,
            "BACKUP DATABASE is terminating abnormally.".to_string()
        )
    );
    assert_eq!(
        msgs[2],
        (
            911,
            16,
            "Database 'Nope' does not exist. Make sure that the name is entered correctly."
                .to_string()
        )
    );
    assert_eq!(
        msgs[3],
        (
            3013,
            16,
            "BACKUP DATABASE is terminating abnormally.".to_string()
        )
    );
    lab.server.shutdown().await;
}

#[tokio::test]
async fn python_tds_sees_checkdb_output() {
    let lab = start_lab(
        "pytds-checkdb",
        Edition::Developer,
        TlsSupport::NotSupported,
    )
    .await;
    let (data, _) = attach_octopus(&lab, "Octopus");
    let msgs = run_statements(&lab, &["DBCC CHECKDB ([Octopus])".into()]).await;
    assert!(
        msgs.contains(&(
            8989,
            10,
            "CHECKDB found 0 allocation errors and 0 consistency errors in database 'Octopus'."
                .to_string()
        )),
        "{msgs:?}"
    );
    assert_eq!(msgs.last().unwrap().0, 2528);
    assert!(
        run_statements(&lab, &["DBCC CHECKDB (N'Octopus') WITH NO_INFOMSGS".into()])
            .await
            .is_empty()
    );

    let page = sqlserver_files::image::corrupt_one_page(&data).unwrap();
    let msgs = run_statements(&lab, &["DBCC CHECKDB (N'Octopus') WITH NO_INFOMSGS".into()]).await;
    let numbers: Vec<i32> = msgs.iter().map(|m| m.0).collect();
    assert_eq!(numbers, vec![8928, 8939, 8989, 8958], "{msgs:?}");
    assert!(msgs[1].2.contains(&format!("page (1:{page})")), "{msgs:?}");
    assert_eq!(
        msgs[2].2,
        "CHECKDB found 0 allocation errors and 2 consistency errors in database 'Octopus'."
    );
    lab.server.shutdown().await;
}

#[tokio::test]
async fn python_tds_with_autocommit_off_uses_transactions() {
    let lab = start_lab("pytds-tran", Edition::Developer, TlsSupport::NotSupported).await;
    attach_octopus(&lab, "Octopus");
    // pytds opens a transaction (transaction-manager request) when autocommit is off, so BACKUP fails
    // with Msg 3021 as it does against SQL Server.
    let script = format!(
        r#"
conn = pytds.connect(server=HOST, port=PORT, user=USER, password=PASSWORD, autocommit=False)
cur = conn.cursor()
cur.execute('SELECT @@TRANCOUNT')
print(cur.fetchone()[0])
try:
    cur.execute({})
except pytds.OperationalError as e:
    print(e.msg_no, e.args[0])
conn.commit()
conn.autocommit = True
cur = conn.cursor()
cur.execute('SELECT @@TRANCOUNT')
print(cur.fetchone()[0])
"#,
        py("BACKUP DATABASE [Octopus] TO DISK = N't.bak'")
    );
    let out = python_tds(&lab, &script).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1", "{out}");
    assert!(lines[1].starts_with("3013 "), "{out}");
    assert!(
        lines[1].contains("Cannot perform a backup or restore operation within a transaction."),
        "{out}"
    );
    assert_eq!(lines[2], "0", "{out}");
    lab.server.shutdown().await;
}
