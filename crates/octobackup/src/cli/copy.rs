//! `octobackup copy --to NAME`: wiring for `run::copy`, and the copy `backup` makes after a
//! successful run for each `[[copy]]` with `after_backup`.

use super::{emit, repository, ui::Ui};
use crate::config::Config;
use crate::error::{Exit, Failure};
use crate::run::copy::{self, CopyJob, CopyReport};
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
    let config = Config::load(config_path)?;
    if let Some(i) = &args.instance {
        config.instance(config_path, Some(i))?;
    }
    let report = copy_to(&config, &args.to, args.instance.clone(), ui).await;
    ui.clear_status();
    let report = report?;
    emit(json, &report, || copy::human(&report));
    Ok(())
}

/// Opens the main repository and the copy, then copies.
async fn copy_to(
    config: &Config,
    name: &str,
    instance: Option<String>,
    ui: &Ui,
) -> Result<CopyReport, Failure> {
    repository::copy_entry(config, name)?;
    // The copy first: its password and place are what is new and most often wrong.
    let target = Arc::new(repository::open_copy(config, name).await?);
    let source = Arc::new(repository::open(config).await?);
    // Heard from here on, between sets and during one (nothing was written before).
    let stop = Stop::listen();
    copy::run(CopyJob {
        source,
        target,
        name: name.to_string(),
        instance,
        ui: ui.clone().into(),
        stop,
    })
    .await
}

/// After a successful backup of `instance` (`None`: `backup --all`, every instance): its
/// complete sets go to each `[[copy]]` with `after_backup` (the new one, and any an earlier
/// failed copy left behind). Runs after the maintenance window and never touches the main
/// repository's sets; a copy that fails is exit 9, naming the copy, the backup's set complete.
/// Every copy is tried, also after one fails.
pub async fn after_backup(
    config: &Config,
    instance: Option<&str>,
    ui: &Ui,
) -> Result<Vec<CopyReport>, Failure> {
    let mut reports = Vec::new();
    let mut failed = Vec::new();
    for c in config.copies.iter().filter(|c| c.after_backup) {
        ui.note(&format!("copying to '{}' ({})", c.name, c.location));
        let done = copy_to(config, &c.name, instance.map(str::to_string), ui).await;
        ui.clear_status();
        match done {
            Ok(r) => reports.push(r),
            Err(f) if super::exit::code(&f) == Exit::Interrupted => {
                return Err(Failure {
                    message: format!(
                        "the backup is complete (its set is in the main repository), but {}",
                        f.message
                    ),
                    ..f
                });
            }
            Err(f) => failed.push(format!(
                "the copy to '{}' failed: {}; once fixed, `octobackup copy --to {}` catches up",
                c.name, f.message, c.name
            )),
        }
    }
    if failed.is_empty() {
        return Ok(reports);
    }
    Err(Failure::new(
        Exit::CopyFailed,
        format!(
            "the backup is complete (its set is in the main repository), but {}",
            failed.join("; and ")
        ),
    ))
}
