//! The task list: paging, filters, tasks finishing over time, stuck queued tasks, and
//! maintenance mode leaving running and queued work alone.

use std::time::Duration;

use octopus_sim::{TaskSpec, TaskState};
use serde_json::Value;

use crate::common::{self, TestApi, eventually};

fn ids(collection: &Value) -> Vec<String> {
    collection["Items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|task| task["Id"].as_str().unwrap().to_string())
        .collect()
}

async fn task(lab: &TestApi, id: &str) -> Value {
    let (status, task) = lab.get(&format!("/api/tasks/{id}")).await;
    assert_eq!(status, 200, "{task}");
    task
}

#[tokio::test]
async fn the_list_pages_newest_first() {
    let lab = common::start().await;
    for _ in 0..7 {
        lab.octopus.add_task(TaskSpec::default());
    }
    let (_, first) = lab.get("/api/tasks?take=3").await;
    assert_eq!(first["ItemType"], "Task");
    assert_eq!(first["TotalResults"], 7);
    assert_eq!(first["ItemsPerPage"], 3);
    assert_eq!(first["NumberOfPages"], 3);
    assert_eq!(first["LastPageNumber"], 2);
    assert_eq!(
        ids(&first),
        ["ServerTasks-7", "ServerTasks-6", "ServerTasks-5"]
    );
    let next = first["Links"]["Page.Next"].as_str().unwrap();
    assert_eq!(next, "/api/tasks?skip=3&take=3");

    let (_, second) = lab.get(next).await;
    assert_eq!(
        ids(&second),
        ["ServerTasks-4", "ServerTasks-3", "ServerTasks-2"]
    );
    let (_, last) = lab.get("/api/tasks?skip=6&take=3").await;
    assert_eq!(ids(&last), ["ServerTasks-1"]);
    assert!(last["Links"].get("Page.Next").is_none());

    let (_, default_page) = lab.get("/api/tasks").await;
    assert_eq!(default_page["ItemsPerPage"], 30);
    assert_eq!(ids(&default_page).len(), 7);
}

#[tokio::test]
async fn spaces_system_tasks_and_states_filter_the_list() {
    let lab = common::start().await;
    let default_space = lab.octopus.add_task(TaskSpec::default());
    let other_space = lab.octopus.add_task(TaskSpec {
        space_id: Some("Spaces-2".into()),
        ..TaskSpec::default()
    });
    let system = lab.octopus.add_task(TaskSpec {
        name: "Retention".into(),
        space_id: None,
        state: TaskState::Queued,
        ..TaskSpec::default()
    });
    let finished = lab.octopus.add_task(TaskSpec::default());
    lab.octopus.finish_task(&finished, TaskState::Success);

    let (_, plain) = lab.get("/api/tasks").await;
    assert_eq!(
        ids(&plain),
        [finished.clone(), system.clone(), default_space.clone()]
    );
    let (_, all) = lab.get("/api/tasks?spaces=all").await;
    assert_eq!(ids(&all).len(), 4);
    let (_, no_system) = lab.get("/api/tasks?spaces=all&includeSystem=false").await;
    assert_eq!(
        ids(&no_system),
        [finished.clone(), other_space.clone(), default_space.clone()]
    );
    let (_, only_two) = lab
        .get("/api/tasks?spaces=Spaces-2&includeSystem=false")
        .await;
    assert_eq!(ids(&only_two), std::slice::from_ref(&other_space));

    let (_, blocking) = lab
        .get("/api/tasks?spaces=all&includeSystem=true&states=Executing,Queued&take=100")
        .await;
    assert_eq!(
        ids(&blocking),
        [system.clone(), other_space.clone(), default_space.clone()]
    );
    let (_, active) = lab.get("/api/tasks?spaces=all&active=true").await;
    assert_eq!(ids(&active), ids(&blocking));
    let (_, executing) = lab.get("/api/tasks?spaces=all&states=Executing").await;
    assert_eq!(ids(&executing), [other_space, default_space]);

    let (_, by_name) = lab.get("/api/tasks?spaces=all&name=Retention").await;
    assert_eq!(ids(&by_name), std::slice::from_ref(&system));
    let (_, by_id) = lab
        .get(&format!("/api/tasks?spaces=all&ids={finished}"))
        .await;
    assert_eq!(ids(&by_id), [finished]);

    let (status, error) = lab.get("/api/tasks?states=Running").await;
    assert_eq!(status, 400);
    assert!(error["Errors"][0].as_str().unwrap().contains("Running"));
    let (status, _) = lab.get("/api/tasks/ServerTasks-999").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn an_executing_task_finishes_when_its_time_is_up() {
    let lab = common::start().await;
    let id = lab.octopus.add_task(TaskSpec {
        finishes_after: Some(Duration::from_millis(150)),
        ..TaskSpec::default()
    });
    let running = task(&lab, &id).await;
    assert_eq!(running["State"], "Executing");
    assert_eq!(running["IsCompleted"], false);
    assert_eq!(running["ServerNode"], "OCTOPUS-NODE-01");
    assert!(running["StartTime"].is_string());
    assert!(running["CompletedTime"].is_null());

    let done = eventually("the task to finish", || async {
        let t = task(&lab, &id).await;
        (t["State"] == "Success").then_some(t)
    })
    .await;
    assert_eq!(done["IsCompleted"], true);
    assert_eq!(done["FinishedSuccessfully"], true);
    assert!(done["CompletedTime"].is_string());
    let finished = lab.events_of("task_finished");
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0]["id"], id.as_str());
    assert_eq!(finished[0]["state"], "Success");
}

#[tokio::test]
async fn task_finished_events_arrive_without_anyone_asking() {
    let lab = common::start().await;
    let id = lab.octopus.add_task(TaskSpec {
        finishes_after: Some(Duration::from_millis(50)),
        ..TaskSpec::default()
    });
    // Only the event log is polled: the simulator's clock, not a request, finishes the task.
    eventually("a task_finished event", || async {
        (!lab.events_of("task_finished").is_empty()).then_some(())
    })
    .await;
    assert_eq!(lab.events_of("task_finished")[0]["id"], id.as_str());
}

#[tokio::test]
async fn a_stuck_queued_task_stays_queued_until_told() {
    let lab = common::start().await;
    let stuck = lab.octopus.add_task(TaskSpec {
        state: TaskState::Queued,
        ..TaskSpec::default()
    });
    let moving = lab.octopus.add_task(TaskSpec {
        state: TaskState::Queued,
        starts_after: Some(Duration::from_millis(50)),
        finishes_after: Some(Duration::from_millis(50)),
        ..TaskSpec::default()
    });
    eventually("the second task to finish", || async {
        (task(&lab, &moving).await["State"] == "Success").then_some(())
    })
    .await;
    // Time has passed for both; only the one with a start time moved.
    let queued = task(&lab, &stuck).await;
    assert_eq!(queued["State"], "Queued");
    assert_eq!(queued["HasBeenPickedUpByProcessor"], false);
    assert!(queued["ServerNode"].is_null());
    assert!(queued["StartTime"].is_null());

    lab.octopus.finish_task(&stuck, TaskState::Canceled);
    let canceled = task(&lab, &stuck).await;
    assert_eq!(canceled["State"], "Canceled");
    assert_eq!(canceled["IsCompleted"], true);
    assert!(matches!(
        lab.octopus.try_finish_task(&stuck, TaskState::Executing),
        Err(octopus_sim::ControlError::NotCompleted(
            TaskState::Executing
        ))
    ));
    assert!(
        lab.octopus
            .try_finish_task("ServerTasks-99", TaskState::Success)
            .is_err()
    );
}

#[tokio::test]
async fn maintenance_mode_stops_neither_running_nor_queued_tasks() {
    let lab = common::start().await;
    let running = lab.octopus.add_task(TaskSpec {
        finishes_after: Some(Duration::from_millis(100)),
        ..TaskSpec::default()
    });
    let queued = lab.octopus.add_task(TaskSpec {
        state: TaskState::Queued,
        starts_after: Some(Duration::from_millis(50)),
        finishes_after: Some(Duration::from_millis(100)),
        ..TaskSpec::default()
    });
    let on = r#"{"Id":"maintenance","IsInMaintenanceMode":true}"#;
    let (status, _) = lab
        .call(
            reqwest::Method::PUT,
            "/api/maintenanceconfiguration",
            &lab.admin,
            Some(on),
        )
        .await;
    assert_eq!(status, 200);
    for id in [&running, &queued] {
        eventually("the task to finish during maintenance", || async {
            (task(&lab, id).await["State"] == "Success").then_some(())
        })
        .await;
    }
    assert!(lab.octopus.maintenance());
    let started: Vec<Value> = lab.events_of("task_started");
    assert_eq!(started.len(), 1);
    assert_eq!(started[0]["id"], queued.as_str());
}

#[tokio::test]
async fn a_task_waiting_for_an_intervention_says_so() {
    let lab = common::start().await;
    let id = lab.octopus.add_task(TaskSpec {
        has_pending_interruptions: true,
        ..TaskSpec::default()
    });
    let t = task(&lab, &id).await;
    assert_eq!(t["State"], "Executing");
    assert_eq!(t["HasPendingInterruptions"], true);
    let snapshot = lab
        .octopus
        .tasks()
        .into_iter()
        .find(|t| t.id == id)
        .unwrap();
    assert!(snapshot.has_pending_interruptions);
    assert!(!snapshot.is_completed());
}

/// A running task a user cancels passes through Cancelling (still running, not completed) before
/// Canceled, as Octopus's own drain script expects when it waits for `Executing,Cancelling`.
#[tokio::test]
async fn a_cancelled_task_is_cancelling_before_it_is_canceled() {
    let lab = common::start().await;
    let id = lab.octopus.add_task(TaskSpec::default());
    let queued = lab.octopus.add_task(TaskSpec {
        state: TaskState::Queued,
        ..TaskSpec::default()
    });
    // Over the control surface, for a lab in another process; the cancel lasts until told.
    let (status, answer) = lab
        .call(
            reqwest::Method::POST,
            &format!("/lab/tasks/{id}/cancel"),
            "",
            Some(r#"{"cancelling_ms": 600000}"#),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["state"], "Cancelling");
    let cancelling = task(&lab, &id).await;
    assert_eq!(cancelling["State"], "Cancelling");
    assert_eq!(cancelling["IsCompleted"], false);
    assert!(cancelling["CompletedTime"].is_null());
    let (_, listed) = lab
        .get("/api/tasks?states=Executing,Cancelling&spaces=all")
        .await;
    assert_eq!(ids(&listed), vec![id.clone()]);
    let (_, executing) = lab.get("/api/tasks?states=Executing&spaces=all").await;
    assert!(ids(&executing).is_empty(), "{executing:#}");
    let (_, active) = lab.get("/api/tasks?active=true&spaces=all").await;
    assert!(ids(&active).contains(&id));
    assert_eq!(lab.events_of("task_cancelling").len(), 1);

    // A queued task has nothing to stop: Canceled at once. A cancel does not end Success.
    assert_eq!(
        lab.octopus
            .cancel_task(&queued, Duration::from_secs(60))
            .unwrap(),
        TaskState::Canceled
    );
    let short = lab.octopus.add_task(TaskSpec {
        finishes_after: Some(Duration::from_secs(3600)),
        ..TaskSpec::default()
    });
    lab.octopus
        .cancel_task(&short, Duration::from_millis(50))
        .unwrap();
    eventually("the cancelling task to end", || async {
        let t = task(&lab, &short).await;
        (t["State"] == "Canceled").then_some(())
    })
    .await;
    assert_eq!(task(&lab, &short).await["IsCompleted"], true);
    let (status, _) = lab
        .call(
            reqwest::Method::POST,
            "/lab/tasks/ServerTasks-404/cancel",
            "",
            None,
        )
        .await;
    assert_eq!(status, 404);
}
