//! The lab's event log: what happened and when, machine-readable, so tests can assert orderings such
//! as "the database backup ran entirely while maintenance mode was on". Kept in memory and appended
//! to `events.jsonl` in the lab folder (one JSON object a line) for a lab run as its own process.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LabEvent {
    /// Order of recording: reliable where timestamps tie.
    pub seq: u64,
    pub at: DateTime<Utc>,
    /// "octopus" or "sqlserver".
    pub source: String,
    pub kind: String,
    pub detail: serde_json::Value,
}

/// The callback shape both stand-ins take.
pub type Sink = Arc<dyn Fn(&'static str, serde_json::Value) + Send + Sync>;

/// A step hook: called with each event of its kind as it is recorded, before the stand-in
/// answers the request that caused it (so a test can act "at the moment maintenance mode goes
/// on", before the client knows it is on).
pub type Hook = Arc<dyn Fn(&LabEvent) + Send + Sync>;

#[derive(Clone)]
pub struct EventLog {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    events: Vec<LabEvent>,
    file: Option<std::fs::File>,
    path: Option<PathBuf>,
    /// Events recorded by earlier runs on the same lab folder: sequence numbers go on from there.
    seq_base: u64,
    hooks: Vec<(String, Hook)>,
}

impl EventLog {
    /// A log that also appends to `path` (created if missing; earlier runs' lines are kept).
    pub fn with_file(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let seq_base = Self::read_file(path).map(|e| e.len() as u64).unwrap_or(0);
        Ok(EventLog {
            inner: Arc::new(Mutex::new(Inner {
                events: Vec::new(),
                file: Some(file),
                path: Some(path.to_path_buf()),
                seq_base,
                hooks: Vec::new(),
            })),
        })
    }

    pub fn in_memory() -> Self {
        EventLog {
            inner: Arc::new(Mutex::new(Inner {
                events: Vec::new(),
                file: None,
                path: None,
                seq_base: 0,
                hooks: Vec::new(),
            })),
        }
    }

    pub fn path(&self) -> Option<PathBuf> {
        self.inner.lock().unwrap().path.clone()
    }

    pub fn record(&self, source: &str, kind: &str, detail: serde_json::Value) {
        let mut inner = self.inner.lock().unwrap();
        let event = LabEvent {
            seq: inner.seq_base + inner.events.len() as u64 + 1,
            at: Utc::now(),
            source: source.to_string(),
            kind: kind.to_string(),
            detail,
        };
        if let Some(file) = inner.file.as_mut() {
            // One write per line so a reader never sees half an event.
            let mut line = serde_json::to_vec(&event).expect("events serialize");
            line.push(b'\n');
            let _ = file.write_all(&line);
        }
        inner.events.push(event.clone());
        let hooks: Vec<Hook> = inner
            .hooks
            .iter()
            .filter(|(k, _)| *k == event.kind)
            .map(|(_, h)| h.clone())
            .collect();
        // Outside the lock: a hook may read the log or cause other events.
        drop(inner);
        for hook in hooks {
            hook(&event);
        }
    }

    /// Calls `hook` with every event of `kind` from now on, as it is recorded.
    pub fn on(&self, kind: &str, hook: impl Fn(&LabEvent) + Send + Sync + 'static) {
        self.inner
            .lock()
            .unwrap()
            .hooks
            .push((kind.to_string(), Arc::new(hook)));
    }

    /// A callback for one stand-in that records under its source name.
    pub fn sink(&self, source: &'static str) -> Sink {
        let log = self.clone();
        Arc::new(move |kind, detail| log.record(source, kind, detail))
    }

    pub fn events(&self) -> Vec<LabEvent> {
        self.inner.lock().unwrap().events.clone()
    }

    /// Reads an `events.jsonl` written by a lab in another process.
    pub fn read_file(path: &Path) -> std::io::Result<Vec<LabEvent>> {
        let text = std::fs::read_to_string(path)?;
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }
}
