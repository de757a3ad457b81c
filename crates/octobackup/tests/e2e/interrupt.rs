//! A stop (SIGTERM, Ctrl-C) while SQL Server runs octobackup's statement: the statement is
//! stopped on the server with ATTENTION (a dropped connection leaves a real server's BACKUP
//! running until it notices), then maintenance mode is put back as found. Signals: Unix only.
#![cfg(unix)]

use crate::common::*;

/// The server heard ATTENTION on the statement's connection (not just a dropped client) and
/// ended the statement as cancelled: one `finished` event, not ok.
fn assert_cancelled_on_the_server(events: &[octobackup_lab::LabEvent], finished: &str) {
    assert_eq!(
        seqs(events, "attention_acknowledged").len(),
        1,
        "{events:?}"
    );
    let ends: Vec<_> = events.iter().filter(|e| e.kind == finished).collect();
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert_eq!(ends[0].detail["ok"], false, "{ends:?}");
}

/// SIGTERM while BACKUP DATABASE runs: the server acknowledges ATTENTION and ends the BACKUP as
/// cancelled; maintenance mode is off as found; nothing is complete; exit 130.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_backup_database_stops_it_on_the_server() {
    let t = TestLab::start().await;
    t.init().await;
    let child = t.spawn_slow_backup(std::process::Stdio::piped()).await;
    let out = sigterm(child).await;
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("SQL Server's BACKUP DATABASE was stopped")
            && stderr(&out).contains("maintenance mode was put back off"),
        "{}",
        stderr(&out)
    );
    assert_cancelled_on_the_server(&t.events(), "backup_finished");
    t.assert_off_and_no_set_complete().await;
}

/// SIGTERM while RESTORE DATABASE runs: the server acknowledges ATTENTION and ends the RESTORE
/// as cancelled (it would go on otherwise), the partly restored copy is dropped, exit 130.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_restore_database_stops_it_on_the_server() {
    let t = TestLab::start().await;
    t.init().await;
    t.ok(&["backup"]).await;
    let databases = t.lab.sql().databases();
    let out = sigterm_during_restore(&t, "OctoStopped", 256 * 1024).await;
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert_cancelled_on_the_server(&t.events(), "restore_finished");
    assert_eq!(t.lab.sql().databases(), databases);
    assert!(!t.lab.octopus().maintenance());
}

/// SIGTERM once RESTORE DATABASE (slowed to `rate` bytes a second, so still running) has
/// started restoring the latest set under `name`; returns the run's output once it exited.
async fn sigterm_during_restore(t: &TestLab, name: &str, rate: u64) -> std::process::Output {
    t.lab.sql().set_backup_rate(Some(rate));
    let child = t
        .command(&["restore", "--database", "--database-name", name])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    t.wait_for_event("restore_started").await;
    let out = sigterm(child).await;
    t.lab.sql().set_backup_rate(None);
    out
}

/// SIGTERM during a BACKUP DATABASE that does not heed ATTENTION (as a real one blocked on I/O
/// may not); returns the run's output once it exited. The BACKUP is slowed so that it is still
/// running when octobackup gives up waiting for the acknowledgment.
async fn sigterm_during_deaf_backup(t: &TestLab) -> std::process::Output {
    use octobackup_lab::sqlserver_sim::SqlFault;
    t.lab.sql().inject(SqlFault::IgnoreAttentionDuringNext {
        command: "BACKUP DATABASE".into(),
    });
    let child = t.spawn_slow_backup(std::process::Stdio::piped()).await;
    t.lab.sql().set_backup_rate(Some(8 * 1024));
    let out = sigterm(child).await;
    t.lab.sql().set_backup_rate(None);
    out
}

/// The set folders left in staging, each with whether it carries the keep-for-cleanup marker.
fn staging_sets(t: &TestLab) -> Vec<(std::path::PathBuf, bool)> {
    t.staging_files()
        .into_iter()
        .filter(|p| p.is_dir())
        .map(|p| {
            let marked = p.join("octobackup-keep-for-cleanup").exists();
            (p, marked)
        })
        .collect()
}

/// SIGTERM while a BACKUP DATABASE ignores ATTENTION: no acknowledgment comes, so octobackup
/// ends the BACKUP's session with KILL from a second connection and says so; the BACKUP is
/// ended on the server, maintenance mode is off as found, nothing is complete, staging is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_backup_that_ignores_attention_kills_its_session() {
    let t = TestLab::start().await;
    t.init().await;
    let out = sigterm_during_deaf_backup(&t).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        err.contains("SQL Server's BACKUP DATABASE was stopped with KILL")
            && err.contains("ATTENTION was not acknowledged within 15 s")
            && err.contains("maintenance mode was put back off"),
        "{err}"
    );
    let events = t.events();
    assert!(
        seqs(&events, "attention_acknowledged").is_empty(),
        "{events:?}"
    );
    assert_eq!(seqs(&events, "attention_received").len(), 1, "{events:?}");
    let killed: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "session_killed")
        .collect();
    assert_eq!(killed.len(), 1, "{killed:?}");
    let started = events.iter().find(|e| e.kind == "backup_started").unwrap();
    assert_eq!(
        killed[0].detail["spid"], started.detail["spid"],
        "{events:?}"
    );
    let finished: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "backup_finished")
        .collect();
    assert_eq!(finished.len(), 1, "{finished:?}");
    assert_eq!(finished[0].detail["ok"], false, "{finished:?}");
    assert_eq!(finished[0].detail["error"], "ended by KILL", "{finished:?}");
    // the KILL ended the BACKUP before maintenance mode went back off
    let changes = maintenance_changes(&events);
    assert_eq!(changes.last().map(|c| c.1), Some(false), "{changes:?}");
    assert!(finished[0].seq < changes.last().unwrap().0, "{events:?}");
    assert!(!t.lab.octopus().maintenance());
    assert!(t.sets().await.iter().all(|s| s["complete"] != true));
    // seen ended: its staging folder went with the run
    assert_eq!(staging_sets(&t), vec![], "{err}");
}

/// The same with a login that may back up but not KILL (no ALTER ANY CONNECTION): the refusal
/// (Msg 6102) is said plainly with the grant that allows it, the BACKUP's staging folder is
/// kept with its marker, maintenance mode is off as found and nothing is complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_backup_that_ignores_attention_with_a_login_that_may_not_kill() {
    let t = TestLab::start_with(|o| o.sql_least_privilege = true).await;
    t.init().await;
    let login = t.lab.info().sql_login.clone();
    for grant in [
        format!("USE [OctopusDeploy]; ALTER ROLE db_backupoperator ADD MEMBER [{login}];"),
        format!("USE master; GRANT CREATE ANY DATABASE TO [{login}];"),
        format!(
            "USE msdb; CREATE USER [{login}] FOR LOGIN [{login}]; GRANT SELECT ON dbo.backupset TO [{login}]; GRANT SELECT ON dbo.backupmediafamily TO [{login}];"
        ),
        format!("USE master; GRANT VIEW SERVER STATE TO [{login}];"),
    ] {
        t.as_dba(&grant).await;
    }
    // doctor warns beforehand, with the grant.
    let out = t.run(&["--json", "doctor"]).await;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kill = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "sql-kill")
        .unwrap_or_else(|| panic!("no sql-kill check: {report:#}"));
    assert_eq!(kill["status"], "warn", "{kill:#}");
    assert_eq!(
        kill["fix"],
        format!("USE master; GRANT ALTER ANY CONNECTION TO [{login}];"),
        "{kill:#}"
    );
    let out = sigterm_during_deaf_backup(&t).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        err.contains("BACKUP DATABASE MAY STILL BE RUNNING")
            && err.contains("Msg 6102: User does not have permission to use the KILL statement")
            && err.contains("ALTER ANY CONNECTION")
            && err.contains("is kept with its marker")
            && err.contains("maintenance mode was put back off"),
        "{err}"
    );
    let events = t.events();
    assert!(seqs(&events, "session_killed").is_empty(), "{events:?}");
    assert!(
        seqs(&events, "attention_acknowledged").is_empty(),
        "{events:?}"
    );
    t.assert_off_and_no_set_complete().await;
    let kept = staging_sets(&t);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].1, "no marker in {kept:?}");
}

/// `wait.max_window` cuts short a BACKUP DATABASE that does not heed ATTENTION: after the
/// window, octobackup ends its session with KILL and says so; maintenance mode is off as found,
/// nothing is complete, no staging is left, exit 1 as for any overrun.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_overrun_kills_a_backup_that_ignores_attention() {
    use octobackup_lab::sqlserver_sim::SqlFault;
    let t = TestLab::start().await;
    t.init().await;
    t.set_wait("1s", "2s");
    t.lab.sql().set_backup_rate(Some(8 * 1024));
    t.lab.sql().inject(SqlFault::IgnoreAttentionDuringNext {
        command: "BACKUP DATABASE".into(),
    });
    let out = t.run(&["backup"]).await;
    t.lab.sql().set_backup_rate(None);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("overran its budget (wait.max_window = 2s)")
            && err.contains(
                "The cut BACKUP DATABASE: SQL Server's BACKUP DATABASE was stopped with KILL"
            ),
        "{err}"
    );
    let events = t.events();
    assert!(
        seqs(&events, "attention_acknowledged").is_empty(),
        "{events:?}"
    );
    let killed = seqs(&events, "session_killed");
    assert_eq!(killed.len(), 1, "{events:?}");
    let changes = maintenance_changes(&events);
    assert_eq!(changes.last().map(|c| c.1), Some(false), "{changes:?}");
    // told to stop after the window closed, as the ATTENTION is
    assert!(killed[0] > changes.last().unwrap().0, "{events:?}");
    assert!(!t.lab.octopus().maintenance());
    assert!(t.sets().await.iter().all(|s| s["complete"] != true));
    assert_eq!(staging_sets(&t), vec![], "{err}");
}

/// SIGTERM while a RESTORE DATABASE ignores ATTENTION: octobackup ends its session with KILL
/// and says so; the partly restored copy is dropped and the databases are as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_restore_that_ignores_attention_kills_its_session() {
    use octobackup_lab::sqlserver_sim::SqlFault;
    let t = TestLab::start().await;
    t.init().await;
    t.ok(&["backup"]).await;
    let databases = t.lab.sql().databases();
    t.lab.sql().inject(SqlFault::IgnoreAttentionDuringNext {
        command: "RESTORE DATABASE".into(),
    });
    let out = sigterm_during_restore(&t, "OctoDeaf", 8 * 1024).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        err.contains("SQL Server's RESTORE DATABASE or DBCC CHECKDB was stopped with KILL")
            && err.contains("ATTENTION was not acknowledged within 30 s"),
        "{err}"
    );
    let events = t.events();
    assert!(
        seqs(&events, "attention_acknowledged").is_empty(),
        "{events:?}"
    );
    assert_eq!(seqs(&events, "session_killed").len(), 1, "{events:?}");
    let finished: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "restore_finished")
        .collect();
    assert_eq!(finished.len(), 1, "{finished:?}");
    assert_eq!(finished[0].detail["error"], "ended by KILL", "{finished:?}");
    assert_eq!(t.lab.sql().databases(), databases);
    assert!(!t.lab.octopus().maintenance());
}
