#[path = "../../../crates/octobackup/src/octopus/discovery.rs"]
pub mod discovery;
#[path = "../../../crates/octobackup/src/octopus/master_key.rs"]
pub mod master_key;
