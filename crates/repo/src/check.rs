//! The outcome of a repository check.

use rustic_core::CheckResults;
use serde::Serialize;

/// What `check` found. rustic has already logged each finding as it went.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// Damage: missing or corrupt packs, trees or index entries.
    pub errors: Vec<String>,
    /// Oddities that do not affect what can be restored (e.g. unused packs).
    pub warnings: Vec<String>,
    /// Packs named by the errors (full ids); filled by [`crate::Repo::check_with`].
    pub damaged_packs: Vec<String>,
    /// Snapshots using damaged data; filled by [`crate::Repo::check_with`].
    pub affected: Vec<crate::usage::AffectedSnapshot>,
}

impl CheckReport {
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }

    pub(crate) fn from_results(results: &CheckResults) -> Self {
        let mut report = Self::default();
        for (level, finding) in &results.0 {
            // rustic does not export the level type; its Debug name is all we can read.
            if format!("{level:?}") == "Warn" {
                report.warnings.push(finding.to_string());
            } else {
                report.errors.push(finding.to_string());
            }
        }
        report
    }
}
