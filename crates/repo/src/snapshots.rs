//! Snapshots as the tool sees them, and finding one by id prefix.

use chrono::{DateTime, Local};
use rustic_core::jiff::{Timestamp, Zoned, tz::TimeZone};
use rustic_core::repofile::{SnapshotFile, SnapshotId};
use rustic_core::{Open, Repository};
use serde::Serialize;

use crate::error::{RepoError, from_rustic, summarize};

/// One snapshot (one backup set).
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotInfo {
    /// Full id (64 hex digits).
    pub id: String,
    /// The first 8 hex digits, as restic shows them.
    pub short_id: String,
    pub time: DateTime<Local>,
    pub hostname: String,
    /// Tags, sorted. The only metadata that survives `restic tag`.
    pub tags: Vec<String>,
    /// Snapshot paths of the sources, sorted.
    pub paths: Vec<String>,
    pub parent: Option<String>,
    pub program_version: String,
    /// Figures written by rustic at backup time; `None` once restic has rewritten the snapshot.
    pub summary: Option<SnapshotFigures>,
}

/// What the backup run measured.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotFigures {
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unmodified: u64,
    pub total_files: u64,
    pub total_bytes: u64,
    pub data_added: u64,
    pub data_added_packed: u64,
    pub duration_seconds: f64,
}

impl SnapshotInfo {
    pub(crate) fn from_snapshot(snap: &SnapshotFile) -> Self {
        let id = snap.id.to_hex().as_str().to_string();
        Self {
            short_id: id.chars().take(8).collect(),
            id,
            time: to_chrono(&snap.time),
            hostname: snap.hostname.clone(),
            tags: snap.tags.iter().cloned().collect(),
            paths: snap.paths.iter().cloned().collect(),
            parent: snap.parent.map(|p| p.to_hex().as_str().to_string()),
            program_version: snap.program_version.clone(),
            summary: snap.summary.as_ref().map(|s| SnapshotFigures {
                files_new: s.files_new,
                files_changed: s.files_changed,
                files_unmodified: s.files_unmodified,
                total_files: s.total_files_processed,
                total_bytes: s.total_bytes_processed,
                data_added: s.data_added,
                data_added_packed: s.data_added_packed,
                duration_seconds: s.backup_duration,
            }),
        }
    }
}

pub(crate) fn to_chrono(time: &Zoned) -> DateTime<Local> {
    timestamp_to_chrono(time.timestamp())
}

pub(crate) fn timestamp_to_chrono(ts: Timestamp) -> DateTime<Local> {
    let nanos = ts.as_nanosecond();
    let secs = i64::try_from(nanos.div_euclid(1_000_000_000)).unwrap_or_default();
    let sub = u32::try_from(nanos.rem_euclid(1_000_000_000)).unwrap_or_default();
    DateTime::from_timestamp(secs, sub)
        .unwrap_or_default()
        .with_timezone(&Local)
}

pub(crate) fn from_chrono(time: &DateTime<Local>) -> Result<Zoned, RepoError> {
    let nanos = time
        .timestamp_nanos_opt()
        .ok_or_else(|| RepoError::InvalidInput(format!("time {time} is out of range")))?;
    Timestamp::from_nanosecond(i128::from(nanos))
        .map(|ts| ts.to_zoned(TimeZone::system()))
        .map_err(|e| RepoError::InvalidInput(format!("time {time} is out of range: {e}")))
}

/// A snapshot file that cannot be read (torn by a bad copy, overwritten): the set it held is
/// lost, the others are not.
#[derive(Debug, Clone)]
pub(crate) struct UnreadableSnapshot {
    pub(crate) id: String,
    pub(crate) reason: String,
}

impl UnreadableSnapshot {
    /// One line for `check` and for the warning of every listing.
    pub(crate) fn describe(&self) -> String {
        format!(
            "snapshot file snapshots/{} is damaged and cannot be read ({}): the set it held cannot be listed or restored; move that file out of the repository (keep a copy) and run `check` again",
            self.id, self.reason
        )
    }
}

/// Every snapshot that can be read, and those that cannot. One damaged snapshot file makes
/// rustic's listing fail as a whole; then each file is read on its own so the others stay usable.
pub(crate) fn all_snapshots<S: Open>(
    repo: &Repository<S>,
) -> Result<(Vec<SnapshotFile>, Vec<UnreadableSnapshot>), RepoError> {
    if let Ok(snaps) = repo.get_all_snapshots() {
        return Ok((snaps, Vec::new()));
    }
    let ids: Vec<SnapshotId> = repo
        .list::<SnapshotId>()
        .map_err(|e| from_rustic("cannot list snapshots", &e))?
        .collect();
    let mut snaps = Vec::new();
    let mut unreadable = Vec::new();
    for id in ids {
        match repo.get_file::<SnapshotFile>(&id) {
            Ok(mut snap) => {
                snap.id = id;
                snaps.push(snap);
            }
            Err(e) => unreadable.push(UnreadableSnapshot {
                id: id.to_hex().as_str().to_string(),
                reason: crate::error::one_line(&summarize(&e).1),
            }),
        }
    }
    Ok((snaps, unreadable))
}

/// Every snapshot that can be read; each one that cannot is named in a warning on stderr.
pub(crate) fn readable_snapshots<S: Open>(
    repo: &Repository<S>,
) -> Result<Vec<SnapshotFile>, RepoError> {
    let (snaps, unreadable) = all_snapshots(repo)?;
    if !unreadable.is_empty() {
        crate::logging::install_default_logger();
    }
    for u in &unreadable {
        log::warn!("{}", u.describe());
    }
    Ok(snaps)
}

/// Finds a snapshot by a unique id prefix, or `latest`.
pub(crate) fn resolve_snapshot<S: Open>(
    repo: &Repository<S>,
    id: &str,
) -> Result<SnapshotFile, RepoError> {
    let wanted = id.trim().to_ascii_lowercase();
    if wanted == "latest" {
        let snaps = readable_snapshots(repo)?;
        return snaps
            .into_iter()
            .max_by(|a, b| a.time.cmp(&b.time))
            .ok_or(RepoError::SnapshotNotFound { id: wanted });
    }
    if wanted.is_empty() || !wanted.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(RepoError::InvalidInput(format!(
            "`{id}` is not a snapshot id: ids are hexadecimal, like `4f2a9c1e`, or `latest`"
        )));
    }
    let matching: Vec<SnapshotId> = repo
        .list::<SnapshotId>()
        .map_err(|e| from_rustic("cannot list snapshots", &e))?
        .filter(|s| s.to_hex().as_str().starts_with(&wanted))
        .collect();
    match matching.as_slice() {
        [] => Err(RepoError::SnapshotNotFound { id: wanted }),
        [found] => {
            let mut snap: SnapshotFile = repo
                .get_file(found)
                .map_err(|e| from_rustic("cannot read the snapshot", &e))?;
            snap.id = *found;
            Ok(snap)
        }
        more => Err(RepoError::AmbiguousSnapshot {
            id: wanted,
            matches: more.len(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_convert_both_ways_to_the_nanosecond() {
        let now = Local::now();
        let back = to_chrono(&from_chrono(&now).unwrap());
        assert_eq!(back, now);
    }
}
