//! KILL session_id: one session ends another's statement and connection.
//!
//! Pinned to Microsoft Learn, "KILL (Transact-SQL)": KILL needs ALTER ANY CONNECTION (granted
//! with sysadmin and processadmin); a session cannot kill itself. Messages and severities from
//! "Database engine events and errors" (6000 to 6999): 6101 (16) not a valid process ID, 6102
//! (14) no permission to use KILL, 6104 (16) own process, 6106 (16) not an active process ID,
//! 6107 (14) only user processes; and (0 to 999) 596 (21): the killed session cannot continue.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::errors::SqlError;
use super::session::Attention;
use super::{Engine, lock};
use crate::SqlLogin;

/// Each connected session's ATTENTION and kill switch, by session id.
#[derive(Default)]
pub struct KillSwitches(Mutex<HashMap<u16, Arc<Attention>>>);

/// The highest session id SQL Server hands out (Msg 6101 names the range).
const MAX_SPID: u64 = 32767;

/// What the killed session's client reads before its connection is closed.
pub fn killed_state() -> SqlError {
    SqlError::new(
        596,
        21,
        1,
        "Cannot continue the execution because the session is in the kill state.",
    )
}

impl Engine {
    /// A session's ATTENTION becomes reachable by KILL from the moment it logs in.
    pub fn register_kill_switch(&self, spid: u16, attention: Arc<Attention>) {
        lock(&self.kill_switches.0).insert(spid, attention);
    }

    pub fn forget_kill_switch(&self, spid: u16) {
        lock(&self.kill_switches.0).remove(&spid);
    }

    /// KILL `target` on behalf of `login` in session `own`.
    pub fn kill(&self, login: &SqlLogin, own: u16, target: u64) -> Result<(), SqlError> {
        let allowed = self.is_sysadmin(login)
            || self.has_server_permission(&login.name, "ALTER ANY CONNECTION");
        if !allowed {
            return Err(SqlError::new(
                6102,
                14,
                1,
                "User does not have permission to use the KILL statement.",
            ));
        }
        if target == 0 || target > MAX_SPID {
            return Err(SqlError::new(
                6101,
                16,
                1,
                format!(
                    "Process ID {target} is not a valid process ID. Choose a number between 1 and {MAX_SPID}."
                ),
            ));
        }
        if target == u64::from(own) {
            return Err(SqlError::new(
                6104,
                16,
                1,
                "Cannot use KILL to kill your own process.",
            ));
        }
        // Sessions 1 to 50 are the server's own (the lab numbers user sessions from 51).
        if target <= 50 {
            return Err(SqlError::new(
                6107,
                14,
                1,
                "Only user processes can be killed.",
            ));
        }
        let found = lock(&self.kill_switches.0).get(&(target as u16)).cloned();
        let Some(attention) = found else {
            return Err(SqlError::new(
                6106,
                16,
                1,
                format!("Process ID {target} is not an active process ID."),
            ));
        };
        attention.kill();
        self.emit(
            "session_killed",
            serde_json::json!({ "spid": target, "by": own, "login": login.name }),
        );
        Ok(())
    }
}
