//! Server tasks: what the lab asks for ([`TaskSpec`]), how they move through time, and what the
//! lab can see of them ([`TaskSnapshot`]).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Octopus's `TaskState` enum, spelled as the API spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaskState {
    Queued,
    Executing,
    Failed,
    Canceled,
    TimedOut,
    Success,
    Cancelling,
}

impl TaskState {
    pub const ALL: [TaskState; 7] = [
        TaskState::Queued,
        TaskState::Executing,
        TaskState::Failed,
        TaskState::Canceled,
        TaskState::TimedOut,
        TaskState::Success,
        TaskState::Cancelling,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "Queued",
            TaskState::Executing => "Executing",
            TaskState::Failed => "Failed",
            TaskState::Canceled => "Canceled",
            TaskState::TimedOut => "TimedOut",
            TaskState::Success => "Success",
            TaskState::Cancelling => "Cancelling",
        }
    }

    /// Octopus's `IsCompleted`: the task will not change state again.
    pub fn is_completed(self) -> bool {
        matches!(
            self,
            TaskState::Failed | TaskState::Canceled | TaskState::TimedOut | TaskState::Success
        )
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskState {
    type Err = String;

    /// Case-insensitive, as Octopus binds query strings.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskState::ALL
            .into_iter()
            .find(|state| state.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("'{s}' is not a valid task state"))
    }
}

/// A task the lab puts on the server. In JSON (`POST /lab/tasks`) durations are milliseconds
/// (`finishes_after_ms`, `starts_after_ms`) and missing fields take the [`Default`] values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskSpec {
    /// The task type: `Deploy`, `Backup`, `Retention`, `Health`, ...
    pub name: String,
    pub description: String,
    /// The state it starts in; a completed state makes a task that is already history.
    pub state: TaskState,
    /// Executing -> Success this long after it starts executing; `None` runs until
    /// [`crate::OctopusHandle::finish_task`].
    #[serde(rename = "finishes_after_ms", with = "optional_millis")]
    pub finishes_after: Option<Duration>,
    /// Queued -> Executing this long after it was queued (maintenance mode does not stop it);
    /// `None` leaves it queued until told, like a task stuck behind a busy or offline node.
    #[serde(rename = "starts_after_ms", with = "optional_millis")]
    pub starts_after: Option<Duration>,
    /// The node that runs it; `None` picks the nodes in turn.
    pub node: Option<String>,
    /// `None` makes a system task (no space), such as the nightly retention or a backup task.
    pub space_id: Option<String>,
    /// An executing task waiting for a manual intervention or guided failure.
    pub has_pending_interruptions: bool,
}

impl Default for TaskSpec {
    /// A deployment executing in the default space until told to finish.
    fn default() -> Self {
        TaskSpec {
            name: "Deploy".to_string(),
            description: "Deploy release 1.0.0 to Production".to_string(),
            state: TaskState::Executing,
            finishes_after: None,
            starts_after: None,
            node: None,
            space_id: Some(DEFAULT_SPACE.to_string()),
            has_pending_interruptions: false,
        }
    }
}

/// The space tasks belong to when a request names none.
pub const DEFAULT_SPACE: &str = "Spaces-1";

/// What the lab sees of a task, time already applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TaskSnapshot {
    pub id: String,
    pub name: String,
    pub description: String,
    pub state: TaskState,
    pub space_id: Option<String>,
    /// Set once a node has picked the task up.
    pub server_node: Option<String>,
    pub has_pending_interruptions: bool,
    pub queue_time: DateTime<Utc>,
    pub start_time: Option<DateTime<Utc>>,
    pub completed_time: Option<DateTime<Utc>>,
}

impl TaskSnapshot {
    pub fn is_completed(&self) -> bool {
        self.state.is_completed()
    }
}

/// A task inside the simulator: its snapshot plus the deadlines that move it on.
#[derive(Clone, Debug)]
pub(crate) struct Task {
    pub snapshot: TaskSnapshot,
    /// The node chosen for it, reported as `ServerNode` once it executes.
    pub assigned_node: String,
    pub finishes_after: Option<Duration>,
    pub start_due: Option<DateTime<Utc>>,
    pub finish_due: Option<DateTime<Utc>>,
    /// The state `finish_due` ends it in: Success, or Canceled once a cancel was asked for.
    pub finish_state: TaskState,
}

/// A change time made to a task, for the event sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transition {
    Started,
    /// A cancel was asked for; the task still runs until it has stopped.
    Cancelling,
    Finished,
}

impl Task {
    pub fn new(number: u64, spec: TaskSpec, assigned_node: String, now: DateTime<Utc>) -> Self {
        let state = spec.state;
        let started = !matches!(state, TaskState::Queued);
        let mut task = Task {
            snapshot: TaskSnapshot {
                id: format!("ServerTasks-{number}"),
                name: spec.name,
                description: spec.description,
                state,
                space_id: spec.space_id,
                server_node: started.then(|| assigned_node.clone()),
                has_pending_interruptions: spec.has_pending_interruptions,
                queue_time: now,
                start_time: started.then_some(now),
                completed_time: state.is_completed().then_some(now),
            },
            assigned_node,
            finishes_after: spec.finishes_after,
            start_due: None,
            finish_due: None,
            finish_state: if state == TaskState::Cancelling {
                TaskState::Canceled
            } else {
                TaskState::Success
            },
        };
        match state {
            TaskState::Queued => task.start_due = spec.starts_after.map(|d| now + to_chrono(d)),
            TaskState::Executing | TaskState::Cancelling => {
                task.finish_due = spec.finishes_after.map(|d| now + to_chrono(d))
            }
            _ => {}
        }
        task
    }

    /// Applies every deadline that has passed by `now`, in order, recording what changed.
    pub fn advance(&mut self, now: DateTime<Utc>, changes: &mut Vec<(TaskSnapshot, Transition)>) {
        if let Some(due) = self.start_due.filter(|due| *due <= now) {
            self.start_due = None;
            self.start(due);
            changes.push((self.snapshot.clone(), Transition::Started));
        }
        if let Some(due) = self.finish_due.filter(|due| *due <= now) {
            self.finish_due = None;
            self.snapshot.state = self.finish_state;
            self.snapshot.completed_time = Some(due);
            if self.finish_state != TaskState::Success {
                self.snapshot.has_pending_interruptions = false;
            }
            changes.push((self.snapshot.clone(), Transition::Finished));
        }
    }

    fn start(&mut self, at: DateTime<Utc>) {
        self.snapshot.state = TaskState::Executing;
        self.snapshot.start_time = Some(at);
        self.snapshot.server_node = Some(self.assigned_node.clone());
        self.finish_due = self.finishes_after.map(|d| at + to_chrono(d));
    }

    /// Moves the task to `state` now, as a user cancelling it or the lab resolving it would.
    pub fn set_state(&mut self, state: TaskState, now: DateTime<Utc>) -> Option<Transition> {
        self.start_due = None;
        self.finish_due = None;
        if state == self.snapshot.state {
            return None;
        }
        if self.snapshot.start_time.is_none() && state != TaskState::Queued {
            self.snapshot.start_time = Some(now);
            self.snapshot.server_node = Some(self.assigned_node.clone());
        }
        self.snapshot.state = state;
        if state.is_completed() {
            self.snapshot.completed_time = Some(now);
            self.snapshot.has_pending_interruptions = false;
            Some(Transition::Finished)
        } else if state == TaskState::Executing {
            Some(Transition::Started)
        } else {
            None
        }
    }

    /// A user cancels the task: a queued task is Canceled at once; a running one is Cancelling
    /// for `cancelling_for` (its node stops the running step and cleans up), then Canceled. A
    /// completed task does not change.
    pub fn cancel(
        &mut self,
        cancelling_for: Duration,
        now: DateTime<Utc>,
    ) -> Option<(Transition, TaskState)> {
        if self.snapshot.state.is_completed() {
            return None;
        }
        if self.snapshot.state == TaskState::Queued || cancelling_for.is_zero() {
            return self
                .set_state(TaskState::Canceled, now)
                .map(|t| (t, TaskState::Canceled));
        }
        if self.snapshot.state == TaskState::Cancelling {
            return None;
        }
        self.start_due = None;
        self.snapshot.state = TaskState::Cancelling;
        self.finish_state = TaskState::Canceled;
        self.finish_due = Some(now + to_chrono(cancelling_for));
        Some((Transition::Cancelling, TaskState::Cancelling))
    }

    /// The next moment time will change this task, if any.
    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        self.start_due.or(self.finish_due)
    }
}

fn to_chrono(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

/// Serde for `Option<Duration>` as whole milliseconds.
mod optional_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(state: TaskState) -> TaskSpec {
        TaskSpec {
            state,
            finishes_after: Some(Duration::from_secs(10)),
            starts_after: Some(Duration::from_secs(5)),
            ..TaskSpec::default()
        }
    }

    #[test]
    fn a_queued_task_starts_then_finishes_at_its_deadlines() {
        let t0 = Utc::now();
        let mut task = Task::new(1, spec(TaskState::Queued), "N1".into(), t0);
        let mut changes = Vec::new();
        task.advance(t0 + chrono::Duration::seconds(4), &mut changes);
        assert!(changes.is_empty());
        assert_eq!(task.snapshot.server_node, None);
        task.advance(t0 + chrono::Duration::seconds(6), &mut changes);
        assert_eq!(task.snapshot.state, TaskState::Executing);
        assert_eq!(
            task.snapshot.start_time,
            Some(t0 + chrono::Duration::seconds(5))
        );
        assert_eq!(task.snapshot.server_node.as_deref(), Some("N1"));
        task.advance(t0 + chrono::Duration::seconds(60), &mut changes);
        assert_eq!(task.snapshot.state, TaskState::Success);
        assert_eq!(
            task.snapshot.completed_time,
            Some(t0 + chrono::Duration::seconds(15))
        );
        let kinds: Vec<_> = changes.iter().map(|(_, t)| *t).collect();
        assert_eq!(kinds, [Transition::Started, Transition::Finished]);
        assert_eq!(task.next_deadline(), None);
    }

    #[test]
    fn both_deadlines_passed_apply_in_one_step() {
        let t0 = Utc::now();
        let mut task = Task::new(1, spec(TaskState::Queued), "N1".into(), t0);
        let mut changes = Vec::new();
        task.advance(t0 + chrono::Duration::hours(1), &mut changes);
        assert_eq!(task.snapshot.state, TaskState::Success);
        assert_eq!(changes.len(), 2);
    }

    #[test]
    fn a_cancelled_task_is_cancelling_until_its_node_has_stopped_it() {
        let t0 = Utc::now();
        let mut task = Task::new(1, spec(TaskState::Executing), "N1".into(), t0);
        let cancelled = task.cancel(Duration::from_secs(3), t0);
        assert_eq!(
            cancelled,
            Some((Transition::Cancelling, TaskState::Cancelling))
        );
        let mut changes = Vec::new();
        task.advance(t0 + chrono::Duration::seconds(2), &mut changes);
        assert_eq!(task.snapshot.state, TaskState::Cancelling);
        assert!(!task.snapshot.is_completed());
        // Its own finish time (10 s) no longer applies: it ends Canceled at 3 s.
        task.advance(t0 + chrono::Duration::seconds(4), &mut changes);
        assert_eq!(task.snapshot.state, TaskState::Canceled);
        assert_eq!(
            task.snapshot.completed_time,
            Some(t0 + chrono::Duration::seconds(3))
        );
        assert_eq!(task.cancel(Duration::from_secs(3), t0), None);

        let mut queued = Task::new(2, spec(TaskState::Queued), "N1".into(), t0);
        assert_eq!(
            queued.cancel(Duration::from_secs(3), t0).map(|(_, s)| s),
            Some(TaskState::Canceled)
        );
    }

    #[test]
    fn task_state_parses_case_insensitively() {
        assert_eq!("executing".parse::<TaskState>(), Ok(TaskState::Executing));
        assert!("Running".parse::<TaskState>().is_err());
    }

    #[test]
    fn spec_json_uses_milliseconds_and_defaults() {
        let spec: TaskSpec =
            serde_json::from_str(r#"{"name":"Backup","space_id":null,"finishes_after_ms":1500}"#)
                .unwrap();
        assert_eq!(spec.name, "Backup");
        assert_eq!(spec.space_id, None);
        assert_eq!(spec.finishes_after, Some(Duration::from_millis(1500)));
        assert_eq!(spec.state, TaskState::Executing);
        assert!(serde_json::from_str::<TaskSpec>(r#"{"finishes_after":1}"#).is_err());
    }
}
