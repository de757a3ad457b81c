//! The lab instance and the running lab. One test binary for the crate.

mod instance;
mod lab;
