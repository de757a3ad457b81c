//! What a failed command tells the user and the exit code it ends with. Every error a user can
//! cause names the cause and the fix; the exit code says which part failed, for schedulers.
//!
//! This module is a leaf: it knows no domain type. A domain error (`SqlError`, `RepoError`, ...)
//! travels to `main` inside a `Failure` as itself, and the one table that turns it into an exit
//! code is `cli::exit`, next to the `From` impls that let `?` carry it.

/// The innermost cause of an error: what says why (connection refused, a certificate refused),
/// where the outer layers say only what was being done.
pub fn innermost<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> &'a (dyn std::error::Error + 'static) {
    let mut cause = e;
    while let Some(s) = cause.source() {
        cause = s;
    }
    cause
}

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
    /// 9: the backup is complete, but copying it to a `[[copy]]` failed.
    CopyFailed = 9,
    /// 130: interrupted (Ctrl-C, SIGTERM); maintenance mode was put back.
    Interrupted = 130,
}

impl Exit {
    /// The kind of failure as `--json` names it (`"kind"`), one per row of the README's table.
    pub fn name(self) -> &'static str {
        match self {
            Exit::Failed => "failed",
            Exit::Usage => "usage",
            Exit::Octopus => "octopus",
            Exit::Sql => "sql",
            Exit::Repository => "repository",
            Exit::Busy => "busy",
            Exit::MaintenanceStuck => "maintenance-stuck",
            Exit::CheckFailed => "check-failed",
            Exit::CopyFailed => "copy-failed",
            Exit::Interrupted => "interrupted",
        }
    }

    /// Every code, in the README's order.
    pub const ALL: [Exit; 10] = [
        Exit::Failed,
        Exit::Usage,
        Exit::Octopus,
        Exit::Sql,
        Exit::Repository,
        Exit::Busy,
        Exit::MaintenanceStuck,
        Exit::CheckFailed,
        Exit::CopyFailed,
        Exit::Interrupted,
    ];
}

/// A failed command: the line the user reads, and what it came from.
#[derive(Debug)]
pub struct Failure {
    /// What the user reads: the cause and the fix. Callers may add context to it (which set,
    /// which database); the cause stays as it was.
    pub message: String,
    /// What went wrong, typed: decides the exit code (`cli::exit::code`) and gives `-v` its chain.
    pub cause: Cause,
    /// The command already printed its JSON result (a report that carries the failure): with
    /// `--json`, nothing more goes to stdout, so stdout stays one JSON document.
    pub result_printed: bool,
}

#[derive(Debug)]
pub enum Cause {
    /// A message written where the failure was found, with its exit code chosen there.
    Plain(Exit),
    /// A domain error (`SqlError`, `RepoError`, `JournalError`...), kept with its `source()`
    /// chain; `cli::exit::code` maps it.
    Typed(Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            cause: Cause::Plain(exit),
            result_printed: false,
        }
    }

    /// A domain error, its text as the message. Only `cli::exit`'s `From` impls call this, so
    /// every typed cause is one the exit table knows.
    pub(crate) fn typed(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Failure {
            message: e.to_string(),
            cause: Cause::Typed(Box::new(e)),
            result_printed: false,
        }
    }

    /// Marks the failure as already reported on stdout (see `result_printed`).
    pub fn result_printed(mut self) -> Self {
        self.result_printed = true;
        self
    }

    /// The exit code written with a plain message; `None` for a typed error, whose code only
    /// `cli::exit::code` decides.
    pub fn plain_exit(&self) -> Option<Exit> {
        match self.cause {
            Cause::Plain(exit) => Some(exit),
            Cause::Typed(_) => None,
        }
    }

    /// The typed error behind the message, if there is one.
    pub fn typed_cause(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.cause {
            Cause::Plain(_) => None,
            Cause::Typed(e) => Some(e.as_ref()),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.typed_cause()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_innermost_cause_is_the_last_source() {
        #[derive(Debug, thiserror::Error)]
        #[error("the push failed")]
        struct Outer(#[source] std::io::Error);
        let e = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        ));
        assert_eq!(super::innermost(&e).to_string(), "connection refused");
        let plain = std::io::Error::other("no cause");
        assert_eq!(super::innermost(&plain).to_string(), "no cause");
    }
}
