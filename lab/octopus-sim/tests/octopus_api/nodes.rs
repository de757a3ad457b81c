//! HA clusters: several nodes, their running task counts, and draining one.

use octopus_sim::TaskSpec;
use reqwest::Method;
use serde_json::json;

use crate::common;

#[tokio::test]
async fn a_cluster_reports_each_node_and_the_tasks_it_runs() {
    let (mut config, events) = common::config();
    config.nodes = vec!["NODE-A".into(), "NODE-B".into(), "NODE-C".into()];
    let lab = common::start_with(config, events).await;
    // Picked in turn: A, B, C, A.
    for _ in 0..4 {
        lab.octopus.add_task(TaskSpec::default());
    }
    lab.octopus.add_task(TaskSpec {
        node: Some("NODE-C".into()),
        ..TaskSpec::default()
    });

    let (status, summary) = lab.get("/api/octopusservernodes/summary").await;
    assert_eq!(status, 200);
    let nodes = summary["Nodes"].as_array().unwrap();
    let view: Vec<_> = nodes
        .iter()
        .map(|n| {
            (
                n["Name"].as_str().unwrap(),
                n["RunningTaskCount"].as_u64().unwrap(),
                n["IsLeader"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        view,
        [
            ("NODE-A", 2, true),
            ("NODE-B", 1, false),
            ("NODE-C", 2, false)
        ]
    );
    assert!(
        nodes
            .iter()
            .all(|n| n["IsOffline"] == false && n["IsInMaintenanceMode"] == false)
    );

    let (_, on_c) = lab.get("/api/tasks?node=NODE-C").await;
    assert_eq!(on_c["TotalResults"], 2);
}

#[tokio::test]
async fn draining_a_node_needs_an_administrator_and_the_whole_resource() {
    let (mut config, events) = common::config();
    config.nodes = vec!["NODE-A".into(), "NODE-B".into()];
    let lab = common::start_with(config, events).await;
    let path = "/api/octopusservernodes/OctopusServerNodes-NODE-B";
    let (status, node) = lab.get(path).await;
    assert_eq!(status, 200);
    assert_eq!(node["Name"], "NODE-B");
    let mut drained = node.clone();
    drained["IsInMaintenanceMode"] = json!(true);

    let (status, _) = lab
        .call(Method::PUT, path, &lab.viewer, Some(&drained.to_string()))
        .await;
    assert_eq!(status, 403);
    let (status, error) = lab
        .call(
            Method::PUT,
            path,
            &lab.admin,
            Some(r#"{"IsInMaintenanceMode":true}"#),
        )
        .await;
    assert_eq!(status, 400, "{error}");
    assert!(
        error["Errors"][0]
            .as_str()
            .unwrap()
            .contains("MaxConcurrentTasks")
    );

    let (status, changed) = lab
        .call(Method::PUT, path, &lab.admin, Some(&drained.to_string()))
        .await;
    assert_eq!(status, 200);
    assert_eq!(changed["IsInMaintenanceMode"], true);
    assert_eq!(changed["LastModifiedBy"], "admin");
    assert_eq!(
        lab.events_of("node_maintenance_changed"),
        vec![json!({ "node": "NODE-B", "on": true, "by": "admin", "previous": false })]
    );
    let (_, summary) = lab.get("/api/octopusservernodes/summary").await;
    assert_eq!(summary["Nodes"][1]["IsInMaintenanceMode"], true);
    // A draining node is handed no new tasks.
    for _ in 0..3 {
        lab.octopus.add_task(octopus_sim::TaskSpec::default());
    }
    let nodes: Vec<_> = lab
        .octopus
        .tasks()
        .into_iter()
        .map(|t| t.server_node)
        .collect();
    assert_eq!(nodes, vec![Some("NODE-A".to_string()); 3]);
    // One node draining is not the whole cluster draining.
    let (status, health) = lab.get("/api/serverstatus/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["IsEntireClusterDrainingTasks"], false);

    let path_a = "/api/octopusservernodes/OctopusServerNodes-NODE-A";
    let (_, mut node_a) = lab.get(path_a).await;
    node_a["IsInMaintenanceMode"] = json!(true);
    lab.call(Method::PUT, path_a, &lab.admin, Some(&node_a.to_string()))
        .await;
    let (status, health) = lab.get("/api/serverstatus/health").await;
    assert_eq!(status, 418);
    assert_eq!(health["IsEntireClusterDrainingTasks"], true);
    assert_eq!(health["IsOperatingNormally"], false);

    let (status, _) = lab
        .get("/api/octopusservernodes/OctopusServerNodes-NODE-Z")
        .await;
    assert_eq!(status, 404);
}
