//! A stand-in for the parts of the Octopus Server REST API that octobackup uses: API-key auth,
//! maintenance mode, server tasks that run, finish or stay stuck, the license, the server
//! folders and HA nodes, with faults (error statuses, delays, connection resets) on demand.
//!
//! Shapes follow Octopus's swagger document (2021.2.4488); see the crate README for what the
//! simulator cannot prove about a real server.

mod api;
mod config;
mod control;
mod faults;
mod server;
mod state;
mod tasks;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use axum::http::Method;
pub use config::{ApiKey, DEFAULT_VERSION, EventSink, License, OctopusConfig, ServerFolders};
pub use faults::{Fault, FaultKind};
pub use state::ControlError;
pub use tasks::{DEFAULT_SPACE, TaskSnapshot, TaskSpec, TaskState};

use state::Simulator;

/// Starts a simulated Octopus Server on 127.0.0.1 and a free port. Must be called inside a
/// tokio runtime; the server runs on it until [`OctopusHandle::shutdown`] or the runtime ends.
pub async fn start(config: OctopusConfig) -> anyhow::Result<OctopusHandle> {
    let sim = Arc::new(Simulator::new(config));
    let (addr, shutdown, tasks) = server::serve(sim.clone()).await?;
    Ok(OctopusHandle {
        inner: Arc::new(Inner {
            sim,
            addr,
            shutdown,
            tasks: Mutex::new(tasks),
        }),
    })
}

/// A running simulator. Clones share it.
#[derive(Clone)]
pub struct OctopusHandle {
    inner: Arc<Inner>,
}

struct Inner {
    sim: Arc<Simulator>,
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl OctopusHandle {
    /// `http://127.0.0.1:PORT`, without a trailing slash; the API is under `/api`.
    pub fn url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    pub fn maintenance(&self) -> bool {
        self.inner.sim.with(|state, _, _| state.maintenance.on)
    }

    /// Sets maintenance mode as user `by` would through the API (emits `maintenance_changed`).
    pub fn set_maintenance(&self, on: bool, by: &str) {
        self.inner
            .sim
            .with(|state, now, events| state.set_maintenance(on, by, now, events));
    }

    /// Queues or starts a task; returns its id, `ServerTasks-N`.
    pub fn add_task(&self, spec: TaskSpec) -> String {
        self.inner.sim.add_task(spec)
    }

    /// Ends a task in a completed state (Success, Failed, Canceled, TimedOut), as its node or a
    /// user cancelling it would.
    ///
    /// # Panics
    /// If there is no such task or `state` is not a completed state: a mistake in the lab's
    /// script, not a condition to handle. [`OctopusHandle::try_finish_task`] returns it instead.
    pub fn finish_task(&self, id: &str, state: TaskState) {
        if let Err(error) = self.try_finish_task(id, state) {
            panic!("finish_task({id}, {state}): {error}");
        }
    }

    pub fn try_finish_task(&self, id: &str, state: TaskState) -> Result<(), ControlError> {
        self.inner.sim.finish_task(id, state, "lab")
    }

    /// Cancels a task as a user would in the portal: a queued one is Canceled at once, a running
    /// one is `Cancelling` for `cancelling_for` (its node stops the step and cleans up), then
    /// `Canceled`. Returns the state it is in now.
    pub fn cancel_task(
        &self,
        id: &str,
        cancelling_for: std::time::Duration,
    ) -> Result<TaskState, ControlError> {
        self.inner.sim.cancel_task(id, cancelling_for, "lab")
    }

    /// Every task, oldest first, with time applied.
    pub fn tasks(&self) -> Vec<TaskSnapshot> {
        self.inner.sim.with(|state, _, _| state.snapshots())
    }

    pub fn inject(&self, fault: Fault) {
        self.inner.sim.inject(fault);
    }

    pub fn clear_faults(&self) {
        self.inner.sim.clear_faults();
    }

    /// Stops accepting, drops open connections and waits for the server's tasks to end.
    pub async fn shutdown(self) {
        self.inner.shutdown.send_replace(true);
        let tasks = std::mem::take(
            &mut *self
                .inner
                .tasks
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        for task in tasks {
            if let Err(error) = task.await {
                tracing::warn!(%error, "octopus-sim: a server task failed while shutting down");
            }
        }
    }
}
