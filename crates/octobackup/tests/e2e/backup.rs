//! `octobackup backup` against the lab: the real binary, the lab's event log as the witness.

use crate::common::*;
use octobackup_lab::octopus_sim::{Fault, FaultKind, TaskSpec, TaskState};
use octobackup_lab::sqlserver_sim::SqlFault;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_backup_runs_inside_the_window_and_restores_maintenance_mode() {
    let t = TestLab::start().await;
    t.init().await;
    let out = t.ok(&["backup"]).await;
    assert!(stdout(&out).contains("backup set "), "{}", stdout(&out));

    let events = t.events();
    assert_backups_inside_window(&events);
    assert_eq!(seqs(&events, "backup_started").len(), 1);
    assert!(!t.lab.octopus().maintenance());
    assert!(
        t.staging_files().is_empty(),
        "staging left: {:?}",
        t.staging_files()
    );

    let sets = t.sets().await;
    assert_eq!(sets.len(), 1, "{sets:#?}");
    assert_eq!(sets[0]["complete"], true);
    assert_eq!(sets[0]["instance"], "OctopusServer");
    assert_eq!(sets[0]["octopus_version"], t.lab.info().octopus_version);

    let show = t.ok(&["--json", "show", "latest"]).await;
    let m: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(m["complete"], true);
    assert_eq!(m["database"]["verified"], true);
    assert_eq!(m["database"]["backupset"]["is_copy_only"], true);
    assert_eq!(m["database"]["backupset"]["has_backup_checksums"], true);
    assert_eq!(m["secrets"]["master_key"], true);
    assert_eq!(m["secrets"]["master_key_bytes"], 16);
    assert_eq!(m["octopus"]["maintenance_before"], false);
    let folders: Vec<&str> = m["folders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        folders,
        ["Packages", "Artifacts", "TaskLogs", "EventExports"]
    );
    assert!(m["window"]["seconds"].as_f64().unwrap() > 0.0);
    // Only the wait, the BACKUP and the folder changes run inside the window.
    let inside: Vec<&str> = m["window"]["inside"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(
        inside,
        [
            "wait for running tasks",
            "database backup",
            "server folders (checked: unchanged since the first pass)"
        ]
    );
    assert_eq!(m["window"]["folder_files_read"], 0);
    let steps: Vec<&str> = m["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    let pos = |n: &str| {
        steps
            .iter()
            .position(|s| *s == n)
            .unwrap_or_else(|| panic!("no step {n}: {steps:?}"))
    };
    assert!(pos("master key") < pos("maintenance mode on"));
    assert!(pos("maintenance mode restored") < pos("verify the database backup"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_restic_lists_checks_and_restores_the_set_byte_for_byte() {
    let t = TestLab::start().await;
    t.init().await;
    let fp = t.lab.fingerprint().await.unwrap();
    t.ok(&["backup"]).await;

    let snaps = t.restic(&["snapshots", "--json"]);
    assert!(
        snaps.status.success(),
        "restic snapshots: {}",
        stderr(&snaps)
    );
    let snaps: Vec<serde_json::Value> = serde_json::from_slice(&snaps.stdout).unwrap();
    assert_eq!(snaps.len(), 1);
    let tags: Vec<&str> = snaps[0]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        tags.contains(&"octobackup")
            && tags.contains(&"complete")
            && tags.contains(&"instance:OctopusServer"),
        "{tags:?}"
    );

    let check = t.restic(&["check", "--read-data"]);
    assert!(
        check.status.success(),
        "restic check: {}{}",
        stdout(&check),
        stderr(&check)
    );

    let target = t.dir.path().join("restic-restore");
    let restore = t.restic(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert!(
        restore.status.success(),
        "restic restore: {}",
        stderr(&restore)
    );
    for (name, files) in &fp.folders {
        let restored =
            octobackup_lab::fingerprint::hash_tree(&target.join("folders").join(name)).unwrap();
        assert_eq!(
            &restored, files,
            "folder {name} differs after restic restore"
        );
    }
    // The .bak restic restored, restored by SQL Server's format reader, is the database as it was.
    let bak = target.join("database").join("OctopusDeploy.bak");
    let mdf = t.dir.path().join("check.mdf");
    let ldf = t.dir.path().join("check.ldf");
    octobackup_lab::sqlserver_files::bak::restore(&[bak], 1, &mdf, &ldf, "Check", &mut |_, _| {
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(
        hex::encode(octobackup_lab::sqlserver_files::image::content_digest(&mdf).unwrap()),
        fp.database
    );
    let key = std::fs::read_to_string(target.join("octobackup").join("master-key")).unwrap();
    assert_eq!(key, t.lab.state().unwrap().master_key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_finishes_late_is_waited_for() {
    let t = TestLab::start().await;
    t.init().await;
    // Runs until the test finishes it, so the order does not depend on how fast the machine is.
    let id = t.lab.octopus().add_task(TaskSpec {
        name: "Deploy".into(),
        description: "Deploy Acme.Web 1.2.3 to Production".into(),
        state: TaskState::Executing,
        finishes_after: None,
        ..Default::default()
    });
    let backup = {
        let mut c = t.command(&["backup"]);
        tokio::task::spawn_blocking(move || c.output().unwrap())
    };
    t.wait_for_event("maintenance_changed").await;
    // octobackup is waiting: the database backup must not start while the task runs.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        seqs(&t.events(), "backup_started").is_empty(),
        "the backup did not wait for the task"
    );
    t.lab.octopus().finish_task(&id, TaskState::Success);
    let out = backup.await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let events = t.events();
    assert_backups_inside_window(&events);
    let finished = seqs(&events, "task_finished");
    let started = seqs(&events, "backup_started");
    assert!(
        !finished.is_empty() && finished[0] < started[0],
        "{events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_stuck_in_queued_aborts_cleanly_when_told_to_wait_for_queued() {
    let t = TestLab::start().await;
    t.init().await;
    t.edit_config(|c| {
        let w = TestLab::instance_table(c)["wait"].as_table_mut().unwrap();
        w.insert("include_queued".into(), true.into());
        w.insert("timeout".into(), "1s".into());
    });
    let id = t.lab.octopus().add_task(TaskSpec {
        name: "Deploy".into(),
        description: "Scheduled deployment".into(),
        state: TaskState::Queued,
        finishes_after: None,
        ..Default::default()
    });
    let out = t.run(&["backup"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&id) && stderr(&out).contains("Scheduled deployment"),
        "{}",
        stderr(&out)
    );
    assert!(!t.lab.octopus().maintenance());
    assert!(seqs(&t.events(), "backup_started").is_empty());
    assert!(t.sets().await.iter().all(|s| s["complete"] == false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_database_backup_leaves_no_complete_set_and_maintenance_restored() {
    let t = TestLab::start().await;
    t.init().await;
    t.lab.sql().inject(SqlFault::FailNextBackup {
        number: 3201,
        message: "Cannot open backup device. Operating system error 5(Access is denied.).".into(),
    });
    let out = t.run(&["backup"]).await;
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Msg 3201") && stderr(&out).contains("staging.sql_path"),
        "{}",
        stderr(&out)
    );
    assert!(!t.lab.octopus().maintenance());
    assert!(t.sets().await.is_empty());
    assert!(t.restic(&["check"]).status.success());
    assert!(t.staging_files().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_backup_fails_verification() {
    let t = TestLab::start().await;
    t.init().await;
    t.lab.sql().inject(SqlFault::CorruptNextBackup);
    t.fails(&["backup"], 4, "RESTORE VERIFYONLY").await;
    assert!(!t.lab.octopus().maintenance());
    assert!(t.sets().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_master_key_command_stops_the_run_before_maintenance_mode() {
    let t = TestLab::start().await;
    t.init().await;
    t.edit_config(|c| {
        let mk = TestLab::instance_table(c)["master_key"]
            .as_table_mut()
            .unwrap();
        let mut cmd: Vec<toml::Value> = mk["command"].as_array().unwrap().clone();
        cmd.push("--instance".into());
        cmd.push("NoSuchInstance".into());
        mk.insert("command".into(), toml::Value::Array(cmd));
    });
    t.fails(&["backup"], 3, "master key command").await;
    assert!(
        maintenance_changes(&t.events()).is_empty(),
        "the key is read before the window"
    );
    assert!(seqs(&t.events(), "backup_started").is_empty());
    assert!(t.sets().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_faults_are_retried() {
    let t = TestLab::start().await;
    t.init().await;
    t.lab.octopus().inject(Fault {
        method: None,
        path_prefix: "/api/tasks".into(),
        kind: FaultKind::Reset,
        times: 1,
    });
    t.lab.octopus().inject(Fault {
        method: None,
        path_prefix: "/api/licenses".into(),
        kind: FaultKind::Status(503),
        times: 1,
    });
    t.ok(&["backup"]).await;
    assert_backups_inside_window(&t.events());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_without_administer_system_is_refused_before_anything_changes() {
    let t = TestLab::start().await;
    t.init().await;
    std::fs::write(
        t.dir.path().join("secrets").join("octopus-api-key"),
        &t.lab.info().reader_api_key,
    )
    .unwrap();
    t.fails(&["backup"], 3, "Administer System").await;
    assert!(maintenance_changes(&t.events()).is_empty());
    std::fs::write(
        t.dir.path().join("secrets").join("octopus-api-key"),
        "API-NOTAKEYATALL0000000000000",
    )
    .unwrap();
    t.fails(&["backup"], 3, "401").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_sql_password_is_reported_before_the_window() {
    let t = TestLab::start().await;
    t.init().await;
    std::fs::write(t.dir.path().join("secrets").join("sql-password"), "wrong").unwrap();
    t.fails(&["backup"], 4, "18456").await;
    assert!(maintenance_changes(&t.events()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_octopus_server_is_named() {
    let t = TestLab::start().await;
    t.init().await;
    t.edit_config(|c| {
        TestLab::instance_table(c).insert("url".into(), "http://127.0.0.1:9".into());
    });
    t.fails(
        &["backup"],
        3,
        "cannot reach the Octopus Server at http://127.0.0.1:9",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staging_path_octobackup_cannot_see_is_explained() {
    let t = TestLab::start().await;
    t.init().await;
    let elsewhere = t.dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    t.edit_config(|c| {
        TestLab::instance_table(c)["staging"]
            .as_table_mut()
            .unwrap()
            .insert("local_path".into(), elsewhere.display().to_string().into());
    });
    let out = t.fails(&["backup"], 4, "must name the same folder").await;
    assert_eq!(
        stderr(&out).matches("Msg 3201").count(),
        1,
        "reported once: {}",
        stderr(&out)
    );
    assert!(!t.lab.octopus().maintenance());
    assert!(t.sets().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_repository_password_and_missing_repository() {
    let t = TestLab::start().await;
    let out = t.run(&["backup"]).await;
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    t.init().await;
    std::fs::write(t.repo_password_file(), "not the password").unwrap();
    let out = t.run(&["backup"]).await;
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(
        stderr(&out).to_lowercase().contains("password"),
        "{}",
        stderr(&out)
    );
    assert!(maintenance_changes(&t.events()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_the_middle_then_recover_puts_maintenance_back() {
    let t = TestLab::start().await;
    t.init().await;
    let mut child = t.spawn_slow_backup(std::process::Stdio::null()).await;
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    assert!(
        t.lab.octopus().maintenance(),
        "maintenance should still be on after kill -9"
    );
    t.lab.sql().set_backup_rate(None);

    let out = t.ok(&["recover"]).await;
    assert!(stdout(&out).contains("put it back off"), "{}", stdout(&out));
    assert!(!t.lab.octopus().maintenance());
    assert!(t.sets().await.iter().all(|s| s["complete"] == false));
    let again = t.run(&["recover"]).await;
    assert!(stdout(&again).contains("nothing to recover"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_backup_recovers_a_killed_run_and_a_second_run_is_refused() {
    let t = TestLab::start().await;
    t.init().await;
    let mut child = t.spawn_slow_backup(std::process::Stdio::null()).await;
    // While it runs, a second backup of the same instance is refused.
    let second = t.run(&["backup"]).await;
    assert_eq!(second.status.code(), Some(6), "{}", stderr(&second));
    assert!(
        stderr(&second).contains("another octobackup run"),
        "{}",
        stderr(&second)
    );
    child.kill().unwrap();
    child.wait().unwrap();
    t.lab.sql().set_backup_rate(None);
    let out = t.ok(&["backup"]).await;
    assert!(stdout(&out).contains("recovered"), "{}", stdout(&out));
    assert!(!t.lab.octopus().maintenance());
    assert_eq!(
        t.sets()
            .await
            .iter()
            .filter(|s| s["complete"] == true)
            .count(),
        1
    );
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_the_database_backup_restores_maintenance_mode() {
    let t = TestLab::start().await;
    t.init().await;
    let child = t.spawn_slow_backup(std::process::Stdio::piped()).await;
    let out = sigterm(child).await;
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(!t.lab.octopus().maintenance());
    assert!(t.sets().await.iter().all(|s| s["complete"] == false));
    assert!(t.restic(&["check"]).status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_mode_already_on_is_left_on() {
    let t = TestLab::start().await;
    t.init().await;
    t.lab.octopus().set_maintenance(true, "an administrator");
    t.ok(&["backup"]).await;
    assert!(t.lab.octopus().maintenance());
    assert_eq!(
        maintenance_changes(&t.events()).len(),
        1,
        "octobackup must not touch maintenance mode it did not change"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_output_logs_or_files_outside_the_repository() {
    let t = TestLab::start().await;
    t.init().await;
    let mut outputs = Vec::new();
    for args in [
        &["-vv", "backup"][..],
        &["--json", "backup"],
        &["snapshots"],
        &["--json", "show", "latest"],
    ] {
        let out = t.run(args).await;
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        outputs.push(stdout(&out) + &stderr(&out));
    }
    // A failure path too: a wrong SQL password must not echo the right one or the wrong one.
    std::fs::write(
        t.dir.path().join("secrets").join("sql-password"),
        "WrongPassw0rd-do-not-echo",
    )
    .unwrap();
    let out = t.run(&["-vv", "backup"]).await;
    outputs.push(stdout(&out) + &stderr(&out));

    let state = t.lab.state().unwrap();
    let repo_password = std::fs::read_to_string(t.repo_password_file()).unwrap();
    let secrets = [
        state.master_key.as_str(),
        state.admin_api_key.as_str(),
        state.sql_password.as_str(),
        state.license_xml.as_str(),
        state.license_serial.as_str(),
        repo_password.as_str(),
        "WrongPassw0rd-do-not-echo",
    ];
    for (i, text) in outputs.iter().enumerate() {
        for s in secrets {
            assert!(!text.contains(s), "output {i} contains a secret");
        }
    }
    // Files octobackup writes outside the repository: its state folder, the staging share, the config.
    let mut files = walk_files(&t.dir.path().join("state"));
    files.extend(walk_files(&t.lab.info().staging_dir));
    files.push(t.config.clone());
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for s in secrets {
            assert!(!text.contains(s), "{} contains a secret", f.display());
        }
    }
    // And the repository holds them only encrypted.
    for f in walk_files(&t.repo_dir()) {
        let bytes = std::fs::read(&f).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for s in [state.master_key.as_str(), state.license_serial.as_str()] {
            assert!(
                !text.contains(s),
                "repository file {} holds a secret in plain text",
                f.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folders_changed_while_waiting_in_the_window_are_in_the_set() {
    let t = TestLab::start().await;
    t.init().await;
    let id = t.lab.octopus().add_task(TaskSpec {
        description: "Deploy Acme.Api 2.0.0".into(),
        finishes_after: None,
        ..Default::default()
    });
    let backup = {
        let mut c = t.command(&["--json", "backup"]);
        tokio::task::spawn_blocking(move || c.output().unwrap())
    };
    // Once maintenance mode is on (the pass before the window is done), the task writes its log.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !maintenance_changes(&t.events()).iter().any(|c| c.1) {
        assert!(
            std::time::Instant::now() < deadline,
            "maintenance mode never went on"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let late_log = t
        .lab
        .info()
        .folders
        .task_logs
        .join("servertasks-late.log.txt");
    std::fs::write(&late_log, "written while the backup waited for this task").unwrap();
    // The task ends after writing its log; only then does the backup go on.
    t.lab.octopus().finish_task(&id, TaskState::Success);
    let out = backup.await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    let pre = steps
        .iter()
        .position(|s| *s == "server folders (before the window)");
    let on = steps.iter().position(|s| *s == "maintenance mode on");
    assert!(pre.is_some() && pre < on, "{steps:?}");

    let m: serde_json::Value =
        serde_json::from_slice(&t.run(&["--json", "show", "latest"]).await.stdout).unwrap();
    let inside = m["window"]["inside"].to_string();
    assert!(inside.contains("changes since the first pass"), "{inside}");
    assert_eq!(
        m["window"]["folder_files_read"], 1,
        "only the new log is read inside the window: {}",
        m["window"]
    );
    let target = t.dir.path().join("restored");
    let r = t.restic(&[
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
        "--include",
        "/folders/TaskLogs/servertasks-late.log.txt",
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(
        target
            .join("folders/TaskLogs/servertasks-late.log.txt")
            .exists()
    );
    // Parts of the run are gone: one snapshot per set.
    let snaps: Vec<serde_json::Value> =
        serde_json::from_slice(&t.restic(&["snapshots", "--json"]).stdout).unwrap();
    assert_eq!(snaps.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_night_stores_only_what_changed() {
    let mut t = TestLab::start().await;
    t.init().await;
    assert!(t.run(&["backup"]).await.status.success());
    let churn = t.lab.churn(1).await.unwrap();
    let report = t.json(&["--json", "backup"]).await;
    let added = report["data_added"].as_u64().unwrap();
    let db = report["database_bytes"].as_u64().unwrap();
    assert!(
        added < db / 2,
        "the second night stored {added} bytes of a {db}-byte database (changed: {})",
        churn.bytes_changed
    );
    let sets = t.sets().await;
    assert_eq!(sets.iter().filter(|s| s["complete"] == true).count(), 2);

    // A package pushed the next day, bigger than the whole database: the pass before the
    // window stores it, the window finds the folders as that pass stored them (the pass's
    // snapshot is then the set's folders as it stands), and the run's new data counts it (a
    // run used to count only what was stored after the window).
    // Bytes that repeat nowhere (xorshift), so that nothing in them deduplicates.
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let package: Vec<u8> = (0..db + (1 << 20))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    let packages = &t.lab.info().folders.packages;
    std::fs::write(packages.join("Acme.Pushed.1.0.0.nupkg"), &package).unwrap();
    let report = t.json(&["--json", "backup"]).await;
    let added = report["data_added"].as_u64().unwrap();
    assert!(
        added >= package.len() as u64,
        "a {}-byte package was new, the run reported {added} bytes of new data",
        package.len()
    );
    let show = t.json(&["--json", "show", "latest"]).await;
    assert!(
        show["window"]["inside"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "server folders (checked: unchanged since the first pass)"),
        "{}",
        show["window"]
    );
    let pushed = t.restic(&[
        "dump",
        "latest",
        "/folders/Packages/Acme.Pushed.1.0.0.nupkg",
    ]);
    assert!(pushed.status.success(), "{}", stderr(&pushed));
    assert!(pushed.stdout == package, "restic's copy differs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_sql_database_is_refused_up_front_with_the_reason() {
    let t = TestLab::start_with(|o| {
        o.edition = octobackup_lab::sqlserver_sim::Edition::AzureSqlDatabase
    })
    .await;
    t.init().await;
    t.fails(
        &["backup"],
        4,
        "Azure SQL Database, which has no BACKUP TO DISK",
    )
    .await;
    assert!(
        maintenance_changes(&t.events()).is_empty(),
        "nothing may change before the refusal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_license_read_that_keeps_failing_stops_the_run_before_maintenance_mode() {
    let t = TestLab::start().await;
    t.init().await;
    t.lab.octopus().inject(Fault {
        method: None,
        path_prefix: "/api/licenses/licenses-current".into(),
        kind: FaultKind::Status(500),
        times: 50,
    });
    t.fails(&["backup"], 3, "500").await;
    assert!(
        maintenance_changes(&t.events()).is_empty(),
        "the license is read before the window"
    );
    assert!(seqs(&t.events(), "backup_started").is_empty());
    assert!(t.sets().await.is_empty());
    assert!(t.restic(&["check"]).status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_forget_applies_the_policy_and_escrow_recovers_the_key_without_the_password() {
    use age::secrecy::ExposeSecret;
    let t = TestLab::start().await;
    t.init().await;
    let identity = age::x25519::Identity::generate();
    let identity_file = t.dir.path().join("escrow-identity.txt");
    std::fs::write(&identity_file, identity.to_string().expose_secret()).unwrap();
    let recipient = identity.to_public().to_string();
    t.edit_config(|c| {
        let mut retention = toml::Table::new();
        retention.insert("keep_last".into(), 1.into());
        c.insert("retention".into(), toml::Value::Table(retention));
        let mut escrow = toml::Table::new();
        escrow.insert(
            "age_recipients".into(),
            toml::Value::Array(vec![recipient.clone().into()]),
        );
        c.insert("escrow".into(), toml::Value::Table(escrow));
    });
    for _ in 0..2 {
        t.ok(&["--json", "backup", "--forget"]).await;
    }
    let sets = t.sets().await;
    assert_eq!(sets.len(), 1, "keep_last = 1 keeps one set: {sets:#?}");
    let m: serde_json::Value =
        serde_json::from_slice(&t.run(&["--json", "show", "latest"]).await.stdout).unwrap();
    assert_eq!(m["secrets"]["escrow_recipients"], 1);

    // The second administrator: only the identity file, no repository password.
    std::fs::rename(
        t.repo_password_file(),
        t.dir.path().join("password-elsewhere"),
    )
    .unwrap();
    let output = t.dir.path().join("recovered-master-key");
    let out = t
        .ok(&[
            "key",
            "recover",
            "--identity",
            identity_file.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ])
        .await;
    assert_eq!(
        std::fs::read_to_string(&output).unwrap().trim(),
        t.lab.state().unwrap().master_key
    );
    assert!(!stdout(&out).contains(&t.lab.state().unwrap().master_key));

    // A wrong identity gets a clear error.
    let other = t.dir.path().join("other-identity.txt");
    std::fs::write(
        &other,
        age::x25519::Identity::generate()
            .to_string()
            .expose_secret(),
    )
    .unwrap();
    let out = t
        .run(&[
            "key",
            "recover",
            "--identity",
            other.to_str().unwrap(),
            "--show-secrets",
        ])
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// A database backup larger than one segment (32 MiB): the second night takes the unchanged
/// chunks from the chunk memory the first night kept in the state folder, says so in its
/// step, and the set restores to the database as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_night_finds_the_unchanged_database_chunks_and_restores_them() {
    let mut t = TestLab::start_with(|o| o.instance.size = "60:200m".parse().unwrap()).await;
    t.init().await;
    let first = t.json(&["--json", "backup"]).await;
    assert!(
        first["database_bytes"].as_u64().unwrap() > 32 << 20,
        "the lab's .bak must span segments: {}",
        first["database_bytes"]
    );
    let step = |r: &serde_json::Value| {
        r["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "store the database backup")
            .cloned()
            .unwrap()
    };
    assert!(step(&first).get("detail").is_none(), "{}", step(&first));
    let state = t.dir.path().join("state");
    assert!(
        walk_files(&state)
            .iter()
            .any(|p| p.to_string_lossy().ends_with(".database-chunks")),
        "no chunk memory in {}",
        state.display()
    );

    t.lab.churn(1).await.unwrap();
    let second = t.json(&["--json", "backup"]).await;
    let detail = step(&second)["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(detail.contains("unchanged since the last set"), "{detail}");

    let fp = t.lab.fingerprint().await.unwrap();
    let data_dir = t.dir.path().join("restored-data");
    std::fs::create_dir_all(&data_dir).unwrap();
    t.ok(&[
        "restore",
        "--database-name",
        "OctoRemembered",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--folders-to",
        t.dir.path().join("restored-folders").to_str().unwrap(),
    ])
    .await;
    assert_eq!(t.database_digest("OctoRemembered"), fp.database);
}
