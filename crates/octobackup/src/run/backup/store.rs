//! The set in the repository: each part stored as a snapshot tagged `part` (the folder pass
//! before the window, the folders as the window had them, the .bak, the manifest and secrets),
//! then merged into the set's single snapshot, the only one tagged `complete`.

use super::database::verify_database;
use super::staging::SetFolder;
use super::{BackupJob, Captured, Secrets, chain, unreadable_files, window_capture};
use crate::backupset::{self, Manifest};
use crate::error::Failure;
use crate::run::steps::{Steps, ended};
use crate::sqlserver::SqlServer;
use octobackup_repo::{Repo, SetOptions, SourceItem, WalkRecorder, WalkedAhead};
use std::path::PathBuf;
use std::sync::Arc;
use zeroize::Zeroizing;

fn base_tags(job: &BackupJob, set_id: &str) -> Vec<String> {
    vec![
        backupset::TAG.to_string(),
        backupset::tag_set(set_id),
        backupset::tag_instance(&job.instance_name),
    ]
}

const TAG_PRE_PASS: &str = "pass:before-window";

/// Starts walking the server folders for the pass before the window ([`backup_folders`]
/// stores what it finds), telling `listing` every entry: the walk needs no repository, so it
/// runs while the repository's key is still being derived. Fails, as the backup would, when a
/// folder cannot be found or read.
pub(super) fn walk_folders(
    folders: &[(String, PathBuf)],
    listing: Box<dyn WalkRecorder>,
) -> Result<WalkedAhead, Failure> {
    let items: Vec<SourceItem> = folders
        .iter()
        .map(|(name, path)| SourceItem::Path {
            source: path.clone(),
            target: format!("{}/{name}", backupset::FOLDERS_DIR),
        })
        .collect();
    WalkedAhead::start_recorded(items, Some(listing)).map_err(Failure::from)
}

/// The pass over the server folders before the window: a part of the set (its parent is the
/// previous complete set, so unchanged files are not read), the base the window's changes are
/// laid over after it. Returns the part's snapshot id.
pub(super) async fn backup_folders(
    job: &BackupJob,
    walked: WalkedAhead,
    folders: &[(String, PathBuf)],
    set_id: &str,
    hostname: &str,
) -> Result<String, Failure> {
    let mut tags = base_tags(job, set_id);
    tags.push(backupset::TAG_PART.into());
    tags.push(TAG_PRE_PASS.into());
    let opts = SetOptions {
        tags,
        hostname: hostname.to_string(),
        parent_tags: previous_set_tags(job),
        time: None,
        compression: job.compression,
        chunk_memory: None,
    };
    let repo = job.repo.clone();
    let sink = job.ui.repo_sink("folders (before window)");
    let summary = crate::run::blocking::blocking("the folder backup", move || {
        repo.backup_walked(walked, &opts, &*sink)
    })
    .await?
    .map_err(|e| {
        let f = Failure::from(e);
        // At most what the folders hold (before deduplication and compression).
        let needed = crate::run::space::is_disk_full(&f.message).then(|| {
            folders
                .iter()
                .map(|(_, p)| crate::run::space::tree_bytes(p))
                .sum()
        });
        crate::run::space::repository_full(f, &job.repository_location, needed)
    })?;
    if !summary.unreadable.is_empty() {
        return Err(unreadable_files(&summary.unreadable, "could not be read"));
    }
    Ok(summary.snapshot_id)
}

/// The tags of this instance's newest complete set: the parent of a folder pass.
fn previous_set_tags(job: &BackupJob) -> Vec<String> {
    vec![
        backupset::tag_instance(&job.instance_name),
        backupset::TAG_COMPLETE.into(),
    ]
}

/// Stores `items` as a part of the set (tagged `part`), on a blocking thread, through `repo`
/// (the job's, or a twin of it to run beside another call).
async fn store_part(
    job: &BackupJob,
    repo: Arc<Repo>,
    set_id: &str,
    hostname: &str,
    items: Vec<SourceItem>,
    label: &str,
    chunk_memory: Option<std::path::PathBuf>,
) -> Result<octobackup_repo::BackupSummary, Failure> {
    let mut tags = base_tags(job, set_id);
    tags.push(backupset::TAG_PART.into());
    let opts = SetOptions {
        tags,
        hostname: hostname.to_string(),
        parent_tags: vec![],
        time: None,
        compression: job.compression,
        chunk_memory,
    };
    // What the part needs at most: its files' size (a full repository is said with it).
    let needed = items
        .iter()
        .map(|i| match i {
            SourceItem::Path { source, .. } => std::fs::metadata(source)
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len()),
            SourceItem::Memory { bytes, .. } => Some(bytes.len() as u64),
        })
        .sum::<Option<u64>>();
    let sink = job.ui.repo_sink(label);
    let label = label.to_string();
    let stored = crate::run::blocking::blocking(&format!("storing the {label}"), move || {
        repo.backup(items, &opts, &*sink)
    })
    .await?;
    stored
        .map_err(|e| crate::run::space::repository_full(e.into(), &job.repository_location, needed))
}

pub(super) async fn ingest(
    job: &BackupJob,
    sqlserver: &SqlServer,
    c: &Captured,
    secrets: &Secrets,
    set: &SetFolder,
    m: &mut Manifest,
    steps: &mut Steps,
) -> Result<Stored, Failure> {
    let hostname = m.hostname.clone();
    let set_id = m.set_id.clone();
    // The folders as the window had them: the pass before it, less what the window did not
    // keep, plus the copies it made (or the copies alone, without a pass before the window).
    let mut tags = base_tags(job, &set_id);
    tags.push(backupset::TAG_PART.into());
    let folder_opts = SetOptions {
        tags,
        hostname: hostname.clone(),
        parent_tags: if c.pre_pass.is_some() {
            vec![]
        } else {
            previous_set_tags(job)
        },
        time: None,
        compression: job.compression,
        chunk_memory: None,
    };
    // The folders, the .bak and SQL Server's verification all run at once: they only read
    // what the window left, and each part is a snapshot of its own (issue 13: stored one after
    // the other, the folders' tail and the .bak's each left a core idle). A failed
    // verification discards what was stored.
    let db = m.database.name.clone();
    let mut info = m.database.clone();
    let mut bak_items: Vec<SourceItem> = set
        .bak_local
        .iter()
        .map(|local| SourceItem::Path {
            source: local.clone(),
            target: format!(
                "{}/{}",
                backupset::DATABASE_DIR,
                local.file_name().expect("a file name").to_string_lossy()
            ),
        })
        .collect();
    bak_items.extend(chain::base_items(job, &m.database));
    let folders_step = steps.start("store the server folders");
    let verify_step = steps.start("verify the database backup");
    let store_step = steps.start("store the database backup");
    let twin = Arc::new(job.repo.twin());
    let ((folders, folders_end), (verified, verify_end), (stored, store_end)) = tokio::join!(
        ended(window_capture::ingest(
            job,
            &c.folders,
            c.pre_pass.as_deref(),
            folder_opts
        )),
        ended(verify_database(
            job, sqlserver, &db, set, &set_id, &mut info
        )),
        ended(store_part(
            job,
            twin,
            &set_id,
            &hostname,
            bak_items,
            "database",
            Some(job.state.chunk_memory_path(&job.instance_name)),
        )),
    );
    steps.finish_with_at(folders_step, folders_end, &folders);
    steps.finish_with_at(verify_step, verify_end, &verified);
    match &stored {
        // Most of a nightly .bak is the night before's: say how much was found unchanged
        // (octobackup_repo's chunk memory) rather than hashed and stored again.
        Ok(s) if s.remembered_bytes > 0 => steps.finish_at(
            store_step,
            store_end,
            true,
            Some(format!(
                "{} of {} unchanged since the last set",
                crate::format::bytes(s.remembered_bytes),
                crate::format::bytes(s.total_bytes)
            )),
        ),
        _ => steps.finish_with_at(store_step, store_end, &stored),
    }
    let folders = folders?;
    verified?;
    let stored = stored?;
    m.database = info;

    let (meta, sealed) = store_manifest(job, secrets, m, steps).await?;
    Ok(Stored {
        folders,
        database: stored,
        meta,
        sealed,
    })
}

/// The master key and license (also sealed to the escrow keys) and the manifest, the set marked
/// complete in it, as the set's last part. Returns the part and the escrow items.
async fn store_manifest(
    job: &BackupJob,
    secrets: &Secrets,
    m: &mut Manifest,
    steps: &mut Steps,
) -> Result<(octobackup_repo::BackupSummary, Vec<SourceItem>), Failure> {
    let (set_id, hostname) = (m.set_id.clone(), m.hostname.clone());
    let mut items = vec![SourceItem::Memory {
        target: backupset::MASTER_KEY_PATH.into(),
        bytes: Zeroizing::new(secrets.master_key.key.expose().as_bytes().to_vec()),
        mode: 0o600,
    }];
    if !secrets.license_text.is_empty() {
        items.push(SourceItem::Memory {
            target: backupset::LICENSE_PATH.into(),
            bytes: Zeroizing::new(secrets.license_text.expose().as_bytes().to_vec()),
            mode: 0o600,
        });
    }
    // Sealed to the escrow keys too, so a second administrator can recover them without the
    // repository password (kept in the set, and beside the repository once the set is sealed).
    let sealed = crate::backupset::escrow::sealed_items(
        &job.escrow_recipients,
        &secrets.master_key.key,
        Some(&secrets.license_text),
    )?;
    m.secrets.escrow_recipients = job.escrow_recipients.len();
    items.extend(sealed.iter().cloned());
    m.finished = Some(chrono::Utc::now());
    m.complete = true;
    m.steps = steps.records.clone();
    items.push(SourceItem::Memory {
        target: backupset::MANIFEST_PATH.into(),
        bytes: Zeroizing::new(serde_json::to_vec_pretty(&*m).expect("manifest serializes")),
        mode: 0o644,
    });
    let meta = steps
        .run(
            "store manifest and secrets",
            store_part(
                job,
                job.repo.clone(),
                &set_id,
                &hostname,
                items,
                "manifest",
                None,
            ),
        )
        .await?;
    Ok((meta, sealed))
}

/// The parts stored after the window, waiting to be sealed into the set.
pub(super) struct Stored {
    folders: octobackup_repo::BackupSummary,
    database: octobackup_repo::BackupSummary,
    meta: octobackup_repo::BackupSummary,
    sealed: Vec<SourceItem>,
}

/// What the run says when a stop arrived while the set was being sealed: the truth, the set is
/// complete (and the exit code is 0).
pub(super) fn sealed_despite_stop(sig: &str) -> String {
    format!(
        "{sig} arrived while the set was being sealed; the seal was finished, so the set IS complete"
    )
}

/// Merges the parts into the set's single snapshot, tagged `complete`, and publishes the escrow
/// copy. Not cancellable: once the merge has run the set is complete.
pub(super) async fn seal(
    job: &BackupJob,
    set_id: &str,
    c: &Captured,
    stored: Stored,
    m: &mut Manifest,
    steps: &mut Steps,
) -> Result<(String, u64), Failure> {
    let Stored {
        folders,
        database: stored,
        meta,
        sealed,
    } = stored;
    let hostname = m.hostname.clone();
    let r = steps.start("seal the set");
    let mut tags = base_tags(job, set_id);
    tags.push(backupset::TAG_COMPLETE.into());
    let opts = SetOptions {
        tags,
        hostname,
        parent_tags: vec![],
        time: m.started.map(|t| t.into()),
        compression: job.compression,
        chunk_memory: None,
    };
    let parts = vec![
        folders.snapshot_id.clone(),
        stored.snapshot_id.clone(),
        meta.snapshot_id.clone(),
    ];
    let mut obsolete = parts.clone();
    obsolete.extend(c.pre_pass.clone());
    obsolete.sort();
    obsolete.dedup();
    let repo = job.repo.clone();
    let (merged, left_over) = crate::run::blocking::blocking("sealing the set", move || {
        let merged = repo.merge_snapshots(&parts, &opts);
        // Once the merged snapshot exists the set is complete: parts that cannot be deleted now
        // are only clutter (tagged `part`; `forget` drops them), not a failed backup.
        let left_over = merged
            .is_ok()
            .then(|| repo.delete_snapshots(&obsolete).err())
            .flatten();
        (merged, left_over)
    })
    .await?;
    steps.finish(
        r,
        merged.is_ok(),
        merged.as_ref().err().map(|e| e.to_string()),
    );
    let merged = merged?;
    if let Some(e) = left_over {
        job.ui.note(&format!("warning: the set is complete, but its parts could not be removed ({e}); `octobackup forget` removes them"));
    }
    if let Err(e) = crate::backupset::escrow::publish(job.repo.as_ref(), set_id, &sealed) {
        job.ui.note(&format!("warning: the set is complete, but its escrow copy beside the repository was not written: {}", e.message));
    }
    Ok((
        merged.id,
        folders.data_added + stored.data_added + meta.data_added,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_sealed_before_the_stop_is_reported_complete() {
        let note = sealed_despite_stop("SIGTERM");
        assert!(note.contains("IS complete"), "{note}");
        assert!(!note.contains("nothing was marked complete"), "{note}");
    }
}
