//! What the operations show while they work, without knowing where it goes. The CLI implements
//! `Progress` (`cli::ui::Ui`: bars on a terminal, plain lines in a log, nothing on stdout with
//! `--json`), as the repository crate's `ProgressSink` is implemented for its own work: the
//! operations never import the CLI.

use octobackup_repo::ProgressSink;
use std::sync::Arc;

pub trait Progress: Send + Sync {
    /// A line for the user.
    fn note(&self, msg: &str);
    /// A changing status line (what the run is waiting for).
    fn status(&self, msg: &str);
    fn clear_status(&self);
    /// Progress of one long statement (BACKUP, RESTORE) in percent.
    fn percent_bar(&self, label: &str) -> Box<dyn Percent>;
    /// Progress of one repository transfer.
    fn repo_sink(&self, label: &str) -> Arc<dyn ProgressSink + Send + Sync>;
}

pub trait Percent: Send + Sync {
    fn set(&self, percent: f64);
    fn finish(&self);
}

/// What an operation holds: a shared handle to the caller's `Progress`, cheap to clone into
/// the tasks it spawns. Named `Ui` so the operations read as they did when they held the CLI's.
#[derive(Clone)]
pub struct Ui(Arc<dyn Progress>);

impl<P: Progress + 'static> From<P> for Ui {
    fn from(p: P) -> Self {
        Ui(Arc::new(p))
    }
}

impl std::ops::Deref for Ui {
    type Target = dyn Progress;
    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}
