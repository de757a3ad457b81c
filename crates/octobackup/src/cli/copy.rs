//! `octobackup copy --to NAME`: wiring for `run::copy`, and the copy `backup` makes after a
//! successful run for each `[[copy]]` with `after_backup`.

use super::{emit, repository, ui::Ui};
use crate::config::Config;
use crate::error::{Exit, Failure};
use crate::notify;
use crate::run::copy::{self, CopyJob, CopyReport};
use crate::run::journal::StateDir;
use crate::run::retention::{self, ForgetReport};
use crate::run::stop::Stop;
use std::path::Path;
use std::sync::Arc;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The `[[copy]]` to copy to, by its name.
    #[arg(long, value_name = "NAME")]
    pub to: String,
    /// Only this instance's sets (default: every instance's in the repository).
    #[arg(long, short)]
    pub instance: Option<String>,
}

pub async fn run(config_path: &Path, args: Args, json: bool, ui: &Ui) -> Result<(), Failure> {
    let config = super::context::load_config(config_path)?;
    if let Some(i) = &args.instance {
        config.instance(config_path, Some(i))?;
    }
    // A name not in the config is a typo, not a copy that failed: nothing to tell.
    repository::copy_entry(&config, &args.to)?;
    let started = chrono::Utc::now();
    let done = copy_to(&config, &args.to, args.instance.clone(), ui)
        .await
        .map(|(report, _)| report);
    ui.clear_status();
    let instance = args.instance.as_deref();
    tell(
        &config,
        config_path,
        instance,
        &args.to,
        Run::ByHand,
        started,
        &done,
    )
    .await;
    let report = done?;
    emit(json, &report, || copy::human(&report));
    Ok(())
}

/// What a copy ran as: its failure is told in those words.
#[derive(Clone, Copy, PartialEq)]
enum Run {
    /// `copy --to NAME`: the exit code is the run's own.
    ByHand,
    /// After a backup that is complete: a failed copy is exit 9.
    AfterBackup,
}

/// Opens the main repository and the copy, then copies.
async fn copy_to(
    config: &Config,
    name: &str,
    instance: Option<String>,
    ui: &Ui,
) -> Result<(CopyReport, Arc<octobackup_repo::Repo>), Failure> {
    repository::copy_entry(config, name)?;
    // The copy first: its password and place are what is new and most often wrong.
    let target = Arc::new(repository::open_copy(config, name).await?);
    let source = Arc::new(repository::open(config).await?);
    // Heard from here on, between sets and during one (nothing was written before).
    let stop = Stop::listen();
    let report = copy::run(CopyJob {
        source,
        target: target.clone(),
        name: name.to_string(),
        instance,
        ui: ui.clone().into(),
        stop,
    })
    .await?;
    Ok((report, target))
}

/// After a successful backup of `instance` (`None`: `backup --all`, every instance): its
/// complete sets go to each `[[copy]]` with `after_backup` (the new one, and any an earlier
/// failed copy left behind). Runs after the maintenance window and never touches the main
/// repository's sets; a copy that fails is exit 9, naming the copy, the backup's set complete.
/// Every copy is tried, also after one fails. Each copy's result is told to `[notify]` and
/// `[metrics]` as a backup's is (the same `on` rules).
pub async fn after_backup(
    config: &Config,
    config_path: &Path,
    instance: Option<&str>,
    forget: bool,
    ui: &Ui,
) -> Result<Vec<CopyReport>, Failure> {
    let mut reports = Vec::new();
    let mut failed = Vec::new();
    let mut targets = Vec::new();
    for c in config.copies.iter().filter(|c| c.after_backup) {
        ui.note(&format!("copying to '{}' ({})", c.name, c.location));
        let started = chrono::Utc::now();
        let done = copy_to(config, &c.name, instance.map(str::to_string), ui).await;
        ui.clear_status();
        let done = done.map_err(|f| {
            let told = if super::exit::code(&f) == Exit::Interrupted {
                f.message
            } else {
                format!(
                    "the copy to '{}' failed: {}; once fixed, `octobackup copy --to {}` catches up",
                    c.name, f.message, c.name
                )
            };
            Failure { message: told, ..f }
        });
        let done = done.map(|(report, target)| {
            targets.push((c, target));
            report
        });
        tell(
            config,
            config_path,
            instance,
            &c.name,
            Run::AfterBackup,
            started,
            &done,
        )
        .await;
        match done {
            Ok(r) => reports.push(r),
            Err(f) if super::exit::code(&f) == Exit::Interrupted => {
                return Err(Failure {
                    message: format!("{COMPLETE_BUT}{}", f.message),
                    ..f
                });
            }
            Err(f) => failed.push(f.message),
        }
    }
    if forget {
        for (report, (c, target)) in reports.iter_mut().zip(targets) {
            report.forget = forget_in_copy(config, config_path, c, target, instance, ui).await;
        }
    }
    if failed.is_empty() {
        return Ok(reports);
    }
    Err(Failure::new(
        Exit::CopyFailed,
        format!("{COMPLETE_BUT}{}", failed.join("; and ")),
    ))
}

/// `backup --forget` in a copy with its own `[copy.retention]`, for the instance backed up (every
/// instance after `--all`). As on the main repository, a forget that fails is a warning: the
/// backup and its copy stand.
async fn forget_in_copy(
    config: &Config,
    config_path: &Path,
    copy: &crate::config::copy::CopyConfig,
    target: Arc<octobackup_repo::Repo>,
    instance: Option<&str>,
    ui: &Ui,
) -> Vec<ForgetReport> {
    if copy.retention.is_none() {
        return Vec::new();
    }
    let instances: Vec<String> = match instance {
        Some(i) => vec![i.to_string()],
        None => config.instances.keys().cloned().collect(),
    };
    let mut out = Vec::new();
    for i in instances {
        let state = StateDir::new(&config.state_dir(config_path));
        let (target, copy_cfg, name) = (target.clone(), copy.clone(), i.clone());
        let applied = crate::run::blocking::blocking("--forget on the copy", move || {
            retention::apply_to_copy(&target, &copy_cfg, &name, &state)
        })
        .await
        .and_then(|r| r);
        match applied {
            Ok(Some(r)) => out.push(r),
            Ok(None) => {}
            Err(e) => ui.note(&format!(
                "warning: the backup and its copy to '{}' are complete, but --forget there failed for {i}: {}",
                copy.name, e.message
            )),
        }
    }
    out
}

const COMPLETE_BUT: &str = "the backup is complete (its set is in the main repository), but ";

/// One copy's result to `[notify]` (event "copy"; after a backup, exit 9 when it failed) and
/// to the run history `[metrics]` shows. As for a backup, a target that cannot be told is a
/// warning only.
async fn tell(
    config: &Config,
    config_path: &Path,
    instance: Option<&str>,
    copy: &str,
    run: Run,
    started: chrono::DateTime<chrono::Utc>,
    done: &Result<CopyReport, Failure>,
) {
    if config.notify.is_none() && config.metrics.is_none() {
        return;
    }
    let exit = done.as_ref().err().map(|f| match super::exit::code(f) {
        e if run == Run::ByHand => e,
        Exit::Interrupted => Exit::Interrupted,
        _ => Exit::CopyFailed,
    });
    let instances: Vec<String> = match instance {
        Some(i) => vec![i.to_string()],
        None => config.instances.keys().cloned().collect(),
    };
    let report = done.as_ref().ok();
    let event = notify::Event {
        event: "copy",
        copy: Some(copy.to_string()),
        instance: instance.unwrap_or("every instance").to_string(),
        status: notify::Status::of(exit),
        exit_code: exit.map(|e| e as u8).unwrap_or(0),
        recovery: false,
        set_id: report.and_then(|r| r.sets.last()).map(|s| s.set_id.clone()),
        snapshot_id: report
            .and_then(|r| r.sets.last())
            .map(|s| s.target_snapshot.clone()),
        host: crate::run::backup::hostname(),
        nodes: vec![],
        drained_nodes: vec![],
        started,
        finished: chrono::Utc::now(),
        window_seconds: None,
        database_bytes: None,
        folder_bytes: None,
        new_bytes: report.map(|r| r.bytes_sent),
        steps: vec![],
        drill: None,
        failure: done.as_ref().err().map(|f| match run {
            Run::ByHand => format!("the copy to '{copy}' failed: {}", f.message),
            Run::AfterBackup => format!("{COMPLETE_BUT}{}", f.message),
        }),
        fix: exit.map(|e| match run {
            Run::ByHand => format!(
                "Fix what the failure names, then run `octobackup copy --to {copy}` again: the sets already copied stay."
            ),
            Run::AfterBackup => notify::fix_for(e).replace("NAME", copy),
        }),
    };
    let state_dir = config.state_dir(config_path);
    let history = notify::History::new(&state_dir);
    // The copy's previous result (any instance's, for --all) decides `on = "recovery"`.
    let mut previous = None;
    for i in &instances {
        match history.record_copy(i, &event) {
            Ok(before) => {
                if let Some(r) = before.last_run
                    && previous != Some(notify::Status::Failed)
                {
                    previous = Some(r.status);
                }
            }
            Err(e) => tracing::warn!(
                "the run history in {} could not be written: {e} (the copy's result is unchanged)",
                state_dir.display()
            ),
        }
    }
    let mut event = event;
    event.recovery = event.status == notify::Status::Success
        && previous.is_some_and(|p| p != notify::Status::Success);
    if let Some(n) = &config.notify {
        notify::send(n, &event, previous).await;
    }
    if let Some(m) = &config.metrics {
        for i in &instances {
            crate::metrics::publish(m, &state_dir, i).await;
        }
    }
}
