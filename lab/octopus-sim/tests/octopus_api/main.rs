//! Drives the simulator over HTTP with reqwest, as octobackup will.

mod common;
mod swagger;

mod auth;
mod control;
mod faults;
mod maintenance;
mod nodes;
mod schema;
mod system;
mod tasks;
