#[path = "../../../crates/octobackup/src/run/journal.rs"]
pub mod journal;
