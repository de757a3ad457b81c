//! Injected faults: error statuses, delays and connection resets, as a client sees them.

use std::error::Error as _;
use std::time::Duration;

use octopus_sim::{Fault, FaultKind, Method};

use crate::common::{self, eventually};

#[tokio::test]
async fn a_status_fault_answers_with_an_octopus_error_the_given_number_of_times() {
    let lab = common::start().await;
    lab.octopus.inject(Fault {
        method: Some(Method::GET),
        path_prefix: "/api/tasks".into(),
        kind: FaultKind::Status(503),
        times: 2,
    });
    let (status, _) = lab.get("/api/maintenanceconfiguration").await;
    assert_eq!(status, 200);
    for _ in 0..2 {
        let (status, body) = lab.get("/api/tasks?states=Executing").await;
        assert_eq!(status, 503);
        assert!(body["ErrorMessage"].is_string());
    }
    let (status, _) = lab.get("/api/tasks").await;
    assert_eq!(status, 200);
    let served = lab.events_of("fault_served");
    assert_eq!(served.len(), 2);
    assert_eq!(served[0]["path"], "/api/tasks");
    assert_eq!(served[0]["kind"], "status 503");
}

#[tokio::test]
async fn a_status_fault_changes_nothing() {
    let lab = common::start().await;
    lab.octopus.inject(Fault::once(
        "/api/maintenanceconfiguration",
        FaultKind::Status(500),
    ));
    let on = r#"{"Id":"maintenance","IsInMaintenanceMode":true}"#;
    let (status, _) = lab
        .call(
            reqwest::Method::PUT,
            "/api/maintenanceconfiguration",
            &lab.admin,
            Some(on),
        )
        .await;
    assert_eq!(status, 500);
    assert!(!lab.octopus.maintenance());
}

#[tokio::test]
async fn a_delayed_change_still_applies_after_the_client_gave_up() {
    let lab = common::start().await;
    lab.octopus.inject(Fault {
        method: Some(Method::PUT),
        path_prefix: "/api/maintenanceconfiguration".into(),
        kind: FaultKind::Delay(Duration::from_millis(300)),
        times: 1,
    });
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let error = impatient
        .put(lab.url("/api/maintenanceconfiguration"))
        .header("X-Octopus-ApiKey", &lab.admin)
        .body(r#"{"Id":"maintenance","IsInMaintenanceMode":true}"#)
        .send()
        .await
        .expect_err("the answer comes after the client's timeout");
    assert!(error.is_timeout(), "{error:?}");
    eventually("the delayed change to apply", || async {
        lab.octopus.maintenance().then_some(())
    })
    .await;
    assert_eq!(lab.events_of("maintenance_changed").len(), 1);
    assert_eq!(lab.events_of("delayed_request_handled").len(), 1);
}

#[tokio::test]
async fn a_delayed_change_applies_even_when_the_client_process_is_gone() {
    use tokio::io::AsyncWriteExt;
    let lab = common::start().await;
    lab.octopus.inject(Fault {
        method: Some(Method::PUT),
        path_prefix: "/api/maintenanceconfiguration".into(),
        kind: FaultKind::Delay(Duration::from_millis(300)),
        times: 1,
    });
    // A client killed with its request sent: the connection closes at once, nothing is read.
    let body = r#"{"Id":"maintenance","IsInMaintenanceMode":true}"#;
    let mut stream = tokio::net::TcpStream::connect(lab.octopus.addr())
        .await
        .unwrap();
    let request = format!(
        "PUT /api/maintenanceconfiguration HTTP/1.1\r\nHost: localhost\r\nX-Octopus-ApiKey: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        lab.admin,
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    eventually("the fault to be served", || async {
        (!lab.events_of("fault_served").is_empty()).then_some(())
    })
    .await;
    drop(stream);
    assert!(!lab.octopus.maintenance());
    eventually("the delayed change to apply", || async {
        lab.octopus.maintenance().then_some(())
    })
    .await;
    assert_eq!(lab.events_of("delayed_request_handled").len(), 1);
}

#[tokio::test]
async fn a_delayed_request_is_answered_normally() {
    let lab = common::start().await;
    lab.octopus.inject(Fault::once(
        "/api",
        FaultKind::Delay(Duration::from_millis(20)),
    ));
    let (status, root) = lab.get("/api").await;
    assert_eq!(status, 200);
    assert_eq!(root["Application"], "Octopus Deploy");
}

/// True if the error chain holds an OS "connection reset": a RST, not a clean close.
fn is_connection_reset(error: &reqwest::Error) -> bool {
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionReset
        {
            return true;
        }
        source = cause.source();
    }
    false
}

#[tokio::test]
async fn a_reset_fault_resets_the_connection_even_a_kept_alive_one() {
    let lab = common::start().await;
    // The client's pooled connection is open before the fault is injected.
    let (status, _) = lab.get("/api/tasks").await;
    assert_eq!(status, 200);
    lab.octopus
        .inject(Fault::once("/api/tasks", FaultKind::Reset));

    let error = lab
        .http
        .get(lab.url("/api/tasks"))
        .header("X-Octopus-ApiKey", &lab.admin)
        .send()
        .await
        .expect_err("a reset connection gives no answer");
    assert!(error.status().is_none());
    assert!(is_connection_reset(&error), "not a reset: {error:?}");
    assert_eq!(lab.events_of("fault_served")[0]["kind"], "reset");

    let (status, _) = lab.get("/api/tasks").await;
    assert_eq!(status, 200, "the next connection is served normally");
}

#[tokio::test]
async fn faults_match_method_and_path_prefix_and_can_be_cleared() {
    let lab = common::start().await;
    lab.octopus.inject(Fault {
        method: Some(Method::PUT),
        path_prefix: "/api/maintenance".into(),
        kind: FaultKind::Status(500),
        times: u32::MAX,
    });
    let (status, _) = lab.get("/api/maintenanceconfiguration").await;
    assert_eq!(status, 200, "GET is not PUT");
    let body = r#"{"IsInMaintenanceMode":true}"#;
    let (status, _) = lab
        .call(
            reqwest::Method::PUT,
            "/api/maintenanceconfiguration",
            &lab.admin,
            Some(body),
        )
        .await;
    assert_eq!(status, 500);
    lab.octopus.clear_faults();
    let (status, _) = lab
        .call(
            reqwest::Method::PUT,
            "/api/maintenanceconfiguration",
            &lab.admin,
            Some(body),
        )
        .await;
    assert_eq!(status, 200);
}
