//! Maintenance mode: the round trip, who changed it and when, and the events the lab sees.

use chrono::DateTime;
use reqwest::Method;
use serde_json::json;

use crate::common;

#[tokio::test]
async fn maintenance_mode_round_trips_and_records_who_and_when() {
    let lab = common::start().await;
    let (_, initial) = lab.get("/api/maintenanceconfiguration").await;
    assert_eq!(initial["Id"], "maintenance");
    assert_eq!(initial["IsInMaintenanceMode"], false);
    let before = DateTime::parse_from_rfc3339(initial["LastModifiedOn"].as_str().unwrap()).unwrap();

    let on = r#"{"Id":"maintenance","IsInMaintenanceMode":true}"#;
    let (status, changed) = lab
        .call(
            Method::PUT,
            "/api/maintenanceconfiguration",
            &lab.admin,
            Some(on),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(changed["IsInMaintenanceMode"], true);
    assert_eq!(changed["LastModifiedBy"], "admin");
    let modified =
        DateTime::parse_from_rfc3339(changed["LastModifiedOn"].as_str().unwrap()).unwrap();
    assert!(modified >= before);

    let (_, read_back) = lab.get("/api/maintenanceconfiguration").await;
    assert_eq!(read_back, changed);
    assert!(lab.octopus.maintenance());
    let (_, status) = lab.get("/api/serverstatus").await;
    assert_eq!(status["IsInMaintenanceMode"], true);

    // The resource as read, sent back with the flag flipped, is what a careful client sends.
    let mut off = read_back.clone();
    off["IsInMaintenanceMode"] = json!(false);
    let (status, changed) = lab
        .call(
            Method::PUT,
            "/api/maintenanceconfiguration",
            &lab.admin,
            Some(&off.to_string()),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(changed["IsInMaintenanceMode"], false);
    assert!(!lab.octopus.maintenance());

    assert_eq!(
        lab.events_of("maintenance_changed"),
        vec![
            json!({ "on": true, "by": "admin", "previous": false }),
            json!({ "on": false, "by": "admin", "previous": true }),
        ]
    );
}

#[tokio::test]
async fn the_handle_changes_maintenance_mode_as_a_named_user() {
    let lab = common::start().await;
    lab.octopus.set_maintenance(true, "night-shift");
    let (_, config) = lab.get("/api/maintenanceconfiguration").await;
    assert_eq!(config["IsInMaintenanceMode"], true);
    assert_eq!(config["LastModifiedBy"], "night-shift");
    assert_eq!(
        lab.events_of("maintenance_changed"),
        vec![json!({ "on": true, "by": "night-shift", "previous": false })]
    );
}

#[tokio::test]
async fn malformed_bodies_are_rejected_and_change_nothing() {
    let lab = common::start().await;
    for body in [
        "",
        "{",
        "true",
        r#"{"isInMaintenanceMode":true}"#,
        r#"{"IsInMaintenanceMode":"true"}"#,
        r#"{"Id":"maintenance"}"#,
        r#"{"Id":"other","IsInMaintenanceMode":true}"#,
    ] {
        let (status, error) = lab
            .call(
                Method::PUT,
                "/api/maintenanceconfiguration",
                &lab.admin,
                Some(body),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(
            error["ErrorMessage"],
            "There was a problem with your request."
        );
        assert!(!error["Errors"].as_array().unwrap().is_empty(), "{body}");
    }
    assert!(!lab.octopus.maintenance());
    assert!(lab.events_of("maintenance_changed").is_empty());
}

#[tokio::test]
async fn a_server_that_starts_in_maintenance_mode_says_so() {
    let (mut config, events) = common::config();
    config.maintenance = true;
    let lab = common::start_with(config, events).await;
    let (_, config) = lab.get("/api/maintenanceconfiguration").await;
    assert_eq!(config["IsInMaintenanceMode"], true);
    assert_eq!(config["LastModifiedBy"], serde_json::Value::Null);
    let (status, health) = lab.get("/api/serverstatus/health").await;
    assert_eq!(status, 418);
    assert_eq!(health["IsEntireClusterReadOnly"], true);
}
