//! The outcome of a repository check.

use rustic_core::CheckResults;
use serde::Serialize;

use crate::error::one_line;
use crate::snapshots::SnapshotInfo;

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
    pub affected: Vec<AffectedSnapshot>,
    /// Snapshot files that cannot be read (full ids); filled by [`crate::Repo::check_with`].
    pub damaged_snapshots: Vec<String>,
}

impl CheckReport {
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }

    pub(crate) fn from_results(results: &CheckResults) -> Self {
        let mut report = Self::default();
        for (level, finding) in &results.0 {
            // rustic does not export the level type; its Debug name is all we can read.
            let text = one_line(&finding.to_string());
            if format!("{level:?}") == "Warn" {
                report.warnings.push(text);
            } else {
                report.errors.push(text);
            }
        }
        report
    }
}

/// A snapshot that uses damaged data.
#[derive(Debug, Clone, Serialize)]
pub struct AffectedSnapshot {
    pub snapshot: SnapshotInfo,
    /// Files (snapshot paths) whose content is damaged, at most [`crate::usage::MAX_FILES_LISTED`].
    pub files: Vec<String>,
    /// How many files are damaged in all.
    pub files_damaged: usize,
    /// Folders whose listing (tree) cannot be read: everything below them is lost.
    pub unreadable_folders: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_rustic_errors_become_one_line() {
        let text = "error checking trees : `rustic_core` experienced an error related to `cryptographic operations`.\n\nMessage:\nerror processing Pack:eddfaaf0 at BlobLocation { offset: 0 }\n\n\nSome additional details ...\n\nCaused by:\n`rustic_core` experienced an error related to `cryptographic operations`.\n\nMessage:\nData decryption failed, MAC check failed.\n\nFor more information, see: https://rustic.cli.rs/docs/errors/C001\n\nContext:\n- nonce: [1, 2]\n\nCaused by:\naead::Error\n\n\nBacktrace:\n   0: x\n";
        assert_eq!(
            one_line(text),
            "error checking trees: error processing Pack:eddfaaf0 at BlobLocation { offset: 0 }: Data decryption failed, MAC check failed.: aead::Error"
        );
        assert_eq!(
            one_line("pack 1234abcd: Hash mismatch"),
            "pack 1234abcd: Hash mismatch"
        );
    }
}
