//! The steps of a run (backup, recover) and what keeps them safe: a lock per instance, a journal of
//! the maintenance-mode change so that a crashed run can be undone, and step records for the report.

pub mod backup;
pub mod chain;
pub mod drill;
pub mod journal;
pub mod leftovers;
pub mod maintenance;
pub mod restore;
pub mod retention;
pub mod space;
pub mod steps;
pub mod stop;
pub mod window_capture;
