use super::{backup::bytes, emit, repository};
use crate::backupset::list;
use crate::error::{Exit, Failure};
use std::path::Path;

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Only this instance's sets.
    #[arg(long, short)]
    pub instance: Option<String>,
    /// Work on the `[[copy]]` named NAME (the second repository) instead of the main one.
    #[arg(long, value_name = "NAME")]
    pub copy: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct ShowArgs {
    /// A set id (or its start), a snapshot id (or its start), or "latest".
    pub set: String,
    /// Read the set from the `[[copy]]` named NAME (the second repository) instead of the main one.
    #[arg(long, value_name = "NAME")]
    pub copy: Option<String>,
}

pub async fn list(config_path: &Path, args: ListArgs, json: bool) -> Result<(), Failure> {
    let config = super::context::load_config(config_path)?;
    let repo = repository::open_chosen(&config, args.copy.as_deref()).await?;
    let sets = crate::run::blocking::blocking("listing the sets", move || {
        list::list(&repo, args.instance.as_deref())
    })
    .await??;
    emit(json, &sets, || {
        let mut s = format!(
            "{:<24} {:<8} {:<25} {:<16} {:<12} {:>10} {:>8} {:<8} {}\n",
            "set",
            "snapshot",
            "time",
            "instance",
            "octopus",
            "database",
            "window",
            "status",
            "folders"
        );
        for x in &sets {
            s.push_str(&format!(
                "{:<24} {:<8} {:<25} {:<16} {:<12} {:>10} {:>8} {:<8} {}\n",
                x.set_id,
                &x.snapshot_id[..8.min(x.snapshot_id.len())],
                x.time,
                x.instance,
                x.octopus_version.clone().unwrap_or_default(),
                x.database_bytes.map(bytes).unwrap_or_default(),
                x.window_seconds
                    .map(|w| format!("{w:.1}s"))
                    .unwrap_or_default(),
                if x.complete { "complete" } else { "INCOMPLETE" },
                x.folders.join(",")
            ));
        }
        s.push_str(&format!("{} set(s)\n", sets.len()));
        s
    });
    Ok(())
}

pub async fn show(config_path: &Path, args: ShowArgs, json: bool) -> Result<(), Failure> {
    let config = super::context::load_config(config_path)?;
    let repo = repository::open_chosen(&config, args.copy.as_deref()).await?;
    let manifest = crate::run::blocking::blocking("reading the set", move || {
        let sets = list::list(&repo, None)?;
        let found = match list::find(&sets, &args.set) {
            Ok(found) => found,
            Err(e) => return Ok(Err(e.into())),
        };
        let Some(set) = found else {
            return Ok(Err(Failure::new(
                Exit::Usage,
                format!(
                    "no backup set matches '{}' (see `octobackup snapshots`)",
                    args.set
                ),
            )));
        };
        if !set.complete {
            return Ok(Err(Failure::new(
                Exit::Failed,
                format!(
                    "set {} is incomplete: its run did not finish, so it has no manifest",
                    set.set_id
                ),
            )));
        }
        list::read_manifest(&repo, &set.snapshot_id).map(Ok)
    })
    .await???;
    emit(json, &manifest, || {
        serde_json::to_string_pretty(&manifest).expect("manifest serializes") + "\n"
    });
    Ok(())
}
