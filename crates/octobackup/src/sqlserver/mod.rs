//! SQL Server: connection strings, the T-SQL octobackup sends, and a tiberius client that runs
//! BACKUP/RESTORE with progress and turns SQL Server's error numbers into messages with a fix.

pub mod admin;
pub mod chain;
pub mod client;
pub mod connstr;
pub mod kill;
pub mod lock;
pub mod permissions;
pub mod tsql;

pub use client::{SqlError, SqlServer};
pub use connstr::ConnectionString;
pub use kill::Stopped;
