//! The Octopus Server side: its REST API (maintenance mode, tasks, license, folders), the master
//! key read on its host, and discovery of the instance's settings through `Octopus.Server`.

pub mod client;
pub mod discovery;
pub mod master_key;
pub mod sensitive;

pub use client::{OctopusClient, OctopusError};
