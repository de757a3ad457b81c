#[path = "../../../crates/octobackup/src/sqlserver/connstr.rs"]
pub mod connstr;
