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
            let summary = PruneSummary {
                packs_removed: plan.stats.packs.unused + plan.stats.packs_to_delete.remove,
                packs_repacked: plan.stats.packs.repack,
                bytes_freed: size.remove + size.repackrm,
                bytes_used: size.used,
                locked_days,
            };
            repo.prune(&opts, plan)
                .map_err(|e| from_rustic("cannot prune", &e))?;
            Ok(summary)
        })
    }
}
