//! octobackup: backs up and restores an Octopus Deploy server the way Octopus documents it, into a
//! restic-format repository. The binary is only wiring; each domain has its module:
//! `octopus` (REST API, master key), `sqlserver` (connection strings, T-SQL, client),
//! `backupset` (layout, manifest, listing), `run` (the steps of a run and their safety),
//! `config`, `report` (the HTML report, drill records), `schedule` (systemd timer, Task
//! Scheduler task), and `cli` (commands, output).

pub mod backupset;
pub mod cli;
pub mod config;
pub mod error;
#[cfg(feature = "lab")]
pub mod lab;
pub mod metrics;
pub mod notify;
pub mod octopus;
pub mod report;
pub mod run;
pub mod schedule;
pub mod secret;
pub mod sqlserver;
