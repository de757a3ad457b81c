//! `octobackup-lab demo`: the whole cycle against the bundled lab, narrated, in under a minute:
//! start a simulated Octopus Server and SQL Server, create a repository, back up, simulate a day of
//! use, back up again (deduplicated), list the sets.

use crate::backupset::list;
use crate::cli::{backup, emit, repository, ui::Ui};
use crate::config::Config;
use crate::error::{Exit, Failure};
use crate::lab;
use crate::run::backup::{BackupJob, BackupReport};
use octobackup_lab::Size;
use octobackup_repo::Repo;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Keep the lab folder afterwards (default: a temporary folder, removed at the end).
    #[arg(long)]
    pub keep: bool,
    /// Use this folder for the lab (kept afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

pub async fn run(args: Args, json: bool, ui: &Ui) -> Result<(), Failure> {
    let fail = |e: String| Failure::new(Exit::Failed, e);
    let temp = tempfile::Builder::new()
        .prefix("octobackup-demo-")
        .tempdir()
        .map_err(|e| fail(e.to_string()))?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    let say = |s: &str| {
        if !json {
            println!("{s}");
        }
    };

    say(&format!(
        "== 1. Starting the lab in {}: a simulated Octopus Server and SQL Server",
        dir.display()
    ));
    let lab = lab::start(&dir, Size::Small, 1, 16, true).await?;
    let config_path = lab::write_config(lab.info(), true).map_err(|e| fail(e.to_string()))?;
    say(&format!(
        "   Octopus API at {}, SQL Server at {}, database {}",
        lab.info().octopus_url,
        lab.info().sql_address,
        lab.info().database
    ));
    say(&format!(
        "   config written to {} (secrets in {}/secrets)",
        config_path.display(),
        dir.display()
    ));

    let result = async {
        let config = Config::load(&config_path)?;
        say(&format!("== 2. octobackup init: a restic-format repository at {}", config.repository.location));
        let password = repository::password(&config, false)?;
        let cfg = repository::repo_config(&config, &password);
        let repo = tokio::task::spawn_blocking(move || Repo::init(&cfg)).await.map_err(|e| fail(e.to_string()))??;
        let repo = Arc::new(repo);

        let (name, instance) = config.instance(&config_path, None)?;
        let job = || BackupJob::new(&config, &config_path, name, instance.clone(), repo.clone(), ui.clone().into());
        say("== 3. octobackup backup: maintenance mode on, wait for tasks, master key, license, BACKUP DATABASE, folders, maintenance mode back");
        let first: BackupReport = crate::run::backup::run(job()).await?;
        ui.clear_status();
        if !json {
            print!("{}", backup::human(&first));
        }

        say("== 4. A day of use on the Octopus Server: new packages, task logs, artifacts, database changes");
        let mut lab = lab;
        let churn = lab.churn(1).await.map_err(|e| fail(e.to_string()))?;
        say(&format!("   {} files added, {} database pages changed", churn.folders.files_added, churn.database_pages_changed + churn.database_pages_added));

        say("== 5. octobackup backup again: only what changed is stored");
        let second = crate::run::backup::run(job()).await?;
        ui.clear_status();
        if !json {
            print!("{}", backup::human(&second));
        }

        say("== 6. octobackup snapshots");
        let r = repo.clone();
        let sets = tokio::task::spawn_blocking(move || list::list(&r, None)).await.map_err(|e| fail(e.to_string()))??;
        for s in &sets {
            say(&format!("   {}  {}  {}  window {:.1}s", s.set_id, s.instance, if s.complete { "complete" } else { "INCOMPLETE" }, s.window_seconds.unwrap_or(0.0)));
        }
        let events = lab.events();
        let window_events: Vec<String> = events
            .iter()
            .filter(|e| matches!(e.kind.as_str(), "maintenance_changed" | "backup_started" | "backup_finished"))
            .map(|e| format!("{} {} {}", e.at.format("%H:%M:%S%.3f"), e.source, e.kind))
            .collect();
        say("== 7. What the lab saw (its event log): the database backup ran inside the maintenance window");
        for e in &window_events {
            say(&format!("   {e}"));
        }
        say(&format!(
            "Done. Look around: `octobackup --config {} snapshots`, or with stock restic: RESTIC_PASSWORD_FILE={} restic -r {} snapshots",
            config_path.display(),
            dir.join("secrets").join("repository-password").display(),
            config.repository.location
        ));
        Ok::<_, Failure>((lab, serde_json::json!({"dir": dir, "config": config_path, "sets": sets, "first": first, "second": second, "events": window_events})))
    }
    .await;

    let (lab, summary) = match result {
        Ok(x) => x,
        Err(e) => return Err(e),
    };
    lab.shutdown().await;
    if json {
        emit(true, &summary, String::new);
    }
    if args.keep || args.dir.is_some() {
        let _ = temp.keep();
        say(&format!("The lab folder is kept: {}", dir.display()));
    }
    Ok(())
}
