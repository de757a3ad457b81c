//! Maintenance mode put back after runs that were killed, stopped or answered late: the late
//! request, the stop request, the torn journal and what killed runs left on the staging share.

use crate::common::*;
use octobackup_lab::octopus_sim::{Fault, FaultKind, Method};
use std::path::PathBuf;
use std::time::Duration;

const MAINTENANCE: &str = "/api/maintenanceconfiguration";

/// The "on" request answered only after `delay`, for the next `times` PUTs.
fn delay_on(t: &TestLab, delay: Duration, times: u32) {
    t.lab.octopus().inject(Fault {
        method: Some(Method::PUT),
        path_prefix: MAINTENANCE.into(),
        kind: FaultKind::Delay(delay),
        times,
    });
}

/// octobackup gives up on an API answer after `secs` seconds.
fn api_timeout(t: &TestLab, secs: u64) {
    t.edit_config(|c| {
        TestLab::instance_table(c).insert("api_timeout".into(), format!("{secs}s").into());
    });
}

/// Waits (bounded) until `n` events of this kind are in the lab's log.
async fn wait_for_events(t: &TestLab, kind: &str, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while seqs(&t.events(), kind).len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "fewer than {n} {kind} events within a minute"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_the_on_request_is_in_flight_then_recover_leaves_maintenance_off() {
    let t = TestLab::start().await;
    t.init().await;
    api_timeout(&t, 2);
    // The server applies the "on" 3 s after it got it: after octobackup is dead and recovered.
    delay_on(&t, Duration::from_secs(3), 1);
    let mut child = t
        .command(&["backup"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    t.wait_for_event("fault_served").await;
    child.kill().unwrap(); // SIGKILL, the request on its way
    child.wait().unwrap();
    assert!(
        t.journal_path().exists(),
        "the journal is written before the request"
    );

    let out = t.ok(&["recover"]).await;
    assert!(
        stdout(&out).contains("may still have been on its way"),
        "{}",
        stdout(&out)
    );
    assert!(!t.journal_path().exists());
    // The late "on" has landed by now, and was turned off again.
    wait_for_events(&t, "delayed_request_handled", 1).await;
    let changes = maintenance_changes(&t.events());
    assert!(
        changes.iter().any(|c| c.1),
        "the late request never landed: {changes:?}"
    );
    assert!(!t.lab.octopus().maintenance(), "left on: {changes:?}");
    assert!(t.sets().await.iter().all(|s| s["complete"] == false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_on_request_that_times_out_every_time_still_leaves_maintenance_off() {
    let t = TestLab::start().await;
    t.init().await;
    api_timeout(&t, 2);
    // Every attempt (octobackup makes 4) is answered too late, and applied late.
    delay_on(&t, Duration::from_secs(3), 4);
    let out = t.run(&["backup"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("could not be turned on") && stderr(&out).contains("it is off"),
        "{}",
        stderr(&out)
    );
    wait_for_events(&t, "delayed_request_handled", 4).await;
    let changes = maintenance_changes(&t.events());
    assert!(
        changes.iter().any(|c| c.1),
        "no late request landed: {changes:?}"
    );
    assert!(!t.lab.octopus().maintenance(), "left on: {changes:?}");
    assert!(!t.journal_path().exists());
    assert!(t.sets().await.is_empty());
    // The next run finds maintenance mode off, turns it on and off itself.
    t.ok(&["backup"]).await;
    assert!(!t.lab.octopus().maintenance());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_on_request_answered_late_once_is_watched_after_the_run() {
    let t = TestLab::start().await;
    t.init().await;
    api_timeout(&t, 2);
    // The first attempt times out and lands later; the retry is answered at once.
    delay_on(&t, Duration::from_secs(3), 1);
    t.ok(&["backup"]).await;
    wait_for_events(&t, "delayed_request_handled", 1).await;
    let changes = maintenance_changes(&t.events());
    assert!(!t.lab.octopus().maintenance(), "left on: {changes:?}");
    assert!(!t.journal_path().exists());
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_maintenance_mode_is_being_turned_on_stops_the_run() {
    let t = TestLab::start().await;
    t.init().await;
    delay_on(&t, Duration::from_secs(2), 1);
    let child = t
        .command(&["backup"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    t.wait_for_event("fault_served").await;
    let out = sigterm(child).await;
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("interrupted by SIGTERM"),
        "{}",
        stderr(&out)
    );
    assert!(!t.lab.octopus().maintenance());
    assert_eq!(
        seqs(&t.events(), "backup_started").len(),
        0,
        "BACKUP ran after the stop"
    );
    assert!(t.sets().await.iter().all(|s| s["complete"] == false));
    assert!(!t.journal_path().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_journal_stops_recover_and_backup_with_exit_7() {
    let t = TestLab::start().await;
    t.init().await;
    std::fs::create_dir_all(t.journal_path().parent().unwrap()).unwrap();
    std::fs::write(
        t.journal_path(),
        b"{\"instance\": \"OctopusServer\", \"url\": \"ht",
    )
    .unwrap();
    for args in [&["recover"][..], &["backup"][..]] {
        let out = t.run(args).await;
        assert_eq!(out.status.code(), Some(7), "{args:?}: {}", stderr(&out));
        let e = stderr(&out);
        assert!(e.contains("cannot be read"), "{e}");
        assert!(
            e.contains("Configuration > Maintenance") && e.contains("then delete"),
            "{e}"
        );
        assert!(!stdout(&out).contains("nothing to recover"));
    }
    assert!(
        t.journal_path().exists(),
        "the torn journal is left for the administrator"
    );
    assert!(maintenance_changes(&t.events()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_backup_removes_what_a_killed_run_left_on_the_staging_share() {
    let t = TestLab::start().await;
    t.init().await;
    let staging = t.lab.info().staging_dir.clone();
    // Not octobackup's: left alone.
    std::fs::write(staging.join("manual-copy.bak"), b"an administrator's file").unwrap();
    std::fs::create_dir(staging.join("octobackup-notes")).unwrap();
    let mut child = t.spawn_slow_backup(std::process::Stdio::null()).await;
    child.kill().unwrap();
    child.wait().unwrap();
    t.lab.sql().set_backup_rate(None);
    let left: Vec<PathBuf> = t
        .staging_files()
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("octobackup-2")
        })
        .collect();
    assert_eq!(left.len(), 1, "{:?}", t.staging_files());

    let out = t.ok(&["backup"]).await;
    assert!(stderr(&out).contains("removed"), "{}", stderr(&out));
    assert!(
        !left[0].exists(),
        "the killed run's staging folder is still there"
    );
    assert!(staging.join("manual-copy.bak").exists());
    assert!(staging.join("octobackup-notes").exists());
    assert!(!t.lab.octopus().maintenance());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_removes_what_a_killed_run_left_on_the_staging_share() {
    let t = TestLab::start().await;
    t.init().await;
    let mut child = t.spawn_slow_backup(std::process::Stdio::null()).await;
    child.kill().unwrap();
    child.wait().unwrap();
    t.lab.sql().set_backup_rate(None);
    assert!(!t.staging_files().is_empty());
    assert_eq!(doctor_leftovers(&t).await, "fail");
    let out = t.ok(&["recover"]).await;
    assert!(stdout(&out).contains("put it back off"), "{}", stdout(&out));
    assert!(stdout(&out).contains("removed"), "{}", stdout(&out));
    assert!(t.staging_files().is_empty(), "{:?}", t.staging_files());
    assert_eq!(doctor_leftovers(&t).await, "pass");
}

/// The status of doctor's "staging leftovers" check.
async fn doctor_leftovers(t: &TestLab) -> String {
    let out = t.run(&["--json", "doctor"]).await;
    let r: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
    r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "staging leftovers")
        .unwrap_or_else(|| panic!("no staging leftovers check: {r:#}"))["status"]
        .as_str()
        .unwrap()
        .to_string()
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_key_command_gets_none_of_octobackups_secrets() {
    let t = TestLab::start().await;
    t.init().await;
    let dump = t.dir.path().join("child-env.txt");
    let key_file = t.dir.path().join("secrets").join("octopus-api-key");
    let api_key = std::fs::read_to_string(&key_file)
        .unwrap()
        .trim()
        .to_string();
    // octobackup reads the repository password from OCTOBACKUP_PASSWORD when it is set.
    let repo_password = std::fs::read_to_string(t.repo_password_file())
        .unwrap()
        .trim_end_matches(['\r', '\n'])
        .to_string();
    t.edit_config(|c| {
        let inst = TestLab::instance_table(c);
        // The API key from a variable of the operator's choosing.
        inst.remove("api_key_file");
        inst.insert("api_key_env".into(), "MY_OCTOPUS_KEY".into());
        let mk = inst["master_key"].as_table_mut().unwrap();
        let cmd: Vec<String> = mk["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        let script = format!("env > '{}'; exec \"$@\"", dump.display());
        let mut wrapped = vec!["sh".to_string(), "-c".into(), script, "sh".into()];
        wrapped.extend(cmd);
        mk.insert("command".into(), wrapped.into());
    });
    let mut c = t.command(&["backup"]);
    c.env("MY_OCTOPUS_KEY", &api_key)
        .env("OCTOPUS_API_KEY", "sentinel-octopus-api-key")
        .env("OCTOBACKUP_SQL_PASSWORD", "sentinel-sql-password")
        .env("OCTOBACKUP_PASSWORD", &repo_password);
    let out = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let env = std::fs::read_to_string(&dump).unwrap();
    assert!(env.lines().any(|l| l.starts_with("PATH=")), "{env}");
    for secret in [
        api_key.as_str(),
        "MY_OCTOPUS_KEY",
        "sentinel-octopus-api-key",
        "sentinel-sql-password",
        repo_password.as_str(),
    ] {
        assert!(!env.contains(secret), "{secret} reached the child: {env}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_are_config_errors_with_exit_2() {
    let t = TestLab::start().await;
    t.init().await;
    let file = t.dir.path().join("not-a-folder");
    std::fs::write(&file, b"").unwrap();
    t.edit_config(|c| {
        c.insert("state_dir".into(), file.display().to_string().into());
    });
    t.fails(&["backup"], 2, "is not a folder").await;
    t.edit_config(|c| {
        c.remove("state_dir");
        c["repository"]
            .as_table_mut()
            .unwrap()
            .insert("compression".into(), 99.into());
    });
    t.fails(&["backup"], 2, "compression").await;
    assert!(maintenance_changes(&t.events()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_questionable_connection_string_is_warned_about_without_its_password() {
    let t = TestLab::start().await;
    t.init().await;
    t.edit_config(|c| {
        let sql = TestLab::instance_table(c)["sql"].as_table_mut().unwrap();
        let cs = sql["connection_string"].as_str().unwrap().to_string();
        // The lab's database named twice, a typo, and a password the password file overrides.
        let db = cs
            .split(';')
            .find(|p| p.starts_with("Database="))
            .unwrap()
            .to_string();
        sql.insert(
            "connection_string".into(),
            format!("{cs};{db};Encrpyt=False;Password=not-the-one-used").into(),
        );
    });
    let out = t.ok(&["backup"]).await;
    let e = stderr(&out);
    assert!(e.contains("'database' is given more than once"), "{e}");
    assert!(e.contains("'encrpyt' is not"), "{e}");
    assert!(e.contains("Keep only one"), "{e}");
    assert!(!e.contains("not-the-one-used"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_turned_off_mid_window_leaves_no_complete_set() {
    let t = TestLab::start().await;
    t.init().await;
    let child = t.spawn_slow_backup(std::process::Stdio::piped()).await;
    // An administrator ends maintenance mode while BACKUP DATABASE runs.
    t.lab.octopus().set_maintenance(false, "an administrator");
    t.lab.sql().set_backup_rate(None);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("turned off during the window (by an administrator"),
        "{}",
        stderr(&out)
    );
    assert!(!t.lab.octopus().maintenance());
    assert!(t.sets().await.iter().all(|s| s["complete"] == false));
    assert!(!t.journal_path().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrators_own_on_during_the_window_is_left_on() {
    let t = TestLab::start().await;
    t.init().await;
    let child = t.spawn_slow_backup(std::process::Stdio::piped()).await;
    t.lab.octopus().set_maintenance(true, "an administrator");
    t.lab.sql().set_backup_rate(None);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("octobackup leaves it on"),
        "{}",
        stderr(&out)
    );
    assert!(
        t.lab.octopus().maintenance(),
        "the administrator's on was switched off"
    );
    let changes = maintenance_changes(&t.events());
    assert_eq!(changes.last().map(|c| c.1), Some(true), "{changes:?}");
    assert!(!t.journal_path().exists());
    let sets = t.sets().await;
    assert_eq!(sets.len(), 1);
    assert_eq!(sets[0]["complete"], true);
}
