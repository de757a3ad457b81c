//! `octobackup drill`: wiring for `run::drill`.

use super::{context::Invocation, ui::Ui};
use crate::error::Failure;
use crate::run::drill::{self, DrillJob, DrillReport};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The set: its id (or its start), a snapshot id's start, or "latest" (default).
    pub set: Option<String>,
    /// The instance whose set to drill (optional when the config has one).
    #[arg(long, short)]
    pub instance: Option<String>,
    /// Put the scratch folders under DIR (default: the staging share).
    #[arg(long, value_name = "DIR")]
    pub scratch: Option<PathBuf>,
    /// Folder for the scratch database's files, as SQL Server sees it (default: beside the originals).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<String>,
    /// Drill the set from the `[[copy]]` named NAME (the second repository) instead of the main one.
    #[arg(long, value_name = "NAME")]
    pub copy: Option<String>,
}

pub async fn run(config_path: &Path, args: Args, json: bool, ui: &Ui) -> Result<(), Failure> {
    // Heard from here on: a stop is answered with what is true, never by the default kill.
    let stop = crate::run::stop::Stop::listen();
    let inv = Invocation::load(config_path)?;
    let (name, instance) = &inv.instance(args.instance.as_deref()).await?;
    let repo = match &args.copy {
        Some(copy) => std::sync::Arc::new(super::repository::open_copy(&inv.config, copy).await?),
        None => inv.repo().await?,
    };
    let job = DrillJob {
        instance_name: name.to_string(),
        instance: instance.clone(),
        repo: repo.clone(),
        set: args.set,
        scratch: args.scratch,
        data_dir: args.data_dir,
        state: inv.state(),
        ui: ui.clone().into(),
        stop,
    };
    let report = drill::run(job).await;
    ui.clear_status();
    let report = report?;
    // Kept in the repository for the report (report::drills); the drill's outcome stands either way.
    let record = crate::report::drills::Record::of(&report);
    let recorded = crate::run::blocking::blocking("keeping the drill's result", move || {
        record.store(&repo).map_err(|e| e.to_string())
    })
    .await
    .map_err(|f| f.message);
    if let Err(e) | Ok(Err(e)) = recorded {
        ui.note(&format!(
            "warning: the drill's result could not be kept in the repository (the report will not show it): {e}"
        ));
    }
    after_drill(&inv.config, config_path, name, &report.set_id, report.ok).await;
    // The repository's advice for lost data says `forget --set SET`: name the set.
    let named = |f: Failure| Failure {
        message: f.message.replace(
            super::restore::SET_PLACEHOLDER,
            &format!("--set {}", report.set_id),
        ),
        ..f
    };
    if json {
        let mut value = serde_json::to_value(&report).expect("report serializes");
        if let Some(f) = report.failure() {
            // One JSON document on stdout, the report, carrying the error as every failure does.
            let exit = super::exit::code(&f);
            value["kind"] = serde_json::json!(exit.name());
            value["exit_code"] = serde_json::json!(exit as u8);
            println!("{}", serde_json::to_string_pretty(&value).expect("json"));
            return Err(named(f).result_printed());
        }
        println!("{}", serde_json::to_string_pretty(&value).expect("json"));
        return Ok(());
    }
    print!("{}", human(&report));
    match report.failure() {
        Some(f) => Err(named(f)),
        None => Ok(()),
    }
}

pub fn human(r: &DrillReport) -> String {
    let mut s = format!(
        "drill of set {} of {} (snapshot {}): {}\n",
        r.set_id,
        r.instance,
        &r.snapshot_id[..8.min(r.snapshot_id.len())],
        if r.ok { "PASSED" } else { "FAILED" }
    );
    for c in &r.checks {
        s.push_str(&format!(
            "  {:<5} {:<40} {:>8.2}s{}\n",
            c.status.word(),
            c.name,
            c.seconds.unwrap_or_default(),
            c.detail
                .as_ref()
                .map(|d| format!("  {d}"))
                .unwrap_or_default()
        ));
    }
    s.push_str(&format!(
        "  scratch database [{}], scratch folder {}\n",
        r.scratch_database, r.scratch_folder
    ));
    s
}

/// After `octobackup drill`: keeps its result for the next backup's notification and for the
/// metrics (`octobackup_drill_success`), when `[notify]` or `[metrics]` is configured.
async fn after_drill(
    config: &crate::config::Config,
    config_path: &std::path::Path,
    instance: &str,
    set_id: &str,
    ok: bool,
) {
    if config.notify.is_none() && config.metrics.is_none() {
        return;
    }
    let state_dir = config.state_dir(config_path);
    let drill = crate::notify::DrillResult {
        ok,
        set_id: set_id.to_string(),
        finished: chrono::Utc::now(),
    };
    if let Err(e) = crate::notify::History::new(&state_dir).record_drill(instance, drill) {
        tracing::warn!(
            "the drill's result could not be kept in {}: {e} (the drill's result is unchanged)",
            state_dir.display()
        );
    }
    if let Some(m) = &config.metrics {
        crate::metrics::publish(m, &state_dir, instance).await;
    }
}
