//! The fault matrix for `restore` and `drill`: kill -9, SIGTERM and SIGINT at each of their
//! steps. A run is held at a step through the lab's test points (`OCTOBACKUP_LAB_PAUSE_AT`, see
//! `run::stop::lab_point`) or, inside RESTORE DATABASE, by the SQL Server stand-in's throttle.
//! After each: the live database untouched unless the user asked to replace it, no temporary
//! database left unless the message names it (and the next run removes it), the exit code true
//! (130 for a stop), no panic, the repository checks.

#![cfg(unix)]

use crate::common::*;
use octobackup_lab::sqlserver_sim::SqlFault;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

/// Where a run is stopped: a lab test point, or part-way through RESTORE DATABASE.
#[derive(Clone, Copy, Debug)]
enum At {
    Point(&'static str),
    MidRestore,
    /// Part-way through copying the .bak from the repository (slowed by the lab).
    MidCopy,
    /// Inside RESTORE VERIFYONLY (held by the stand-in, as a big backup's silent verify).
    MidVerify,
}

const SIGNALS: [&str; 3] = ["TERM", "INT", "KILL"];

fn temporary_databases(t: &TestLab) -> Vec<String> {
    t.lab
        .sql()
        .databases()
        .into_iter()
        .filter(|d| d.contains("_octobackup_"))
        .collect()
}

fn staging_leftovers(t: &TestLab) -> Vec<PathBuf> {
    t.staging_files()
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("octobackup-"))
        })
        .collect()
}

fn assert_repository_checks(t: &TestLab, name: &str) {
    let check = t.restic(&["check"]);
    assert!(
        check.status.success(),
        "{name}: restic check: {}",
        String::from_utf8_lossy(&check.stderr)
    );
}

/// Runs `args`, stops it at `at` with `signal`, and returns its output (exit code `None` after
/// kill -9).
async fn interrupt(t: &TestLab, args: &[&str], at: At, signal: &str) -> std::process::Output {
    let paused = t.dir.path().join("paused-at");
    let _ = std::fs::remove_file(&paused);
    let mut cmd = t.command(args);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let restores_before = seqs(&t.events(), "restore_started").len();
    match at {
        At::Point(p) => {
            cmd.env("OCTOBACKUP_LAB_PAUSE_AT", p)
                .env("OCTOBACKUP_LAB_PAUSED_FILE", &paused);
        }
        // Slow enough to be stopped part-way.
        At::MidRestore => t.lab.sql().set_backup_rate(Some(256 * 1024)),
        At::MidCopy => {
            cmd.env("OCTOBACKUP_LAB_STAGE_RATE", (64 * 1024).to_string())
                .env("OCTOBACKUP_LAB_PAUSED_FILE", &paused);
        }
        At::MidVerify => t.lab.sql().inject(SqlFault::SilenceBeforeNext {
            command: "RESTORE VERIFYON".into(),
            silence: Duration::from_secs(20),
        }),
    }
    let silent_before = seqs(&t.events(), "silence_started").len();
    let child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let there = match at {
            At::Point(_) | At::MidCopy => paused.exists(),
            At::MidRestore => seqs(&t.events(), "restore_started").len() > restores_before,
            At::MidVerify => seqs(&t.events(), "silence_started").len() > silent_before,
        };
        if there {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{args:?} never reached {at:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = signal_and_wait(child, signal).await;
    t.lab.sql().set_backup_rate(None);
    out
}

/// What every interrupted run must show: the exit code and message of a stop, no panic, and
/// any temporary database still there named in the message.
fn assert_stopped_truthfully(t: &TestLab, name: &str, signal: &str, out: &std::process::Output) {
    let e = stderr(out);
    assert!(!e.contains("panicked"), "{name}: {e}");
    if signal == "KILL" {
        assert_eq!(out.status.code(), None, "{name}: {e}");
        return;
    }
    assert_eq!(out.status.code(), Some(130), "{name}: {e}");
    let said = if signal == "INT" { "Ctrl-C" } else { "SIGTERM" };
    assert!(e.contains(&format!("interrupted by {said}")), "{name}: {e}");
    for db in temporary_databases(t) {
        assert!(e.contains(&db), "{name}: [{db}] left without a word: {e}");
    }
    // A temporary database kept (the only copy of a replaced one) keeps its marker, for
    // `recover` and `doctor`; no copy of the database stays beside it.
    let kept = e.contains("the restored copy is kept as");
    let left: Vec<PathBuf> = staging_leftovers(t)
        .into_iter()
        .filter(|p| {
            !kept
                || std::fs::read_dir(p)
                    .unwrap()
                    .any(|f| f.unwrap().file_name() != "octobackup-run.json")
        })
        .collect();
    assert!(
        left.is_empty(),
        "{name}: staging folders left: {left:?}: {e}"
    );
}

const RESTORE_POINTS: [At; 8] = [
    At::Point("restore: locked"),
    At::MidCopy,
    At::Point("restore: staged"),
    At::MidRestore,
    At::Point("restore: checkdb"),
    At::Point("restore: rename"),
    At::Point("restore: folders"),
    At::Point("restore: secrets"),
];

/// `restore` under a new name, stopped at each step: the live database never changes; a stop
/// leaves no temporary database it does not name; the same restore run again finishes it and
/// leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_under_a_new_name_stopped_at_each_step() {
    let t = TestLab::start().await;
    t.init().await;
    t.ok(&["backup"]).await;
    let live = t.database_digest_if_there("OctopusDeploy").unwrap();
    let mut cases = 0;
    for (i, at) in RESTORE_POINTS.into_iter().enumerate() {
        for signal in SIGNALS {
            let name = format!("restore as a copy, {at:?}, SIG{signal}");
            let target = format!("OctoCopy{i}{signal}");
            let folders = t.dir.path().join(format!("folders-{i}-{signal}"));
            let secrets = t.dir.path().join(format!("secrets-{i}-{signal}.txt"));
            let args = [
                "restore",
                "--database-name",
                &target,
                "--folders-to",
                folders.to_str().unwrap(),
                "--secrets-file",
                secrets.to_str().unwrap(),
            ];
            let out = interrupt(&t, &args, at, signal).await;
            assert_stopped_truthfully(&t, &name, signal, &out);
            assert_eq!(
                t.database_digest_if_there("OctopusDeploy").as_deref(),
                Some(live.as_str()),
                "{name}: the live database changed"
            );
            assert_repository_checks(&t, &name);
            // The next run finishes the job (a killed run's leftovers included); a database
            // already restored is not restored twice: then the rest is asked for.
            let _ = std::fs::remove_file(&secrets);
            let rest = [
                "restore",
                "--folders",
                "--secrets",
                "--folders-to",
                folders.to_str().unwrap(),
                "--secrets-file",
                secrets.to_str().unwrap(),
            ];
            let again = if t.database_digest_if_there(&target).is_some() {
                t.run(&rest).await
            } else {
                t.run(&args).await
            };
            assert!(again.status.success(), "{name}: again: {}", stderr(&again));
            assert!(
                temporary_databases(&t).is_empty(),
                "{name}: {:?}",
                temporary_databases(&t)
            );
            assert!(
                staging_leftovers(&t).is_empty(),
                "{name}: {:?}",
                staging_leftovers(&t)
            );
            assert_eq!(
                t.database_digest_if_there("OctopusDeploy").as_deref(),
                Some(live.as_str())
            );
            cases += 1;
        }
    }
    eprintln!("restore as a copy: {cases} faults injected, 0 wrong outcomes");
}

/// The live database's identity: its data file and that file's inode (a restore writes new
/// files, so an untouched database keeps both).
fn identity(t: &TestLab, database: &str) -> Option<(PathBuf, u64)> {
    use std::os::unix::fs::MetadataExt;
    let (data, _) = t.lab.sql().database_files(database)?;
    let ino = std::fs::metadata(&data).ok()?.ino();
    Some((data, ino))
}

/// After a stop, the same command passes and leaves no temporary database or staging folder.
async fn runs_again_and_leaves_nothing(t: &TestLab, name: &str, args: &[&str]) {
    let again = t.run(args).await;
    assert!(again.status.success(), "{name}: again: {}", stderr(&again));
    assert!(
        temporary_databases(t).is_empty(),
        "{name}: {:?}",
        temporary_databases(t)
    );
    assert!(
        staging_leftovers(t).is_empty(),
        "{name}: {:?}",
        staging_leftovers(t)
    );
}

/// `restore --replace`, stopped at each step: the live database is the old one, untouched, or
/// (only once it was dropped) the message names the checked copy kept under its temporary name,
/// or (only past the rename) it is the set's, as asked; the same restore run again puts the set's
/// database in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_replacing_the_database_stopped_at_each_step() {
    let mut t = TestLab::start().await;
    t.init().await;
    t.ok(&["backup"]).await;
    let set = t.database_digest_if_there("OctopusDeploy").unwrap();
    // The live database moves on from the set.
    t.lab.churn(1).await.unwrap();
    let mut cases = 0;
    for (i, at) in RESTORE_POINTS.into_iter().enumerate() {
        for signal in SIGNALS {
            let name = format!("restore --replace, {at:?}, SIG{signal}");
            let live = identity(&t, "OctopusDeploy").unwrap();
            let live_digest = t.database_digest_if_there("OctopusDeploy").unwrap();
            let folders = t.dir.path().join(format!("folders-{i}-{signal}"));
            let args = [
                "restore",
                "--database",
                "--folders",
                "--replace",
                "--folders-to",
                folders.to_str().unwrap(),
            ];
            let out = interrupt(&t, &args, at, signal).await;
            assert_stopped_truthfully(&t, &name, signal, &out);
            let e = stderr(&out);
            match identity(&t, "OctopusDeploy") {
                Some(now) if now == live => {
                    assert_eq!(
                        t.database_digest_if_there("OctopusDeploy").unwrap(),
                        live_digest,
                        "{name}"
                    )
                }
                // Replaced, as asked: only past the rename, which only the folders and the
                // secrets follow.
                Some(_) => {
                    assert!(
                        matches!(
                            at,
                            At::Point("restore: folders") | At::Point("restore: secrets")
                        ),
                        "{name}: replaced before the rename"
                    );
                    assert_eq!(
                        t.database_digest_if_there("OctopusDeploy").unwrap(),
                        set,
                        "{name}"
                    );
                }
                // Dropped, as asked, but not yet renamed: only at the rename, and a stop names
                // the checked copy.
                None => {
                    assert!(
                        matches!(at, At::Point("restore: rename")),
                        "{name}: dropped early"
                    );
                    if signal != "KILL" {
                        assert!(
                            e.contains("was already dropped; the restored copy is kept as"),
                            "{name}: {e}"
                        );
                    }
                }
            }
            assert_repository_checks(&t, &name);
            runs_again_and_leaves_nothing(&t, &name, &args).await;
            assert_eq!(
                t.database_digest_if_there("OctopusDeploy").as_deref(),
                Some(set.as_str())
            );
            cases += 1;
        }
    }
    eprintln!("restore --replace: {cases} faults injected, 0 wrong outcomes");
}

/// `drill` stopped at each step: the live database never changes, a stop removes the scratch
/// copies (or names what it could not remove), and the next drill passes and leaves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_stopped_at_each_step() {
    let t = TestLab::start().await;
    t.init().await;
    t.ok(&["backup"]).await;
    let live = t.database_digest_if_there("OctopusDeploy").unwrap();
    let mut cases = 0;
    for at in [
        At::MidCopy,
        At::Point("drill: staged"),
        At::MidVerify,
        At::Point("drill: verified"),
        At::MidRestore,
        At::Point("drill: restored"),
        At::Point("drill: folders"),
        At::Point("drill: cleanup"),
    ] {
        for signal in SIGNALS {
            let name = format!("drill, {at:?}, SIG{signal}");
            let out = interrupt(&t, &["drill"], at, signal).await;
            assert_stopped_truthfully(&t, &name, signal, &out);
            if signal != "KILL" {
                assert!(
                    stderr(&out).contains("its scratch copies were removed"),
                    "{name}: {}",
                    stderr(&out)
                );
            }
            assert_eq!(
                t.database_digest_if_there("OctopusDeploy").as_deref(),
                Some(live.as_str()),
                "{name}: the live database changed"
            );
            assert_repository_checks(&t, &name);
            runs_again_and_leaves_nothing(&t, &name, &["drill"]).await;
            cases += 1;
        }
    }
    eprintln!("drill: {cases} faults injected, 0 wrong outcomes");
}

/// A restore of the database waits for no backup: while a backup holds the SQL Server lock, it
/// refuses (exit 6) and changes nothing; a backup meets a restore's lock the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_and_a_backup_of_the_same_database_never_run_at_once() {
    let t = TestLab::start().await;
    t.init().await;
    t.ok(&["backup"]).await;
    let dbs = t.lab.sql().databases();
    let live = t.database_digest_if_there("OctopusDeploy").unwrap();

    // A backup inside its window holds the lock.
    let started = seqs(&t.events(), "backup_started").len();
    t.lab.sql().set_backup_rate(Some(256 * 1024));
    let mut backup = t
        .command(&["backup"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while seqs(&t.events(), "backup_started").len() == started {
        assert!(
            std::time::Instant::now() < deadline,
            "the backup never began"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = t
        .run(&[
            "restore",
            "--database",
            "--database-name",
            "OctoWhileBackup",
        ])
        .await;
    let e = stderr(&out);
    assert_eq!(out.status.code(), Some(6), "{e}");
    assert!(
        e.contains("cannot restore now: another octobackup run holds the lock"),
        "{e}"
    );
    assert!(e.contains("Nothing was restored or changed."), "{e}");
    assert_eq!(t.lab.sql().databases(), dbs);
    t.lab.sql().set_backup_rate(None);
    assert!(backup.wait().unwrap().success());

    // A restore held at a step holds the lock: a backup then refuses without touching
    // maintenance mode.
    let paused = t.dir.path().join("paused-at");
    let mut restore = t
        .command(&["restore", "--database", "--database-name", "OctoFirst"])
        .env("OCTOBACKUP_LAB_PAUSE_AT", "restore: locked")
        .env("OCTOBACKUP_LAB_PAUSED_FILE", &paused)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !paused.exists() {
        assert!(std::time::Instant::now() < deadline, "restore never paused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let changes = maintenance_changes(&t.events()).len();
    let out = t.run(&["backup"]).await;
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(stderr(&out).contains("maintenance mode was not touched"));
    assert_eq!(maintenance_changes(&t.events()).len(), changes);
    restore.kill().unwrap();
    restore.wait().unwrap();
    // SQL Server sees the killed run's connection close.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while t.lab.sql().session_count() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the session never ended"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        t.database_digest_if_there("OctopusDeploy").as_deref(),
        Some(live.as_str())
    );
    // The killed restore's lock went with its connection.
    t.ok(&["restore", "--database", "--database-name", "OctoAfter"])
        .await;
    assert_repository_checks(&t, "lock");
}

/// The status and detail of one check of `doctor --json`.
async fn doctor_check(t: &TestLab, name: &str) -> (String, String) {
    let out = t.run(&["--json", "doctor"]).await;
    let r: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor: not JSON ({e}): {}", stderr(&out)));
    let c = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {r:#}"))
        .clone();
    (
        c["status"].as_str().unwrap_or_default().to_string(),
        c.to_string(),
    )
}

/// A restore or drill killed with kill -9 and never run again: `doctor` warns and names the fix,
/// then `recover` drops the temporary database and deletes the staging folder (the unencrypted
/// copy of the database); the live database is untouched throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_removes_what_a_killed_restore_or_drill_left() {
    let t = TestLab::start().await;
    t.init().await;
    t.ok(&["backup"]).await;
    let live = t.database_digest_if_there("OctopusDeploy").unwrap();
    let dbs = t.lab.sql().databases();
    let (status, _) = doctor_check(&t, "restore-drill-leftovers").await;
    assert_eq!(status, "pass");
    let cases: [(&[&str], At); 6] = [
        (
            &["restore", "--database", "--database-name", "OctoKilled"],
            At::Point("restore: staged"),
        ),
        (
            &["restore", "--database", "--database-name", "OctoKilled"],
            At::MidRestore,
        ),
        (
            &["restore", "--database", "--database-name", "OctoKilled"],
            At::Point("restore: checkdb"),
        ),
        (&["drill"], At::Point("drill: verified")),
        (&["drill"], At::MidRestore),
        (&["drill"], At::Point("drill: folders")),
    ];
    for (args, at) in cases {
        let name = format!("{args:?} killed at {at:?}");
        let out = interrupt(&t, args, at, "KILL").await;
        assert_eq!(out.status.code(), None, "{name}");
        // SQL Server sees the killed run's connection close (and ends its RESTORE).
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while t.lab.sql().session_count() > 0 {
            assert!(std::time::Instant::now() < deadline, "{name}: session kept");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = staging_leftovers(&t);
        assert!(!left.is_empty(), "{name}: nothing was left to test");
        let (status, detail) = doctor_check(&t, "restore-drill-leftovers").await;
        assert_eq!(status, "warn", "{name}: {detail}");
        assert!(detail.contains("octobackup recover"), "{name}: {detail}");
        for db in temporary_databases(&t) {
            assert!(detail.contains(&db), "{name}: [{db}] not named: {detail}");
        }
        let out = t.ok(&["recover"]).await;
        let said = stdout(&out);
        assert!(said.contains("removed"), "{name}: {said}");
        assert!(
            temporary_databases(&t).is_empty(),
            "{name}: {:?}: {said}",
            temporary_databases(&t)
        );
        assert!(
            staging_leftovers(&t).is_empty(),
            "{name}: {:?}: {said}",
            staging_leftovers(&t)
        );
        assert_eq!(t.lab.sql().databases(), dbs, "{name}: {said}");
        assert_eq!(
            t.database_digest_if_there("OctopusDeploy").as_deref(),
            Some(live.as_str()),
            "{name}: the live database changed"
        );
        let (status, _) = doctor_check(&t, "restore-drill-leftovers").await;
        assert_eq!(status, "pass", "{name}");
    }
    assert_repository_checks(&t, "recover");
}

/// `restore --replace` killed once the old database is dropped: the temporary database is the
/// only copy left, so `recover` keeps it and says so; the same restore then finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_keeps_the_only_copy_of_a_replaced_database() {
    let t = TestLab::start().await;
    t.init().await;
    t.ok(&["backup"]).await;
    let set = t.database_digest_if_there("OctopusDeploy").unwrap();
    let args = ["restore", "--database", "--replace"];
    let out = interrupt(&t, &args, At::Point("restore: rename"), "KILL").await;
    assert_eq!(out.status.code(), None);
    assert_eq!(t.database_digest_if_there("OctopusDeploy"), None);
    let temp = temporary_databases(&t);
    assert_eq!(temp.len(), 1, "{temp:?}");
    let out = t.ok(&["recover"]).await;
    let said = stdout(&out);
    assert!(said.contains(&format!("kept [{}]", temp[0])), "{said}");
    assert!(said.contains("Run the same restore again"), "{said}");
    assert_eq!(temporary_databases(&t), temp);
    t.ok(&args).await;
    assert!(temporary_databases(&t).is_empty());
    assert!(staging_leftovers(&t).is_empty());
    assert_eq!(
        t.database_digest_if_there("OctopusDeploy").as_deref(),
        Some(set.as_str())
    );
}

/// The next backup, or a restore of another set or name, removes what a killed restore left:
/// its unencrypted copy does not wait for `recover`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_run_removes_a_killed_restores_copy() {
    let t = TestLab::start().await;
    t.init().await;
    t.ok(&["backup"]).await;
    let dbs = t.lab.sql().databases();
    for (i, next) in [
        &["backup"][..],
        &["restore", "--database", "--database-name", "OctoOther"],
        &["drill"],
    ]
    .into_iter()
    .enumerate()
    {
        let target = format!("OctoKilled{i}");
        let args = ["restore", "--database", "--database-name", &target];
        interrupt(&t, &args, At::Point("restore: checkdb"), "KILL").await;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while t.lab.sql().session_count() > 0 {
            assert!(std::time::Instant::now() < deadline, "session kept");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(temporary_databases(&t).len(), 1);
        assert_eq!(staging_leftovers(&t).len(), 1);
        let out = t.ok(next).await;
        assert!(
            temporary_databases(&t).is_empty(),
            "{next:?}: {:?}: {}",
            temporary_databases(&t),
            stderr(&out)
        );
        assert!(
            staging_leftovers(&t).is_empty(),
            "{next:?}: {:?}",
            staging_leftovers(&t)
        );
    }
    let mut now = t.lab.sql().databases();
    now.retain(|d| d != "OctoOther");
    assert_eq!(now, dbs);
}
