//! The `/lab/` control surface a separate lab process uses.

use reqwest::Method;
use serde_json::json;

use crate::common::{self, eventually};

#[tokio::test]
async fn tasks_can_be_added_and_finished_over_http() {
    let lab = common::start().await;
    let spec = json!({
        "name": "Backup",
        "description": "Nightly backup",
        "space_id": null,
        "state": "Executing",
    });
    let (status, created) = lab
        .call(Method::POST, "/lab/tasks", "", Some(&spec.to_string()))
        .await;
    assert_eq!(status, 201);
    let id = created["id"].as_str().unwrap().to_string();
    let (_, task) = lab.get(&format!("/api/tasks/{id}")).await;
    assert_eq!(task["Name"], "Backup");
    assert!(task["SpaceId"].is_null());

    let finish = format!("/lab/tasks/{id}/finish");
    let (status, _) = lab
        .call(Method::POST, &finish, "", Some(r#"{"state":"Queued"}"#))
        .await;
    assert_eq!(status, 400);
    let (status, _) = lab
        .call(Method::POST, &finish, "", Some(r#"{"state":"Failed"}"#))
        .await;
    assert_eq!(status, 204);
    let (_, task) = lab.get(&format!("/api/tasks/{id}")).await;
    assert_eq!(task["State"], "Failed");
    let (status, _) = lab
        .call(
            Method::POST,
            "/lab/tasks/ServerTasks-404/finish",
            "",
            Some(r#"{"state":"Success"}"#),
        )
        .await;
    assert_eq!(status, 404);

    let timed = json!({ "name": "Deploy", "finishes_after_ms": 50 });
    let (_, created) = lab
        .call(Method::POST, "/lab/tasks", "", Some(&timed.to_string()))
        .await;
    let timed_id = created["id"].as_str().unwrap().to_string();
    eventually("the timed task to finish", || async {
        let (_, state) = lab.get("/lab/state").await;
        let tasks = state["tasks"].as_array().unwrap().clone();
        tasks
            .into_iter()
            .find(|t| t["id"] == timed_id.as_str() && t["state"] == "Success")
    })
    .await;

    let (status, error) = lab
        .call(Method::POST, "/lab/tasks", "", Some(r#"{"nmae":"typo"}"#))
        .await;
    assert_eq!(status, 400);
    assert!(error["error"].as_str().unwrap().contains("nmae"));
}

#[tokio::test]
async fn faults_are_injected_listed_and_cleared_over_http_and_never_hit_the_lab() {
    let lab = common::start().await;
    let fault =
        json!({ "path_prefix": "/", "kind": { "kind": "status", "value": 502 }, "times": 5 });
    let (status, _) = lab
        .call(Method::POST, "/lab/faults", "", Some(&fault.to_string()))
        .await;
    assert_eq!(status, 201);
    let (status, _) = lab.get("/api").await;
    assert_eq!(status, 502);

    let (status, state) = lab.get("/lab/state").await;
    assert_eq!(status, 200, "the control surface is never faulted");
    assert_eq!(state["faults"][0]["times"], 4);
    assert_eq!(
        state["faults"][0]["kind"],
        json!({ "kind": "status", "value": 502 })
    );

    let (status, _) = lab.call(Method::DELETE, "/lab/faults", "", None).await;
    assert_eq!(status, 204);
    let (status, _) = lab.get("/api").await;
    assert_eq!(status, 200);

    let not_an_error = json!({ "path_prefix": "/api", "kind": { "kind": "status", "value": 200 } });
    let (status, _) = lab
        .call(
            Method::POST,
            "/lab/faults",
            "",
            Some(&not_an_error.to_string()),
        )
        .await;
    assert_eq!(status, 400);
    let delay = json!({ "method": "GET", "path_prefix": "/api/tasks", "kind": { "kind": "delay", "value": 10 } });
    let (status, _) = lab
        .call(Method::POST, "/lab/faults", "", Some(&delay.to_string()))
        .await;
    assert_eq!(status, 201);
    let (status, _) = lab.get("/api/tasks").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn state_shows_maintenance_nodes_and_tasks() {
    let lab = common::start().await;
    let (status, _) = lab
        .call(
            Method::PUT,
            "/lab/maintenance",
            "",
            Some(r#"{"on":true,"by":"lab-script"}"#),
        )
        .await;
    assert_eq!(status, 204);
    lab.octopus.add_task(octopus_sim::TaskSpec::default());
    let (_, state) = lab.get("/lab/state").await;
    assert_eq!(state["maintenance"]["on"], true);
    assert_eq!(state["maintenance"]["last_modified_by"], "lab-script");
    assert_eq!(state["nodes"][0]["running_task_count"], 1);
    assert_eq!(state["tasks"][0]["id"], "ServerTasks-1");
    assert_eq!(state["tasks"][0]["state"], "Executing");
    assert_eq!(
        lab.events_of("maintenance_changed"),
        vec![json!({ "on": true, "by": "lab-script", "previous": false })]
    );
}
