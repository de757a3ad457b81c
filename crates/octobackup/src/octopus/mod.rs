//! The Octopus Server side: its REST API (maintenance mode, tasks, license, folders) and the
//! master key read on its host.

pub mod client;
pub mod discovery;
pub mod master_key;
pub mod sensitive;

pub use client::{OctopusClient, OctopusError};
