//! `GET /api/tasks` (`TaskResourceCollection`) and `GET /api/tasks/{id}` (`TaskResource`).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::{Caller, OctopusError, json_response, octopus_date};
use crate::state::Simulator;
use crate::tasks::{DEFAULT_SPACE, Task, TaskState};

/// Octopus's page size when `take` is not given.
const DEFAULT_TAKE: usize = 30;

const TEMPLATE: &str = "/api/tasks{?skip,active,environment,project,name,node,running,states,spaces,ids,includeSystem,take}";

pub(crate) async fn list(
    State(sim): State<Arc<Simulator>>,
    _caller: Caller,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, OctopusError> {
    let query = TaskQuery::parse(&pairs)?;
    let now = chrono::Utc::now();
    let (total, items) = sim.with(|state, _, _| {
        let matching: Vec<&Task> = state
            .tasks_newest_first()
            .filter(|task| query.matches(task))
            .collect();
        let items: Vec<Value> = matching
            .iter()
            .skip(query.skip)
            .take(query.take)
            .map(|task| task_resource(&sim, task, now))
            .collect();
        (matching.len(), items)
    });
    Ok(json_response(
        StatusCode::OK,
        &collection(&query, total, items),
    ))
}

pub(crate) async fn one(
    State(sim): State<Arc<Simulator>>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, OctopusError> {
    let now = chrono::Utc::now();
    sim.with(|state, _, _| state.task(&id).map(|task| task_resource(&sim, task, now)))
        .map(|resource| json_response(StatusCode::OK, &resource))
        .ok_or_else(|| OctopusError::resource_not_found(&id))
}

/// The query parameters Octopus's task list understands that matter here. Names are matched
/// case-insensitively, as ASP.NET binds them; parameters not listed are ignored, as Octopus does.
#[derive(Debug, Default)]
struct TaskQuery {
    states: Option<Vec<TaskState>>,
    /// Space ids asked for; none means the default space only.
    spaces: Vec<String>,
    /// `spaces=all`.
    all_spaces: bool,
    include_system: bool,
    active: bool,
    ids: Option<Vec<String>>,
    node: Option<String>,
    name: Option<String>,
    skip: usize,
    take: usize,
}

impl TaskQuery {
    fn parse(pairs: &[(String, String)]) -> Result<Self, OctopusError> {
        let mut query = TaskQuery {
            include_system: true,
            take: DEFAULT_TAKE,
            ..TaskQuery::default()
        };
        let mut errors = Vec::new();
        for (name, value) in pairs {
            match name.to_ascii_lowercase().as_str() {
                "states" => match comma_list(value)
                    .map(|s| s.parse::<TaskState>())
                    .collect::<Result<Vec<_>, _>>()
                {
                    Ok(states) => query.states = Some(states),
                    Err(error) => errors.push(format!("states: {error}.")),
                },
                "spaces" => {
                    let spaces: Vec<String> = comma_list(value).map(str::to_string).collect();
                    query.all_spaces = spaces.iter().any(|s| s.eq_ignore_ascii_case("all"));
                    query.spaces = spaces;
                }
                "includesystem" => boolean(name, value, &mut query.include_system, &mut errors),
                "active" => boolean(name, value, &mut query.active, &mut errors),
                "ids" => query.ids = Some(comma_list(value).map(str::to_string).collect()),
                "node" => query.node = Some(value.clone()),
                "name" => query.name = Some(value.clone()),
                "skip" => number(name, value, &mut query.skip, &mut errors),
                "take" => number(name, value, &mut query.take, &mut errors),
                _ => {}
            }
        }
        if errors.is_empty() {
            Ok(query)
        } else {
            Err(OctopusError::bad_request(errors))
        }
    }

    fn matches(&self, task: &Task) -> bool {
        let snapshot = &task.snapshot;
        let in_space = match &snapshot.space_id {
            None => self.include_system,
            Some(space) if self.all_spaces => !space.is_empty(),
            Some(space) if self.spaces.is_empty() => space == DEFAULT_SPACE,
            Some(space) => self.spaces.iter().any(|s| s == space),
        };
        in_space
            && self
                .states
                .as_ref()
                .is_none_or(|states| states.contains(&snapshot.state))
            && (!self.active || !snapshot.state.is_completed())
            && self
                .ids
                .as_ref()
                .is_none_or(|ids| ids.contains(&snapshot.id))
            && self
                .node
                .as_ref()
                .is_none_or(|node| snapshot.server_node.as_ref() == Some(node))
            && self
                .name
                .as_ref()
                .is_none_or(|name| name.eq_ignore_ascii_case(&snapshot.name))
    }

    /// The query again, for paging links: the filters as given, never the API key.
    fn link(&self, skip: usize, take: usize) -> String {
        let mut parts = Vec::new();
        if let Some(states) = &self.states {
            let states: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
            parts.push(format!("states={}", states.join(",")));
        }
        if !self.spaces.is_empty() {
            parts.push(format!("spaces={}", self.spaces.join(",")));
        }
        if !self.include_system {
            parts.push("includeSystem=false".to_string());
        }
        if self.active {
            parts.push("active=true".to_string());
        }
        if let Some(ids) = &self.ids {
            parts.push(format!("ids={}", ids.join(",")));
        }
        if let Some(node) = &self.node {
            parts.push(format!("node={node}"));
        }
        if let Some(name) = &self.name {
            parts.push(format!("name={name}"));
        }
        parts.push(format!("skip={skip}"));
        parts.push(format!("take={take}"));
        format!("/api/tasks?{}", parts.join("&"))
    }
}

fn comma_list(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
}

fn boolean(name: &str, value: &str, target: &mut bool, errors: &mut Vec<String>) {
    match value.to_ascii_lowercase().as_str() {
        "true" => *target = true,
        "false" => *target = false,
        _ => errors.push(format!("{name}: '{value}' is not true or false.")),
    }
}

fn number(name: &str, value: &str, target: &mut usize, errors: &mut Vec<String>) {
    match value.trim().parse::<i32>() {
        Ok(n) if n >= 0 => *target = n as usize,
        _ => errors.push(format!(
            "{name}: '{value}' is not a number from 0 to 2147483647."
        )),
    }
}

/// Octopus's paged collection: `NumberOfPages` counts whole pages, `LastPageNumber` is the
/// zero-based index of the last one.
fn collection(query: &TaskQuery, total: usize, items: Vec<Value>) -> Value {
    let take = query.take;
    let pages = if take == 0 { 0 } else { total.div_ceil(take) };
    let last_page = pages.saturating_sub(1);
    let mut links = Map::new();
    links.insert("Self".into(), json!(query.link(query.skip, take)));
    links.insert("Template".into(), json!(TEMPLATE));
    links.insert("Page.All".into(), json!(query.link(0, i32::MAX as usize)));
    links.insert("Page.Current".into(), json!(query.link(query.skip, take)));
    links.insert(
        "Page.Last".into(),
        json!(query.link(last_page * take, take)),
    );
    if take > 0 && query.skip + take < total {
        links.insert(
            "Page.Next".into(),
            json!(query.link(query.skip + take, take)),
        );
    }
    if query.skip > 0 && take > 0 {
        links.insert(
            "Page.Prev".into(),
            json!(query.link(query.skip.saturating_sub(take), take)),
        );
    }
    json!({
        "ItemType": "Task",
        "TotalResults": total,
        "ItemsPerPage": take,
        "NumberOfPages": pages,
        "LastPageNumber": last_page,
        "Items": items,
        "Links": links,
    })
}

/// `TaskResource`. Unset values are `null`, as Octopus writes them.
fn task_resource(sim: &Simulator, task: &Task, now: DateTime<Utc>) -> Value {
    let t = &task.snapshot;
    let date = |at: Option<DateTime<Utc>>| at.map(|at| octopus_date(sim, at));
    let last_updated = t.completed_time.or(t.start_time).unwrap_or(t.queue_time);
    let duration = t
        .start_time
        .map(|start| t.completed_time.unwrap_or(now) - start)
        .unwrap_or_default();
    let error_message = match t.state {
        TaskState::Failed => Some("The task failed. See the task log for details."),
        TaskState::TimedOut => Some("The task timed out."),
        TaskState::Canceled => Some("The task was canceled."),
        _ => None,
    };
    let web_space = t
        .space_id
        .as_deref()
        .map(|s| format!("{s}/"))
        .unwrap_or_default();
    json!({
        "Id": t.id,
        "SpaceId": t.space_id,
        "Name": t.name,
        "Description": t.description,
        "Arguments": {},
        "State": t.state,
        "Completed": t.completed_time.map(|at| {
            at.with_timezone(&sim.identity.utc_offset)
                .format("%A, %-d %B %Y %-I:%M:%S %p %:z")
                .to_string()
        }),
        "QueueTime": octopus_date(sim, t.queue_time),
        "QueueTimeExpiry": null,
        "StartTime": date(t.start_time),
        "LastUpdatedTime": octopus_date(sim, last_updated),
        "CompletedTime": date(t.completed_time),
        "ServerNode": t.server_node,
        "Duration": humanize(duration),
        "ErrorMessage": error_message,
        "HasBeenPickedUpByProcessor": t.server_node.is_some(),
        "IsCompleted": t.state.is_completed(),
        "FinishedSuccessfully": t.state == TaskState::Success,
        "HasPendingInterruptions": t.has_pending_interruptions,
        "CanRerun": t.state.is_completed(),
        "HasWarningsOrErrors": matches!(t.state, TaskState::Failed | TaskState::TimedOut),
        "Links": {
            "Self": format!("/api/tasks/{}", t.id),
            "Web": format!("/app#/{web_space}tasks/{}", t.id),
            "Raw": format!("/api/tasks/{}/raw", t.id),
            "Details": format!("/api/tasks/{}/details{{?verbose,tail,ranges}}", t.id),
            "Cancel": format!("/api/tasks/{}/cancel", t.id),
            "QueuedBehind": format!("/api/tasks/{}/queued-behind{{?skip,take}}", t.id),
        }
    })
}

/// Octopus shows durations in words.
fn humanize(duration: chrono::Duration) -> String {
    let seconds = duration.num_seconds().max(0);
    let (count, unit) = match seconds {
        s if s < 60 => (s, "second"),
        s if s < 3600 => (s / 60, "minute"),
        s if s < 86_400 => (s / 3600, "hour"),
        s => (s / 86_400, "day"),
    };
    if count == 1 {
        format!("1 {unit}")
    } else {
        format!("{count} {unit}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &str) -> Vec<(String, String)> {
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn bad_parameters_are_rejected_with_every_reason() {
        let error = TaskQuery::parse(&pairs("states=Running&take=-1&active=maybe")).unwrap_err();
        assert_eq!(error.status, 400);
        assert_eq!(error.errors.len(), 3, "{:?}", error.errors);
    }

    #[test]
    fn parameter_names_are_case_insensitive_and_unknown_ones_ignored() {
        let query =
            TaskQuery::parse(&pairs("STATES=executing&IncludeSystem=false&project=x")).unwrap();
        assert_eq!(query.states, Some(vec![TaskState::Executing]));
        assert!(!query.include_system);
    }

    #[test]
    fn durations_read_like_octopus() {
        assert_eq!(humanize(chrono::Duration::seconds(1)), "1 second");
        assert_eq!(humanize(chrono::Duration::seconds(59)), "59 seconds");
        assert_eq!(humanize(chrono::Duration::seconds(7200)), "2 hours");
    }
}
