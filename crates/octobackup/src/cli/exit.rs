//! The one place a failure becomes an exit code (the README's table), as restic's `main.go`
//! switch and ripgrep's `main.rs` do it. Domain errors reach here typed, inside a `Failure`:
//! the `From` impls below are what let `?` carry them up from the modules that raise them, and
//! `code` reads them. A message written at its site (`Failure::new(Exit::X, ...)`) keeps the
//! code chosen there.

use crate::backupset::list::Ambiguous;
use crate::config::ConfigError;
use crate::error::{Cause, Exit, Failure};
use crate::octopus::OctopusError;
use crate::octopus::discovery::DiscoveryError;
use crate::octopus::master_key::MasterKeyError;
use crate::run::journal::JournalError;
use crate::run::maintenance::MaintenanceError;
use crate::secret::SecretError;
use crate::sqlserver::SqlError;
use crate::sqlserver::connstr::ConnectionStringError;
use crate::sqlserver::lock::LockError;
use octobackup_repo::RepoError;
use std::error::Error;

macro_rules! carried {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for Failure {
            fn from(e: $t) -> Self {
                Failure::typed(e)
            }
        }
    )*};
}

// Every type here has its row in `typed_code`; a test checks each one.
carried!(
    Ambiguous,
    ConfigError,
    SecretError,
    ConnectionStringError,
    OctopusError,
    DiscoveryError,
    MasterKeyError,
    SqlError,
    LockError,
    RepoError,
    JournalError,
    MaintenanceError,
    tokio::task::JoinError,
);

/// The exit code a failure ends the process with.
pub fn code(f: &Failure) -> Exit {
    match &f.cause {
        Cause::Plain(exit) => *exit,
        Cause::Typed(e) => typed_code(e.as_ref()),
    }
}

fn typed_code(e: &(dyn Error + 'static)) -> Exit {
    if e.is::<ConfigError>()
        || e.is::<SecretError>()
        || e.is::<ConnectionStringError>()
        || e.is::<Ambiguous>()
    {
        return Exit::Usage;
    }
    if e.is::<OctopusError>() || e.is::<MasterKeyError>() {
        return Exit::Octopus;
    }
    if let Some(d) = e.downcast_ref::<DiscoveryError>() {
        return match d {
            // The instance's settings lack what the config must then give.
            DiscoveryError::Missing { .. } => Exit::Usage,
            _ => Exit::Octopus,
        };
    }
    if e.is::<SqlError>() {
        return Exit::Sql;
    }
    if let Some(l) = e.downcast_ref::<LockError>() {
        return match l {
            LockError::Held { .. } => Exit::Busy,
            LockError::Refused { .. } | LockError::Sql(_) => Exit::Sql,
        };
    }
    if e.is::<RepoError>() {
        return Exit::Repository;
    }
    if let Some(j) = e.downcast_ref::<JournalError>() {
        return match j {
            JournalError::Busy { .. } => Exit::Busy,
            // A journal that cannot be read may stand for maintenance mode left on.
            JournalError::Torn { .. } => Exit::MaintenanceStuck,
            JournalError::NotAFolder { .. } => Exit::Usage,
            JournalError::Io { .. } => Exit::Failed,
        };
    }
    if let Some(m) = e.downcast_ref::<MaintenanceError>() {
        return match m {
            MaintenanceError::Octopus(o) => typed_code(o),
            MaintenanceError::Journal(j) => typed_code(j),
            MaintenanceError::NotTurnedOn { .. } => Exit::Octopus,
            MaintenanceError::NotPutBack { .. } => Exit::MaintenanceStuck,
        };
    }
    // A task that panicked or was cancelled (tokio's JoinError), or anything else.
    Exit::Failed
}

/// What goes to stderr: the message, and with `-v` the typed causes below it (each one that
/// says something the lines above do not).
pub fn render(f: &Failure, verbose: u8) -> String {
    let mut out = format!("error: {}\n", f.message);
    if verbose == 0 {
        return out;
    }
    let mut said = f.message.clone();
    let mut next = f.typed_cause();
    while let Some(e) = next {
        let text = e.to_string();
        if !said.contains(&text) {
            out.push_str(&format!("  caused by: {text}\n"));
            said.push_str(&text);
        }
        next = e.source();
    }
    out
}

/// The `--json` document for a failure that no report carried.
pub fn json(f: &Failure) -> serde_json::Value {
    let exit = code(f);
    serde_json::json!({
        "ok": false,
        "error": f.message,
        "kind": exit.name(),
        "exit_code": exit as u8,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql() -> SqlError {
        SqlError::Connect {
            server: "sql01".into(),
            cause: "refused".into(),
        }
    }

    #[test]
    fn a_plain_message_keeps_the_code_chosen_where_it_was_written() {
        for exit in Exit::ALL {
            assert_eq!(code(&Failure::new(exit, "x")), exit);
        }
    }

    #[test]
    fn each_typed_error_maps_to_its_row() {
        let f: Failure = sql().into();
        assert_eq!(code(&f), Exit::Sql);
        assert!(f.message.contains("sql01"), "{}", f.message);

        let held = LockError::Held {
            instance: "main".into(),
            resource: "octobackup:Octopus".into(),
            server: "sql01".into(),
        };
        let f: Failure = held.into();
        assert_eq!(code(&f), Exit::Busy);
        assert!(f.message.contains("maintenance mode was not touched"));
        let refused = LockError::Refused {
            resource: "r".into(),
            server: "s".into(),
            code: -999,
        };
        assert_eq!(code(&refused.into()), Exit::Sql);
        assert_eq!(code(&LockError::Sql(sql()).into()), Exit::Sql);

        let missing = DiscoveryError::Missing {
            what: "web portal URL",
            keys: "k",
            config_key: "url",
        };
        assert_eq!(code(&missing.into()), Exit::Usage);
        let unknown = DiscoveryError::UnknownInstance {
            program: "Octopus.Server".into(),
            instance: "X".into(),
        };
        assert_eq!(code(&unknown.into()), Exit::Octopus);

        let busy = JournalError::Busy {
            instance: "main".into(),
            path: "/state/main.lock".into(),
        };
        assert_eq!(code(&busy.into()), Exit::Busy);

        let ambiguous = Ambiguous {
            wanted: "2026".into(),
            set_ids: vec!["a".into(), "b".into()],
        };
        assert_eq!(code(&ambiguous.into()), Exit::Usage);
    }

    #[test]
    fn maintenance_errors_map_by_what_is_left_on() {
        let octopus = || OctopusError::Unreachable {
            url: "http://octopus".into(),
            cause: "refused".into(),
        };
        let stuck = MaintenanceError::NotPutBack { cause: octopus() };
        assert_eq!(code(&stuck.into()), Exit::MaintenanceStuck);
        let off = MaintenanceError::NotTurnedOn {
            cause: octopus(),
            watched: false,
        };
        assert_eq!(code(&off.into()), Exit::Octopus);
        assert_eq!(
            code(&MaintenanceError::Octopus(octopus()).into()),
            Exit::Octopus
        );
        let torn = JournalError::Torn {
            path: "/state/main.journal".into(),
            cause: "eof".into(),
        };
        assert_eq!(
            code(&MaintenanceError::Journal(torn).into()),
            Exit::MaintenanceStuck
        );
    }

    #[test]
    fn context_added_to_the_message_keeps_the_cause() {
        let f: Failure = sql().into();
        let f = Failure {
            message: format!("restoring [Octopus]: {}", f.message),
            ..f
        };
        assert_eq!(code(&f), Exit::Sql);
        assert!(f.typed_cause().unwrap().is::<SqlError>());
    }

    #[test]
    fn verbose_prints_the_causes_the_message_does_not_say() {
        let f: Failure = sql().into();
        let f = Failure {
            message: "the restore stopped".into(),
            ..f
        };
        assert_eq!(render(&f, 0), "error: the restore stopped\n");
        let v = render(&f, 1);
        assert!(
            v.starts_with("error: the restore stopped\n  caused by: "),
            "{v}"
        );
        assert!(v.contains("sql01"), "{v}");
        // Nothing printed twice when the message is the cause's own text.
        let f: Failure = sql().into();
        assert_eq!(render(&f, 1).lines().count(), 1, "{}", render(&f, 1));
        // A plain message has no chain.
        assert_eq!(render(&Failure::new(Exit::Usage, "bad"), 2), "error: bad\n");
    }

    #[test]
    fn json_names_the_kind_and_the_code() {
        let f: Failure = sql().into();
        let j = json(&f);
        assert_eq!(j["ok"], false);
        assert_eq!(j["kind"], "sql");
        assert_eq!(j["exit_code"], 4);
        assert_eq!(j["error"], f.message.as_str());
    }

    /// The README's exit-code table is the contract: every code there is one `Exit` has, with
    /// the kind `--json` prints, and the other way round.
    #[test]
    fn the_readme_table_is_the_exit_enum() {
        let readme = include_str!("../../../../README.md");
        let table = readme
            .split("### Exit codes")
            .nth(1)
            .expect("README has an exit codes section");
        let rows: Vec<(u8, String)> = table
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .filter_map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let code = cells.get(1)?.parse::<u8>().ok()?;
                Some((code, cells.get(2)?.trim_matches('`').to_string()))
            })
            .filter(|(code, _)| *code != 0)
            .collect();
        let expected: Vec<(u8, String)> = Exit::ALL
            .iter()
            .map(|e| (*e as u8, e.name().to_string()))
            .collect();
        assert_eq!(rows, expected);
    }
}
