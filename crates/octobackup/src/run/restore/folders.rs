//! The server folders back from the set: to their own or new paths, what is there moved aside
//! first, never overwritten.

use super::set::ChosenSet;
use super::{FolderRestored, RestoreJob};
use crate::backupset::{self};
use crate::error::{Exit, Failure};
use crate::run::stop::lab_point;
use octobackup_repo::{EntryKind, FileEntry};
use std::path::{Path, PathBuf};

/// Moves what is at the paths a folder restore would write into `aside`, keeping relative paths.
/// Returns how many entries were moved.
pub fn move_aside(
    dest: &Path,
    entries: &[FileEntry],
    prefix: &str,
    aside: &Path,
) -> Result<u64, Failure> {
    let mut moved = 0;
    for e in entries {
        let Some(rel) = e.path.strip_prefix(prefix) else {
            continue;
        };
        let rel = rel.trim_start_matches('/');
        if rel.is_empty() {
            continue;
        }
        let local = rel.split('/').fold(dest.to_path_buf(), |p, c| p.join(c));
        let Ok(meta) = std::fs::symlink_metadata(&local) else {
            continue;
        };
        let in_the_way = match e.kind {
            EntryKind::Dir => !meta.is_dir(),
            _ => true,
        };
        if !in_the_way {
            continue;
        }
        let target = rel.split('/').fold(aside.to_path_buf(), |p, c| p.join(c));
        let moved_ok = target
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|_| std::fs::rename(&local, &target));
        if let Err(err) = moved_ok {
            return Err(Failure::new(
                Exit::Failed,
                format!(
                    "cannot move {} aside to {}: {err}. {moved} file(s) were already moved there; nothing was overwritten.",
                    local.display(),
                    target.display()
                ),
            ));
        }
        moved += 1;
    }
    Ok(moved)
}

pub fn aside_dir(dest: &Path, stamp: &str) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "folder".into());
    dest.with_file_name(format!("{name}.octobackup-before-{stamp}"))
}

pub(super) async fn restore_folders(
    job: &RestoreJob,
    set: &ChosenSet,
) -> Result<Vec<FolderRestored>, Failure> {
    let entries = {
        let (repo, snap) = (job.repo.clone(), set.snapshot_id.clone());
        crate::run::blocking::blocking("listing the folders", move || {
            repo.list_files(&snap, backupset::FOLDERS_DIR)
        })
        .await??
    };
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    // What is in the way of every folder goes aside first; then one restore of them all, so the
    // repository is opened and each pack read once.
    let mut planned = Vec::new();
    for f in &set.manifest.folders {
        let dest = match &job.folders_to {
            Some(dir) => dir.join(&f.name),
            None => PathBuf::from(&f.source_path),
        };
        let prefix = format!("{}/{}", backupset::FOLDERS_DIR, f.name);
        let mine: Vec<FileEntry> = entries
            .iter()
            .filter(|e| e.path == prefix || e.path.starts_with(&format!("{prefix}/")))
            .cloned()
            .collect();
        let aside = aside_dir(&dest, &stamp);
        let moved = move_aside(&dest, &mine, &prefix, &aside)?;
        lab_point("restore: folders").await;
        std::fs::create_dir_all(&dest).map_err(|e| {
            Failure::new(
                Exit::Failed,
                format!("cannot create the folder {}: {e}", dest.display()),
            )
        })?;
        planned.push((f.name.clone(), prefix, dest, aside, moved));
    }
    let (repo, snap, parts, sink) = (
        job.repo.clone(),
        set.snapshot_id.clone(),
        planned
            .iter()
            .map(|(_, prefix, dest, _, _)| (prefix.clone(), dest.clone()))
            .collect::<Vec<_>>(),
        job.ui.repo_sink("folders"),
    );
    let summaries = crate::run::blocking::blocking("restoring the folders", move || {
        let parts: Vec<(&str, &Path)> = parts
            .iter()
            .map(|(p, d)| (p.as_str(), d.as_path()))
            .collect();
        repo.restore_parts(&snap, &parts, &*sink, &|_| true)
    })
    .await??;
    let mut out = Vec::new();
    for ((name, _, dest, aside, moved), summary) in planned.into_iter().zip(summaries) {
        if moved > 0 {
            job.ui.note(&format!(
                "{name}: moved {moved} existing file(s) aside to {}",
                aside.display()
            ));
        }
        out.push(FolderRestored {
            name,
            path: dest.display().to_string(),
            files_restored: summary.files_restored,
            files_unchanged: summary.files_unchanged,
            moved_aside: moved,
            moved_aside_to: (moved > 0).then(|| aside.display().to_string()),
        });
    }
    Ok(out)
}
