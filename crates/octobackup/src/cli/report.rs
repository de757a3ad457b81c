//! `octobackup report`: wiring for `report`.

use super::{emit, repository};
use crate::error::Failure;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The HTML file to write (replaced whole; safe to serve from a share while it is rewritten).
    #[arg(
        long,
        short,
        value_name = "FILE",
        default_value = "octobackup-report.html"
    )]
    pub out: PathBuf,
}

#[derive(serde::Serialize)]
struct Written {
    path: String,
    instances: Vec<InstanceLine>,
}

#[derive(serde::Serialize)]
struct InstanceLine {
    instance: String,
    sets: usize,
    complete: usize,
    newest_complete: Option<String>,
    newest_passing_drill: Option<String>,
}

pub async fn run(config_path: &Path, args: Args, json: bool) -> Result<(), Failure> {
    let config = super::context::load_config(config_path)?;
    let repo = repository::open(&config).await?;
    let out = args.out.clone();
    let report = crate::run::blocking::blocking("writing the report", move || {
        crate::report::write_report(&repo, &config, &out)
    })
    .await??;
    let written = Written {
        path: args.out.display().to_string(),
        instances: report
            .instances
            .iter()
            .map(|i| InstanceLine {
                instance: i.name.clone(),
                sets: i.sets.len(),
                complete: i.sets.iter().filter(|s| s.complete).count(),
                newest_complete: i.newest_complete().map(|s| s.set_id.clone()),
                newest_passing_drill: i.newest_passing_drill().map(|d| d.set_id.clone()),
            })
            .collect(),
    };
    emit(json, &written, || {
        let mut s = format!("wrote the report to {}\n", written.path);
        for i in &written.instances {
            s.push_str(&format!(
                "  {}: {} set(s), {} complete; newest complete {}; newest passing drill {}\n",
                i.instance,
                i.sets,
                i.complete,
                i.newest_complete.as_deref().unwrap_or("none"),
                i.newest_passing_drill.as_deref().unwrap_or("none")
            ));
        }
        s
    });
    Ok(())
}
