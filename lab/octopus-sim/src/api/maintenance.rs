//! `GET|PUT /api/maintenanceconfiguration`: `MaintenanceConfigurationResource`. Server-wide, and
//! it stops nothing already running or queued.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::{Caller, OctopusError, json_response, octopus_date};
use crate::state::{Maintenance, Simulator};

const ID: &str = "maintenance";

pub(crate) async fn get_configuration(
    State(sim): State<Arc<Simulator>>,
    _caller: Caller,
) -> Response {
    let maintenance = sim.with(|state, _, _| state.maintenance.clone());
    json_response(StatusCode::OK, &resource(&sim, &maintenance))
}

/// Strict where a real server may be lenient: Octopus's JSON binding is case-insensitive and
/// would read a missing `IsInMaintenanceMode` as `false`; the simulator rejects both, so a client
/// never depends on either.
pub(crate) async fn put_configuration(
    State(sim): State<Arc<Simulator>>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, OctopusError> {
    caller.require_administer_system(
        "This action requires permission to administer the Octopus Server (AdministerSystem), \
         which the Octopus Administrators team has.",
    )?;
    let on = parse_body(&body)?;
    let maintenance = sim.with(|state, now, events| {
        state.set_maintenance(on, &caller.user, now, events);
        state.maintenance.clone()
    });
    Ok(json_response(StatusCode::OK, &resource(&sim, &maintenance)))
}

fn parse_body(body: &[u8]) -> Result<bool, OctopusError> {
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
            "The request body must be a MaintenanceConfigurationResource object.".into(),
        ]));
    };
    let mut errors = Vec::new();
    match fields.get("Id") {
        None | Some(Value::Null) => {}
        Some(Value::String(id)) if id == ID => {}
        Some(other) => errors.push(format!("Id must be \"{ID}\", not {other}.")),
    }
    let on = match fields.get("IsInMaintenanceMode") {
        Some(Value::Bool(on)) => Some(*on),
        Some(other) => {
            errors.push(format!(
                "IsInMaintenanceMode must be true or false, not {other}."
            ));
            None
        }
        None => {
            errors.push("IsInMaintenanceMode is required.".into());
            None
        }
    };
    match on {
        Some(on) if errors.is_empty() => Ok(on),
        _ => Err(OctopusError::bad_request(errors)),
    }
}

fn resource(sim: &Simulator, maintenance: &Maintenance) -> Value {
    json!({
        "Id": ID,
        "IsInMaintenanceMode": maintenance.on,
        "LastModifiedBy": maintenance.last_modified_by,
        "LastModifiedOn": octopus_date(sim, maintenance.last_modified_on),
        "Links": { "Self": "/api/maintenanceconfiguration" }
    })
}

#[cfg(test)]
mod tests {
    use super::parse_body;

    #[test]
    fn body_needs_a_boolean_with_octopus_casing() {
        assert!(parse_body(br#"{"Id":"maintenance","IsInMaintenanceMode":true}"#).unwrap());
        assert!(!parse_body(br#"{"IsInMaintenanceMode":false}"#).unwrap());
        for bad in [
            &b""[..],
            b"  ",
            b"{",
            b"[]",
            br#"{"isInMaintenanceMode":true}"#,
            br#"{"IsInMaintenanceMode":"true"}"#,
            br#"{"Id":"other","IsInMaintenanceMode":true}"#,
        ] {
            let error = parse_body(bad).unwrap_err();
            assert_eq!(error.status, 400, "{}", String::from_utf8_lossy(bad));
            assert!(!error.errors.is_empty());
        }
    }
}
