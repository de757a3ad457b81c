use super::{emit, repository, ui::Ui};
use crate::config::Config;
use crate::error::Failure;
use crate::run::backup::{self, BackupJob, BackupReport};
use std::path::Path;
use std::sync::Arc;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The instance to back up (a [instance.NAME] of the config; optional when there is one).
    #[arg(long, short)]
    pub instance: Option<String>,
    /// After a successful backup, apply the retention policy (`[retention]`) to the instance's sets.
    #[arg(long)]
    pub forget: bool,
}

/// What `backup --json` prints: the run, and what `--forget` did.
#[derive(serde::Serialize)]
struct Outcome<'a> {
    #[serde(flatten)]
    backup: &'a BackupReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    forget: Option<&'a crate::run::retention::ForgetReport>,
}

pub async fn run(config_path: &Path, args: Args, json: bool, ui: &Ui) -> Result<(), Failure> {
    let config = Config::load(config_path)?;
    let (name, instance) = config.instance(config_path, args.instance.as_deref())?;
    // What the config leaves out comes from the instance itself ([instance.NAME.discover]).
    let instance = crate::octopus::discovery::resolve(name, instance).await?;
    // A missing policy is a config error: say so before maintenance mode is touched.
    if args.forget {
        crate::run::retention::policy_for(&config, name)?;
    }
    let repo = Arc::new(repository::open(&config).await?);
    let job = BackupJob::new(
        &config,
        config_path,
        name,
        instance,
        repo.clone(),
        ui.clone(),
    );
    let stop = job.stop.clone();
    let report = backup::run(job).await;
    ui.clear_status();
    let report = report.map_err(|mut f| {
        // The storage did not answer within the retry budget: say what became of the run's
        // staging copy (a failed run removes its staging folder).
        if repo.storage_gone().is_some() {
            f.message.push_str(
                "; nothing was kept on the staging share, the next run takes a new database backup",
            );
        }
        f
    })?;
    // A stop heard while the set was sealed: the set stands, retention waits for the next run.
    let forget = if let (true, Some(sig)) = (args.forget, stop.requested()) {
        ui.note(&format!(
            "--forget skipped: {sig} asked octobackup to stop (the set is complete)"
        ));
        None
    } else if args.forget {
        let state = crate::run::journal::StateDir::new(&config.state_dir(config_path));
        let (config, name) = (config.clone(), name.to_string());
        let applied = tokio::task::spawn_blocking(move || {
            crate::run::retention::apply_after_backup(&repo, &config, &name, &state)
        })
        .await
        .map_err(|e| Failure::new(crate::error::Exit::Failed, e.to_string()))?;
        match applied {
            Ok(r) => Some(r),
            // The set is complete whatever retention does: report, do not fail the backup.
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
    emit(
        json,
        &Outcome {
            backup: &report,
            forget: forget.as_ref(),
        },
        || {
            let mut s = human(&report);
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
    Ok(())
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
            if step.ok { "ok  " } else { "FAIL" },
            step.name,
            step.seconds,
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

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
