//! The parsers under test, compiled from the product's and the stand-in's own source files: the
//! crates themselves bring ~480 dependencies (the repository engine, its storage backends, TLS),
//! which libFuzzer's instrumented build would compile again for minutes. Only the modules the
//! parsers live in are taken, with the few items they name from elsewhere (below, marked).
#![allow(dead_code, clippy::all)]

#[path = "../../crates/octobackup/src/secret.rs"]
pub mod secret;

#[path = "../../crates/octobackup/src/config/mod.rs"]
pub mod config;

pub mod sqlserver;

pub mod backupset;

pub mod run;

pub mod octopus;

/// Stand-in: only what `discovery::resolve` names (it is not fuzzed).
pub mod error {
    pub enum Exit {
        Octopus,
        Usage,
    }
    pub struct Failure;
    impl Failure {
        pub fn new(_exit: Exit, _message: impl Into<String>) -> Self {
            Failure
        }
    }
    impl From<crate::config::ConfigError> for Failure {
        fn from(_: crate::config::ConfigError) -> Self {
            Failure
        }
    }
    impl From<crate::octopus::discovery::DiscoveryError> for Failure {
        fn from(_: crate::octopus::discovery::DiscoveryError) -> Self {
            Failure
        }
    }
}

/// The SQL Server stand-in's TDS reader.
pub mod tds;
