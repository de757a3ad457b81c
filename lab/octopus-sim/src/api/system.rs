//! Server-wide read-only resources: the API root, server status and health, the license and the
//! server folders.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use serde_json::{Map, Value, json};

use super::{Caller, OctopusError, json_response, octopus_date};
use crate::state::Simulator;

/// `GET /api` (anonymous): `RootResource`.
pub(crate) async fn root(State(sim): State<Arc<Simulator>>) -> Response {
    let id = &sim.identity;
    json_response(
        StatusCode::OK,
        &json!({
            "Application": "Octopus Deploy",
            "Version": id.version,
            "ApiVersion": "3.0.0",
            "InstallationId": id.installation_id,
            "IsEarlyAccessProgram": false,
            "HasLongTermSupport": false,
            "Links": {
                "Self": "/api",
                "ServerStatus": "/api/serverstatus",
                "ServerStatusHealth": "/api/serverstatus/health",
                "MaintenanceConfiguration": "/api/maintenanceconfiguration",
                "CurrentLicense": "/api/licenses/licenses-current",
                "CurrentLicenseStatus": "/api/licenses/licenses-current-status",
                "Configuration": "/api/configuration{/id}",
                "CurrentUser": "/api/users/me",
                "Tasks": "/api/tasks{/id}{?skip,active,environment,project,name,node,running,states,spaces,ids,includeSystem,take}",
                "OctopusServerNodes": "/api/octopusservernodes{/id}{?skip,take}",
                "OctopusServerClusterSummary": "/api/octopusservernodes/summary",
            }
        }),
    )
}

/// `GET /api/serverstatus`. The swagger gives no schema: fields from Octopus.Client's
/// `ServerStatusResource` (IsDatabaseEncrypted, IsUpgradeAvailable, MaximumAvailableVersion,
/// MaximumAvailableVersionCoveredByLicense, MaintenanceExpires, IsInMaintenanceMode,
/// IsMajorMinorUpgrade) plus `IsPotentialClone` from octopus.md.
pub(crate) async fn server_status(State(sim): State<Arc<Simulator>>, _caller: Caller) -> Response {
    let maintenance = sim.with(|state, _, _| state.maintenance.on);
    let id = &sim.identity;
    json_response(
        StatusCode::OK,
        &json!({
            "Id": "serverstatus",
            "IsDatabaseEncrypted": true,
            "IsUpgradeAvailable": false,
            "MaximumAvailableVersion": id.version,
            "MaximumAvailableVersionCoveredByLicense": id.version,
            "MaintenanceExpires": octopus_date(&sim, id.license.expiry),
            "IsInMaintenanceMode": maintenance,
            "IsMajorMinorUpgrade": false,
            "IsPotentialClone": false,
            "Links": { "Self": "/api/serverstatus", "Health": "/api/serverstatus/health" }
        }),
    )
}

/// `GET /api/serverstatus/health` (anonymous, for load balancers): `ServerStatusHealthResource`.
/// The swagger documents 418 with the same body: answered when the cluster is not operating
/// normally. UNCONFIRMED which conditions Octopus counts; here maintenance mode (read-only for
/// non-administrators), every node draining, or a non-compliant license.
pub(crate) async fn health(State(sim): State<Arc<Simulator>>) -> Response {
    let (read_only, draining) = sim.with(|state, _, _| {
        (
            state.maintenance.on,
            state.nodes.iter().all(|node| node.draining),
        )
    });
    let compliant = sim.identity.license.compliant;
    let normal = !read_only && !draining && compliant;
    let description = if normal {
        "The Octopus Server cluster is operating normally.".to_string()
    } else {
        let reasons: Vec<&str> = [
            (read_only, "the cluster is in maintenance mode"),
            (draining, "every node is draining tasks"),
            (!compliant, "the license is not compliant"),
        ]
        .into_iter()
        .filter_map(|(applies, reason)| applies.then_some(reason))
        .collect();
        format!(
            "The Octopus Server cluster is not operating normally: {}.",
            reasons.join(", ")
        )
    };
    let status = if normal {
        StatusCode::OK
    } else {
        StatusCode::IM_A_TEAPOT
    };
    json_response(
        status,
        &json!({
            "Id": "health",
            "IsOperatingNormally": normal,
            "Description": description,
            "IsEntireClusterReadOnly": read_only,
            "IsEntireClusterDrainingTasks": draining,
            "IsCompliantWithLicense": compliant,
            "Links": { "Self": "/api/serverstatus/health" }
        }),
    )
}

/// `GET /api/licenses/licenses-current`: `LicenseResource`. UNCONFIRMED which permission Octopus
/// requires; any valid key may read it here.
pub(crate) async fn license(State(sim): State<Arc<Simulator>>, _caller: Caller) -> Response {
    let id = &sim.identity;
    json_response(
        StatusCode::OK,
        &json!({
            "Id": "licenses-current",
            "LicenseText": id.license.text,
            "SerialNumber": id.license.serial_number,
            "LastModifiedBy": "admin",
            "LastModifiedOn": octopus_date(&sim, id.license_modified_on),
            "Links": {
                "Self": "/api/licenses/licenses-current",
                "Status": "/api/licenses/licenses-current-status",
            }
        }),
    )
}

/// `GET /api/licenses/licenses-current-status`: `LicenseStatusResource`.
///
/// `EffectiveExpiryDate` is a NodaTime `LocalDate`, which the swagger shows as an object of its
/// CLR properties; Octopus's serializer writes it as an ISO date string (`"2026-05-01"`), and so
/// does the simulator.
pub(crate) async fn license_status(State(sim): State<Arc<Simulator>>, _caller: Caller) -> Response {
    let license = &sim.identity.license;
    let today = Utc::now()
        .with_timezone(&sim.identity.utc_offset)
        .date_naive();
    let expiry_date = license
        .expiry
        .with_timezone(&sim.identity.utc_offset)
        .date_naive();
    let days_left = (expiry_date - today).num_days();
    let expired = days_left < 0;
    let mut messages = Vec::new();
    if !license.compliant {
        messages.push(json!({
            "Disposition": "Error",
            "Message": "Your Octopus Server is not compliant with your license: usage exceeds a license limit.",
        }));
    }
    if expired {
        messages.push(json!({
            "Disposition": "Error",
            "Message": "Your license has expired. Upgrades to newer versions are blocked until it is renewed.",
        }));
    } else if days_left <= 30 {
        messages.push(json!({
            "Disposition": "Warning",
            "Message": format!("Your license expires in {days_left} days."),
        }));
    }
    let limit = |name: &str, usage: i32| {
        json!({
            "Name": name,
            "CurrentUsage": usage,
            "EffectiveLimit": i32::MAX,
            "EffectiveLimitDescription": "Unlimited",
            "IsUnlimited": true,
            "Disposition": "Information",
            "Message": format!("You are using {usage} {}.", name.to_lowercase()),
        })
    };
    json_response(
        StatusCode::OK,
        &json!({
            "Id": "licenses-current-status",
            "IsCompliant": license.compliant,
            "ComplianceSummary": if license.compliant {
                "Your Octopus Server is compliant with your license."
            } else {
                "Your Octopus Server is not compliant with your license."
            },
            "HostingEnvironment": "SelfHosted",
            "PermissionsMode": "Full",
            "EffectiveExpiryDate": expiry_date.format("%Y-%m-%d").to_string(),
            "DaysToEffectiveExpiryDate": days_left,
            "DoesExpiryBlockKeyActivities": expired,
            "EffectiveNodeTaskLimit": 5,
            "EffectiveClusterTaskLimit": 5 * sim.with(|state, _, _| state.nodes.len()),
            "IsNodeTaskLimitControlledByLicense": false,
            "IsClusterTaskLimitControlledByLicense": false,
            "Limits": [limit("Projects", 12), limit("Tenants", 0), limit("Machines", 40)],
            "Messages": messages,
            "Links": { "Self": "/api/licenses/licenses-current-status" }
        }),
    )
}

/// `GET /api/configuration/{id}/values`. Only the `server-folders` section is simulated. The
/// swagger gives no schema: field names from octopus.md (`LogsDirectory` holds task logs).
/// `ImportsDirectory` is UNCONFIRMED; Imports exist from 2021.1, EventExports from 2023.3, so
/// each field is present only on versions that have the folder.
pub(crate) async fn configuration_values(
    State(sim): State<Arc<Simulator>>,
    _caller: Caller,
    Path(section): Path<String>,
) -> Result<Response, OctopusError> {
    if section != "server-folders" {
        return Err(OctopusError::resource_not_found(&section));
    }
    let folders = &sim.identity.folders;
    let version = release(&sim.identity.version);
    let path = |p: &std::path::Path| Value::String(p.to_string_lossy().into_owned());
    let mut values = Map::new();
    values.insert("LogsDirectory".into(), path(&folders.task_logs));
    values.insert("ArtifactsDirectory".into(), path(&folders.artifacts));
    values.insert("PackagesDirectory".into(), path(&folders.packages));
    values.insert("TelemetryDirectory".into(), path(&folders.telemetry));
    if version >= (2021, 1) {
        values.insert("ImportsDirectory".into(), path(&folders.imports));
    }
    if version >= (2023, 3) {
        values.insert("EventExportsDirectory".into(), path(&folders.event_exports));
    }
    Ok(json_response(StatusCode::OK, &Value::Object(values)))
}

/// `2021.2.4488` -> (2021, 2). An unreadable version counts as the newest.
pub(crate) fn release(version: &str) -> (u32, u32) {
    let mut parts = version.split('.').map(|part| part.parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(year)), Some(Ok(minor))) => (year, minor),
        _ => (u32::MAX, u32::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::release;

    #[test]
    fn release_reads_year_and_minor() {
        assert_eq!(release("2021.2.4488"), (2021, 2));
        assert_eq!(release("2023.3.1"), (2023, 3));
        assert_eq!(release("main"), (u32::MAX, u32::MAX));
    }
}
