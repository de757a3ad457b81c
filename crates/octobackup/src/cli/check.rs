//! `octobackup check`: the repository's structure and, optionally, its data; damage is reported
//! with the backup sets (and files) it hits. Exit 8 when anything is damaged.

use super::emit;
use super::repository;
use crate::backupset::{TAG, TAG_COMPLETE, TAG_PART, tag_value};
use crate::error::{Exit, Failure};
use octobackup_repo::{CheckReport, ReadData};
use std::path::Path;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Also read every byte of stored data and verify it.
    #[arg(long, conflicts_with = "read_data_subset")]
    pub read_data: bool,
    /// Read a random subset of the data: a percentage (10%), a size (500MiB) or a part (n/m,
    /// e.g. 1/7 on Mondays and 2/7 on Tuesdays covers everything in a week).
    #[arg(long, value_name = "SUBSET")]
    pub read_data_subset: Option<String>,
    /// Work on the `[[copy]]` named NAME (the second repository) instead of the main one.
    #[arg(long, value_name = "NAME")]
    pub copy: Option<String>,
}

/// A backup set that damaged data hits.
#[derive(Debug, serde::Serialize)]
pub struct AffectedSet {
    pub set_id: String,
    pub instance: String,
    pub complete: bool,
    pub snapshot_id: String,
    pub time: String,
    /// Damaged files (snapshot paths), at most 20 named.
    pub files: Vec<String>,
    pub files_damaged: usize,
    pub unreadable_folders: Vec<String>,
}

#[derive(Debug, serde::Serialize)]
pub struct Output {
    pub ok: bool,
    pub read_data: String,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    pub damaged_packs: Vec<String>,
    /// Snapshot files that cannot be read (full ids): the sets they held are lost.
    pub damaged_snapshots: Vec<String>,
    pub affected_sets: Vec<AffectedSet>,
    /// Snapshots not made by octobackup that are hit.
    pub other_snapshots: Vec<String>,
}

fn output(report: CheckReport, read: &ReadData) -> Output {
    let mut affected_sets = Vec::new();
    let mut other_snapshots = Vec::new();
    for a in report.affected {
        let tags = &a.snapshot.tags;
        if !tags.iter().any(|t| t == TAG) {
            other_snapshots.push(a.snapshot.id.clone());
            continue;
        }
        affected_sets.push(AffectedSet {
            set_id: tag_value(tags, "set").unwrap_or("?").to_string(),
            instance: tag_value(tags, "instance").unwrap_or("?").to_string(),
            complete: tags.iter().any(|t| t == TAG_COMPLETE) && !tags.iter().any(|t| t == TAG_PART),
            snapshot_id: a.snapshot.id.clone(),
            time: a
                .snapshot
                .time
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
            files: a.files,
            files_damaged: a.files_damaged,
            unreadable_folders: a.unreadable_folders,
        });
    }
    Output {
        ok: report.errors.is_empty(),
        read_data: match read {
            ReadData::None => "none".into(),
            ReadData::All => "all".into(),
            ReadData::Subset(s) => s.clone(),
        },
        errors: report.errors,
        warnings: report.warnings,
        damaged_packs: report.damaged_packs,
        damaged_snapshots: report.damaged_snapshots,
        affected_sets,
        other_snapshots,
    }
}

fn human(o: &Output) -> String {
    let mut s = String::new();
    let what = match o.read_data.as_str() {
        "none" => "structure checked (add --read-data to read every byte)".to_string(),
        "all" => "structure and all data checked".to_string(),
        subset => format!("structure and a {subset} subset of the data checked"),
    };
    if o.ok {
        s.push_str(&format!("repository OK: {what}\n"));
    } else {
        s.push_str(&format!(
            "REPOSITORY DAMAGED: {} error(s); {what}\n",
            o.errors.len()
        ));
        for e in &o.errors {
            s.push_str(&format!("  error: {e}\n"));
        }
        for p in &o.damaged_packs {
            s.push_str(&format!("  damaged pack {p}\n"));
        }
        if o.affected_sets.is_empty() && o.other_snapshots.is_empty() && !o.damaged_packs.is_empty()
        {
            s.push_str("  no backup set uses the damaged data\n");
        }
        for a in &o.affected_sets {
            s.push_str(&format!(
                "  set {} ({}, {}, snapshot {}{}): ",
                a.set_id,
                a.instance,
                a.time,
                &a.snapshot_id[..8.min(a.snapshot_id.len())],
                if a.complete { "" } else { ", incomplete" }
            ));
            let mut hit = Vec::new();
            if a.files_damaged > 0 {
                hit.push(format!(
                    "{} damaged file(s): {}{}",
                    a.files_damaged,
                    a.files.join(", "),
                    if a.files_damaged > a.files.len() {
                        ", ..."
                    } else {
                        ""
                    }
                ));
            }
            if !a.unreadable_folders.is_empty() {
                hit.push(format!(
                    "unreadable folder(s): {}",
                    a.unreadable_folders.join(", ")
                ));
            }
            s.push_str(&hit.join("; "));
            s.push('\n');
        }
        for id in &o.other_snapshots {
            s.push_str(&format!("  snapshot {id} (not octobackup's)\n"));
        }
        if !o.damaged_packs.is_empty() {
            s.push_str("  The sets listed above cannot be fully restored. To recover: move the damaged pack file(s) out of the repository's data folder (keep them), run `restic repair index` (restic 0.14: `restic rebuild-index`) so the next backup stores that data again, take a new backup, then `octobackup forget --set SET --prune` for each damaged set.\n");
        }
    }
    for w in &o.warnings {
        s.push_str(&format!("  note: {w}\n"));
    }
    s
}

pub async fn run(config_path: &Path, args: Args, json: bool) -> Result<(), Failure> {
    let config = super::context::load_config(config_path)?;
    let read = match (&args.read_data_subset, args.read_data) {
        (Some(s), _) => {
            ReadData::subset(s).map_err(|e| Failure::new(Exit::Usage, e.to_string()))?
        }
        (None, true) => ReadData::All,
        (None, false) => ReadData::None,
    };
    let repo = repository::open_chosen(&config, args.copy.as_deref()).await?;
    let r = read.clone();
    let report =
        crate::run::blocking::blocking("checking the repository", move || repo.check_with(&r))
            .await??;
    let out = output(report, &read);
    emit(json, &out, || human(&out));
    if !out.ok {
        let sets: Vec<&str> = out
            .affected_sets
            .iter()
            .map(|a| a.set_id.as_str())
            .collect();
        let mut message = format!(
            "the repository is damaged; sets affected: {}",
            if sets.is_empty() {
                "none".to_string()
            } else {
                sets.join(", ")
            }
        );
        // Damage to neither packs nor snapshot files (the index, trees): say what it is.
        if out.damaged_packs.is_empty()
            && out.damaged_snapshots.is_empty()
            && let Some(first) = out.errors.first()
        {
            message.push_str(&format!("; {first}"));
        }
        if !out.damaged_snapshots.is_empty() {
            let short: Vec<&str> = out
                .damaged_snapshots
                .iter()
                .map(|id| &id[..8.min(id.len())])
                .collect();
            message.push_str(&format!("; damaged snapshot file(s): {}", short.join(", ")));
        }
        return Err(Failure::new(Exit::CheckFailed, message).result_printed());
    }
    Ok(())
}
