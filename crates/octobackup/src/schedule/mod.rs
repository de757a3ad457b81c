//! Scheduling done for the user: every night, `backup` then `drill` of one instance, as a systemd
//! service + timer (Linux) or a Task Scheduler task (Windows, through `schtasks`).
//!
//! What is written is decided here by pure functions (the unit files' text, `schtasks`'s argument
//! list), tested on any platform; `cli::schedule` runs them. No secret is ever on a command line or
//! in a unit file: the config holds references to secret files and environment variables, and an
//! environment file (Linux) is referenced by path, never copied.

use std::fmt::Write;
use std::path::{Path, PathBuf};

/// What to schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The config's instance name.
    pub instance: String,
    /// The octobackup executable, absolute.
    pub exe: PathBuf,
    /// The config file, absolute.
    pub config: PathBuf,
    pub at: At,
    /// The account the job runs as (Linux: `User=`; Windows: `/RU`, SYSTEM by default).
    pub user: String,
    /// Linux: an `EnvironmentFile=` for the secrets the config reads from the environment.
    pub environment_file: Option<PathBuf>,
    /// Write the HTML report here after each night (`octobackup report`).
    pub report: Option<PathBuf>,
    /// Apply the retention policy after each backup (`backup --forget`).
    pub forget: bool,
    /// Folders the job writes (staging, state, a local repository): left writable by the
    /// hardening.
    pub writable: Vec<PathBuf>,
}

/// The time of day the job starts, local time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct At {
    pub hour: u8,
    pub minute: u8,
}

impl std::str::FromStr for At {
    type Err = String;
    fn from_str(s: &str) -> Result<At, String> {
        let bad = || format!("--at '{s}' is not a time of day like 02:30 (24-hour HH:MM)");
        let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
        let (hour, minute): (u8, u8) =
            (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if hour > 23 || minute > 59 || m.len() != 2 {
            return Err(bad());
        }
        Ok(At { hour, minute })
    }
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:02}:{:02}", self.hour, self.minute)
    }
}

/// `octobackup-<instance>`, with anything a unit or task name should not hold replaced by `_`.
pub fn job_name(instance: &str) -> String {
    let safe: String = instance
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("octobackup-{safe}")
}

/// The arguments of one octobackup run of the job, after the executable.
fn octobackup_args(plan: &Plan, command: &[&str]) -> Vec<String> {
    let mut a = vec!["--config".to_string(), plan.config.display().to_string()];
    a.extend(command.iter().map(|c| c.to_string()));
    a.extend(["--instance".to_string(), plan.instance.clone()]);
    a
}

fn backup_command(plan: &Plan) -> &'static [&'static str] {
    if plan.forget {
        &["backup", "--forget"]
    } else {
        &["backup"]
    }
}

fn report_args(plan: &Plan) -> Option<Vec<String>> {
    // The report covers every instance of the repository: no --instance.
    plan.report.as_ref().map(|r| {
        vec![
            "--config".to_string(),
            plan.config.display().to_string(),
            "report".into(),
            "--out".into(),
            r.display().to_string(),
        ]
    })
}

// ---------------------------------------------------------------------------------------------
// Linux: systemd

pub const SYSTEM_UNIT_DIR: &str = "/etc/systemd/system";

/// One word of an `ExecStart=` line: quoted, with systemd's specifiers (`%`) and variable
/// expansion (`$`) neutralised, so a path is taken as written (systemd.service(5), "Command
/// lines"; systemd.unit(5), "Specifiers").
pub fn systemd_word(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn exec_line(plan: &Plan, args: &[String]) -> String {
    let mut line = systemd_word(&plan.exe.display().to_string());
    for a in args {
        line.push(' ');
        line.push_str(&systemd_word(a));
    }
    line
}

/// A path in a space-separated list setting (`ReadWritePaths=`): systemd unquotes it.
fn path_item(p: &Path) -> String {
    let s = p.display().to_string();
    if s.contains(char::is_whitespace) || s.contains('"') {
        systemd_word(&s)
    } else {
        s.replace('%', "%%")
    }
}

/// The service and the timer: `(service, timer)`.
pub fn systemd_units(plan: &Plan) -> (String, String) {
    let name = job_name(&plan.instance);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Written by `octobackup schedule install`; `octobackup schedule remove` removes it.\n\
[Unit]\n\
Description=octobackup: back up the Octopus Deploy instance {}, then drill the new set\n\
Wants=network-online.target\n\
After=network-online.target docker.service\n\
\n\
[Service]\n\
Type=oneshot\n\
User={}",
        plan.instance.replace('%', "%%"),
        plan.user
    );
    if let Some(env) = &plan.environment_file {
        // The secrets the config reads from the environment (API key, SQL password...): a file
        // only root and the job's user can read, never the unit itself (units are world-readable).
        let _ = writeln!(s, "EnvironmentFile={}", path_item(env));
    }
    let _ = writeln!(
        s,
        "# The drill runs only when the backup succeeded (a oneshot stops at the first failure).\n\
ExecStart={}\n\
ExecStart={}",
        exec_line(plan, &octobackup_args(plan, backup_command(plan))),
        exec_line(plan, &octobackup_args(plan, &["drill"]))
    );
    if let Some(args) = report_args(plan) {
        let _ = writeln!(
            s,
            "# The report, whatever happened (a failed report never fails the job: `-`).\n\
ExecStopPost=-{}",
            exec_line(plan, &args)
        );
    }
    s.push_str(
        "# On stop, octobackup puts maintenance mode back (retrying up to about two minutes): let it.\n\
TimeoutStopSec=180\n\
KillMode=mixed\n\
# Hardening that keeps what a backup needs: the OS read-only, home folders read-only, the\n\
# staging folder (which SQL Server writes too), the state folder and a local repository writable.\n\
NoNewPrivileges=yes\n\
ProtectSystem=full\n\
ProtectHome=read-only\n\
ProtectKernelTunables=yes\n\
ProtectKernelModules=yes\n\
ProtectControlGroups=yes\n\
RestrictSUIDSGID=yes\n\
LockPersonality=yes\n",
    );
    let writable: Vec<&PathBuf> = plan.writable.iter().filter(|p| p.is_absolute()).collect();
    if !writable.is_empty() {
        // `-`: a folder that does not exist yet does not stop the job (it says so itself).
        let items: Vec<String> = writable
            .iter()
            .map(|p| format!("-{}", path_item(p)))
            .collect();
        let _ = writeln!(s, "ReadWritePaths={}", items.join(" "));
    }
    // A private /tmp would hide a staging folder under /tmp from SQL Server (it writes the backup
    // there from outside this service): only when nothing the job shares lives there.
    let shares_tmp = writable
        .iter()
        .any(|p| p.starts_with("/tmp") || p.starts_with("/var/tmp"));
    if !shares_tmp {
        s.push_str("PrivateTmp=yes\n");
    }

    let timer = format!(
        "# Written by `octobackup schedule install`; `octobackup schedule remove` removes it.\n\
[Unit]\n\
Description=Nightly octobackup of {} at {}\n\
\n\
[Timer]\n\
OnCalendar=*-*-* {}:00\n\
# A night missed while the machine was off runs at the next boot.\n\
Persistent=true\n\
Unit={name}.service\n\
\n\
[Install]\n\
WantedBy=timers.target\n",
        plan.instance.replace('%', "%%"),
        plan.at,
        plan.at
    );
    (s, timer)
}

// ---------------------------------------------------------------------------------------------
// Windows: Task Scheduler through schtasks

/// `schtasks /TR` takes at most 261 characters (schtasks /Create /?: "The length of the /TR
/// parameter cannot exceed 261 characters").
pub const SCHTASKS_TR_MAX: usize = 261;

/// Windows' own account for services; the README's choice (show-master-key needs administrator).
pub const WINDOWS_DEFAULT_USER: &str = "SYSTEM";

/// The task's action: `octobackup schedule run` (backup, then drill if it passed, then the report
/// if asked; its exit code is the first failure's). One process rather than a cmd.exe chain of
/// three: with the README's install paths such a chain is longer than schtasks accepts.
pub fn task_command(plan: &Plan) -> Result<String, String> {
    let mut args = octobackup_args(plan, &["schedule", "run"]);
    if plan.forget {
        args.push("--forget".into());
    }
    if let Some(r) = &plan.report {
        args.extend(["--report".to_string(), r.display().to_string()]);
    }
    let mut tr = format!("\"{}\"", plan.exe.display());
    for a in &args {
        if a.contains('"') {
            return Err(format!(
                "'{a}' holds a '\"', which the task's command line cannot carry: rename it"
            ));
        }
        tr.push(' ');
        if a.is_empty() || a.contains(char::is_whitespace) {
            tr.push_str(&format!("\"{a}\""));
        } else {
            tr.push_str(a);
        }
    }
    if tr.chars().count() > SCHTASKS_TR_MAX {
        return Err(format!(
            "the task's command line is {} characters, more than the {SCHTASKS_TR_MAX} schtasks accepts: \
install octobackup and its config under shorter paths (e.g. C:\\octobackup\\octobackup.exe and \
C:\\octobackup\\octobackup.toml), or a shorter --report path",
            tr.chars().count()
        ));
    }
    Ok(tr)
}

/// `schtasks` arguments that create (or replace) the task: daily at `--at`, as the user, with
/// highest privileges (the master key needs administrator rights), whether or not anyone is
/// logged on. No password here: SYSTEM has none, and for another account schtasks asks for it.
pub fn schtasks_create(plan: &Plan) -> Result<Vec<String>, String> {
    let tr = task_command(plan)?;
    Ok([
        "/Create",
        "/F",
        "/TN",
        &job_name(&plan.instance),
        "/SC",
        "DAILY",
        "/ST",
        &plan.at.to_string(),
        "/RU",
        &plan.user,
        "/RL",
        "HIGHEST",
        "/TR",
        &tr,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect())
}

pub fn schtasks_query(instance: &str) -> Vec<String> {
    ["/Query", "/TN", &job_name(instance), "/V", "/FO", "LIST"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

pub fn schtasks_delete(instance: &str) -> Vec<String> {
    ["/Delete", "/TN", &job_name(instance), "/F"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// The command line Windows hands `schtasks.exe` for these arguments: each one quoted as the
/// Microsoft C runtime parses it back (a `"` as `\"`, backslashes before a quote doubled), which
/// is how Rust's `Command` builds it.
pub fn windows_command_line(program: &str, args: &[String]) -> String {
    let mut line = program.to_string();
    for a in args {
        line.push(' ');
        if !a.is_empty() && !a.contains([' ', '\t', '"']) {
            line.push_str(a);
            continue;
        }
        line.push('"');
        let mut backslashes = 0;
        for c in a.chars() {
            match c {
                '\\' => backslashes += 1,
                '"' => {
                    line.push_str(&"\\".repeat(backslashes * 2 + 1));
                    backslashes = 0;
                }
                _ => {
                    line.push_str(&"\\".repeat(backslashes));
                    backslashes = 0;
                }
            }
            if c != '\\' {
                line.push(c);
            }
        }
        line.push_str(&"\\".repeat(backslashes * 2));
        line.push('"');
    }
    line
}

#[cfg(test)]
mod tests;
