//! Octopus Server REST API simulator for octobackup's lab
