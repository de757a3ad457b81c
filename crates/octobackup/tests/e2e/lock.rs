//! One run per Octopus instance wherever octobackup runs: two copies of the config (two state
//! folders, as two admins or two HA nodes have) meet at the SQL Server application lock.

use crate::common::*;
use octobackup_lab::octopus_sim::{TaskSpec, TaskState};
use std::path::PathBuf;
use std::process::Command;

/// A second copy of the lab's config in a folder of its own, with its own state folder.
fn second_copy(t: &TestLab) -> PathBuf {
    let dir = t.dir.path().join("node-b");
    std::fs::create_dir_all(&dir).unwrap();
    let mut c: toml::Table = toml::from_str(&std::fs::read_to_string(&t.config).unwrap()).unwrap();
    c.insert(
        "state_dir".into(),
        dir.join("state").display().to_string().into(),
    );
    let path = dir.join("octobackup.toml");
    std::fs::write(&path, toml::to_string(&c).unwrap()).unwrap();
    path
}

fn command(config: &PathBuf, args: &[&str]) -> Command {
    let mut c = Command::new(exe());
    c.arg("--config").arg(config).args(args);
    c.env_remove("OCTOBACKUP_PASSWORD");
    c
}

async fn run(config: &PathBuf, args: &[&str]) -> std::process::Output {
    let mut c = command(config, args);
    tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap()
}

/// Starts a backup from the first copy and returns once it is inside the window, held there by
/// a task that runs until the test finishes it.
async fn backup_held_in_the_window(t: &TestLab) -> (String, std::process::Child) {
    let id = t.lab.octopus().add_task(TaskSpec {
        name: "Deploy".into(),
        description: "Deploy Acme.Web 1.2.3 to Production".into(),
        state: TaskState::Executing,
        finishes_after: None,
        ..Default::default()
    });
    let child = t
        .command(&["backup"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    t.wait_for_event("maintenance_changed").await;
    (id, child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_copy_of_the_config_is_refused_while_a_backup_runs_then_succeeds() {
    let t = TestLab::start().await;
    t.init().await;
    let b = second_copy(&t);
    let (task, first) = backup_held_in_the_window(&t).await;
    let changes_before = maintenance_changes(&t.events());
    assert_eq!(changes_before.len(), 1);

    let out = run(&b, &["backup"]).await;
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let msg = stderr(&out);
    assert!(
        msg.contains("another octobackup run holds the lock for instance 'OctopusServer'")
            && msg.contains("octobackup:OctopusDeploy")
            && msg.contains("maintenance mode was not touched"),
        "{msg}"
    );
    // It changed nothing: no maintenance call, no journal in its own state folder, no set.
    assert_eq!(maintenance_changes(&t.events()), changes_before);
    assert!(
        t.lab.octopus().maintenance(),
        "the first run's window is intact"
    );
    let b_state = b.parent().unwrap().join("state");
    assert!(
        !b_state.exists()
            || walk_files(&b_state)
                .iter()
                .all(|f| !f.to_string_lossy().ends_with(".maintenance.json")),
        "{:?}",
        walk_files(&b_state)
    );
    // recover from the second copy must not run beside the live backup either.
    let out = run(&b, &["recover"]).await;
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(t.lab.octopus().maintenance());

    t.lab.octopus().finish_task(&task, TaskState::Success);
    let first = tokio::task::spawn_blocking(move || first.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(t.sets().await.len(), 1);

    let out = run(&b, &["backup"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!t.lab.octopus().maintenance());
    let sets = t.sets().await;
    assert_eq!(sets.len(), 2, "{sets:#?}");
    assert!(sets.iter().all(|s| s["complete"] == true));
    assert_backups_inside_window(&t.events());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_frees_the_lock_when_its_connection_drops() {
    let t = TestLab::start().await;
    t.init().await;
    let b = second_copy(&t);
    let (task, mut first) = backup_held_in_the_window(&t).await;
    first.kill().unwrap(); // SIGKILL: no cleanup of its own
    first.wait().unwrap();
    // SQL Server ends the session once it sees the connection close; nothing else is connected.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while t.lab.sql().session_count() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the killed run's sessions stayed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        t.lab.octopus().maintenance(),
        "the kill left maintenance mode on"
    );
    t.lab.octopus().finish_task(&task, TaskState::Success);

    // The first copy's recover takes the lock and puts maintenance mode back.
    t.ok(&["recover"]).await;
    assert!(!t.lab.octopus().maintenance());
    // And the other copy's backup proceeds.
    let out = run(&b, &["backup"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!t.lab.octopus().maintenance());
    let sets = t.sets().await;
    assert_eq!(
        sets.iter().filter(|s| s["complete"] == true).count(),
        1,
        "{sets:#?}"
    );
}
