//! A stop (SIGTERM, Ctrl-C) while SQL Server runs octobackup's statement: the statement is
//! stopped on the server with ATTENTION (a dropped connection leaves a real server's BACKUP
//! running until it notices), then maintenance mode is put back as found. Signals: Unix only.
#![cfg(unix)]

use crate::common::*;

/// SIGTERM while BACKUP DATABASE runs: the server acknowledges ATTENTION and ends the BACKUP as
/// cancelled; maintenance mode is off as found; nothing is complete; exit 130.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_backup_database_stops_it_on_the_server() {
    let t = TestLab::start().await;
    t.init().await;
    let child = t.spawn_slow_backup(std::process::Stdio::piped()).await;
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("SQL Server's BACKUP DATABASE was stopped")
            && stderr(&out).contains("maintenance mode was put back off"),
        "{}",
        stderr(&out)
    );
    let events = t.events();
    // the server heard ATTENTION on the BACKUP's connection, not just a dropped client
    assert_eq!(
        seqs(&events, "attention_acknowledged").len(),
        1,
        "{events:?}"
    );
    let finished: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "backup_finished")
        .collect();
    assert_eq!(finished.len(), 1, "{finished:?}");
    assert_eq!(finished[0].detail["ok"], false, "{finished:?}");
    let changes = maintenance_changes(&events);
    assert_eq!(changes.last().map(|c| c.1), Some(false), "{changes:?}");
    assert!(!t.lab.octopus().maintenance());
    assert!(t.sets().await.iter().all(|s| s["complete"] != true));
}

/// SIGTERM while RESTORE DATABASE runs: the server acknowledges ATTENTION and ends the RESTORE
/// as cancelled (it would go on otherwise), the partly restored copy is dropped, exit 130.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_restore_database_stops_it_on_the_server() {
    let t = TestLab::start().await;
    t.init().await;
    let out = t.run(&["backup"]).await;
    assert!(out.status.success(), "backup failed: {}", stderr(&out));
    let databases = t.lab.sql().databases();
    t.lab.sql().set_backup_rate(Some(256 * 1024));
    let child = t
        .command(&["restore", "--database", "--database-name", "OctoStopped"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    t.wait_for_event("restore_started").await;
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let events = t.events();
    assert_eq!(
        seqs(&events, "attention_acknowledged").len(),
        1,
        "{events:?}"
    );
    let finished: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "restore_finished")
        .collect();
    assert_eq!(finished.len(), 1, "{finished:?}");
    assert_eq!(finished[0].detail["ok"], false, "{finished:?}");
    t.lab.sql().set_backup_rate(None);
    assert_eq!(t.lab.sql().databases(), databases);
    assert!(!t.lab.octopus().maintenance());
}
