//! The Octopus REST API routes the simulator serves, and the lab's `/lab/` control surface.
//!
//! Response shapes follow the swagger document of Octopus 2021.2.4488 (`definitions` named in
//! each module); where the swagger has no schema, the module says where the fields come from.

mod auth;
mod error;
mod maintenance;
mod nodes;
mod system;
mod tasks;
mod users;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde_json::Value;

pub(crate) use auth::Caller;
pub(crate) use error::OctopusError;

use crate::state::Simulator;

pub(crate) fn router(sim: Arc<Simulator>) -> Router {
    Router::new()
        .route("/api", get(system::root))
        .route("/api/", get(system::root))
        .route("/api/serverstatus", get(system::server_status))
        .route("/api/serverstatus/health", get(system::health))
        .route(
            "/api/maintenanceconfiguration",
            get(maintenance::get_configuration).put(maintenance::put_configuration),
        )
        .route("/api/licenses/licenses-current", get(system::license))
        .route(
            "/api/licenses/licenses-current-status",
            get(system::license_status),
        )
        .route(
            "/api/configuration/{id}/values",
            get(system::configuration_values),
        )
        .route("/api/users/me", get(users::me))
        .route("/api/users/{id}/permissions", get(users::permissions))
        .route("/api/tasks", get(tasks::list))
        .route("/api/tasks/{id}", get(tasks::one))
        .route("/api/octopusservernodes/summary", get(nodes::summary))
        .route(
            "/api/octopusservernodes/{id}",
            get(nodes::get_node).put(nodes::put_node),
        )
        .merge(crate::control::router())
        .fallback(|| async { OctopusError::route_not_found() })
        .method_not_allowed_fallback(|| async { OctopusError::method_not_allowed() })
        .with_state(sim)
}

/// A JSON answer with the content type Octopus sends.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, Body::from(body.to_string())).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

/// The answer to a request that a `Status` fault caught: Octopus's error body, nothing changed.
pub(crate) fn injected_status(status: u16, version: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = match status {
        StatusCode::SERVICE_UNAVAILABLE => {
            "Octopus Server is starting up or shutting down. Please try again shortly.".to_string()
        }
        status if status.is_server_error() => format!(
            "An unexpected error occurred in Octopus v{version}: {} (injected by the lab)",
            status.canonical_reason().unwrap_or("server error")
        ),
        status => format!(
            "{} (injected by the lab)",
            status.canonical_reason().unwrap_or("error")
        ),
    };
    OctopusError::new(status, message).into_response()
}

/// ISO 8601 with milliseconds and the server's offset, as Octopus writes dates.
pub(crate) fn octopus_date(sim: &Simulator, at: DateTime<Utc>) -> String {
    at.with_timezone(&sim.identity.utc_offset)
        .format("%Y-%m-%dT%H:%M:%S%.3f%:z")
        .to_string()
}
