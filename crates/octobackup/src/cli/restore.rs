//! `octobackup restore`: wiring for `run::restore`.

use super::{context::Invocation, emit, ui::Ui};
use crate::error::Failure;
use crate::run::restore::{self, Parts, RestoreJob, RestoreReport};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The set: its id (or its start), a snapshot id's start, or "latest" (default).
    pub set: Option<String>,
    /// The instance whose set to restore (a [instance.NAME] of the config; optional when there is one).
    #[arg(long, short)]
    pub instance: Option<String>,
    /// Restore the database (with no part chosen, every part is restored).
    #[arg(long)]
    pub database: bool,
    /// Restore the server folders.
    #[arg(long)]
    pub folders: bool,
    /// Restore the master key and license (to --secrets-file or with --show-secrets only).
    #[arg(long)]
    pub secrets: bool,
    /// Restore the database under this name (default: its original name).
    #[arg(long, value_name = "NAME")]
    pub database_name: Option<String>,
    /// Folder for the database files, as SQL Server sees it (default: beside the original files).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<String>,
    /// Replace an existing database of the target name (it is dropped only once the restored copy is checked).
    #[arg(long)]
    pub replace: bool,
    /// Restore the folders under DIR/<Name> instead of their original paths.
    #[arg(long, value_name = "DIR")]
    pub folders_to: Option<PathBuf>,
    /// Write the master key, the license and the finishing commands with them to FILE (created
    /// owner-only; never overwritten).
    #[arg(long, value_name = "FILE")]
    pub secrets_file: Option<PathBuf>,
    /// Print the master key and license (otherwise the commands show placeholders).
    #[arg(long)]
    pub show_secrets: bool,
    /// Restore as a second instance: needs --database-name and --folders-to; gets a new InstallationId.
    #[arg(long)]
    pub clone: bool,
    /// The Octopus Server instance the printed commands name (default: the config's instance
    /// name; with --clone, that name + "Clone").
    #[arg(long, value_name = "NAME")]
    pub octopus_instance: Option<String>,
    /// Restore from the `[[copy]]` named NAME (the second repository), e.g. when the main one is lost.
    #[arg(long, value_name = "NAME")]
    pub copy: Option<String>,
}

pub async fn run(config_path: &Path, args: Args, json: bool, ui: &Ui) -> Result<(), Failure> {
    // Heard from here on: a stop is answered with what is true, never by the default kill.
    let stop = crate::run::stop::Stop::listen();
    let inv = Invocation::load(config_path)?;
    let (name, instance) = &inv.instance(args.instance.as_deref()).await?;
    let none = !(args.database || args.folders || args.secrets);
    let parts = Parts {
        database: none || args.database,
        folders: none || args.folders,
        secrets: none || args.secrets,
    };
    if args.clone && args.database_name.is_none() {
        return Err(super::usage(
            "--clone needs --database-name NAME: the second instance gets its own database",
        ));
    }
    if args.clone && args.folders_to.is_none() && parts.folders {
        return Err(super::usage(
            "--clone needs --folders-to DIR: the second instance must not share the original's folders",
        ));
    }
    let repo = match &args.copy {
        Some(copy) => std::sync::Arc::new(super::repository::open_copy(&inv.config, copy).await?),
        None => inv.repo().await?,
    };
    let wanted = args.set.clone();
    let job = RestoreJob {
        instance_name: name.to_string(),
        instance: instance.clone(),
        repo: repo.clone(),
        set: args.set,
        parts,
        database_name: args.database_name,
        data_dir: args.data_dir,
        replace: args.replace,
        // Absolute, so the printed `Octopus.Server.exe path` commands work from anywhere.
        folders_to: args
            .folders_to
            .map(|p| std::path::absolute(&p).unwrap_or(p)),
        secrets_file: args.secrets_file,
        show_secrets: args.show_secrets,
        clone: args.clone,
        octopus_instance: args.octopus_instance,
        ui: ui.clone().into(),
        stop,
    };
    let report = restore::run(job).await;
    ui.clear_status();
    let report = match report {
        Err(f) if f.message.contains(SET_PLACEHOLDER) => {
            Err(name_the_set(f, &repo, name, wanted.as_deref()).await)
        }
        r => r,
    }?;
    emit(json, &report, || human(&report));
    Ok(())
}

pub fn human(r: &RestoreReport) -> String {
    let mut s = format!(
        "restored set {} of {} (Octopus {}, snapshot {})\n",
        r.set_id,
        r.instance,
        r.octopus_version,
        &r.snapshot_id[..8.min(r.snapshot_id.len())]
    );
    if let Some(d) = &r.database {
        s.push_str(&format!(
            "  database [{}] on {}{}{}, DBCC CHECKDB clean\n",
            d.name,
            d.server,
            if d.replaced_existing {
                " (replaced the existing one)"
            } else {
                ""
            },
            if d.resumed {
                " (finished an interrupted restore)"
            } else {
                ""
            }
        ));
        for f in &d.files {
            s.push_str(&format!("    {f}\n"));
        }
    }
    for f in &r.folders {
        s.push_str(&format!(
            "  folder {:<13} {}: {} file(s) restored, {} already right",
            f.name, f.path, f.files_restored, f.files_unchanged
        ));
        match &f.moved_aside_to {
            Some(a) => s.push_str(&format!(", {} moved aside to {a}\n", f.moved_aside)),
            None => s.push_str(", none moved aside\n"),
        }
    }
    if let Some(id) = &r.new_installation_id {
        s.push_str(&format!("  clone: new InstallationId {id}\n"));
    }
    if let Some(f) = &r.secrets_file {
        s.push_str(&format!(
            "  master key and license written to {f} (owner-only; delete it when done)\n"
        ));
    }
    if let Some(k) = &r.master_key {
        s.push_str(&format!("  master key: {k}\n"));
    }
    if let Some(l) = &r.license_base64 {
        s.push_str(&format!("  license (base64): {l}\n"));
    }
    for n in &r.notes {
        s.push_str(&format!("  note: {n}\n"));
    }
    s.push_str("\nTo finish on Windows (elevated prompt on the Octopus host, same Octopus version as the set):\n");
    for c in &r.next_steps.windows {
        s.push_str(&format!("  {c}\n"));
    }
    s.push_str("\nOr for the Linux container:\n");
    for c in &r.next_steps.linux_container {
        s.push_str(&format!("  {c}\n"));
    }
    if r.next_steps.placeholders {
        s.push_str("\nSecrets are shown as placeholders");
        if r.secrets_file.is_some() {
            s.push_str(": the secrets file holds these commands with the real values.\n");
        } else {
            s.push_str(" (use --secrets-file FILE or --show-secrets).\n");
        }
    }
    s.push_str("The connection string carries no password: put the SQL login's password in place of <SQL password>.\n");
    s
}

/// The repository's advice for data a set needs and lost says `forget --set SET`: the repository
/// does not know sets.
pub(crate) const SET_PLACEHOLDER: &str = "--set SET";

/// Names the set in a failure that says `--set SET`, so the advice can be followed as printed.
async fn name_the_set(
    f: Failure,
    repo: &Arc<octobackup_repo::Repo>,
    instance: &str,
    wanted: Option<&str>,
) -> Failure {
    // As `choose_set` finds it, without the manifest: the lost data may hold it.
    let (repo, instance) = (repo.clone(), instance.to_string());
    let wanted = wanted.unwrap_or("latest").to_string();
    let set_id = crate::run::blocking::blocking("finding the set", move || {
        let by_id = wanted != "latest";
        let sets = crate::backupset::list::list(&repo, (!by_id).then_some(&instance)).ok()?;
        crate::backupset::list::find(&sets, &wanted)
            .ok()
            .flatten()
            .map(|s| s.set_id.clone())
    })
    .await
    .unwrap_or_else(|f| {
        tracing::warn!("the set's id is left out of the message: {}", f.message);
        None
    });
    match set_id {
        Some(set_id) => Failure {
            message: format!(
                "set {set_id} cannot be restored: {}",
                f.message
                    .replace(SET_PLACEHOLDER, &format!("--set {set_id}"))
            ),
            ..f
        },
        None => f,
    }
}
