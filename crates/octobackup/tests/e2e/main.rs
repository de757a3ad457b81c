//! octobackup's integration tests: the real binaries against the lab, one module per command. One
//! test binary, so the product, the lab and the repository engine are linked once.

mod common;
mod tamper;

mod backup;
mod bench;
mod demo;
mod discovery;
mod doctor;
mod drill;
mod restore;
mod retention;
mod task_wait;
