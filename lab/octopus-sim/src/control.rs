//! The lab's control surface under `/lab/`, for a lab running as a separate process. Not part of
//! Octopus's API: no API key, answered only to loopback clients, snake_case JSON, never faulted.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::faults::{Fault, FaultKind};
use crate::state::{ControlError, Simulator};
use crate::tasks::{TaskSpec, TaskState};

/// The address a request came from, for the loopback-only control surface.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerAddr(pub SocketAddr);

pub(crate) fn router() -> Router<Arc<Simulator>> {
    Router::new()
        .route("/lab/state", get(state))
        .route("/lab/tasks", post(add_task))
        .route("/lab/tasks/{id}/finish", post(finish_task))
        .route("/lab/tasks/{id}/cancel", post(cancel_task))
        .route("/lab/faults", post(inject_fault).delete(clear_faults))
        .route("/lab/maintenance", put(set_maintenance))
        .layer(middleware::from_fn(loopback_only))
}

async fn loopback_only(request: Request, next: Next) -> Response {
    let loopback = request
        .extensions()
        .get::<PeerAddr>()
        .is_some_and(|PeerAddr(peer)| peer.ip().is_loopback());
    if loopback {
        next.run(request).await
    } else {
        problem(
            StatusCode::FORBIDDEN,
            "the lab control surface answers loopback clients only",
        )
    }
}

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// Parses a JSON body into `T`; the error is the 400 answer, with serde's reason.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Box<Response>> {
    serde_json::from_slice(body)
        .map_err(|error| Box::new(problem(StatusCode::BAD_REQUEST, error.to_string())))
}

/// `GET /lab/state`: maintenance mode, nodes, tasks (time applied) and faults still pending.
async fn state(State(sim): State<Arc<Simulator>>) -> Json<Value> {
    Json(sim.with(|state, _, _| {
        json!({
            "version": sim.identity.version,
            "maintenance": {
                "on": state.maintenance.on,
                "last_modified_by": state.maintenance.last_modified_by,
                "last_modified_on": state.maintenance.last_modified_on,
            },
            "nodes": state.nodes.iter().map(|node| json!({
                "id": node.id(),
                "name": node.name,
                "draining": node.draining,
                "max_concurrent_tasks": node.max_concurrent_tasks,
                "running_task_count": state.running_task_count(&node.name),
            })).collect::<Vec<_>>(),
            "tasks": state.snapshots(),
            "faults": state.faults.pending(),
        })
    }))
}

/// `POST /lab/tasks` with a [`TaskSpec`]: 201 `{"id": "ServerTasks-N"}`.
async fn add_task(State(sim): State<Arc<Simulator>>, body: Bytes) -> Response {
    match parse::<TaskSpec>(&body) {
        Ok(spec) => (
            StatusCode::CREATED,
            Json(json!({ "id": sim.add_task(spec) })),
        )
            .into_response(),
        Err(response) => *response,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Finish {
    state: TaskState,
}

/// `POST /lab/tasks/{id}/finish` with `{"state": "Success"}` (or Failed, Canceled, TimedOut).
async fn finish_task(
    State(sim): State<Arc<Simulator>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let finish = match parse::<Finish>(&body) {
        Ok(finish) => finish,
        Err(response) => return *response,
    };
    match sim.finish_task(&id, finish.state, "lab") {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error @ ControlError::UnknownTask(_)) => {
            problem(StatusCode::NOT_FOUND, error.to_string())
        }
        Err(error) => problem(StatusCode::BAD_REQUEST, error.to_string()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Cancel {
    /// How long a running task stays Cancelling; 0 cancels at once.
    #[serde(default = "default_cancelling_ms")]
    cancelling_ms: u64,
}

fn default_cancelling_ms() -> u64 {
    2_000
}

/// `POST /lab/tasks/{id}/cancel` with `{"cancelling_ms": 2000}` (optional): 200 `{"state": ...}`.
async fn cancel_task(
    State(sim): State<Arc<Simulator>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let body: &[u8] = if body.is_empty() { b"{}" } else { &body };
    let cancel = match parse::<Cancel>(body) {
        Ok(cancel) => cancel,
        Err(response) => return *response,
    };
    let cancelling_for = std::time::Duration::from_millis(cancel.cancelling_ms);
    match sim.cancel_task(&id, cancelling_for, "lab") {
        Ok(state) => Json(json!({ "state": state })).into_response(),
        Err(error) => problem(StatusCode::NOT_FOUND, error.to_string()),
    }
}

/// `POST /lab/faults` with a [`Fault`]: 201.
async fn inject_fault(State(sim): State<Arc<Simulator>>, body: Bytes) -> Response {
    let fault = match parse::<Fault>(&body) {
        Ok(fault) => fault,
        Err(response) => return *response,
    };
    if let FaultKind::Status(status) = fault.kind
        && !(400..=599).contains(&status)
    {
        return problem(
            StatusCode::BAD_REQUEST,
            format!("a status fault needs an error status (400-599), not {status}"),
        );
    }
    sim.inject(fault);
    StatusCode::CREATED.into_response()
}

/// `DELETE /lab/faults`: 204.
async fn clear_faults(State(sim): State<Arc<Simulator>>) -> StatusCode {
    sim.clear_faults();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetMaintenance {
    on: bool,
    #[serde(default = "lab_user")]
    by: String,
}

fn lab_user() -> String {
    "lab".to_string()
}

/// `PUT /lab/maintenance` with `{"on": true, "by": "someone"}`: 204.
async fn set_maintenance(State(sim): State<Arc<Simulator>>, body: Bytes) -> Response {
    match parse::<SetMaintenance>(&body) {
        Ok(change) => {
            sim.with(|state, now, events| {
                state.set_maintenance(change.on, &change.by, now, events)
            });
            StatusCode::NO_CONTENT.into_response()
        }
        Err(response) => *response,
    }
}
