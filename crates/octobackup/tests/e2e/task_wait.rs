//! The wait for running tasks inside the maintenance window, against the lab's Octopus: a task
//! being cancelled still runs, and a task list that cannot be read for a moment is asked again.

use crate::common::*;
use octobackup_lab::octopus_sim::{Fault, FaultKind, TaskSpec, TaskState};
use std::time::Duration;

fn running_deploy() -> TaskSpec {
    TaskSpec {
        name: "Deploy".into(),
        description: "Deploy Acme.Web 1.2.3 to Production".into(),
        state: TaskState::Executing,
        finishes_after: None,
        ..Default::default()
    }
}

/// A cancelled deployment is Cancelling until its node has stopped it: the backup waits for it
/// (it is named when the wait gives up), and starts only once it is Canceled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_being_cancelled_is_waited_for() {
    let t = TestLab::start().await;
    t.init().await;

    // Cancelling for longer than the wait: the backup gives up, naming the task and its state.
    let id = t.lab.octopus().add_task(running_deploy());
    let state = t
        .lab
        .octopus()
        .cancel_task(&id, Duration::from_secs(3600))
        .unwrap();
    assert_eq!(state, TaskState::Cancelling);
    let original = std::fs::read_to_string(&t.config).unwrap();
    t.edit_config(|c| {
        let w = TestLab::instance_table(c)["wait"].as_table_mut().unwrap();
        w.insert("timeout".into(), "1s".into());
    });
    let out = t.run(&["backup"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&id) && stderr(&out).contains("Cancelling"),
        "{}",
        stderr(&out)
    );
    assert!(!t.lab.octopus().maintenance());
    assert!(seqs(&t.events(), "backup_started").is_empty());
    assert!(t.sets().await.iter().all(|s| s["complete"] == false));
    t.lab.octopus().finish_task(&id, TaskState::Canceled);

    // Cancelling for a moment: the backup starts only after the task is Canceled.
    std::fs::write(&t.config, &original).unwrap();
    let id = t.lab.octopus().add_task(running_deploy());
    t.lab
        .octopus()
        .cancel_task(&id, Duration::from_millis(1500))
        .unwrap();
    t.ok(&["backup"]).await;
    let events = t.events();
    assert_backups_inside_window(&events);
    let canceled = events
        .iter()
        .find(|e| e.kind == "task_finished" && e.detail["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} never finished: {events:#?}"));
    assert_eq!(canceled.detail["state"], "Canceled");
    let started = seqs(&events, "backup_started");
    assert!(canceled.seq < started[0], "{events:#?}");
}

/// The task list fails for a while (500s and connection resets) inside the window: the wait asks
/// again until its limit and the backup completes; a list that never comes back fails the run
/// with the reason, maintenance mode put back and no complete set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_list_outage_is_retried_within_the_wait() {
    let t = TestLab::start().await;
    t.init().await;
    t.edit_config(|c| {
        let w = TestLab::instance_table(c)["wait"].as_table_mut().unwrap();
        w.insert("poll_interval".into(), "100ms".into());
    });
    // More failures than one request's own retries (4 tries) absorb.
    for kind in [FaultKind::Reset, FaultKind::Status(500)] {
        t.lab.octopus().inject(Fault {
            times: 3,
            ..Fault::once("/api/tasks", kind)
        });
    }
    let out = t.ok(&["backup"]).await;
    let events = t.events();
    assert_eq!(seqs(&events, "fault_served").len(), 6, "{events:#?}");
    assert!(
        stderr(&out).contains("cannot read the task list"),
        "{}",
        stderr(&out)
    );
    assert_backups_inside_window(&events);
    assert_eq!(t.sets().await.last().unwrap()["complete"], true);

    // The outage outlasts the wait: a clear failure, nothing falsely complete.
    let sets_before = t.sets().await.len();
    t.edit_config(|c| {
        let w = TestLab::instance_table(c)["wait"].as_table_mut().unwrap();
        w.insert("timeout".into(), "2s".into());
    });
    t.lab.octopus().inject(Fault {
        times: 1000,
        ..Fault::once("/api/tasks", FaultKind::Status(503))
    });
    let out = t.run(&["backup"]).await;
    t.lab.octopus().clear_faults();
    // Exit 3: the Octopus Server.
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("could not be read within the wait's limit")
            && stderr(&out).contains("503"),
        "{}",
        stderr(&out)
    );
    assert!(!t.lab.octopus().maintenance());
    let changes = maintenance_changes(&t.events());
    assert!(!changes.last().unwrap().1, "{changes:?}");
    let sets = t.sets().await;
    assert!(
        sets.iter()
            .skip(sets_before)
            .all(|s| s["complete"] == false),
        "{sets:#?}"
    );
}
