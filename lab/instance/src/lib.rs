//! octobackup's lab: a simulated Octopus Server and SQL Server with an instance that behaves like a
//! real one (server folders, an Octopus database with values encrypted by the master key, days of
//! activity), for tests, `octobackup-lab demo` and benchmarks. The stand-ins live in their own crates
//! (`octopus-sim`, `sqlserver-sim`, `sqlserver-files`); this crate builds the instance and runs them.

pub mod content;
pub mod crypto;
pub mod database;
pub mod events;
pub mod fingerprint;
pub mod folders;
pub mod instance;
pub mod lab;
pub mod preset;
pub mod secret_file;

pub use events::{EventLog, LabEvent};
pub use fingerprint::Fingerprint;
pub use folders::ServerFolders;
pub use instance::{ChurnReport, InstanceOptions, InstancePaths, InstanceState};
pub use lab::{LINUX_STAGING, Lab, LabInfo, LabOptions};
pub use octopus_sim;
pub use preset::Size;
pub use sqlserver_files;
pub use sqlserver_sim;
