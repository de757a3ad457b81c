//! The repository layer against real repositories and stock restic. One test binary for the crate.

mod common;

mod backup_sets;
mod health;
mod merge_sets;
mod open_init;
mod restic_compat;
mod restore;
mod segments;
