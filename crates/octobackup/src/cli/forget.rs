//! `octobackup forget` and `octobackup prune`: retention by whole sets, then freeing the space.

use super::backup::bytes;
use super::{emit, repository};
use crate::backupset::retention::{Policy, parse_within};
use crate::backupset::{TAG, tag_value};
use crate::config::Config;
use crate::error::{Exit, Failure};
use crate::run::journal::{JournalError, StateDir};
use crate::run::retention::{self, ForgetOptions, ForgetReport};
use octobackup_repo::PruneSummary;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only this instance (default: every instance in the config, each with its own policy).
    #[arg(long, short)]
    pub instance: Option<String>,
    /// Keep the N newest sets.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest set of each of the last N hours that have one.
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest set of each of the last N days that have one.
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep the newest set of each of the last N (ISO) weeks that have one.
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest set of each of the last N months that have one.
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest set of each of the last N years that have one.
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Keep every set taken within this long before the newest one (e.g. 30d, 2w, 12h).
    #[arg(long, value_name = "DURATION", value_parser = parse_within)]
    pub keep_within: Option<Duration>,
    /// Drop this set (id or unique start; repeatable) whole instead of applying a policy, e.g.
    /// a set `check` found damaged. The newest complete set is refused.
    #[arg(long = "set", value_name = "SET")]
    pub sets: Vec<String>,
    /// Show what would be dropped and how much space it would free; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Sets with part snapshots younger than this are left alone: their run may still be going
    /// (on another machine, whose lock octobackup cannot see). Default 24h.
    #[arg(long, value_name = "DURATION", value_parser = parse_within)]
    pub incomplete_grace: Option<Duration>,
    /// Then prune: free the space the dropped sets used.
    #[arg(long, conflicts_with = "dry_run")]
    pub prune: bool,
    /// With --prune: delete unused data now instead of in two phases (only safe when nothing
    /// else writes to the repository).
    #[arg(long, requires = "prune")]
    pub instant: bool,
    /// Forget in the `[[copy]]` of this name instead of the main repository, with the copy's
    /// `[copy.retention]` (else the instance's policy). The main repository is not touched.
    #[arg(long, value_name = "NAME")]
    pub copy: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct PruneArgs {
    /// Delete unused data now instead of marking it and deleting it in a prune at least 23 hours
    /// later. Only safe when nothing else writes to the repository: octobackup takes every
    /// configured instance's lock first.
    #[arg(long)]
    pub instant: bool,
    /// Prune the `[[copy]]` of this name instead of the main repository.
    #[arg(long, value_name = "NAME")]
    pub copy: Option<String>,
}

impl Args {
    /// The policy given by flags, if any flag was given (flags replace the config's policy).
    fn flag_policy(&self) -> Option<Policy> {
        let p = Policy {
            keep_last: self.keep_last,
            keep_hourly: self.keep_hourly,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            keep_yearly: self.keep_yearly,
            keep_within: self.keep_within,
        };
        (!p.is_empty()).then_some(p)
    }
}

#[derive(serde::Serialize)]
struct Output {
    /// `--copy NAME`: the copy forgotten in (the main repository otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    copy: Option<String>,
    instances: Vec<ForgetReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prune: Option<PruneSummary>,
    #[serde(skip)]
    instant: bool,
}

pub async fn run(config_path: &Path, args: Args, json: bool) -> Result<(), Failure> {
    let config = super::context::load_config(config_path)?;
    let names: Vec<String> = match &args.instance {
        Some(_) => vec![
            config
                .instance(config_path, args.instance.as_deref())?
                .0
                .to_string(),
        ],
        None if config.instances.is_empty() => {
            return Err(Failure::new(
                Exit::Usage,
                format!(
                    "the config file {} defines no [instance.NAME] section: there is nothing to forget",
                    config_path.display()
                ),
            ));
        }
        None => config.instances.keys().cloned().collect(),
    };
    if !args.sets.is_empty() && args.flag_policy().is_some() {
        return Err(Failure::new(
            Exit::Usage,
            "--set names the sets to drop; it cannot be combined with --keep-* rules",
        ));
    }
    let copy = match &args.copy {
        Some(c) => Some(repository::copy_entry(&config, c)?),
        None => None,
    };
    // Every policy is resolved before anything is touched.
    let policies: Vec<(String, Policy)> = names
        .iter()
        .map(|n| match (args.flag_policy(), copy) {
            (Some(p), _) => Ok((n.clone(), p)),
            (None, _) if !args.sets.is_empty() => Ok((n.clone(), Policy::default())),
            (None, Some(c)) => retention::policy_for_copy(&config, c, n).map(|p| (n.clone(), p)),
            (None, None) => retention::policy_for(&config, n).map(|p| (n.clone(), p)),
        })
        .collect::<Result<_, _>>()?;
    let repo = Arc::new(repository::open_chosen(&config, args.copy.as_deref()).await?);
    // Named sets are resolved (unique prefixes allowed) before anything is touched.
    let named: Vec<String> = if args.sets.is_empty() {
        Vec::new()
    } else {
        let repo = repo.clone();
        let wanted = args.sets.clone();
        let names = names.clone();
        crate::run::blocking::blocking("finding the sets", move || {
            resolve_sets(&repo, &names, &wanted)
        })
        .await??
    };
    let state = StateDir::new(&config.state_dir(config_path));
    let mut reports = Vec::new();
    for (name, policy) in policies {
        // The instance's lock keeps a backup from starting meanwhile; if a backup holds it,
        // its sets are left alone.
        let lock = match state.lock(&name) {
            Ok(l) => Some(l),
            Err(JournalError::Busy { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let repo = repo.clone();
        let location = copy
            .map_or(&config.repository.location, |c| &c.location)
            .clone();
        let opts = ForgetOptions {
            dry_run: args.dry_run,
            run_active: lock.is_none(),
            incomplete_grace: args
                .incomplete_grace
                .unwrap_or(retention::DEFAULT_INCOMPLETE_GRACE),
            sets: named.clone(),
            ..ForgetOptions::new(policy)
        };
        let report = crate::run::blocking::blocking("forget", move || {
            let r = retention::forget(&repo, &location, &name, &opts);
            drop(lock);
            r
        })
        .await??;
        reports.push(report);
    }
    let prune = if args.prune {
        let locks = if args.instant {
            Some(lock_all(&config, config_path)?)
        } else {
            None
        };
        let repo = repo.clone();
        let instant = args.instant;
        let s = crate::run::blocking::blocking("prune", move || retention::prune(&repo, instant))
            .await??;
        drop(locks);
        Some(s)
    } else {
        None
    };
    let out = Output {
        copy: args.copy.clone(),
        instances: reports,
        prune,
        instant: args.instant,
    };
    emit(json, &out, || human(&out));
    Ok(())
}

/// Full set ids for `--set` values (ids or unique starts) among the instances' sets.
fn resolve_sets(
    repo: &octobackup_repo::Repo,
    instances: &[String],
    wanted: &[String],
) -> Result<Vec<String>, Failure> {
    let mut known: Vec<String> = Vec::new();
    for s in repo.snapshots()? {
        let inst = tag_value(&s.tags, "instance");
        if !s.tags.iter().any(|t| t == TAG)
            || !inst.is_some_and(|i| instances.iter().any(|n| n == i))
        {
            continue;
        }
        if let Some(set) = tag_value(&s.tags, "set")
            && !known.iter().any(|k| k == set)
        {
            known.push(set.to_string());
        }
    }
    wanted
        .iter()
        .map(|w| {
            let m: Vec<&String> = known.iter().filter(|k| k.starts_with(w.as_str())).collect();
            match m.as_slice() {
                [one] => Ok((*one).clone()),
                [] => Err(Failure::new(
                    Exit::Usage,
                    format!("no backup set '{w}' here: list them with `octobackup snapshots`"),
                )),
                more => Err(Failure::new(
                    Exit::Usage,
                    format!(
                        "set id '{w}' is ambiguous ({} sets start with it): give more characters",
                        more.len()
                    ),
                )),
            }
        })
        .collect()
}

/// Every configured instance's lock, or a Busy error naming the one in use.
fn lock_all(
    config: &Config,
    config_path: &Path,
) -> Result<Vec<crate::run::journal::InstanceLock>, Failure> {
    let state = StateDir::new(&config.state_dir(config_path));
    config
        .instances
        .keys()
        .map(|n| {
            state.lock(n).map_err(|e| match e {
                JournalError::Busy { .. } => Failure::new(
                    Exit::Busy,
                    format!(
                        "{e}. An instant prune needs the repository to itself: retry when the backup has finished, or prune without --instant (safe beside a running backup)"
                    ),
                ),
                other => other.into(),
            })
        })
        .collect()
}

pub async fn prune(config_path: &Path, args: PruneArgs, json: bool) -> Result<(), Failure> {
    let config = super::context::load_config(config_path)?;
    let repo = repository::open_chosen(&config, args.copy.as_deref()).await?;
    let locks = if args.instant {
        Some(lock_all(&config, config_path)?)
    } else {
        None
    };
    let instant = args.instant;
    let s =
        crate::run::blocking::blocking("prune", move || retention::prune(&repo, instant)).await??;
    drop(locks);
    let out = PruneOutput {
        copy: args.copy,
        summary: s,
    };
    emit(json, &out, || {
        let mut text = prune_human(&out.summary, instant);
        if let Some(c) = &out.copy {
            text.insert_str(0, &format!("in the copy '{c}': "));
        }
        text
    });
    Ok(())
}

/// `prune --json`: the summary, and the copy pruned when it was not the main repository.
#[derive(serde::Serialize)]
struct PruneOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    copy: Option<String>,
    #[serde(flatten)]
    summary: PruneSummary,
}

fn prune_human(s: &PruneSummary, instant: bool) -> String {
    let mut out = format!(
        "prune: {} unused pack(s) {}, {} repacked; {} freed, {} in use\n",
        s.packs_removed,
        if instant {
            "removed"
        } else {
            "marked (removed by a prune 23 hours or more from now)"
        },
        s.packs_repacked,
        bytes(s.bytes_freed),
        bytes(s.bytes_used)
    );
    if let Some(days) = s.locked_days {
        out.push_str(&format!(
            "  {} unused pack(s) stored in the last {} days were left as they are: the bucket's Object Lock keeps them {days} days\n",
            s.packs_kept_locked,
            days + 1
        ));
    }
    out
}

fn short(id: &str) -> &str {
    &id[..8.min(id.len())]
}

fn human(out: &Output) -> String {
    let mut s = String::new();
    if let Some(c) = &out.copy {
        s.push_str(&format!("in the copy '{c}':\n"));
    }
    for r in &out.instances {
        s.push_str(&format!("instance {}: policy {}\n", r.instance, r.policy));
        for n in &r.notes {
            s.push_str(&format!("  note: {n}\n"));
        }
        let mut rows: Vec<(&str, &retention::SetOutcome)> = Vec::new();
        rows.extend(r.kept.iter().map(|o| ("keep", o)));
        rows.extend(r.dropped.iter().map(|o| ("DROP", o)));
        rows.extend(r.left_alone.iter().map(|o| ("left", o)));
        rows.sort_by(|a, b| b.1.time.cmp(&a.1.time));
        for (what, o) in rows {
            s.push_str(&format!(
                "  {what} {:<24} {:<25} {:<10} {}\n",
                o.set_id,
                o.time,
                if o.complete { "complete" } else { "INCOMPLETE" },
                o.reasons.join("; ")
            ));
            if what == "DROP" {
                let snaps: Vec<&str> = o.snapshots.iter().map(|x| short(x)).collect();
                s.push_str(&format!("       snapshots {}\n", snaps.join(", ")));
            }
        }
        let removed = r.removed_snapshots().len();
        s.push_str(&format!(
            "  {} {} set(s) ({} snapshot(s)); {} kept{}\n",
            if r.dry_run { "would drop" } else { "dropped" },
            r.dropped.len(),
            removed,
            r.kept.len(),
            if r.left_alone.is_empty() {
                String::new()
            } else {
                format!(", {} left alone", r.left_alone.len())
            }
        ));
        if removed > 0 {
            s.push_str(&format!(
                "  {} of stored data is used only by {}: a prune {} about that much (partly used packs may be kept)\n",
                bytes(r.unique_bytes),
                if r.dry_run {
                    "the sets that would be dropped"
                } else {
                    "the dropped sets"
                },
                if r.dry_run { "would free" } else { "frees" }
            ));
        }
        if r.dry_run {
            s.push_str("  (dry run: nothing was removed)\n");
        }
    }
    if let Some(p) = &out.prune {
        s.push_str(&prune_human(p, out.instant));
    }
    s
}
