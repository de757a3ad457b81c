#[path = "../../../crates/octobackup/src/backupset/check.rs"]
pub mod check;
#[path = "../../../crates/octobackup/src/backupset/manifest.rs"]
pub mod manifest;
#[path = "../../../crates/octobackup/src/backupset/retention.rs"]
pub mod retention;
pub use manifest::Manifest;

/// Stand-in: the product's escrow module brings age and the repository; the config only
/// names this struct (crates/octobackup/src/backupset/escrow.rs, keep in step).
pub mod escrow {
    use serde::{Deserialize, Serialize};
    #[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct EscrowConfig {
        #[serde(default)]
        pub age_recipients: Vec<String>,
    }
}

/// Stand-in: crates/octobackup/src/backupset/mod.rs, keep in step.
pub const FOLDER_NAMES: &[&str] = &["Packages", "Artifacts", "TaskLogs", "EventExports"];
