//! API keys: missing or unknown -> 401, no AdministerSystem -> 403 on changes, reads allowed.

use reqwest::Method;

use crate::common;

#[tokio::test]
async fn requests_without_a_valid_key_are_refused_with_401() {
    let lab = common::start().await;
    for path in [
        "/api/tasks",
        "/api/maintenanceconfiguration",
        "/api/serverstatus",
        "/api/licenses/licenses-current",
        "/api/configuration/server-folders/values",
        "/api/octopusservernodes/summary",
    ] {
        let (status, body) = lab.call(Method::GET, path, "", None).await;
        assert_eq!(status, 401, "{path}");
        assert!(
            body["ErrorMessage"]
                .as_str()
                .unwrap()
                .contains("must be logged in"),
            "{body}"
        );
        assert!(body["Errors"].is_array());

        let wrong = octopus_sim::ApiKey::generate("nobody", true).key;
        let (status, body) = lab.call(Method::GET, path, &wrong, None).await;
        assert_eq!(status, 401, "{path}");
        let text = body.to_string();
        assert!(
            text.contains("API key you provided was not valid"),
            "{text}"
        );
        assert!(!text.contains(&wrong), "the key is echoed back: {text}");
    }
}

#[tokio::test]
async fn the_root_and_health_are_anonymous() {
    let lab = common::start().await;
    let (status, root) = lab.call(Method::GET, "/api", "", None).await;
    assert_eq!(status, 200);
    assert_eq!(root["Version"], octopus_sim::DEFAULT_VERSION);
    let (status, health) = lab
        .call(Method::GET, "/api/serverstatus/health", "", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(health["IsOperatingNormally"], true);
}

#[tokio::test]
async fn a_key_is_accepted_in_the_query_too_and_never_echoed_in_links() {
    let lab = common::start().await;
    let response = lab
        .http
        .get(lab.url(&format!("/api/tasks?apikey={}&take=1", lab.admin)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(!text.contains(&lab.admin), "{text}");
    let (status, _) = lab
        .call(
            Method::GET,
            &format!("/api/tasks?ApiKey={}", lab.viewer),
            "",
            None,
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_key_without_administer_system_reads_but_cannot_change_maintenance_mode() {
    let lab = common::start().await;
    let (status, _) = lab
        .call(
            Method::GET,
            "/api/maintenanceconfiguration",
            &lab.viewer,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = lab.call(Method::GET, "/api/tasks", &lab.viewer, None).await;
    assert_eq!(status, 200);

    let body = r#"{"Id":"maintenance","IsInMaintenanceMode":true}"#;
    let (status, error) = lab
        .call(
            Method::PUT,
            "/api/maintenanceconfiguration",
            &lab.viewer,
            Some(body),
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(
        error["ErrorMessage"],
        "You do not have permission to perform this action. Please contact your Octopus \
         administrator. Missing permission: AdministerSystem"
    );
    assert!(!lab.octopus.maintenance());
    assert!(lab.events_of("maintenance_changed").is_empty());

    let (status, _) = lab
        .call(
            Method::PUT,
            "/api/maintenanceconfiguration",
            &lab.admin,
            Some(body),
        )
        .await;
    assert_eq!(status, 200);
    assert!(lab.octopus.maintenance());
}

#[tokio::test]
async fn unknown_routes_and_methods_get_octopus_error_bodies() {
    let lab = common::start().await;
    let (status, body) = lab.get("/api/nonexistent").await;
    assert_eq!(status, 404);
    assert!(body["ErrorMessage"].is_string());
    let (status, body) = lab
        .call(
            Method::DELETE,
            "/api/maintenanceconfiguration",
            &lab.admin,
            None,
        )
        .await;
    assert_eq!(status, 405);
    assert!(body["ErrorMessage"].is_string());
    let (status, _) = lab.get("/api/configuration/smtp/values").await;
    assert_eq!(status, 404);
}
