//! `octobackup schedule install|show|remove`: wiring for `schedule` (systemd on Linux, Task
//! Scheduler on Windows).

use super::{emit, ui::Ui};
use crate::error::{Exit, Failure};
use crate::schedule::{self, At, Plan};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(clap::Subcommand, Debug)]
pub enum ScheduleCommand {
    /// Write and register the nightly job: backup, then drill (Linux: a systemd service + timer;
    /// Windows: a Task Scheduler task). Run it again to change it.
    Install(InstallArgs),
    /// Show the installed job (the unit files and the timer's state, or the task).
    Show(CommonArgs),
    /// Remove the job (the config, the repository and the sets are left as they are).
    Remove(CommonArgs),
    /// What the Windows task runs: backup, then (if it passed) drill of the new set, then the
    /// report if asked. Exits with the first failure's code, so the task's last result is it.
    Run(RunArgs),
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The instance (a [instance.NAME] of the config; optional when there is one).
    #[arg(long, short)]
    pub instance: Option<String>,
    /// After the backup, apply the retention policy (as `backup --forget`).
    #[arg(long)]
    pub forget: bool,
    /// Write the HTML report to FILE at the end, whatever happened (a warning if it cannot).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct CommonArgs {
    /// The instance (a [instance.NAME] of the config; optional when there is one).
    #[arg(long, short)]
    pub instance: Option<String>,
    /// Linux: the folder of the unit files (default /etc/systemd/system). Another folder is only
    /// written: nothing is registered with systemd.
    #[arg(long, value_name = "DIR")]
    pub unit_dir: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct InstallArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// When the job starts every day, local time (24-hour HH:MM).
    #[arg(long, default_value = "02:30")]
    pub at: At,
    /// The account the job runs as (default: Linux, the user running this command; Windows,
    /// SYSTEM). It must read the config and the secret files it names.
    #[arg(long)]
    pub user: Option<String>,
    /// Linux: an environment file (mode 0600) with the secrets the config reads from the
    /// environment; referenced by path, never copied.
    #[arg(long, value_name = "FILE")]
    pub environment_file: Option<PathBuf>,
    /// Also write the HTML report (`octobackup report`) to FILE after each night.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Apply the retention policy after each backup (`backup --forget`).
    #[arg(long)]
    pub forget: bool,
}

#[derive(serde::Serialize)]
struct Outcome {
    action: &'static str,
    name: String,
    /// Files written or removed (Linux).
    files: Vec<String>,
    /// Whether systemd / Task Scheduler was told.
    registered: bool,
    /// What is installed (show), or what to run by hand.
    text: String,
}

fn absolute(p: &Path) -> Result<PathBuf, Failure> {
    std::path::absolute(p).map_err(|e| {
        Failure::new(
            Exit::Usage,
            format!("cannot make {} an absolute path: {e}", p.display()),
        )
    })
}

pub async fn run(
    config_path: &Path,
    command: ScheduleCommand,
    json: bool,
    ui: &Ui,
) -> Result<(), Failure> {
    let common = match &command {
        ScheduleCommand::Install(a) => &a.common,
        ScheduleCommand::Show(a) | ScheduleCommand::Remove(a) => a,
        ScheduleCommand::Run(a) => return run_job(config_path, a, json, ui).await,
    };
    let config = super::context::load_config(config_path)?;
    let (name, _) = config.instance(config_path, common.instance.as_deref())?;
    let name = name.to_string();
    let outcome = match command {
        ScheduleCommand::Install(args) => {
            // The config's own path, absolute: the job does not start where this command did.
            let config_abs = absolute(config_path)?
                .canonicalize()
                .unwrap_or(absolute(config_path)?);
            let exe = std::env::current_exe().map_err(|e| {
                Failure::new(
                    Exit::Failed,
                    format!("cannot find octobackup's own path: {e}"),
                )
            })?;
            let mut writable = vec![config.state_dir(&config_abs)];
            writable.extend(config.instances.get(&name).map(|i| i.staging_local()));
            writable.extend(octobackup_repo::local_folder(&config.repository.location));
            let writable = writable
                .iter()
                .map(|p| absolute(p))
                .collect::<Result<Vec<_>, _>>()?;
            let plan = Plan {
                instance: name.clone(),
                exe,
                config: config_abs,
                at: args.at,
                user: match args.user {
                    Some(u) => u,
                    None => default_user()?,
                },
                environment_file: args.environment_file.map(|p| absolute(&p)).transpose()?,
                report: args.report.map(|p| absolute(&p)).transpose()?,
                forget: args.forget,
                writable,
            };
            install(&plan, args.common.unit_dir.as_deref())?
        }
        ScheduleCommand::Show(args) => show(&name, args.unit_dir.as_deref())?,
        ScheduleCommand::Remove(args) => remove(&name, args.unit_dir.as_deref())?,
        ScheduleCommand::Run(_) => unreachable!("handled above"),
    };
    emit(json, &outcome, || {
        let mut s = String::new();
        for f in &outcome.files {
            s.push_str(&format!("{} {f}\n", outcome.action));
        }
        s.push_str(&outcome.text);
        if !s.ends_with('\n') {
            s.push('\n');
        }
        s
    });
    Ok(())
}

/// The nightly job in one process: backup, drill if the backup passed, the report in any case.
async fn run_job(config_path: &Path, args: &RunArgs, json: bool, ui: &Ui) -> Result<(), Failure> {
    let backup = super::backup::Args {
        instance: args.instance.clone(),
        all: false,
        forget: args.forget,
        report: None,
    };
    let mut outcome = super::backup::run(config_path, backup, json, ui).await;
    if outcome.is_ok() {
        let drill = super::drill::Args {
            set: None,
            instance: args.instance.clone(),
            scratch: None,
            data_dir: None,
            copy: None,
        };
        outcome = super::drill::run(config_path, drill, json, ui).await;
    }
    if let Some(out) = &args.report {
        let written = async {
            let config = super::context::load_config(config_path).map_err(|e| e.to_string())?;
            let repo = super::repository::open(&config)
                .await
                .map_err(|f| f.message)?;
            let out = out.clone();
            crate::run::blocking::blocking("writing the report", move || {
                crate::report::write_report(&repo, &config, &out)
            })
            .await
            .map_err(|f| f.message)?
            .map_err(|f| f.message)
        }
        .await;
        if let Err(e) = written {
            ui.note(&format!(
                "warning: the night's outcome stands, but the report was not written: {e}"
            ));
        }
    }
    outcome
}

fn run_tool(program: &str, args: &[String]) -> Result<String, Failure> {
    let out = Command::new(program).args(args).output().map_err(|e| {
        Failure::new(
            Exit::Failed,
            format!("cannot run {program}: {e} (is it installed and on PATH?)"),
        )
    })?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(Failure::new(
            Exit::Failed,
            format!(
                "`{program} {}` failed ({}): {}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                text.trim()
            ),
        ));
    }
    Ok(text)
}

// ---------------------------------------------------------------------------------------------
// Linux (and any Unix with systemd)

#[cfg(not(windows))]
fn default_user() -> Result<String, Failure> {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| Failure::new(Exit::Usage, "cannot tell who is running this: give --user"))
}

/// systemd is the running init (sd_booted(3): this folder exists).
#[cfg(not(windows))]
fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

#[cfg(not(windows))]
fn unit_paths(name: &str, unit_dir: Option<&Path>) -> (PathBuf, PathBuf, PathBuf, bool) {
    let dir = unit_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(schedule::SYSTEM_UNIT_DIR));
    let job = schedule::job_name(name);
    let register = unit_dir.is_none() && systemd_running();
    (
        dir.join(format!("{job}.service")),
        dir.join(format!("{job}.timer")),
        dir,
        register,
    )
}

#[cfg(not(windows))]
fn install(plan: &Plan, unit_dir: Option<&Path>) -> Result<Outcome, Failure> {
    let (service_path, timer_path, dir, register) = unit_paths(&plan.instance, unit_dir);
    let job = schedule::job_name(&plan.instance);
    let (service, timer) = schedule::systemd_units(plan);
    std::fs::create_dir_all(&dir)
        .and_then(|_| std::fs::write(&service_path, service))
        .and_then(|_| std::fs::write(&timer_path, timer))
        .map_err(|e| {
            Failure::new(
                Exit::Failed,
                format!(
                    "cannot write the unit files to {}: {e} (run as root, or give --unit-dir)",
                    dir.display()
                ),
            )
        })?;
    let folders: Vec<String> = plan
        .writable
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let mut text = format!(
        "the job may write only to {} (the system is read-only to it): each must exist and be writable by {}\n",
        folders.join(", "),
        plan.user
    );
    text += &if register {
        run_tool("systemctl", &["daemon-reload".into()])?;
        run_tool(
            "systemctl",
            &["enable".into(), "--now".into(), format!("{job}.timer")],
        )?;
        format!(
            "registered: {job}.timer runs backup, then drill, of {} every day at {} as {}\n",
            plan.instance, plan.at, plan.user
        )
    } else {
        let why = if unit_dir.is_some() {
            "written to --unit-dir"
        } else {
            "systemd is not running here"
        };
        format!(
            "not registered ({why}): copy the files to {} if they are elsewhere, then run\n  \
systemctl daemon-reload && systemctl enable --now {job}.timer\n",
            schedule::SYSTEM_UNIT_DIR
        )
    };
    Ok(Outcome {
        action: "wrote",
        name: job,
        files: vec![
            service_path.display().to_string(),
            timer_path.display().to_string(),
        ],
        registered: register,
        text,
    })
}

#[cfg(not(windows))]
fn show(name: &str, unit_dir: Option<&Path>) -> Result<Outcome, Failure> {
    let (service_path, timer_path, _, register) = unit_paths(name, unit_dir);
    let job = schedule::job_name(name);
    let mut text = String::new();
    let mut files = Vec::new();
    for p in [&service_path, &timer_path] {
        if let Ok(body) = std::fs::read_to_string(p) {
            text.push_str(&format!("# {}\n{body}\n", p.display()));
            files.push(p.display().to_string());
        }
    }
    if files.is_empty() {
        return Err(Failure::new(
            Exit::Usage,
            format!(
                "no job is installed for instance '{name}' ({} not found): run `octobackup schedule install`",
                service_path.display()
            ),
        ));
    }
    if register {
        // The timer's next and last run, as systemd sees them.
        if let Ok(state) = run_tool(
            "systemctl",
            &[
                "list-timers".into(),
                "--all".into(),
                "--no-pager".into(),
                format!("{job}.timer"),
            ],
        ) {
            text.push_str(&state);
        }
    }
    Ok(Outcome {
        action: "installed",
        name: job,
        files,
        registered: register,
        text,
    })
}

#[cfg(not(windows))]
fn remove(name: &str, unit_dir: Option<&Path>) -> Result<Outcome, Failure> {
    let (service_path, timer_path, _, register) = unit_paths(name, unit_dir);
    let job = schedule::job_name(name);
    if !service_path.exists() && !timer_path.exists() {
        return Err(Failure::new(
            Exit::Usage,
            format!(
                "no job is installed for instance '{name}' ({} not found)",
                service_path.display()
            ),
        ));
    }
    if register {
        run_tool(
            "systemctl",
            &["disable".into(), "--now".into(), format!("{job}.timer")],
        )?;
    }
    let mut files = Vec::new();
    for p in [&timer_path, &service_path] {
        match std::fs::remove_file(p) {
            Ok(()) => files.push(p.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Failure::new(
                    Exit::Failed,
                    format!("cannot remove {}: {e}", p.display()),
                ));
            }
        }
    }
    if register {
        run_tool("systemctl", &["daemon-reload".into()])?;
    }
    Ok(Outcome {
        action: "removed",
        name: job,
        files,
        registered: register,
        text: String::new(),
    })
}

// ---------------------------------------------------------------------------------------------
// Windows

#[cfg(windows)]
fn default_user() -> Result<String, Failure> {
    Ok(schedule::WINDOWS_DEFAULT_USER.to_string())
}

#[cfg(windows)]
fn no_unit_dir(unit_dir: Option<&Path>) -> Result<(), Failure> {
    match unit_dir {
        Some(_) => Err(Failure::new(
            Exit::Usage,
            "--unit-dir is for systemd (Linux); on Windows the task goes to Task Scheduler",
        )),
        None => Ok(()),
    }
}

#[cfg(windows)]
fn install(plan: &Plan, unit_dir: Option<&Path>) -> Result<Outcome, Failure> {
    no_unit_dir(unit_dir)?;
    let args = schedule::schtasks_create(plan).map_err(|e| Failure::new(Exit::Usage, e))?;
    if plan.environment_file.is_some() {
        return Err(Failure::new(
            Exit::Usage,
            "--environment-file is for systemd: on Windows, give the config secret files (api_key_file, password_file)",
        ));
    }
    // For an account other than SYSTEM, schtasks asks for its password itself (inherited console):
    // it never passes through octobackup or a command line.
    let status = Command::new("schtasks.exe")
        .args(&args)
        .status()
        .map_err(|e| Failure::new(Exit::Failed, format!("cannot run schtasks.exe: {e}")))?;
    if !status.success() {
        return Err(Failure::new(
            Exit::Failed,
            format!(
                "schtasks /Create failed ({status}): run from an elevated prompt (Run as administrator)"
            ),
        ));
    }
    Ok(Outcome {
        action: "registered",
        name: schedule::job_name(&plan.instance),
        files: vec![],
        registered: true,
        text: format!(
            "task {} runs backup, then drill, of {} every day at {} as {} (highest privileges, whether or not anyone is logged on)\n",
            schedule::job_name(&plan.instance),
            plan.instance,
            plan.at,
            plan.user
        ),
    })
}

#[cfg(windows)]
fn show(name: &str, unit_dir: Option<&Path>) -> Result<Outcome, Failure> {
    no_unit_dir(unit_dir)?;
    let text = run_tool("schtasks.exe", &schedule::schtasks_query(name))?;
    Ok(Outcome {
        action: "installed",
        name: schedule::job_name(name),
        files: vec![],
        registered: true,
        text,
    })
}

#[cfg(windows)]
fn remove(name: &str, unit_dir: Option<&Path>) -> Result<Outcome, Failure> {
    no_unit_dir(unit_dir)?;
    run_tool("schtasks.exe", &schedule::schtasks_delete(name))?;
    Ok(Outcome {
        action: "removed",
        name: schedule::job_name(name),
        files: vec![],
        registered: true,
        text: format!("task {} removed\n", schedule::job_name(name)),
    })
}
