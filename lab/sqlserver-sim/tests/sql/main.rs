//! The SQL Server stand-in driven by tiberius and python-tds. One test binary for the crate.

mod common;

mod applock;
mod backup;
mod differential;
mod field;
mod login;
mod permissions;
mod python_tds;
mod queries;
mod restore;
