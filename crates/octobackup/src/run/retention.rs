//! Applying a retention policy to an instance's sets in the repository (`forget`, `backup
//! --forget`) and freeing the space (`prune`).
//!
//! A set is all snapshots carrying its `set:<id>` tag: its complete snapshot and any `part`
//! snapshots. It is kept or dropped whole. Sets with only parts (runs that did not finish) and
//! parts left beside a complete snapshot are dropped first. While another run of the instance
//! holds its lock, every set that has a part snapshot is left alone: it may be that run's.

use crate::backupset::retention::{self, Action, Candidate, Decision, Policy};
use crate::backupset::{TAG, TAG_COMPLETE, TAG_PART, escrow, tag_value};
use crate::config::Config;
use crate::error::{Exit, Failure};
use crate::run::journal::{JournalError, StateDir};
use octobackup_repo::{DropEstimate, NoProgress, PruneSummary, Repo, SnapshotInfo};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

/// What happened (or, with `dry_run`, would happen) to one set.
#[derive(Clone, Debug, Serialize)]
pub struct SetOutcome {
    pub set_id: String,
    pub time: String,
    pub complete: bool,
    /// Snapshot ids removed (or to be removed) for this set.
    pub snapshots: Vec<String>,
    pub reasons: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ForgetReport {
    pub instance: String,
    pub policy: String,
    pub dry_run: bool,
    /// Newest first.
    pub kept: Vec<SetOutcome>,
    /// Newest first.
    pub dropped: Vec<SetOutcome>,
    /// Sets left alone because a backup of the instance is running.
    pub left_alone: Vec<SetOutcome>,
    /// Leftover part snapshots removed from kept sets.
    pub leftover_parts: Vec<String>,
    /// Data only the dropped snapshots use: what a prune frees, give or take pack overhead.
    pub unique_bytes: u64,
    pub notes: Vec<String>,
}

impl ForgetReport {
    /// Every snapshot id removed (or to be removed).
    pub fn removed_snapshots(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .dropped
            .iter()
            .flat_map(|s| s.snapshots.iter().cloned())
            .collect();
        ids.extend(self.leftover_parts.iter().cloned());
        ids
    }
}

/// The policy for `instance`: its own `[instance.NAME.retention]`, else the top-level
/// `[retention]`. An error names how to set one.
pub fn policy_for(config: &Config, instance: &str) -> Result<Policy, Failure> {
    config
        .instances
        .get(instance)
        .and_then(|i| i.retention.clone())
        .or_else(|| config.retention.clone())
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            Failure::new(
                Exit::Usage,
                format!(
                    "no retention policy for instance '{instance}': add a [retention] section (e.g. keep_daily = 7, keep_weekly = 4, keep_monthly = 12) or [instance.{instance}.retention] to the config, or give --keep-last/--keep-daily/--keep-weekly/--keep-monthly/--keep-yearly/--keep-within"
                ),
            )
        })
}

/// The policy for `instance`'s sets in the `[[copy]]` `copy`: the copy's own `[copy.retention]`,
/// else the instance's (`policy_for`).
pub fn policy_for_copy(
    config: &Config,
    copy: &crate::config::copy::CopyConfig,
    instance: &str,
) -> Result<Policy, Failure> {
    match copy.retention.clone().filter(|p| !p.is_empty()) {
        Some(p) => Ok(p),
        None => policy_for(config, instance).map_err(|f| Failure {
            message: format!(
                "{} (the copy '{}' has no [copy.retention] of its own either)",
                f.message, copy.name
            ),
            ..f
        }),
    }
}

/// One set as found in the repository.
struct FoundSet {
    complete: Vec<SnapshotInfo>,
    parts: Vec<SnapshotInfo>,
}

fn is_complete(s: &SnapshotInfo) -> bool {
    s.tags.iter().any(|t| t == TAG_COMPLETE) && !s.tags.iter().any(|t| t == TAG_PART)
}

fn ids(snaps: &[SnapshotInfo]) -> Vec<String> {
    snaps.iter().map(|s| s.id.clone()).collect()
}

/// How long part snapshots are presumed to belong to a run still going (perhaps on another
/// machine, whose lock octobackup cannot see): sets with younger parts are left alone.
pub const DEFAULT_INCOMPLETE_GRACE: Duration = Duration::from_secs(24 * 3600);

/// How to forget.
#[derive(Clone, Debug)]
pub struct ForgetOptions {
    pub policy: Policy,
    /// Decide and report; change nothing.
    pub dry_run: bool,
    /// Another run of the instance holds its lock: every set with part snapshots is left alone.
    pub run_active: bool,
    /// Sets with part snapshots younger than this are left alone (a run may still be going).
    pub incomplete_grace: Duration,
    /// Drop exactly these sets (full set ids), whole, instead of applying the policy (e.g. sets
    /// `check` found damaged). The newest complete set is still refused.
    pub sets: Vec<String>,
}

impl ForgetOptions {
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            dry_run: false,
            run_active: false,
            incomplete_grace: DEFAULT_INCOMPLETE_GRACE,
            sets: Vec::new(),
        }
    }
}

/// Decides and (unless `dry_run`) forgets. The caller holds the instance's lock, or sets
/// `run_active` when another run holds it. Blocking: call from a blocking thread.
pub fn forget(
    repo: &Repo,
    // The escrow copies are found through `repo` (local or remote); kept for the callers.
    _repository_location: &str,
    instance: &str,
    opts: &ForgetOptions,
) -> Result<ForgetReport, Failure> {
    let (policy, dry_run, run_active) = (&opts.policy, opts.dry_run, opts.run_active);
    // `None`: a grace so long that every part counts as young.
    let grace_start = chrono::Duration::from_std(opts.incomplete_grace)
        .ok()
        .and_then(|d| chrono::Local::now().checked_sub_signed(d));
    let mut sets: BTreeMap<String, FoundSet> = BTreeMap::new();
    // Every set id in the repository (any instance), to find escrow copies of sets that are gone.
    let mut all_sets: HashSet<String> = HashSet::new();
    // The drill records of each set (report::drills): they go with it.
    let mut drills: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in repo.snapshots()? {
        if let Some(set) = tag_value(&s.tags, "set") {
            all_sets.insert(set.to_string());
        }
        if let Some(set) = tag_value(&s.tags, "drill-of") {
            drills
                .entry(set.to_string())
                .or_default()
                .push(s.id.clone());
        }
        if !s.tags.iter().any(|t| t == TAG) || tag_value(&s.tags, "instance") != Some(instance) {
            continue;
        }
        // Snapshots without a set tag are not ours to judge: they are left as they are.
        let Some(set) = tag_value(&s.tags, "set").map(String::from) else {
            continue;
        };
        let entry = sets.entry(set).or_insert(FoundSet {
            complete: Vec::new(),
            parts: Vec::new(),
        });
        if is_complete(&s) {
            entry.complete.push(s);
        } else {
            entry.parts.push(s);
        }
    }
    let candidates: Vec<Candidate> = sets
        .iter()
        .map(|(id, f)| {
            let newest = if f.complete.is_empty() {
                &f.parts
            } else {
                &f.complete
            };
            let time = newest
                .iter()
                .map(|s| s.time)
                .max()
                .expect("a set has a snapshot");
            Candidate {
                set_id: id.clone(),
                time: time.fixed_offset(),
                complete: !f.complete.is_empty(),
            }
        })
        .collect();

    let mut report = ForgetReport {
        instance: instance.to_string(),
        policy: policy.describe(),
        dry_run,
        kept: Vec::new(),
        dropped: Vec::new(),
        left_alone: Vec::new(),
        leftover_parts: Vec::new(),
        unique_bytes: 0,
        notes: Vec::new(),
    };
    if run_active {
        report.notes.push(format!(
            "a backup of '{instance}' is running (it holds the instance's lock): sets with part snapshots are left alone"
        ));
    }
    let decisions = if opts.sets.is_empty() {
        retention::decide(policy, &candidates)
    } else {
        report.policy = format!("drop the sets named: {}", opts.sets.join(", "));
        named_sets(&opts.sets, &candidates)?
    };
    for d in decisions {
        let found = &sets[&d.set_id];
        let mut outcome = SetOutcome {
            set_id: d.set_id.clone(),
            time: d.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
            complete: d.complete,
            snapshots: Vec::new(),
            reasons: d.reasons,
        };
        let has_parts = !found.parts.is_empty();
        if run_active && has_parts {
            outcome
                .reasons
                .push("left alone: it has part snapshots and a backup is running".into());
            report.left_alone.push(outcome);
            continue;
        }
        if found
            .parts
            .iter()
            .any(|p| grace_start.is_none_or(|g| p.time > g))
        {
            outcome.reasons.push(format!(
                "left alone: it has part snapshots younger than {} (a backup may still be running, here or on another machine); it goes once they are older (--incomplete-grace)",
                humantime::format_duration(opts.incomplete_grace)
            ));
            report.left_alone.push(outcome);
            continue;
        }
        match d.action {
            Action::Drop => {
                outcome.snapshots = ids(&found.complete);
                outcome.snapshots.extend(ids(&found.parts));
                outcome
                    .snapshots
                    .extend(drills.remove(&d.set_id).unwrap_or_default());
                report.dropped.push(outcome);
            }
            Action::Keep => {
                if has_parts {
                    outcome.reasons.push(format!(
                        "{} leftover part snapshot(s) of an interrupted run dropped",
                        found.parts.len()
                    ));
                    report.leftover_parts.extend(ids(&found.parts));
                }
                report.kept.push(outcome);
            }
        }
    }

    // The storage's own rules on deleting: an Object Lock's dates, and credentials that may not
    // delete. Said before anything is removed, so a refusal never stops half-way.
    hold_locked_sets(repo, opts, &mut report)?;
    let removed = report.removed_snapshots();
    if !dry_run && !removed.is_empty() {
        refuse_without_delete_rights(repo, "forget")?;
    }
    if removed.is_empty() {
        if !dry_run {
            sweep_escrow(repo, &all_sets, grace_start, &mut report);
        }
        return Ok(report);
    }
    report.unique_bytes = repo
        .estimate_drop(&removed)
        .map(|e: DropEstimate| e.unique_bytes)?;
    if dry_run {
        return Ok(report);
    }
    repo.delete_snapshots(&removed)?;
    for set in &report.dropped {
        all_sets.remove(&set.set_id);
        if let Err(e) = escrow::remove(repo, &set.set_id) {
            report.notes.push(e.message);
        }
    }
    sweep_escrow(repo, &all_sets, grace_start, &mut report);
    Ok(report)
}

/// Removes escrow copies of sets that are in no snapshot any more (a run that failed after
/// publishing them, or sets forgotten by another tool), once older than the grace period.
fn sweep_escrow(
    repo: &Repo,
    existing: &HashSet<String>,
    grace_start: Option<chrono::DateTime<chrono::Local>>,
    report: &mut ForgetReport,
) {
    let Ok(escrowed) = escrow::escrowed_sets(repo) else {
        return;
    };
    let mut swept = 0;
    for set in escrowed.iter().filter(|s| !existing.contains(*s)) {
        let taken = set
            .get(..16)
            .and_then(|t| chrono::NaiveDateTime::parse_from_str(t, "%Y%m%dT%H%M%SZ").ok())
            .map(|t| t.and_utc());
        let young = match (taken, grace_start) {
            (Some(t), Some(g)) => t >= g,
            _ => true,
        };
        if young {
            continue;
        }
        match escrow::remove(repo, set) {
            Ok(()) => swept += 1,
            Err(e) => report.notes.push(e.message),
        }
    }
    if swept > 0 {
        report.notes.push(format!(
            "removed the escrow copies of {swept} set(s) no longer in the repository"
        ));
    }
}

/// Decisions for `forget --set`: the named sets go, the others stay. The newest complete set
/// is refused: a new backup has to replace it first.
fn named_sets(named: &[String], candidates: &[Candidate]) -> Result<Vec<Decision>, Failure> {
    let newest = candidates
        .iter()
        .filter(|c| c.complete)
        .max_by(|a, b| a.time.cmp(&b.time).then_with(|| a.set_id.cmp(&b.set_id)))
        .map(|c| c.set_id.as_str());
    if let Some(n) = newest.filter(|n| named.iter().any(|s| s == n)) {
        return Err(Failure::new(
            Exit::Usage,
            format!(
                "set {n} is the newest complete set and is never dropped: take a new backup first, then forget it"
            ),
        ));
    }
    let mut out: Vec<Decision> = candidates
        .iter()
        .map(|c| {
            let drop = named.contains(&c.set_id);
            Decision {
                set_id: c.set_id.clone(),
                time: c.time,
                complete: c.complete,
                action: if drop { Action::Drop } else { Action::Keep },
                reasons: vec![if drop { "named by --set" } else { "not named" }.to_string()],
            }
        })
        .collect();
    out.sort_by_key(|d| std::cmp::Reverse(d.time));
    Ok(out)
}

/// `backup --forget`: applies the instance's configured policy after a successful backup.
/// Takes the instance's lock when it is free; when it is held (by the caller's own run, or by
/// another one), sets with part snapshots are left alone, so it is safe wherever it is called.
/// Blocking: call it from `tokio::task::spawn_blocking`.
pub fn apply_after_backup(
    repo: &Repo,
    config: &Config,
    instance: &str,
    state: &StateDir,
) -> Result<ForgetReport, Failure> {
    let policy = policy_for(config, instance)?;
    forget_beside_runs(repo, &config.repository.location, instance, policy, state)
}

/// `backup --forget` on a `[[copy]]` with its own `[copy.retention]`, after the copy: the same
/// as `apply_after_backup`, in the copy's repository with the copy's policy. `None` for a copy
/// without one (its sets stay until `forget --copy NAME`).
pub fn apply_to_copy(
    repo: &Repo,
    copy: &crate::config::copy::CopyConfig,
    instance: &str,
    state: &StateDir,
) -> Result<Option<ForgetReport>, Failure> {
    let Some(policy) = copy.retention.clone().filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    forget_beside_runs(repo, &copy.location, instance, policy, state).map(Some)
}

/// Forgets with the instance's lock when it is free; when another run holds it, that run's
/// sets (those with part snapshots) are left alone instead of waiting.
fn forget_beside_runs(
    repo: &Repo,
    location: &str,
    instance: &str,
    policy: Policy,
    state: &StateDir,
) -> Result<ForgetReport, Failure> {
    let lock = match state.lock(instance) {
        Ok(l) => Some(l),
        Err(JournalError::Busy { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let opts = ForgetOptions {
        run_active: lock.is_none(),
        ..ForgetOptions::new(policy)
    };
    forget(repo, location, instance, &opts)
}

/// Frees the space of forgotten data. Two-phase unless `instant` (see `Repo::prune`). In a
/// bucket with an Object Lock default retention, packs younger than the retention are left as
/// they are; with credentials that may not delete, it is refused before anything is planned.
pub fn prune(repo: &Repo, instant: bool) -> Result<PruneSummary, Failure> {
    refuse_without_delete_rights(repo, "prune")?;
    let locked_days = repo.storage().object_lock()?.and_then(|l| l.days);
    Ok(repo.prune_keeping(instant, locked_days, &NoProgress)?)
}

/// A time as the messages show it: UTC, to the minute.
fn utc(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The latest lock date among `snapshots`, if one is still ahead.
fn locked_until(
    repo: &Repo,
    snapshots: &[String],
) -> Result<Option<octobackup_repo::Retention>, Failure> {
    let now = chrono::Utc::now();
    let mut latest: Option<octobackup_repo::Retention> = None;
    for id in snapshots {
        if let Some(r) = repo.storage().retention(&format!("snapshots/{id}"))?
            && r.until > now
            && latest.as_ref().is_none_or(|l| r.until > l.until)
        {
            latest = Some(r);
        }
    }
    Ok(latest)
}

/// In a bucket with Object Lock, sets whose snapshots are still under retention stay: a set
/// dropped by the policy is left alone with the date it may go; a set named by `--set` is
/// refused (nothing removed). Leftover parts still locked stay too.
fn hold_locked_sets(
    repo: &Repo,
    opts: &ForgetOptions,
    report: &mut ForgetReport,
) -> Result<(), Failure> {
    if report.dropped.is_empty() && report.leftover_parts.is_empty() {
        return Ok(());
    }
    let Some(lock) = repo.storage().object_lock()? else {
        return Ok(());
    };
    let place = repo.storage().describe();
    let mut refused = Vec::new();
    let mut dropped = Vec::new();
    for mut set in std::mem::take(&mut report.dropped) {
        match locked_until(repo, &set.snapshots)? {
            None => dropped.push(set),
            Some(r) if !opts.sets.is_empty() => refused.push((set.set_id, r)),
            Some(r) => {
                set.reasons.push(format!(
                    "left alone: under the bucket's Object Lock ({} mode) until {}; it can go after that",
                    r.mode,
                    utc(&r.until)
                ));
                set.snapshots.clear();
                report.left_alone.push(set);
            }
        }
    }
    report.dropped = dropped;
    if let Some((set, r)) = refused.iter().max_by_key(|(_, r)| r.until) {
        let sets: Vec<&str> = refused.iter().map(|(s, _)| s.as_str()).collect();
        return Err(Failure::new(
            Exit::Repository,
            format!(
                "cannot forget {} {}: {} under the Object Lock of {place} ({} mode) until {}{}; nothing was removed. Forget {} after that date",
                if sets.len() == 1 { "set" } else { "sets" },
                sets.join(", "),
                if sets.len() == 1 { "it is" } else { "they are" },
                r.mode,
                utc(&r.until),
                if sets.len() > 1 {
                    format!(" (set {set} the longest)")
                } else {
                    String::new()
                },
                if sets.len() == 1 { "it" } else { "them" },
            ),
        ));
    }
    let mut parts = Vec::new();
    let mut held = 0;
    for id in std::mem::take(&mut report.leftover_parts) {
        if locked_until(repo, std::slice::from_ref(&id))?.is_some() {
            held += 1;
        } else {
            parts.push(id);
        }
    }
    report.leftover_parts = parts;
    if held > 0 {
        report.notes.push(format!(
            "{held} leftover part snapshot(s) kept: still under the bucket's Object Lock"
        ));
    }
    report.notes.push(format!(
        "the repository's bucket has Object Lock ({}): sets still under retention are kept",
        lock.describe()
    ));
    Ok(())
}

/// Refuses `what` (forget, prune) when the repository's credentials may not delete (an
/// append-only bucket policy), before anything is removed.
fn refuse_without_delete_rights(repo: &Repo, what: &str) -> Result<(), Failure> {
    if repo.storage().may_delete()? {
        return Ok(());
    }
    Err(Failure::new(
        Exit::Repository,
        format!(
            "{what} refused: the credentials of {} may add but not delete (the bucket's policy denies s3:DeleteObject: an append-only repository); nothing was removed. Run {what} with credentials that may delete, from a machine that keeps them apart from the backup host",
            repo.storage().describe()
        ),
    ))
}
