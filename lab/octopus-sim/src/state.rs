//! The simulated server's state behind one lock, with time applied on every access and events
//! delivered after the lock is released.

use std::sync::{Mutex, MutexGuard};

use axum::http::Method;
use chrono::{DateTime, FixedOffset, Utc};
use serde_json::{Value, json};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::config::{ApiKey, EventSink, License, OctopusConfig, ServerFolders};
use crate::faults::{Fault, FaultBook, FaultKind};
use crate::tasks::{Task, TaskSnapshot, TaskSpec, TaskState, Transition};

/// A request the lab made that the simulator cannot carry out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("there is no task {0}")]
    UnknownTask(String),
    #[error("{0} is not a completed state; use Success, Failed, Canceled or TimedOut")]
    NotCompleted(TaskState),
    #[error("there is no node {0}")]
    UnknownNode(String),
}

/// What never changes while the server runs.
pub(crate) struct Identity {
    pub version: String,
    pub installation_id: Uuid,
    pub api_keys: Vec<ApiKey>,
    pub license: License,
    /// When the license was installed: the lab's start.
    pub license_modified_on: DateTime<Utc>,
    pub folders: ServerFolders,
    pub utc_offset: FixedOffset,
}

pub(crate) struct Simulator {
    pub identity: Identity,
    events: Option<EventSink>,
    state: Mutex<State>,
    /// Wakes the clock when a task's deadlines may have changed.
    pub clock_wake: Notify,
}

#[derive(Clone, Debug)]
pub(crate) struct Maintenance {
    pub on: bool,
    pub last_modified_by: Option<String>,
    pub last_modified_on: DateTime<Utc>,
}

#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub name: String,
    pub max_concurrent_tasks: u32,
    /// Drain mode: the node takes no new tasks.
    pub draining: bool,
    pub last_modified_by: Option<String>,
    pub last_modified_on: DateTime<Utc>,
}

impl Node {
    /// Octopus node ids carry the node name. UNCONFIRMED: the exact id format.
    pub fn id(&self) -> String {
        format!("OctopusServerNodes-{}", self.name)
    }
}

pub(crate) struct State {
    pub maintenance: Maintenance,
    pub nodes: Vec<Node>,
    tasks: Vec<Task>,
    next_task_number: u64,
    next_node: usize,
    pub faults: FaultBook,
}

/// A change to report to the event sink once the lock is released.
pub(crate) struct Event {
    kind: &'static str,
    detail: Value,
}

impl Simulator {
    pub fn new(config: OctopusConfig) -> Self {
        let now = Utc::now();
        let nodes = if config.nodes.is_empty() {
            vec!["OCTOPUS-NODE-01".to_string()]
        } else {
            config.nodes
        };
        Simulator {
            identity: Identity {
                version: config.version,
                installation_id: config.installation_id,
                api_keys: config.api_keys,
                license: config.license,
                license_modified_on: now,
                folders: config.folders,
                utc_offset: config.utc_offset,
            },
            events: config.events,
            state: Mutex::new(State {
                maintenance: Maintenance {
                    on: config.maintenance,
                    last_modified_by: None,
                    last_modified_on: now,
                },
                nodes: nodes
                    .into_iter()
                    .map(|name| Node {
                        name,
                        max_concurrent_tasks: 5,
                        draining: false,
                        last_modified_by: None,
                        last_modified_on: now,
                    })
                    .collect(),
                tasks: Vec::new(),
                next_task_number: 1,
                next_node: 0,
                faults: FaultBook::default(),
            }),
            clock_wake: Notify::new(),
        }
    }

    /// Runs `f` on the state with time applied up to now, then delivers the events it caused.
    pub fn with<R>(&self, f: impl FnOnce(&mut State, DateTime<Utc>, &mut Vec<Event>) -> R) -> R {
        let now = Utc::now();
        let mut events = Vec::new();
        let result = {
            let mut state = self.lock();
            state.advance(now, &mut events);
            f(&mut state, now, &mut events)
        };
        if let Some(sink) = &self.events {
            for event in events {
                sink(event.kind, event.detail);
            }
        }
        result
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not take the lab's server down with it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The key presented and its position (which numbers its user).
    pub fn key_with_index(&self, presented: &str) -> Option<(usize, &ApiKey)> {
        self.identity
            .api_keys
            .iter()
            .enumerate()
            .find(|(_, k)| k.key == presented)
    }

    /// The fault this request gets, if any, reported as served.
    pub fn take_fault(&self, method: &Method, path: &str) -> Option<FaultKind> {
        self.with(|state, _, events| {
            let kind = state.faults.take(method, path)?;
            events.push(Event {
                kind: "fault_served",
                detail: json!({ "method": method.as_str(), "path": path, "kind": kind.to_string() }),
            });
            Some(kind)
        })
    }

    pub fn add_task(&self, spec: TaskSpec) -> String {
        let id = self.with(|state, now, _| state.add_task(spec, now));
        self.clock_wake.notify_one();
        id
    }

    pub fn finish_task(&self, id: &str, state: TaskState, by: &str) -> Result<(), ControlError> {
        if !state.is_completed() {
            return Err(ControlError::NotCompleted(state));
        }
        let result = self.with(|s, now, events| s.set_task_state(id, state, now, by, events));
        self.clock_wake.notify_one();
        result
    }

    /// Reports an event that changes no state (for example, a delayed request handled at last).
    pub fn note(&self, kind: &'static str, detail: Value) {
        self.with(|_, _, events| events.push(Event { kind, detail }));
    }

    /// Cancels a task as a user would: running tasks pass through Cancelling.
    pub fn cancel_task(
        &self,
        id: &str,
        cancelling_for: std::time::Duration,
        by: &str,
    ) -> Result<TaskState, ControlError> {
        let result = self.with(|s, now, events| {
            let task = s
                .tasks
                .iter_mut()
                .find(|task| task.snapshot.id == id)
                .ok_or_else(|| ControlError::UnknownTask(id.to_string()))?;
            if let Some((transition, _)) = task.cancel(cancelling_for, now) {
                events.push(task_event(&task.snapshot, transition, by));
            }
            Ok(task.snapshot.state)
        });
        self.clock_wake.notify_one();
        result
    }

    pub fn inject(&self, fault: Fault) {
        self.with(|state, _, _| state.faults.inject(fault));
    }

    pub fn clear_faults(&self) {
        self.with(|state, _, _| state.faults.clear());
    }
}

impl State {
    /// Applies every task deadline that has passed.
    fn advance(&mut self, now: DateTime<Utc>, events: &mut Vec<Event>) {
        let mut changes = Vec::new();
        for task in &mut self.tasks {
            task.advance(now, &mut changes);
        }
        events.extend(
            changes
                .into_iter()
                .map(|(snapshot, transition)| task_event(&snapshot, transition, "time")),
        );
    }

    pub fn set_maintenance(
        &mut self,
        on: bool,
        by: &str,
        now: DateTime<Utc>,
        events: &mut Vec<Event>,
    ) {
        let previous = self.maintenance.on;
        self.maintenance = Maintenance {
            on,
            last_modified_by: Some(by.to_string()),
            last_modified_on: now,
        };
        events.push(Event {
            kind: "maintenance_changed",
            detail: json!({ "on": on, "by": by, "previous": previous }),
        });
    }

    pub fn set_node(
        &mut self,
        index: usize,
        draining: bool,
        max_concurrent_tasks: u32,
        by: &str,
        now: DateTime<Utc>,
        events: &mut Vec<Event>,
    ) {
        let node = &mut self.nodes[index];
        let previous = node.draining;
        node.draining = draining;
        node.max_concurrent_tasks = max_concurrent_tasks;
        node.last_modified_by = Some(by.to_string());
        node.last_modified_on = now;
        events.push(Event {
            kind: "node_maintenance_changed",
            detail: json!({ "node": node.name, "on": draining, "by": by, "previous": previous }),
        });
    }

    pub fn node_index(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|node| node.id() == id)
    }

    fn add_task(&mut self, spec: TaskSpec, now: DateTime<Utc>) -> String {
        let node = spec.node.clone().unwrap_or_else(|| self.pick_node());
        let number = self.next_task_number;
        self.next_task_number += 1;
        let task = Task::new(number, spec, node, now);
        let id = task.snapshot.id.clone();
        self.tasks.push(task);
        id
    }

    /// The nodes in turn, passing over draining ones (they take no new tasks); if every node is
    /// draining, the next in turn anyway, since the lab asked for the task.
    fn pick_node(&mut self) -> String {
        let count = self.nodes.len();
        let start = self.next_node;
        let offset = (0..count)
            .find(|offset| !self.nodes[(start + offset) % count].draining)
            .unwrap_or(0);
        self.next_node = start + offset + 1;
        self.nodes[(start + offset) % count].name.clone()
    }

    fn set_task_state(
        &mut self,
        id: &str,
        state: TaskState,
        now: DateTime<Utc>,
        by: &str,
        events: &mut Vec<Event>,
    ) -> Result<(), ControlError> {
        let task = self
            .tasks
            .iter_mut()
            .find(|task| task.snapshot.id == id)
            .ok_or_else(|| ControlError::UnknownTask(id.to_string()))?;
        if let Some(transition) = task.set_state(state, now) {
            events.push(task_event(&task.snapshot, transition, by));
        }
        Ok(())
    }

    /// Newest first, as Octopus lists tasks.
    pub fn tasks_newest_first(&self) -> impl Iterator<Item = &Task> {
        self.tasks.iter().rev()
    }

    pub fn task(&self, id: &str) -> Option<&Task> {
        self.tasks.iter().find(|task| task.snapshot.id == id)
    }

    pub fn snapshots(&self) -> Vec<TaskSnapshot> {
        self.tasks
            .iter()
            .map(|task| task.snapshot.clone())
            .collect()
    }

    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        self.tasks.iter().filter_map(Task::next_deadline).min()
    }

    pub fn running_task_count(&self, node: &str) -> usize {
        self.tasks
            .iter()
            .filter(|task| {
                matches!(
                    task.snapshot.state,
                    TaskState::Executing | TaskState::Cancelling
                ) && task.snapshot.server_node.as_deref() == Some(node)
            })
            .count()
    }
}

fn task_event(snapshot: &TaskSnapshot, transition: Transition, by: &str) -> Event {
    Event {
        kind: match transition {
            Transition::Started => "task_started",
            Transition::Cancelling => "task_cancelling",
            Transition::Finished => "task_finished",
        },
        detail: json!({
            "id": snapshot.id,
            "name": snapshot.name,
            "state": snapshot.state,
            "node": snapshot.server_node,
            "space_id": snapshot.space_id,
            "by": by,
        }),
    }
}
