//! The operations (backup, restore, drill, retention) and what keeps them safe: a lock per
//! instance, a journal of the maintenance-mode change so that a crashed run can be undone, and step
//! records for the report. They show progress through `progress::Progress` and never import `cli`.

pub mod backup;
pub mod blocking;
pub mod connect;
pub mod copy;
pub mod doctor;
pub mod drill;
pub mod journal;
pub mod leftovers;
pub mod maintenance;
pub mod names;
pub mod progress;
pub mod restore;
pub mod retention;
pub mod space;
pub mod steps;
pub mod stop;
