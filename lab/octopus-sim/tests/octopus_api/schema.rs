//! Every endpoint's answers, checked against the swagger definition they claim to be.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{self, TestApi};
use crate::swagger::octopus;

/// Checks `value` against `schema`, failing with every violation.
fn assert_conforms(what: &str, schema: &Value, value: &Value) {
    let violations = octopus().violations(schema, value);
    assert!(
        violations.is_empty(),
        "{what} breaks its schema:\n{}\n{value:#}",
        violations.join("\n")
    );
}

/// The schema the swagger names for this endpoint and status; the `Error` definition for error
/// statuses it does not describe.
fn documented(method: &str, path: &str, status: u16) -> Value {
    octopus()
        .response_schema(method, path, status)
        .or_else(|| (status >= 400).then(|| octopus().definition("Error")))
        .unwrap_or_else(|| panic!("the swagger gives no schema for {method} {path} {status}"))
}

async fn check(
    lab: &TestApi,
    method: Method,
    api_path: &str,
    swagger_path: &str,
    key: &str,
    body: Option<&str>,
) -> Value {
    let (status, value) = lab
        .call(method.clone(), &format!("/api{api_path}"), key, body)
        .await;
    let schema = documented(method.as_str(), swagger_path, status.as_u16());
    assert_conforms(&format!("{method} {api_path} ({status})"), &schema, &value);
    value
}

#[tokio::test]
async fn documented_endpoints_answer_in_their_swagger_shapes() {
    let lab = common::start().await;
    let admin = lab.admin.clone();
    // Tasks of every kind, so every TaskResource field takes a value.
    lab.octopus.add_task(octopus_sim::TaskSpec::default());
    lab.octopus.add_task(octopus_sim::TaskSpec {
        state: octopus_sim::TaskState::Queued,
        space_id: None,
        name: "Retention".into(),
        ..Default::default()
    });
    let done = lab.octopus.add_task(octopus_sim::TaskSpec::default());
    lab.octopus
        .finish_task(&done, octopus_sim::TaskState::Failed);

    check(&lab, Method::GET, "", "/", "", None).await;
    check(
        &lab,
        Method::GET,
        "/serverstatus/health",
        "/serverstatus/health",
        "",
        None,
    )
    .await;
    check(
        &lab,
        Method::GET,
        "/maintenanceconfiguration",
        "/maintenanceconfiguration",
        &admin,
        None,
    )
    .await;
    let body = r#"{"Id":"maintenance","IsInMaintenanceMode":true}"#;
    check(
        &lab,
        Method::PUT,
        "/maintenanceconfiguration",
        "/maintenanceconfiguration",
        &admin,
        Some(body),
    )
    .await;
    // 418 while in maintenance mode: same schema, per the swagger.
    let health = check(
        &lab,
        Method::GET,
        "/serverstatus/health",
        "/serverstatus/health",
        "",
        None,
    )
    .await;
    assert_eq!(health["IsOperatingNormally"], false);
    check(
        &lab,
        Method::GET,
        "/licenses/licenses-current",
        "/licenses/licenses-current",
        &admin,
        None,
    )
    .await;
    check(
        &lab,
        Method::GET,
        "/licenses/licenses-current-status",
        "/licenses/licenses-current-status",
        &admin,
        None,
    )
    .await;
    let tasks = check(
        &lab,
        Method::GET,
        "/tasks?spaces=all&take=2",
        "/tasks",
        &admin,
        None,
    )
    .await;
    assert_eq!(tasks["Items"].as_array().unwrap().len(), 2);
    let node_id = "OctopusServerNodes-OCTOPUS-NODE-01";
    let node = check(
        &lab,
        Method::GET,
        &format!("/octopusservernodes/{node_id}"),
        "/octopusservernodes/{id}",
        &admin,
        None,
    )
    .await;
    let mut drained = node.clone();
    drained["IsInMaintenanceMode"] = json!(true);
    check(
        &lab,
        Method::PUT,
        &format!("/octopusservernodes/{node_id}"),
        "/octopusservernodes/{id}",
        &admin,
        Some(&drained.to_string()),
    )
    .await;
    // Errors, in Octopus's Error shape.
    check(&lab, Method::GET, "/tasks", "/tasks", "", None).await;
    check(
        &lab,
        Method::PUT,
        "/maintenanceconfiguration",
        "/maintenanceconfiguration",
        &lab.viewer,
        Some(body),
    )
    .await;
    check(
        &lab,
        Method::PUT,
        "/maintenanceconfiguration",
        "/maintenanceconfiguration",
        &admin,
        Some("{"),
    )
    .await;
    check(
        &lab,
        Method::GET,
        "/octopusservernodes/OctopusServerNodes-nope",
        "/octopusservernodes/{id}",
        &admin,
        None,
    )
    .await;
    check(&lab, Method::GET, "/tasks?take=x", "/tasks", &admin, None).await;
    check(&lab, Method::GET, "/no/such/thing", "/", &admin, None).await;

    // The current user and their permissions, for each kind of key: /users/me has no schema in
    // the swagger, but Octopus.Client reads it as a UserResource.
    for (key, administers) in [(&admin, true), (&lab.viewer, false)] {
        let (status, me) = lab.call(Method::GET, "/api/users/me", key, None).await;
        assert_eq!(status, 200, "{me:#}");
        assert_conforms("users/me", &octopus().definition("UserResource"), &me);
        let id = me["Id"].as_str().unwrap();
        let permissions = check(
            &lab,
            Method::GET,
            &format!("/users/{id}/permissions"),
            "/users/{id}/permissions",
            key,
            None,
        )
        .await;
        assert_eq!(permissions["Id"], id);
        let system = permissions["SystemPermissions"].as_array().unwrap();
        assert_eq!(
            system.iter().any(|p| p == "AdministerSystem"),
            administers,
            "{permissions:#}"
        );
        assert!(
            !permissions["SpacePermissions"]
                .as_object()
                .unwrap()
                .is_empty()
        );
    }
    // Another user's permissions are refused; an unknown user is not found; no key is 401.
    let (_, viewer) = lab
        .call(Method::GET, "/api/users/me", &lab.viewer, None)
        .await;
    let viewer_id = viewer["Id"].as_str().unwrap();
    let (status, _) = lab
        .call(
            Method::GET,
            &format!("/api/users/{viewer_id}/permissions"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = lab
        .call(
            Method::GET,
            "/api/users/Users-999/permissions",
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 404);
    check(&lab, Method::GET, "/users/me", "/users/me", "", None).await;

    for task in tasks["Items"].as_array().unwrap() {
        let id = task["Id"].as_str().unwrap();
        let one = lab.get(&format!("/api/tasks/{id}")).await.1;
        assert_conforms(id, &octopus().definition("TaskResource"), &one);
    }
}

/// Endpoints whose swagger entry has no schema: checked against the fields octopus.md and
/// Octopus.Client document, with the same strictness (nothing undocumented).
#[tokio::test]
async fn undocumented_endpoints_answer_with_the_fields_octopus_clients_read() {
    let lab = common::start().await;
    lab.octopus.add_task(octopus_sim::TaskSpec::default());
    let links = json!({ "type": "object", "additionalProperties": { "type": "string" } });
    let server_status = json!({ "type": "object", "properties": {
        "Id": { "type": "string" },
        "IsDatabaseEncrypted": { "type": "boolean" },
        "IsUpgradeAvailable": { "type": "boolean" },
        "MaximumAvailableVersion": { "type": "string" },
        "MaximumAvailableVersionCoveredByLicense": { "type": "string" },
        "MaintenanceExpires": { "type": "string", "format": "date-time" },
        "IsInMaintenanceMode": { "type": "boolean" },
        "IsMajorMinorUpgrade": { "type": "boolean" },
        "IsPotentialClone": { "type": "boolean" },
        "Links": links,
    }});
    let (status, value) = lab.get("/api/serverstatus").await;
    assert_eq!(status, 200);
    assert_conforms("serverstatus", &server_status, &value);
    assert_eq!(value["IsInMaintenanceMode"], false);

    let folder = json!({ "type": "string" });
    let folders = json!({ "type": "object", "properties": {
        "LogsDirectory": folder, "ArtifactsDirectory": folder, "PackagesDirectory": folder,
        "TelemetryDirectory": folder, "ImportsDirectory": folder, "EventExportsDirectory": folder,
    }});
    let (status, value) = lab.get("/api/configuration/server-folders/values").await;
    assert_eq!(status, 200);
    assert_conforms("server-folders", &folders, &value);

    let node = json!({ "type": "object", "properties": {
        "Id": { "type": "string" },
        "Name": { "type": "string" },
        "MaxConcurrentTasks": { "type": "integer", "format": "int32" },
        "IsInMaintenanceMode": { "type": "boolean" },
        "LastSeen": { "type": "string", "format": "date-time" },
        "Rank": { "type": "string", "enum": ["Leader", "Follower"] },
        "IsLeader": { "type": "boolean" },
        "IsOffline": { "type": "boolean" },
        "RunningTaskCount": { "type": "integer", "format": "int32" },
        "Links": links,
    }});
    let summary =
        json!({ "type": "object", "properties": { "Nodes": { "type": "array", "items": node } } });
    let (status, value) = lab.get("/api/octopusservernodes/summary").await;
    assert_eq!(status, 200);
    assert_conforms("octopusservernodes/summary", &summary, &value);
    assert_eq!(value["Nodes"][0]["RunningTaskCount"], 1);
}
