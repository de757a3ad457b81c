//! The SQL Server stand-in driven by tiberius, python-tds, tedious, pymssql and mssql-python. One test binary for the crate.

mod common;

mod applock;
mod backup;
mod clients;
mod differential;
mod field;
mod kill;
mod login;
mod permissions;
mod platform;
mod python_tds;
mod queries;
mod restore;
