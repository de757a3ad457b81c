//! HA nodes: `GET /api/octopusservernodes/summary` and `GET|PUT /api/octopusservernodes/{id}`
//! (`OctopusServerNodeResource`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use serde_json::{Value, json};

use super::{Caller, OctopusError, json_response, octopus_date};
use crate::state::{Node, Simulator};

/// The swagger gives no schema for the summary. `Nodes` and its items' fields come from
/// octopus.md and Octopus.Client's `OctopusServerNodeSummaryResource` (Name, MaxConcurrentTasks,
/// IsInMaintenanceMode, LastSeen, Rank, IsLeader, IsOffline, RunningTaskCount). Every simulated
/// node is online and was seen just now.
pub(crate) async fn summary(State(sim): State<Arc<Simulator>>, _caller: Caller) -> Response {
    let now = Utc::now();
    let nodes: Vec<Value> = sim.with(|state, _, _| {
        state
            .nodes
            .iter()
            .enumerate()
            .map(|(index, node)| {
                json!({
                    "Id": node.id(),
                    "Name": node.name,
                    "MaxConcurrentTasks": node.max_concurrent_tasks,
                    "IsInMaintenanceMode": node.draining,
                    "LastSeen": octopus_date(&sim, now),
                    "Rank": if index == 0 { "Leader" } else { "Follower" },
                    "IsLeader": index == 0,
                    "IsOffline": false,
                    "RunningTaskCount": state.running_task_count(&node.name),
                    "Links": { "Self": format!("/api/octopusservernodes/{}", node.id()) }
                })
            })
            .collect()
    });
    json_response(StatusCode::OK, &json!({ "Nodes": nodes }))
}

pub(crate) async fn get_node(
    State(sim): State<Arc<Simulator>>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, OctopusError> {
    let node = sim
        .with(|state, _, _| state.node_index(&id).map(|i| state.nodes[i].clone()))
        .ok_or_else(|| OctopusError::resource_not_found(&id))?;
    Ok(json_response(StatusCode::OK, &resource(&sim, &node)))
}

/// Drains a node (`IsInMaintenanceMode`) or changes its task cap. Octopus replaces the resource
/// with the body, so a body missing a writable field would reset it: the simulator demands both
/// `IsInMaintenanceMode` and `MaxConcurrentTasks`, as a client that sends back what it read does.
pub(crate) async fn put_node(
    State(sim): State<Arc<Simulator>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, OctopusError> {
    caller.require_administer_system(
        "This action requires permission to configure Octopus Server nodes (AdministerSystem).",
    )?;
    let Some(index) = sim.with(|state, _, _| state.node_index(&id)) else {
        return Err(OctopusError::resource_not_found(&id));
    };
    let (draining, max_tasks) = parse_body(&body, &id)?;
    let node = sim.with(|state, now, events| {
        state.set_node(index, draining, max_tasks, &caller.user, now, events);
        state.nodes[index].clone()
    });
    Ok(json_response(StatusCode::OK, &resource(&sim, &node)))
}

fn parse_body(body: &[u8], id: &str) -> Result<(bool, u32), OctopusError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(OctopusError::bad_request(vec![
            "No request body was supplied.".into(),
        ]));
    }
    let value: Value = serde_json::from_slice(body).map_err(|error| {
        OctopusError::bad_request(vec![format!("The request body is not valid JSON: {error}")])
    })?;
    let Value::Object(fields) = value else {
        return Err(OctopusError::bad_request(vec![
            "The request body must be an OctopusServerNodeResource object.".into(),
        ]));
    };
    let mut errors = Vec::new();
    if let Some(other) = fields
        .get("Id")
        .filter(|v| !v.is_null() && v.as_str() != Some(id))
    {
        errors.push(format!("Id must be \"{id}\", not {other}."));
    }
    let draining = match fields.get("IsInMaintenanceMode") {
        Some(Value::Bool(on)) => Some(*on),
        _ => {
            errors.push("IsInMaintenanceMode is required and must be true or false.".into());
            None
        }
    };
    let max_tasks = match fields.get("MaxConcurrentTasks").and_then(Value::as_u64) {
        Some(n) if n <= i32::MAX as u64 => Some(n as u32),
        _ => {
            errors.push("MaxConcurrentTasks is required and must be a number of 0 or more.".into());
            None
        }
    };
    match (draining, max_tasks) {
        (Some(draining), Some(max_tasks)) if errors.is_empty() => Ok((draining, max_tasks)),
        _ => Err(OctopusError::bad_request(errors)),
    }
}

/// `OctopusServerNodeResource`: only the fields the swagger defines.
fn resource(sim: &Simulator, node: &Node) -> Value {
    json!({
        "Id": node.id(),
        "Name": node.name,
        "MaxConcurrentTasks": node.max_concurrent_tasks,
        "IsInMaintenanceMode": node.draining,
        "LastModifiedBy": node.last_modified_by,
        "LastModifiedOn": octopus_date(sim, node.last_modified_on),
        "Links": {
            "Self": format!("/api/octopusservernodes/{}", node.id()),
            "Details": format!("/api/octopusservernodes/{}/details", node.id()),
        }
    })
}
