//! What a failed command tells the user and the exit code it ends with. Every error a user can
//! cause names the cause and the fix; the exit code says which part failed, for schedulers.

use crate::config::ConfigError;
use crate::octopus::OctopusError;
use crate::octopus::master_key::MasterKeyError;
use crate::run::journal::JournalError;
use crate::run::maintenance::MaintenanceError;
use crate::secret::SecretError;
use crate::sqlserver::SqlError;
use crate::sqlserver::connstr::ConnectionStringError;

/// Documented in the README; keep them stable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Exit {
    /// 1: the run failed; nothing claims to be complete.
    Failed = 1,
    /// 2: bad command line or config.
    Usage = 2,
    /// 3: the Octopus Server (unreachable, key refused, permission missing).
    Octopus = 3,
    /// 4: SQL Server (login, permission, staging path, BACKUP/RESTORE error).
    Sql = 4,
    /// 5: the repository (missing, wrong password, unreadable, damaged).
    Repository = 5,
    /// 6: another run holds this instance's lock.
    Busy = 6,
    /// 7: maintenance mode could NOT be put back: act now.
    MaintenanceStuck = 7,
    /// 8: a check failed (drill, check, doctor).
    CheckFailed = 8,
    /// 130: interrupted (Ctrl-C, SIGTERM); maintenance mode was put back.
    Interrupted = 130,
}

#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
    /// The command already printed its JSON result (a report that carries the failure): with
    /// `--json`, nothing more goes to stdout, so stdout stays one JSON document.
    pub result_printed: bool,
}

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Failure {
            exit,
            message: message.into(),
            result_printed: false,
        }
    }

    /// Marks the failure as already reported on stdout (see `result_printed`).
    pub fn result_printed(mut self) -> Self {
        self.result_printed = true;
        self
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

macro_rules! failure_from {
    ($t:ty, $exit:expr) => {
        impl From<$t> for Failure {
            fn from(e: $t) -> Self {
                Failure::new($exit, e.to_string())
            }
        }
    };
}

failure_from!(ConfigError, Exit::Usage);
failure_from!(SecretError, Exit::Usage);
failure_from!(ConnectionStringError, Exit::Usage);
failure_from!(OctopusError, Exit::Octopus);
failure_from!(MasterKeyError, Exit::Octopus);
failure_from!(SqlError, Exit::Sql);
failure_from!(octobackup_repo::RepoError, Exit::Repository);

impl From<JournalError> for Failure {
    fn from(e: JournalError) -> Self {
        let exit = match e {
            JournalError::Busy { .. } => Exit::Busy,
            // A journal that cannot be read may stand for maintenance mode left on.
            JournalError::Torn { .. } => Exit::MaintenanceStuck,
            JournalError::NotAFolder { .. } => Exit::Usage,
            JournalError::Io { .. } => Exit::Failed,
        };
        Failure::new(exit, e.to_string())
    }
}

impl From<MaintenanceError> for Failure {
    fn from(e: MaintenanceError) -> Self {
        match e {
            MaintenanceError::Octopus(o) => o.into(),
            MaintenanceError::Journal(j) => j.into(),
            e @ MaintenanceError::NotTurnedOn { .. } => Failure::new(Exit::Octopus, e.to_string()),
            e @ MaintenanceError::NotPutBack { .. } => {
                Failure::new(Exit::MaintenanceStuck, e.to_string())
            }
        }
    }
}
