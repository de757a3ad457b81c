//! SQL Server stand-in speaking TDS, for octobackup's lab
