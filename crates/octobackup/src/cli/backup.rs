use super::{emit, repository, ui::Ui};
use crate::backupset::check::Check;
use crate::config::Config;
use crate::error::{Exit, Failure};
use crate::notify::{self, Event, History, Status};
use crate::run::backup::{self, BackupJob, BackupReport};
use crate::run::retention::ForgetReport;
use octobackup_repo::Repo;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The instance to back up (a [instance.NAME] of the config; optional when there is one).
    #[arg(long, short, conflicts_with = "all")]
    pub instance: Option<String>,
    /// Back up every [instance.NAME] of the config, one after another, with one summary. The
    /// exit code is the worst of theirs (see the README).
    #[arg(long)]
    pub all: bool,
    /// After a successful backup, apply the retention policy (`[retention]`) to the instance's sets.
    #[arg(long)]
    pub forget: bool,
    /// After the run (passed or failed), write the HTML report (`octobackup report`) to FILE. A
    /// report that cannot be written is a warning: it never changes the backup's outcome.
    #[arg(long, value_name = "FILE")]
    pub report: Option<std::path::PathBuf>,
}

/// What `backup --json` prints: the run, and what `--forget` did.
#[derive(serde::Serialize)]
struct Outcome<'a> {
    #[serde(flatten)]
    backup: &'a BackupReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    forget: Option<&'a ForgetReport>,
    /// `[[copy]]` with `after_backup`: what each copy did, or why it failed (exit 9).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    copies: &'a [crate::run::copy::CopyReport],
    #[serde(skip_serializing_if = "Option::is_none")]
    copy_error: Option<&'a str>,
}

/// One instance's run, as `--all` sums them up.
struct InstanceRun {
    name: String,
    result: Result<BackupReport, Failure>,
    forget: Option<ForgetReport>,
}

pub async fn run(config_path: &Path, args: Args, json: bool, ui: &Ui) -> Result<(), Failure> {
    let config = super::context::load_config(config_path)?;
    if args.all {
        return run_all(
            &config,
            config_path,
            args.forget,
            args.report.as_deref(),
            json,
            ui,
        )
        .await;
    }
    let (name, _) = config.instance(config_path, args.instance.as_deref())?;
    // `--report` needs the repository after the run: open it once for both.
    let repo = match &args.report {
        Some(_) => Some(repository::open(&config).await.map(Arc::new)),
        None => None,
    };
    let run = one(&config, config_path, name, args.forget, repo.as_ref(), ui).await;
    if let (Some(out), Some(Ok(repo))) = (&args.report, &repo) {
        write_report(repo, &config, out, ui).await;
    }
    let report = run.result?;
    let forget = run.forget;
    // After the window, with the set complete: whatever the copy does, the backup stands.
    let copied = super::copy::after_backup(&config, config_path, Some(name), args.forget, ui).await;
    emit(
        json,
        &Outcome {
            backup: &report,
            forget: forget.as_ref(),
            copies: copied.as_deref().unwrap_or_default(),
            copy_error: copied.as_ref().err().map(|f| f.message.as_str()),
        },
        || {
            let mut s = human(&report);
            for c in copied.as_deref().unwrap_or_default() {
                s.push_str(&crate::run::copy::human(c));
            }
            if let Some(f) = &forget {
                s.push_str(&format!(
                    "forget ({}): kept {} set(s), dropped {}\n",
                    f.policy,
                    f.kept.len(),
                    f.dropped.len()
                ));
            }
            s
        },
    );
    copied.map_err(|f| if json { f.result_printed() } else { f })?;
    Ok(())
}

/// `--report FILE`: a warning when it cannot be written, never a failure of the backup.
async fn write_report(repo: &Arc<octobackup_repo::Repo>, config: &Config, out: &Path, ui: &Ui) {
    let (repo, config, out) = (repo.clone(), config.clone(), out.to_path_buf());
    let written = crate::run::blocking::blocking("writing the report", move || {
        crate::report::write_report(&repo, &config, &out)
    })
    .await
    .map_err(|f| f.message)
    .and_then(|r| r.map_err(|f| f.message));
    if let Err(e) = written {
        ui.note(&format!(
            "warning: the backup's outcome stands, but the report was not written: {e}"
        ));
    }
}

/// Backs up one instance, then tells `[notify]` and `[metrics]` how it went. A notification or a
/// metrics file that fails is a warning: the result is the backup's.
async fn one(
    config: &Config,
    config_path: &Path,
    name: &str,
    forget: bool,
    repo: Option<&Result<Arc<Repo>, Failure>>,
    ui: &Ui,
) -> InstanceRun {
    let started = chrono::Utc::now();
    let alarm_sent = Arc::new(AtomicBool::new(false));
    let mut resolved = None;
    let (result, forget) = attempt(
        config,
        config_path,
        name,
        forget,
        repo,
        ui,
        &alarm_sent,
        &mut resolved,
    )
    .await;
    if config.notify.is_some() || config.metrics.is_some() {
        let repo_folder = repo
            .and_then(|r| r.as_ref().ok())
            .and_then(|r| r.storage().local_folder())
            .or_else(|| Some(config.repository.location.clone().into()))
            .filter(|p: &std::path::PathBuf| p.is_dir());
        after_run(
            config,
            config_path,
            name,
            started,
            &result,
            resolved.as_ref(),
            repo_folder.as_deref(),
            alarm_sent.load(Ordering::SeqCst),
        )
        .await;
    }
    InstanceRun {
        name: name.to_string(),
        result,
        forget,
    }
}

#[allow(clippy::too_many_arguments)]
async fn attempt(
    config: &Config,
    config_path: &Path,
    name: &str,
    forget: bool,
    repo: Option<&Result<Arc<Repo>, Failure>>,
    ui: &Ui,
    alarm_sent: &Arc<AtomicBool>,
    resolved: &mut Option<crate::config::InstanceConfig>,
) -> (Result<BackupReport, Failure>, Option<ForgetReport>) {
    let (name, instance) = match config.instance(config_path, Some(name)) {
        Ok(x) => x,
        Err(e) => return (Err(e.into()), None),
    };
    // What the config leaves out comes from the instance itself ([instance.NAME.discover]).
    let instance = match crate::octopus::discovery::resolve(name, instance).await {
        Ok(i) => i,
        Err(e) => return (Err(e), None),
    };
    *resolved = Some(instance.clone());
    // A missing policy is a config error: say so before maintenance mode is touched.
    if forget && let Err(e) = crate::run::retention::policy_for(config, name) {
        return (Err(e), None);
    }
    let repo = match repo {
        Some(Ok(r)) => r.clone(),
        Some(Err(e)) => {
            return (
                Err(Failure::new(super::exit::code(e), e.message.clone())),
                None,
            );
        }
        // Opened while the run checks the servers and lists the folders; the run waits for it
        // before the pass over the folders, before maintenance mode is touched.
        None => match repository::open_deferred(config) {
            Ok(r) => Arc::new(r),
            Err(e) => return (Err(e), None),
        },
    };
    let mut job = BackupJob::new(
        config,
        config_path,
        name,
        instance,
        repo.clone(),
        ui.clone().into(),
    );
    if let Some(n) = &config.notify {
        job.alarm = Some(alarm(n.clone(), name.to_string(), alarm_sent.clone()));
    }
    let stop = job.stop.clone();
    let report = backup::run(job).await;
    ui.clear_status();
    let report = match report {
        Ok(r) => r,
        Err(mut f) => {
            // The storage did not answer within the retry budget: say what became of the run's
            // staging copy, unless the run said it (a set kept for the next run, run/backup/kept.rs).
            if repo.storage_gone().is_some() && !f.message.contains("staging") {
                f.message.push_str(
                    "; nothing was kept on the staging share, the next run takes a new database backup",
                );
            }
            return (Err(f), None);
        }
    };
    // A stop heard while the set was sealed: the set stands, retention waits for the next run.
    let forgot = if let (true, Some(sig)) = (forget, stop.requested()) {
        ui.note(&format!(
            "--forget skipped: {sig} asked octobackup to stop (the set is complete)"
        ));
        None
    } else if forget {
        let state = crate::run::journal::StateDir::new(&config.state_dir(config_path));
        let (config, name) = (config.clone(), name.to_string());
        let applied = crate::run::blocking::blocking("--forget", move || {
            crate::run::retention::apply_after_backup(&repo, &config, &name, &state)
        })
        .await;
        match applied {
            Ok(Ok(r)) => Some(r),
            // The set is complete whatever retention does: report, do not fail the backup.
            Ok(Err(e)) => {
                ui.note(&format!(
                    "warning: the backup is complete, but --forget failed: {}",
                    e.message
                ));
                None
            }
            Err(e) => {
                ui.note(&format!(
                    "warning: the backup is complete, but --forget failed: {}",
                    e.message
                ));
                None
            }
        }
    } else {
        None
    };
    (Ok(report), forgot)
}

/// Exit 7 is sent the moment the run knows it, whatever `on` says, before the run cleans up.
fn alarm(config: notify::NotifyConfig, name: String, sent: Arc<AtomicBool>) -> notify::Alarm {
    let started = chrono::Utc::now();
    Arc::new(move |message: String| {
        let (config, name, sent) = (config.clone(), name.clone(), sent.clone());
        Box::pin(async move {
            let failure = Failure::new(Exit::MaintenanceStuck, message);
            let event = event(&name, started, &Err(&failure), &[]);
            notify::send(&config, &event, None).await;
            sent.store(true, Ordering::SeqCst);
        })
    })
}

fn event(
    name: &str,
    started: chrono::DateTime<chrono::Utc>,
    result: &Result<&BackupReport, &Failure>,
    nodes: &[crate::octopus::client::NodeInfo],
) -> Event {
    let exit = result.as_ref().err().map(|f| super::exit::code(f));
    let report = result.as_ref().ok();
    Event {
        event: "backup",
        copy: None,
        instance: name.to_string(),
        status: Status::of(exit),
        exit_code: exit.map(|e| e as u8).unwrap_or(0),
        recovery: false,
        set_id: report.map(|r| r.set_id.clone()),
        snapshot_id: report.map(|r| r.snapshot_id.clone()),
        host: crate::run::backup::hostname(),
        nodes: nodes.iter().map(|n| n.name.clone()).collect(),
        drained_nodes: nodes
            .iter()
            .filter(|n| n.is_in_maintenance_mode)
            .map(|n| n.name.clone())
            .collect(),
        started,
        finished: chrono::Utc::now(),
        window_seconds: report.map(|r| r.window_seconds),
        database_bytes: report.map(|r| r.database_bytes),
        folder_bytes: report.map(|r| r.folders.iter().map(|f| f.bytes).sum()),
        new_bytes: report.map(|r| r.data_added),
        steps: report
            .map(|r| {
                r.steps
                    .iter()
                    .map(|s| Check {
                        started: None,
                        detail: None,
                        ..s.clone()
                    })
                    .collect()
            })
            .unwrap_or_default(),
        drill: None,
        failure: result.as_ref().err().map(|f| f.message.clone()),
        fix: exit.map(|e| notify::fix_for(e).to_string()),
    }
}

#[allow(clippy::too_many_arguments)]
async fn after_run(
    config: &Config,
    config_path: &Path,
    name: &str,
    started: chrono::DateTime<chrono::Utc>,
    result: &Result<BackupReport, Failure>,
    instance: Option<&crate::config::InstanceConfig>,
    repo_folder: Option<&Path>,
    alarm_sent: bool,
) {
    // The cluster's nodes and which are drained, for an HA cluster's reader: one read, best
    // effort, bounded so an unreachable server does not hold the notification back.
    let wanted = instance.filter(|_| config.notify.is_some());
    let nodes = match wanted.map(crate::run::connect::octopus_client) {
        Some(Ok(client)) => {
            tokio::time::timeout(std::time::Duration::from_secs(10), client.nodes())
                .await
                .ok()
                .and_then(|r| r.ok())
                .unwrap_or_default()
        }
        _ => vec![],
    };
    let mut event = event(name, started, &result.as_ref(), &nodes);
    if nodes.len() < 2 {
        // One node: nothing for a reader to tell apart.
        event.nodes.clear();
    }
    let state_dir = config.state_dir(config_path);
    let history = History::new(&state_dir);
    let before = history.load(name);
    let previous = before.last_run.as_ref().map(|r| r.status);
    event.recovery =
        event.status == Status::Success && previous.is_some_and(|p| p != Status::Success);
    event.drill = before.last_drill.clone();
    if let Some(n) = &config.notify
        && !alarm_sent
    {
        notify::send(n, &event, previous).await;
    }
    let folders = result
        .as_ref()
        .map(|r| {
            r.folders
                .iter()
                .map(|f| (f.name.clone(), f.bytes))
                .collect()
        })
        .unwrap_or_default();
    let repo_bytes = match repo_folder.map(|p| p.to_path_buf()) {
        Some(p) => crate::run::blocking::blocking("measuring the repository", move || {
            crate::metrics::local_repository_bytes(&p)
        })
        .await
        .unwrap_or_else(|f| {
            tracing::warn!(
                "the repository's size is left out of the metrics: {}",
                f.message
            );
            None
        }),
        None => None,
    };
    if let Err(e) = history.record_backup(&event, folders, repo_bytes) {
        tracing::warn!(
            "the run history in {} could not be written: {e} (the backup's result is unchanged)",
            state_dir.display()
        );
    }
    if let Some(m) = &config.metrics {
        crate::metrics::publish(m, &state_dir, name).await;
    }
}

/// Which of several exit codes `backup --all` ends with: the one that needs action soonest.
/// 7 (maintenance mode left changed) above all; then 130 (interrupted: the instances after it
/// were not backed up); then the first other failure in config order (1, 2, 3, 4, 5, 8; 9, the
/// copy after the last instance, comes last); then 6 (another run held an instance's lock: that
/// run reports for itself); then 0.
pub fn worst(codes: &[u8]) -> u8 {
    let rank = |c: u8| match c {
        0 => 0,
        6 => 1,
        130 => 3,
        7 => 4,
        _ => 2,
    };
    let mut best = 0u8;
    for &c in codes {
        if rank(c) > rank(best) {
            best = c;
        }
    }
    best
}

#[derive(serde::Serialize)]
struct AllSummary<'a> {
    ok: bool,
    exit_code: u8,
    instances: Vec<AllEntry<'a>>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    copies: &'a [crate::run::copy::CopyReport],
    #[serde(skip_serializing_if = "Option::is_none")]
    copy_error: Option<&'a str>,
}

#[derive(serde::Serialize)]
struct AllEntry<'a> {
    instance: &'a str,
    ok: bool,
    exit_code: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    backup: Option<&'a BackupReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    forget: Option<&'a ForgetReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    /// Not run: an interrupt stopped `--all` before it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    skipped: bool,
}

async fn run_all(
    config: &Config,
    config_path: &Path,
    forget: bool,
    report: Option<&Path>,
    json: bool,
    ui: &Ui,
) -> Result<(), Failure> {
    let names: Vec<String> = config.instances.keys().cloned().collect();
    if names.is_empty() {
        // The same error as without --all.
        config.instance(config_path, None)?;
    }
    // One repository for all: opened (and its key derived) once.
    let repo = repository::open(config).await.map(Arc::new);
    let mut runs: Vec<InstanceRun> = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    // A stop heard at any time (an instance's seal, --forget, the notifications, between two
    // instances) ends --all: each run listens for itself, and a run that has ended does not.
    let stop = crate::run::stop::Stop::listen();
    for name in &names {
        let interrupted = runs.last().is_some_and(
            |r| matches!(&r.result, Err(f) if super::exit::code(f) == Exit::Interrupted),
        );
        if interrupted || stop.requested().is_some() {
            skipped.push(name.clone());
            continue;
        }
        ui.note(&format!("== backup of {name}"));
        runs.push(one(config, config_path, name, forget, Some(&repo), ui).await);
    }
    if let (Some(out), Ok(repo)) = (report, &repo) {
        write_report(repo, config, out, ui).await;
    }
    // [[copy]] after_backup: once, after the last instance, when one was backed up.
    let (copies, copy_failed) = if skipped.is_empty() && runs.iter().any(|r| r.result.is_ok()) {
        match super::copy::after_backup(config, config_path, None, forget, ui).await {
            Ok(copies) => (copies, None),
            Err(f) => (Vec::new(), Some(f)),
        }
    } else {
        (Vec::new(), None)
    };
    let code = |r: &InstanceRun| {
        r.result
            .as_ref()
            .err()
            .map(|f| super::exit::code(f) as u8)
            .unwrap_or(0)
    };
    let mut codes: Vec<u8> = runs.iter().map(code).collect();
    if !skipped.is_empty() {
        // Instances left out by a stop: the run as a whole was interrupted.
        codes.push(Exit::Interrupted as u8);
    }
    if let Some(f) = &copy_failed {
        codes.push(super::exit::code(f) as u8);
    }
    let exit = worst(&codes);
    let mut entries: Vec<AllEntry> = runs
        .iter()
        .map(|r| AllEntry {
            instance: &r.name,
            ok: r.result.is_ok(),
            exit_code: code(r),
            backup: r.result.as_ref().ok(),
            forget: r.forget.as_ref(),
            error: r.result.as_ref().err().map(|f| f.message.as_str()),
            skipped: false,
        })
        .collect();
    for s in &skipped {
        entries.push(AllEntry {
            instance: s,
            ok: false,
            exit_code: Exit::Interrupted as u8,
            backup: None,
            forget: None,
            error: Some("not run: octobackup was asked to stop before it"),
            skipped: true,
        });
    }
    let copy_error = copy_failed.as_ref().map(|f| f.message.clone());
    let summary = AllSummary {
        ok: exit == 0,
        exit_code: exit,
        instances: entries,
        copies: &copies,
        copy_error: copy_error.as_deref(),
    };
    emit(json, &summary, || {
        let mut s = String::new();
        for r in &runs {
            match &r.result {
                Ok(report) => s.push_str(&human(report)),
                Err(f) => s.push_str(&format!("backup of {} failed: {}\n", r.name, f.message)),
            }
        }
        s.push_str(&format!(
            "\n{:<24} {:<6} {:>4}  {:<18} {:>10} {:>10}\n",
            "instance", "result", "exit", "set", "window", "new data"
        ));
        for e in &summary.instances {
            let (set, window, new) = match e.backup {
                Some(b) => (
                    b.set_id.clone(),
                    format!("{:.1}s", b.window_seconds),
                    bytes(b.data_added),
                ),
                None => ("-".into(), "-".into(), "-".into()),
            };
            s.push_str(&format!(
                "{:<24} {:<6} {:>4}  {:<18} {:>10} {:>10}\n",
                e.instance,
                if e.ok {
                    "ok"
                } else if e.skipped {
                    "not run"
                } else {
                    "FAILED"
                },
                e.exit_code,
                set,
                window,
                new
            ));
        }
        s
    });
    if exit == 0 {
        return Ok(());
    }
    if let (9, Some(f)) = (exit, copy_failed) {
        return Err(if json { f.result_printed() } else { f });
    }
    let failed: Vec<&str> = summary
        .instances
        .iter()
        .filter(|e| !e.ok)
        .map(|e| e.instance)
        .collect();
    let exit = match exit {
        1 => Exit::Failed,
        2 => Exit::Usage,
        3 => Exit::Octopus,
        4 => Exit::Sql,
        5 => Exit::Repository,
        6 => Exit::Busy,
        7 => Exit::MaintenanceStuck,
        8 => Exit::CheckFailed,
        9 => Exit::CopyFailed,
        _ => Exit::Interrupted,
    };
    let f = Failure::new(
        exit,
        format!(
            "{} of {} instance(s) not backed up: {} (each one's error is above)",
            failed.len(),
            names.len(),
            failed.join(", ")
        ),
    );
    Err(if json { f.result_printed() } else { f })
}

pub fn human(r: &BackupReport) -> String {
    let mut s = String::new();
    if let Some(rec) = &r.recovered {
        s.push_str(&format!("recovered: {rec}\n"));
    }
    s.push_str(&format!(
        "backup set {} of {} (snapshot {})\n",
        r.set_id,
        r.instance,
        &r.snapshot_id[..8.min(r.snapshot_id.len())]
    ));
    for step in &r.steps {
        s.push_str(&format!(
            "  {} {:<38} {:>8.2}s{}\n",
            if step.ok() { "ok  " } else { "FAIL" },
            step.name,
            step.seconds.unwrap_or_default(),
            step.detail
                .as_ref()
                .map(|d| format!("  {d}"))
                .unwrap_or_default()
        ));
    }
    s.push_str(&format!(
        "  maintenance window {:.2}s; database {}; ",
        r.window_seconds,
        bytes(r.database_bytes)
    ));
    let files: u64 = r.folders.iter().map(|f| f.files).sum();
    let fbytes: u64 = r.folders.iter().map(|f| f.bytes).sum();
    s.push_str(&format!(
        "folders {files} files, {}; new data {}\n",
        bytes(fbytes),
        bytes(r.data_added)
    ));
    s
}

pub use crate::format::bytes;

#[cfg(test)]
mod tests {
    use super::worst;

    #[test]
    fn the_worst_exit_code_is_the_one_to_act_on_first() {
        assert_eq!(worst(&[]), 0);
        assert_eq!(worst(&[0, 0]), 0);
        assert_eq!(worst(&[0, 6, 0]), 6);
        assert_eq!(worst(&[6, 4, 3]), 4, "the first failure in config order");
        assert_eq!(worst(&[4, 130]), 130);
        assert_eq!(worst(&[130, 7, 1]), 7);
        assert_eq!(worst(&[2, 6]), 2);
    }
}
