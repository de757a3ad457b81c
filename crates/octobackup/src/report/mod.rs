//! The report: one self-contained HTML page an administrator reads in ten seconds and can hand to
//! an auditor. Everything it shows comes from the repository (the sets' tags, manifests and
//! snapshot figures, the drill records of `drills`) and the config's retention policy; nothing
//! is fetched when the page is opened (inline CSS and SVG, no script), so it opens from a share.
//!
//! `collect` reads (blocking), `html::render` is pure: the page is tested without a repository.

pub mod drills;
pub mod html;

use crate::backupset::check::Check;
use crate::backupset::retention::{self, Action, Candidate, Policy};
use crate::backupset::{TAG, list, tag_value};
use crate::config::Config;
use crate::error::{Exit, Failure};
use chrono::{DateTime, Local, Utc};
use drills::DrillRecord;
use octobackup_repo::{Repo, RepoError};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    pub generated: DateTime<Utc>,
    pub tool_version: String,
    pub instances: Vec<InstanceReport>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct InstanceReport {
    pub name: String,
    /// Oldest first.
    pub sets: Vec<SetRow>,
    pub retention: RetentionView,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct SetRow {
    pub set_id: String,
    pub snapshot_id: String,
    pub time: DateTime<Utc>,
    pub complete: bool,
    /// The machine that ran the backup, and the Octopus nodes it found (drained in the window).
    pub hostname: Option<String>,
    pub nodes: Vec<String>,
    pub octopus_version: Option<String>,
    pub window_seconds: Option<f64>,
    /// The whole run, from the manifest's start to its end.
    pub backup_seconds: Option<f64>,
    pub steps: Vec<Check>,
    pub database_bytes: Option<u64>,
    pub folder_bytes: Option<u64>,
    pub folder_files: Option<u64>,
    /// Data new to the repository (before and after compression), over the set's snapshots.
    pub data_added: Option<u64>,
    pub data_added_packed: Option<u64>,
    /// The newest drill of the set.
    pub drill: Option<DrillRecord>,
}

#[derive(Clone, Debug, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RetentionView {
    /// No policy in the config: nothing is ever dropped (and the repository only grows).
    NoPolicy,
    Policy {
        policy: String,
        /// What `forget` would drop now (not applied yet).
        drop_now: Vec<Drop>,
        /// What goes once the next nightly set is there (assumed a day after the newest).
        drop_next: Vec<Drop>,
        next_set_at: Option<DateTime<Utc>>,
    },
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Drop {
    pub set_id: String,
    pub time: DateTime<Utc>,
    pub reason: String,
}

impl InstanceReport {
    pub fn newest_complete(&self) -> Option<&SetRow> {
        self.sets.iter().rev().find(|s| s.complete)
    }

    /// The newest passing drill of a set still in the repository.
    pub fn newest_passing_drill(&self) -> Option<&DrillRecord> {
        self.sets
            .iter()
            .filter_map(|s| s.drill.as_ref())
            .filter(|d| d.passed)
            .max_by_key(|d| d.time)
    }
}

/// Reads everything the report shows. Blocking: call from a blocking thread.
pub fn collect(repo: &Repo, config: &Config, now: DateTime<Utc>) -> Result<Report, RepoError> {
    // Whole seconds: the page's "generated" stamp and every age on it then agree to the second.
    let now = chrono::SubsecRound::trunc_subsecs(now, 0);
    let snapshots = repo.snapshots()?;
    let summaries = list::list(repo, None)?;
    let drill_records = drills::from_snapshots(&snapshots);

    // Every snapshot of a set counts for its new data: the part snapshots a run writes before it
    // seals the set, and the complete one.
    let mut added: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for s in snapshots.iter().filter(|s| s.tags.iter().any(|t| t == TAG)) {
        let (Some(set), Some(f)) = (tag_value(&s.tags, "set"), &s.summary) else {
            continue;
        };
        let e = added.entry(set.to_string()).or_insert((0, 0));
        e.0 += f.data_added;
        e.1 += f.data_added_packed;
    }
    let mut newest_drill: BTreeMap<&str, &DrillRecord> = BTreeMap::new();
    for d in &drill_records {
        newest_drill.insert(&d.set_id, d);
    }

    let mut names: BTreeSet<String> = config.instances.keys().cloned().collect();
    names.extend(summaries.iter().map(|s| s.instance.clone()));
    let mut instances = Vec::new();
    for name in names {
        let mut sets = Vec::new();
        for s in summaries.iter().filter(|s| s.instance == name) {
            let manifest = if s.complete {
                list::read_manifest(repo, &s.snapshot_id).ok()
            } else {
                None
            };
            let time = DateTime::parse_from_rfc3339(&s.time)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or(now);
            let m = manifest.as_ref();
            sets.push(SetRow {
                set_id: s.set_id.clone(),
                snapshot_id: s.snapshot_id.clone(),
                time,
                complete: s.complete,
                hostname: m.map(|m| m.hostname.clone()),
                nodes: m.map(|m| m.octopus.nodes.clone()).unwrap_or_default(),
                octopus_version: s.octopus_version.clone(),
                window_seconds: s.window_seconds,
                backup_seconds: m.and_then(|m| match (m.started, m.finished) {
                    (Some(a), Some(b)) => Some((b - a).num_milliseconds() as f64 / 1000.0),
                    _ => None,
                }),
                steps: m.map(|m| m.steps.clone()).unwrap_or_default(),
                database_bytes: s.database_bytes,
                folder_bytes: m.map(|m| m.folders.iter().map(|f| f.bytes).sum()),
                folder_files: m.map(|m| m.folders.iter().map(|f| f.files).sum()),
                data_added: added.get(&s.set_id).map(|a| a.0),
                data_added_packed: added.get(&s.set_id).map(|a| a.1),
                drill: newest_drill.get(s.set_id.as_str()).map(|d| (*d).clone()),
            });
        }
        let policy = config
            .instances
            .get(&name)
            .and_then(|i| i.retention.clone())
            .or_else(|| config.retention.clone())
            .filter(|p| !p.is_empty());
        let retention = match policy {
            Some(p) => retention_view(&p, &sets),
            None => RetentionView::NoPolicy,
        };
        instances.push(InstanceReport {
            name,
            sets,
            retention,
        });
    }
    Ok(Report {
        generated: now,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        instances,
    })
}

/// What the policy drops now, and once the next nightly set is taken.
pub fn retention_view(policy: &Policy, sets: &[SetRow]) -> RetentionView {
    let candidate = |id: &str, t: DateTime<Utc>, complete: bool| Candidate {
        set_id: id.to_string(),
        // Days and weeks are counted in local time, as `forget` counts them.
        time: t.with_timezone(&Local).fixed_offset(),
        complete,
    };
    let mut candidates: Vec<Candidate> = sets
        .iter()
        .map(|s| candidate(&s.set_id, s.time, s.complete))
        .collect();
    let drops = |c: &[Candidate]| -> Vec<Drop> {
        let mut d: Vec<Drop> = retention::decide(policy, c)
            .into_iter()
            .filter(|d| d.action == Action::Drop)
            .map(|d| Drop {
                set_id: d.set_id,
                time: d.time.with_timezone(&Utc),
                reason: d.reasons.join("; "),
            })
            .collect();
        d.sort_by_key(|d| d.time);
        d
    };
    let drop_now = drops(&candidates);
    let next_set_at = sets
        .iter()
        .rev()
        .find(|s| s.complete)
        .map(|s| s.time + chrono::Duration::days(1));
    let drop_next = match next_set_at {
        Some(t) => {
            const NEXT: &str = "(the next nightly set)";
            candidates.push(candidate(NEXT, t, true));
            let now: BTreeSet<&str> = drop_now.iter().map(|d| d.set_id.as_str()).collect();
            drops(&candidates)
                .into_iter()
                .filter(|d| d.set_id != NEXT && !now.contains(d.set_id.as_str()))
                .collect()
        }
        None => Vec::new(),
    };
    RetentionView::Policy {
        policy: policy.describe(),
        drop_now,
        drop_next,
        next_set_at,
    }
}

/// Writes the page next to its final name and renames it into place, so a reader on the share
/// never sees half a page.
pub fn write(path: &Path, page: &str) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".octobackup-report-")
        .suffix(".tmp")
        .tempfile_in(&dir)?;
    std::io::Write::write_all(&mut tmp, page.as_bytes())?;
    // A page for others to read (a temporary file starts as 0600).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Collects, renders and writes the report for the whole repository. Blocking.
pub fn write_report(repo: &Repo, config: &Config, path: &Path) -> Result<Report, Failure> {
    let report = collect(repo, config, Utc::now())?;
    write(path, &html::render(&report)).map_err(|e| {
        Failure::new(
            Exit::Failed,
            format!(
                "cannot write the report to {}: {e} (does the folder exist, and may this account write there?)",
                path.display()
            ),
        )
    })?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    pub(crate) fn row(id: &str, time: DateTime<Utc>, complete: bool) -> SetRow {
        SetRow {
            set_id: id.into(),
            snapshot_id: format!("{id}-snap"),
            time,
            complete,
            hostname: complete.then(|| "backup-host".into()),
            nodes: vec![],
            octopus_version: None,
            window_seconds: complete.then_some(12.5),
            backup_seconds: complete.then_some(40.0),
            steps: vec![],
            database_bytes: complete.then_some(1 << 20),
            folder_bytes: complete.then_some(2 << 20),
            folder_files: complete.then_some(10),
            data_added: Some(3000),
            data_added_packed: Some(2000),
            drill: None,
        }
    }

    #[test]
    fn next_drops_are_the_sets_the_next_night_pushes_out() {
        let t = |d: u32| Utc.with_ymd_and_hms(2026, 3, d, 1, 0, 0).unwrap();
        let sets = vec![
            row("a", t(1), true),
            row("b", t(2), false),
            row("c", t(3), true),
            row("d", t(4), true),
        ];
        let p = Policy {
            keep_last: Some(2),
            ..Default::default()
        };
        let RetentionView::Policy {
            drop_now,
            drop_next,
            next_set_at,
            policy,
        } = retention_view(&p, &sets)
        else {
            panic!("a policy")
        };
        assert_eq!(policy, "keep-last 2");
        let ids = |d: &[Drop]| d.iter().map(|d| d.set_id.clone()).collect::<Vec<_>>();
        // Now: the oldest complete set and the incomplete one.
        assert_eq!(ids(&drop_now), ["a", "b"]);
        // The next night's set pushes out c.
        assert_eq!(ids(&drop_next), ["c"]);
        assert_eq!(next_set_at, Some(t(5)));
    }
}
