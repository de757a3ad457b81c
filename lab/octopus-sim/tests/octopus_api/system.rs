//! The root, license, server folders, dates and shutdown.

use chrono::{Duration, FixedOffset, Utc};
use octopus_sim::License;

use crate::common;

#[tokio::test]
async fn the_root_identifies_the_installation() {
    let (config, events) = common::config();
    let installation = config.installation_id;
    let lab = common::start_with(config, events).await;
    let (_, root) = lab.get("/api").await;
    assert_eq!(root["InstallationId"], installation.to_string());
    assert_eq!(root["Application"], "Octopus Deploy");
}

#[tokio::test]
async fn the_license_is_served_as_installed() {
    let (config, events) = common::config();
    let license = config.license.clone();
    let lab = common::start_with(config, events).await;
    let (_, current) = lab.get("/api/licenses/licenses-current").await;
    assert_eq!(current["LicenseText"], license.text.as_str());
    assert_eq!(current["SerialNumber"], license.serial_number.as_str());
    assert!(license.text.starts_with("<License"));
    let (_, status) = lab.get("/api/licenses/licenses-current-status").await;
    assert_eq!(status["IsCompliant"], true);
    assert_eq!(
        status["EffectiveExpiryDate"],
        license.expiry.format("%Y-%m-%d").to_string()
    );
    assert!(status["DaysToEffectiveExpiryDate"].as_i64().unwrap() > 300);
    assert_eq!(status["DoesExpiryBlockKeyActivities"], false);
}

#[tokio::test]
async fn an_expired_non_compliant_license_shows_in_status_and_health() {
    let (mut config, events) = common::config();
    config.license = License::new("1-2-3", Utc::now() - Duration::days(10), false);
    let lab = common::start_with(config, events).await;
    let (_, status) = lab.get("/api/licenses/licenses-current-status").await;
    assert_eq!(status["IsCompliant"], false);
    assert!(status["DaysToEffectiveExpiryDate"].as_i64().unwrap() < 0);
    assert_eq!(status["DoesExpiryBlockKeyActivities"], true);
    assert!(
        status["Messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["Disposition"] == "Error")
    );
    let (code, health) = lab.get("/api/serverstatus/health").await;
    assert_eq!(code, 418);
    assert_eq!(health["IsCompliantWithLicense"], false);
}

#[tokio::test]
async fn server_folders_are_the_configured_paths_for_the_version() {
    let (config, events) = common::config();
    let folders = config.folders.clone();
    let lab = common::start_with(config, events).await;
    let (_, values) = lab.get("/api/configuration/server-folders/values").await;
    let text = |p: &std::path::Path| p.to_string_lossy().into_owned();
    assert_eq!(values["LogsDirectory"], text(&folders.task_logs));
    assert_eq!(values["ArtifactsDirectory"], text(&folders.artifacts));
    assert_eq!(values["PackagesDirectory"], text(&folders.packages));
    assert_eq!(values["TelemetryDirectory"], text(&folders.telemetry));
    assert_eq!(values["ImportsDirectory"], text(&folders.imports));
    assert!(
        values.get("EventExportsDirectory").is_none(),
        "2021.2 has no event exports"
    );

    let (mut newer, events) = common::config();
    newer.version = "2023.3.13026".into();
    let lab = common::start_with(newer, events).await;
    let (_, values) = lab.get("/api/configuration/server-folders/values").await;
    assert_eq!(
        values["EventExportsDirectory"],
        text(&folders.event_exports)
    );
}

#[tokio::test]
async fn dates_carry_the_servers_offset() {
    let (mut config, events) = common::config();
    config.utc_offset = FixedOffset::east_opt(10 * 3600).unwrap();
    let lab = common::start_with(config, events).await;
    lab.octopus.add_task(octopus_sim::TaskSpec::default());
    let (_, maintenance) = lab.get("/api/maintenanceconfiguration").await;
    assert!(
        maintenance["LastModifiedOn"]
            .as_str()
            .unwrap()
            .ends_with("+10:00")
    );
    let (_, task) = lab.get("/api/tasks/ServerTasks-1").await;
    assert!(task["QueueTime"].as_str().unwrap().ends_with("+10:00"));
}

#[tokio::test]
async fn after_shutdown_nothing_answers() {
    let lab = common::start().await;
    let url = lab.url("/api");
    let (status, _) = lab.get("/api").await;
    assert_eq!(status, 200);
    let clone = lab.octopus.clone();
    clone.shutdown().await;
    let error = reqwest::Client::new()
        .get(&url)
        .send()
        .await
        .expect_err("the server is gone");
    assert!(error.is_connect() || error.is_request(), "{error:?}");
}
