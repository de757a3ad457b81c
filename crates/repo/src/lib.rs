//! octobackup's backup sets in a restic-format repository, through rustic_core
