//! octobackup: backs up and restores an Octopus Deploy server the way Octopus documents it, into a
//! restic-format repository. Each domain has its module: `octopus` (REST API, master key,
//! discovery), `sqlserver` (connection strings, T-SQL, client, lock), `backupset` (layout,
//! manifest, listing, retention, escrow), `config` (the schema), `report` (the HTML report, drill
//! records), `notify` and `metrics` (who is told how runs went), `schedule` (systemd timer, Task
//! Scheduler task), then `run` (the operations: backup, restore, drill, retention, with the
//! maintenance journal) and on top `cli` (commands, output, the one exit-code table). Imports
//! point down (`layers.rs` checks it): `cli` uses `run`, never the reverse; `run::progress` is
//! what the CLI implements for the operations. The `lab` feature adds `lab` and `octobackup-lab`.

pub mod backupset;
pub mod cli;
pub mod config;
pub mod error;
pub mod format;
#[cfg(feature = "lab")]
pub mod lab;
#[cfg(test)]
mod layers;
pub mod metrics;
pub mod notify;
pub mod octopus;
pub mod report;
pub mod run;
pub mod schedule;
pub mod secret;
pub mod sqlserver;
