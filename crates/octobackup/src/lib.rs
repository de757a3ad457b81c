//! octobackup: backs up and restores an Octopus Deploy server the way Octopus documents it, into a
//! restic-format repository. Each domain has its module: `octopus` (REST API, master key,
//! discovery), `sqlserver` (connection strings, T-SQL, client, lock), `backupset` (layout,
//! manifest, listing, retention, escrow), `config` (the schema, a leaf), then `run` (the
//! operations: backup, restore, drill, retention, with the maintenance journal) and on top `cli`
//! (commands, output, the one exit-code table). Imports point down (`layers.rs` checks it): `cli`
//! uses `run`, never the reverse; `run::progress` is what the CLI implements for the operations.
//! The `lab` feature adds `lab` and the `octobackup-lab` binary.

pub mod backupset;
pub mod cli;
pub mod config;
pub mod error;
#[cfg(feature = "lab")]
pub mod lab;
#[cfg(test)]
mod layers;
pub mod octopus;
pub mod run;
pub mod secret;
pub mod sqlserver;
