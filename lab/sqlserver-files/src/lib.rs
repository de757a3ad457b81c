//! The lab's SQL Server files: database images (`.mdf`/`.ldf`, module [`image`]) and backup files
//! (`.bak`, module [`bak`]).
//!
//! Both are formats of our own, not Microsoft's. They reproduce what octobackup can observe of the
//! real ones: 8 KiB pages with checksums, a file header naming the database and its logical files,
//! backup sets that append to media, stripes, LSNs, backup checksums, truncation and damage detection,
//! and backups whose unchanged pages stay byte-identical night to night so deduplication behaves as it
//! does on a real server. See the crate README for what they cannot prove.

pub mod bak;
pub mod image;
mod rng;
