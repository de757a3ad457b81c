//! Removing data no snapshot needs any more, after snapshots were deleted.

use rustic_core::PruneOptions;
use serde::Serialize;

use crate::error::{RepoError, from_rustic};
use crate::progress::ProgressSink;
use crate::repo::Repo;

/// What a prune did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneSummary {
    /// Pack files no snapshot uses (removed now, or marked for a later prune), plus packs
    /// marked by an earlier prune that are removed now.
    pub packs_removed: u64,
    /// Pack files rewritten because they were partly unused.
    pub packs_repacked: u64,
    /// Bytes of blobs no snapshot uses any more (removed now or when repacked).
    pub bytes_freed: u64,
    /// Bytes of blobs still in use.
    pub bytes_used: u64,
    /// Packs younger than this many days were left as they are (neither removed nor
    /// repacked): the bucket's Object Lock keeps them until then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locked_days: Option<u32>,
    /// With `locked_days`: packs no snapshot uses (wholly or in part) left as they are because
    /// they are younger than the lock; a prune after that date frees them.
    #[serde(skip_serializing_if = "is_zero")]
    pub packs_kept_locked: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What the plan does with each pack, counted from rustic's per-pack decisions (its
/// `stats.packs.unused` counts every unused pack, also those kept as too young, so it is not
/// what is removed): (removed or marked now, unused packs kept as too young). rustic_core does
/// not export the decision and status types, so they are told apart by their names.
fn counted(plan: &rustic_core::PrunePlan) -> (u64, u64) {
    let (mut removed, mut young) = (0, 0);
    for (key, n) in &plan.stats.debug.0 {
        let has = |s: &str| key.status.iter().any(|x| format!("{x:?}") == s);
        match format!("{:?}", key.todo).as_str() {
            "MarkDelete" | "Delete" => removed += n.packs,
            "Keep" if has("TooYoung") && has("HasUnusedBlobs") => young += n.packs,
            _ => {}
        }
    }
    // Pack files no index names (a run that stopped before its index was written).
    (removed + plan.stats.packs_unref, young)
}

impl Repo {
    /// Removes data that no snapshot uses. Unused packs are first only marked (rustic's
    /// two-phase delete, safe against a backup running at the same time) and removed by a
    /// prune at least 23 hours later; `instant` removes them now, which is only safe when
    /// nothing else writes to the repository.
    pub fn prune(
        &self,
        instant: bool,
        progress: &dyn ProgressSink,
    ) -> Result<PruneSummary, RepoError> {
        self.prune_keeping(instant, None, progress)
    }

    /// As [`Repo::prune`], but packs younger than `locked_days` days are not planned for
    /// removal or repacking (an Object Lock's default retention: a pack's index time is when
    /// it was stored, give or take the run's length, so a day is added to be sure).
    pub fn prune_keeping(
        &self,
        instant: bool,
        locked_days: Option<u32>,
        progress: &dyn ProgressSink,
    ) -> Result<PruneSummary, RepoError> {
        self.run(progress, |repo| {
            self.router.set_phase("prune", None);
            let mut opts = PruneOptions::default().instant_delete(instant);
            if let Some(days) = locked_days {
                opts.keep_pack = rustic_core::jiff::Span::new().hours(24 * (i64::from(days) + 1));
            }
            let plan = repo
                .prune_plan(&opts)
                .map_err(|e| from_rustic("cannot plan the prune", &e))?;
            let size = plan.stats.size_sum();
            let (packs_removed, packs_kept_locked) = counted(&plan);
            let summary = PruneSummary {
                packs_removed,
                packs_repacked: plan.stats.packs.repack,
                bytes_freed: size.remove + size.repackrm,
                bytes_used: size.used,
                locked_days,
                packs_kept_locked: if locked_days.is_some() {
                    packs_kept_locked
                } else {
                    0
                },
            };
            repo.prune(&opts, plan)
                .map_err(|e| from_rustic("cannot prune", &e))?;
            Ok(summary)
        })
    }
}
