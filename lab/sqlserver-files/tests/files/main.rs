//! The lab database and backup file formats. One test binary for the crate.

mod common;

mod bak;
mod image;
