//! Step records: each step of a run with its timing and outcome, for the manifest and the summary.

use crate::backupset::check::{Check, Status};
use crate::error::Failure;
use std::time::Instant;

#[derive(Default)]
pub struct Steps {
    pub records: Vec<Check>,
}

pub struct Running {
    name: String,
    started: chrono::DateTime<chrono::Utc>,
    t0: Instant,
}

impl Steps {
    pub fn start(&mut self, name: &str) -> Running {
        tracing::info!("step: {name}");
        Running {
            name: name.to_string(),
            started: chrono::Utc::now(),
            t0: Instant::now(),
        }
    }

    pub fn finish(&mut self, running: Running, ok: bool, detail: Option<String>) {
        self.finish_at(running, Instant::now(), ok, detail);
    }

    /// Records a step that ended at `end` (steps that ran side by side end at different times).
    pub fn finish_at(&mut self, running: Running, end: Instant, ok: bool, detail: Option<String>) {
        self.records.push(Check {
            name: running.name,
            status: if ok { Status::Pass } else { Status::Fail },
            started: Some(running.started),
            seconds: Some(end.duration_since(running.t0).as_secs_f64()),
            detail,
            fix: None,
        });
    }

    /// Records a step whose outcome is `result`, a failure's message its detail.
    pub fn finish_with<T>(&mut self, running: Running, result: &Result<T, Failure>) {
        self.finish_with_at(running, Instant::now(), result);
    }

    /// `finish_with` for a step that ended at `end`.
    pub fn finish_with_at<T>(
        &mut self,
        running: Running,
        end: Instant,
        result: &Result<T, Failure>,
    ) {
        let detail = result.as_ref().err().map(|e| e.message.clone());
        self.finish_at(running, end, result.is_ok(), detail);
    }

    /// Runs `f` as a step and records its outcome.
    pub async fn run<T, E: std::fmt::Display>(
        &mut self,
        name: &str,
        f: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let r = self.start(name);
        let out = f.await;
        let detail = out.as_ref().err().map(|e| e.to_string());
        self.finish(r, out.is_ok(), detail);
        out
    }
}

/// `f`'s output and the moment it ended: for steps that run side by side and end at different
/// times (`Steps::finish_with_at`).
pub async fn ended<T>(f: impl std::future::Future<Output = T>) -> (T, Instant) {
    let out = f.await;
    (out, Instant::now())
}
