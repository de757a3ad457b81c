//! `copy`: the complete sets of the instance's repository, copied to a second repository (a
//! `[[copy]]`: another backend, another password), as `restic copy` does.
//!
//! - Only complete sets (one snapshot tagged `complete`, not `part`) are copied; the parts of
//!   a run that did not finish never are. A set is one snapshot, so it arrives whole, with its
//!   tags, host and time; `original` names the snapshot it was copied from.
//! - A set is already in the target when a snapshot there has the same root tree and the same
//!   tags (`set:<id>`, `complete`, ...): the same tree is the same content. It is not copied
//!   again, and blobs the target already holds are never sent again.
//! - Sets go one at a time, oldest first: each is stored whole in the target (packs, index,
//!   then its snapshot file last) before the next starts, so a copy that stops leaves the sets
//!   before it complete there and no snapshot without its data; the next copy goes on.
//! - With `[escrow]`, a set's sealed master key and license (inside the set) are published
//!   beside the copy too (`octobackup-escrow/<set>/`), so `key recover` works from it alone.

use super::progress::Ui;
use super::stop::Stop;
use crate::backupset::{TAG, TAG_COMPLETE, TAG_PART, escrow, tag_value};
use crate::error::{Exit, Failure};
use octobackup_repo::{Repo, RepoError, SnapshotInfo, SourceItem, Zeroizing};
use serde::Serialize;
use std::sync::Arc;

pub struct CopyJob {
    pub source: Arc<Repo>,
    pub target: Arc<Repo>,
    /// The `[[copy]]` name (for messages).
    pub name: String,
    /// Only this instance's sets (`None`: every instance's).
    pub instance: Option<String>,
    pub ui: Ui,
    pub stop: Stop,
}

/// What a copy did, set by set.
#[derive(Debug, Serialize)]
pub struct CopyReport {
    pub to: String,
    pub location: String,
    /// Every complete set considered, oldest first.
    pub sets: Vec<SetCopy>,
    /// Sets sent now.
    pub copied: usize,
    /// Sets the target held already.
    pub already_there: usize,
    /// Stored bytes sent (compressed and encrypted blobs the target did not have).
    pub bytes_sent: u64,
    /// Snapshots of runs that did not finish (or parts), left out.
    pub incomplete_left_out: usize,
    pub seconds: f64,
    /// `backup --forget` on a copy with its own `[copy.retention]`: what it did there, by instance.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub forget: Vec<super::retention::ForgetReport>,
}

#[derive(Debug, Serialize)]
pub struct SetCopy {
    pub set_id: String,
    pub instance: String,
    pub source_snapshot: String,
    pub target_snapshot: String,
    pub copied: bool,
    pub bytes_sent: u64,
    /// The escrow copy published beside the target now.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub escrow_published: bool,
}

/// Complete: tagged `complete` and not a part.
pub fn is_complete(tags: &[String]) -> bool {
    tags.iter().any(|t| t == TAG_COMPLETE) && !tags.iter().any(|t| t == TAG_PART)
}

/// The complete sets to copy (oldest first) and how many other octobackup snapshots were left
/// out.
pub fn complete_sets(
    snapshots: Vec<SnapshotInfo>,
    instance: Option<&str>,
) -> (Vec<SnapshotInfo>, usize) {
    let ours = snapshots.into_iter().filter(|s| {
        s.tags.iter().any(|t| t == TAG)
            && instance.is_none_or(|i| tag_value(&s.tags, "instance") == Some(i))
    });
    let (mut complete, incomplete): (Vec<_>, Vec<_>) = ours.partition(|s| is_complete(&s.tags));
    complete.sort_by_key(|s| s.time);
    (complete, incomplete.len())
}

pub async fn run(job: CopyJob) -> Result<CopyReport, Failure> {
    let started = std::time::Instant::now();
    let source = job.source.clone();
    let snapshots = blocking(move || source.snapshots()).await?;
    let (sets, incomplete_left_out) = complete_sets(snapshots, job.instance.as_deref());
    let target = job.target.clone();
    let mut known = blocking(move || target.copy_target())
        .await
        .map_err(|f| about(&job, f))?;
    let target = job.target.clone();
    let escrowed = crate::run::blocking::blocking("reading the copy's escrow", move || {
        escrow::escrowed_sets(&*target)
    })
    .await?
    .map_err(|f| about(&job, f))?;
    let mut report = CopyReport {
        to: job.name.clone(),
        location: job.target.location().to_string(),
        sets: Vec::new(),
        copied: 0,
        already_there: 0,
        bytes_sent: 0,
        incomplete_left_out,
        seconds: 0.0,
        forget: Vec::new(),
    };
    for (n, snap) in sets.iter().enumerate() {
        let set_id = tag_value(&snap.tags, "set").unwrap_or("?").to_string();
        if let Some(sig) = job.stop.requested() {
            return Err(stopped(&job, sig, &report, &set_id));
        }
        let (source, target) = (job.source.clone(), job.target.clone());
        let id = snap.id.clone();
        let sink = job.ui.repo_sink(&format!(
            "copy set {set_id} to {} ({}/{})",
            job.name,
            n + 1,
            sets.len()
        ));
        // A stop ends the process here: the set's snapshot file is written only after its data
        // and index, so an interrupted set is simply not in the target yet.
        let copied = tokio::select! {
            r = detached(move || {
                source
                    .copy_snapshot(&target, &mut known, &id, &*sink)
                    .map(|c| (c, known))
            }) => r,
            sig = job.stop.wait() => return Err(stopped(&job, sig, &report, &set_id)),
        };
        job.ui.clear_status();
        // The budget that ran out is named where it is set: the copy's, when its storage went.
        let budget = match job.target.storage_gone() {
            Some(_) => format!("[[copy]] '{}' retry_budget", job.name),
            None => "repository.retry_budget".to_string(),
        };
        let copied = copied.map_err(|f| {
            about(
                &job,
                Failure {
                    message: format!(
                        "set {set_id} was not copied, and is not in the target ({} set(s) before it are complete there): {}",
                        report.copied + report.already_there,
                        f.message.replace("repository.retry_budget", &budget)
                    ),
                    ..f
                },
            )
        })?;
        let (copied, still_known) = copied;
        known = still_known;
        let escrow_published = if escrowed.contains(&set_id) {
            false
        } else {
            publish_escrow(&job, &snap.id, &set_id).await?
        };
        if copied.copied {
            report.copied += 1;
            report.bytes_sent += copied.bytes_sent;
        } else {
            report.already_there += 1;
        }
        report.sets.push(SetCopy {
            set_id,
            instance: tag_value(&snap.tags, "instance").unwrap_or("?").to_string(),
            source_snapshot: copied.source_id,
            target_snapshot: copied.target_id,
            copied: copied.copied,
            bytes_sent: copied.bytes_sent,
            escrow_published,
        });
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Publishes the set's sealed master key and license beside the target, read from the set
/// itself. False when the set has none (made without `[escrow]`).
async fn publish_escrow(job: &CopyJob, snapshot_id: &str, set_id: &str) -> Result<bool, Failure> {
    let (source, id) = (job.source.clone(), snapshot_id.to_string());
    let items = blocking(move || {
        let mut items = Vec::new();
        for path in [escrow::MASTER_KEY_SEALED, escrow::LICENSE_SEALED] {
            match source.read_file(&id, path) {
                Ok(bytes) => items.push(SourceItem::Memory {
                    target: path.to_string(),
                    bytes: Zeroizing::new(bytes.to_vec()),
                    mode: 0o600,
                }),
                Err(RepoError::PathNotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(items)
    })
    .await?;
    if !items.iter().any(
        |i| matches!(i, SourceItem::Memory { target, .. } if target == escrow::MASTER_KEY_SEALED),
    ) {
        return Ok(false);
    }
    let (target, set) = (job.target.clone(), set_id.to_string());
    crate::run::blocking::blocking("publishing the escrow beside the copy", move || {
        escrow::publish(&*target, &set, &items)
    })
    .await?
    .map_err(|f| about(job, f))?;
    Ok(true)
}

fn stopped(job: &CopyJob, sig: &str, report: &CopyReport, set_id: &str) -> Failure {
    Failure::new(
        Exit::Interrupted,
        format!(
            "{sig}: the copy to '{}' stopped before set {set_id} was complete there ({} set(s) copied now, {} there already); the target holds no incomplete set: run `octobackup copy --to {}` again to go on",
            job.name, report.copied, report.already_there, job.name
        ),
    )
}

/// Names the copy in a failure, keeping its exit code.
fn about(job: &CopyJob, f: Failure) -> Failure {
    // Errors from opening the copy already say "the copy 'NAME'".
    if f.message.contains(&format!("the copy '{}'", job.name)) {
        return f;
    }
    Failure {
        message: format!("copy to '{}': {}", job.name, f.message),
        ..f
    }
}

/// Runs `f` on a thread of its own, not tokio's blocking pool (which the runtime waits for when
/// it ends): after a stop the process ends at once, leaving the set being copied unfinished, and
/// so not in the target (its snapshot file is written last).
async fn detached<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RepoError> + Send + 'static,
) -> Result<T, Failure> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("octobackup-copy".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|e| Failure::new(Exit::Failed, format!("cannot start the copy: {e}")))?;
    Ok(rx
        .await
        .map_err(|_| Failure::new(Exit::Failed, "the copy stopped unexpectedly"))??)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RepoError> + Send + 'static,
) -> Result<T, Failure> {
    Ok(crate::run::blocking::blocking("the copy", f).await??)
}

/// One line per set, then the totals.
pub fn human(r: &CopyReport) -> String {
    let mut s = String::new();
    for set in &r.sets {
        s.push_str(&format!(
            "  {} {:<26} {:<14} {}{}\n",
            if set.copied { "copied " } else { "present" },
            set.set_id,
            set.instance,
            if set.copied {
                crate::format::bytes(set.bytes_sent)
            } else {
                "nothing sent".into()
            },
            if set.escrow_published {
                ", escrow published"
            } else {
                ""
            }
        ));
    }
    s.push_str(&format!(
        "copy to '{}' ({}): {} set(s) copied, {} already there, {} sent in {:.1}s",
        r.to,
        r.location,
        r.copied,
        r.already_there,
        crate::format::bytes(r.bytes_sent),
        r.seconds
    ));
    if r.incomplete_left_out > 0 {
        s.push_str(&format!(
            "; {} snapshot(s) of unfinished runs left out",
            r.incomplete_left_out
        ));
    }
    s.push('\n');
    for f in &r.forget {
        s.push_str(&format!(
            "forget in '{}' ({}, {}): kept {} set(s), dropped {}\n",
            r.to,
            f.instance,
            f.policy,
            f.kept.len(),
            f.dropped.len()
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(id: &str, secs: i64, tags: &[&str]) -> SnapshotInfo {
        SnapshotInfo {
            id: id.into(),
            short_id: id.into(),
            time: chrono::DateTime::from_timestamp(secs, 0)
                .unwrap()
                .with_timezone(&chrono::Local),
            hostname: "h".into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            paths: vec![],
            parent: None,
            program_version: String::new(),
            summary: None,
        }
    }

    #[test]
    fn only_complete_sets_are_copied_oldest_first() {
        let snaps = vec![
            snap("c", 3, &[TAG, "complete", "set:3", "instance:A"]),
            snap("a", 1, &[TAG, "complete", "set:1", "instance:A"]),
            snap("p", 2, &[TAG, "part", "set:2", "instance:A"]),
            snap("x", 4, &[TAG, "complete", "part", "set:4", "instance:A"]),
            snap("b", 5, &[TAG, "complete", "set:5", "instance:B"]),
            snap("r", 6, &["someone-elses"]),
        ];
        let (sets, left_out) = complete_sets(snaps.clone(), Some("A"));
        let ids: Vec<&str> = sets.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["a", "c"]);
        assert_eq!(left_out, 2);
        let (sets, _) = complete_sets(snaps, None);
        let ids: Vec<&str> = sets.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["a", "c", "b"]);
    }
}
