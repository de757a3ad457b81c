//! octobackup's integration tests: the real binaries against the lab, one module per command. One
//! test binary, so the product, the lab and the repository engine are linked once.

mod common;
mod servers;
mod sets;
mod tamper;

mod backends;
mod backup;
mod bench;
mod chain;
mod check;
mod copy;
mod damage;
mod demo;
mod discovery;
mod disk_full;
mod doctor;
mod drill;
mod faults;
mod faults_restore;
mod forget;
mod init;
mod interrupt;
mod kept;
mod key;
mod linux;
mod lock;
mod notify;
mod permissions;
mod recover;
mod report;
mod restore;
mod schedule;
mod snapshots;
mod sqlserver;
mod task_wait;
mod window;
