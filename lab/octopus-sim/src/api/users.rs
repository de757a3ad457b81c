//! The current user and their permissions: `GET /api/users/me` (`UserResource`; the swagger gives
//! the route no schema, Octopus.Client reads it as a `UserResource`) and
//! `GET /api/users/{id}/permissions` (`UserPermissionSetResource`), which the swagger says is
//! "available for the current authenticated user only".
//!
//! Each API key belongs to a user of its own, `Users-N` in key order. A key with
//! `AdministerSystem` is in "Octopus Administrators" and "Everyone"; any other key is only in
//! "Everyone" plus a space team that may deploy. UNCONFIRMED: which system permissions Octopus's
//! "Everyone" team grants by default; the lists below are the built-in roles' as the Octopus web
//! portal names them, not read from a real server.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::{Caller, OctopusError, json_response, octopus_date};
use crate::state::Simulator;
use crate::tasks::DEFAULT_SPACE;

/// System permissions of a member of "Octopus Administrators" (the System Administrator role).
const ADMIN_SYSTEM: &[&str] = &[
    "AdministerSystem",
    "ConfigureServer",
    "EventView",
    "SpaceCreate",
    "SpaceDelete",
    "SpaceEdit",
    "SpaceView",
    "TaskCancel",
    "TaskCreate",
    "TaskEdit",
    "TaskView",
    "TeamCreate",
    "TeamDelete",
    "TeamEdit",
    "TeamView",
    "UserEdit",
    "UserInvite",
    "UserRoleEdit",
    "UserRoleView",
    "UserView",
];

/// System permissions everyone has (the "Everyone" team's system roles).
const EVERYONE_SYSTEM: &[&str] = &["SpaceView", "TeamView", "UserRoleView", "UserView"];

/// Space permissions of a deployer in the default space.
const DEPLOYER_SPACE: &[&str] = &[
    "DeploymentCreate",
    "DeploymentView",
    "EnvironmentView",
    "ProjectView",
    "ReleaseCreate",
    "ReleaseView",
    "TaskView",
];

/// Space permissions of a space manager: the deployer's and more.
const MANAGER_SPACE: &[&str] = &[
    "DeploymentCreate",
    "DeploymentDelete",
    "DeploymentView",
    "EnvironmentCreate",
    "EnvironmentEdit",
    "EnvironmentView",
    "ProjectCreate",
    "ProjectEdit",
    "ProjectView",
    "ReleaseCreate",
    "ReleaseView",
    "TaskCancel",
    "TaskCreate",
    "TaskView",
    "VariableEdit",
    "VariableView",
];

/// `GET /api/users/me`.
pub(crate) async fn me(State(sim): State<Arc<Simulator>>, caller: Caller) -> Response {
    json_response(StatusCode::OK, &user_resource(&sim, &caller))
}

/// `GET /api/users/{id}/permissions`: the caller's own only. UNCONFIRMED what Octopus answers for
/// another user's id; here the 403 Octopus gives for a missing permission, naming `UserView`.
pub(crate) async fn permissions(
    State(sim): State<Arc<Simulator>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, OctopusError> {
    if !id.eq_ignore_ascii_case(&caller.user_id) {
        let known = (0..sim.identity.api_keys.len()).any(|n| user_id(n).eq_ignore_ascii_case(&id));
        if !known {
            return Err(OctopusError::resource_not_found(&id));
        }
        return Err(OctopusError::missing_permission(
            "UserView",
            "The permission summary is available for the current user only.",
        ));
    }
    let (system, space, teams): (&[&str], &[&str], Vec<Value>) = if caller.administer_system {
        (
            ADMIN_SYSTEM,
            MANAGER_SPACE,
            vec![
                team("teams-administrators", "Octopus Administrators", None),
                team("teams-everyone", "Everyone", None),
            ],
        )
    } else {
        (
            EVERYONE_SYSTEM,
            DEPLOYER_SPACE,
            vec![
                team("teams-everyone", "Everyone", None),
                team("Teams-2", "Release managers", Some(DEFAULT_SPACE)),
            ],
        )
    };
    let mut space_permissions = Map::new();
    for permission in space {
        space_permissions.insert(
            (*permission).to_string(),
            json!([{
                "SpaceId": DEFAULT_SPACE,
                "RestrictedToEnvironmentIds": [],
                "RestrictedToProjectIds": [],
                "RestrictedToProjectGroupIds": [],
                "RestrictedToTenantIds": [],
            }]),
        );
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "Id": caller.user_id,
            "SystemPermissions": system,
            "SpacePermissions": space_permissions,
            "Teams": teams,
            "IsPermissionsComplete": true,
            "IsTeamsComplete": true,
            "Links": {
                "Self": format!("/api/users/{}/permissions", caller.user_id),
                "Export": format!("/api/users/{}/permissions/export", caller.user_id),
            }
        }),
    ))
}

/// Users are numbered in key order, as Octopus numbers them in creation order.
pub(crate) fn user_id(index: usize) -> String {
    format!("Users-{}", index + 1)
}

fn team(id: &str, name: &str, space: Option<&str>) -> Value {
    json!({
        "Id": id,
        "Name": name,
        "SpaceId": space,
        "IsDirectlyAssigned": true,
        "ExternalSecurityGroups": [],
    })
}

fn user_resource(sim: &Simulator, caller: &Caller) -> Value {
    let id = &caller.user_id;
    json!({
        "Id": id,
        "Username": caller.user,
        "DisplayName": caller.user,
        "EmailAddress": format!("{}@octopus.lab", caller.user),
        "IsActive": true,
        // API keys for automation belong to service accounts.
        "IsService": caller.administer_system,
        "IsRequestor": true,
        "CanPasswordBeEdited": !caller.administer_system,
        "Identities": [],
        "LastModifiedBy": "admin",
        "LastModifiedOn": octopus_date(sim, sim.identity.license_modified_on),
        "Links": {
            "Self": format!("/api/users/{id}"),
            "Permissions": format!("/api/users/{id}/permissions"),
            "ApiKeys": format!("/api/users/{id}/apikeys{{/id}}{{?skip,take}}"),
        }
    })
}
