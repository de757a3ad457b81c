//! Which set a restore or a drill takes: the one named (its id or start, a snapshot's start), or
//! the instance's newest complete one.

use crate::backupset::{Manifest, list};
use crate::error::{Exit, Failure};
use octobackup_repo::Repo;
use std::sync::Arc;

/// A complete set of the instance with its manifest.
pub struct ChosenSet {
    pub set_id: String,
    pub snapshot_id: String,
    pub manifest: Manifest,
}

/// Finds the set to restore: `wanted` (set id, its start, a snapshot id's start: of any
/// instance) or the newest complete set of the instance ("latest" or `None`).
pub async fn choose_set(
    repo: &Arc<Repo>,
    instance: &str,
    wanted: Option<&str>,
) -> Result<ChosenSet, Failure> {
    let repo = repo.clone();
    let instance = instance.to_string();
    let wanted = wanted.unwrap_or("latest").to_string();
    super::super::blocking::blocking("finding the set", move || {
        // A set named by id may come from another instance (a move to a new server whose config
        // names it differently); "latest" is the newest of this instance.
        let any_instance = wanted != "latest";
        let sets = list::list(&repo, (!any_instance).then_some(instance.as_str()))?;
        let Some(set) = list::find(&sets, &wanted)? else {
            return Err(Failure::new(
                Exit::Usage,
                if any_instance || sets.iter().any(|s| s.complete) {
                    format!("no complete backup set matches '{wanted}' (see `octobackup snapshots`)")
                } else {
                    format!(
                        "the repository holds no complete backup set of instance '{instance}': run `octobackup backup` first"
                    )
                },
            ));
        };
        if !set.complete {
            return Err(Failure::new(
                Exit::Failed,
                format!(
                    "set {} is incomplete (its run did not finish) and cannot be restored; choose a complete one (see `octobackup snapshots`)",
                    set.set_id
                ),
            ));
        }
        let manifest = list::read_manifest(&repo, &set.snapshot_id)?;
        Ok(ChosenSet {
            set_id: set.set_id.clone(),
            snapshot_id: set.snapshot_id.clone(),
            manifest,
        })
    })
    .await
    ?
}
