//! When ATTENTION goes unacknowledged: KILL of the statement's session from a second connection.
//!
//! A real SQL Server may not answer ATTENTION for a long time (a BACKUP blocked on I/O). KILL
//! session_id ends the session and its statement (Microsoft Learn, "KILL (Transact-SQL)"); it
//! needs ALTER ANY CONNECTION, which sysadmin and processadmin hold. Refusals: Msg 6102 "User
//! does not have permission to use the KILL statement.", Msg 6106 when the session id is no
//! longer active ("Database engine events and errors 6000 to 6999").

use std::time::Duration;

use super::client::Session;

/// How long, after KILL, octobackup watches for the killed statement to leave
/// sys.dm_exec_requests (a KILL that rolls back can take a while).
const ENDED_WAIT: Duration = Duration::from_secs(15);

/// What became of a statement octobackup told to stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// SQL Server acknowledged the ATTENTION: the statement ended.
    Acknowledged,
    /// No acknowledgment in time; KILL ended the session. `confirmed`: its request was seen
    /// gone from sys.dm_exec_requests afterwards (false without VIEW SERVER STATE, or when it
    /// was still rolling back).
    Killed { spid: i64, confirmed: bool },
    /// No acknowledgment in time, and the session had already ended (KILL: Msg 6106).
    Gone { spid: i64 },
    /// No acknowledgment in time, and the login may not KILL (Msg 6102 or another permission
    /// error): the statement may still run.
    KillRefused {
        spid: i64,
        number: u32,
        message: String,
    },
    /// No acknowledgment in time, and KILL could not be tried or failed: the statement may
    /// still run.
    NotStopped { reason: String },
}

impl Stopped {
    /// True when the statement is known to have ended on the server.
    pub fn ended(&self) -> bool {
        matches!(
            self,
            Stopped::Acknowledged
                | Stopped::Gone { .. }
                | Stopped::Killed {
                    confirmed: true,
                    ..
                }
        )
    }

    /// True when the statement may still be writing its files.
    pub fn may_still_run(&self) -> bool {
        !self.ended()
    }

    /// `describe` after "; ", or nothing when SQL Server simply acknowledged: for messages that
    /// say only what went differently.
    pub fn unless_acknowledged(&self, statement: &str, wait: Duration) -> String {
        match self {
            Stopped::Acknowledged => String::new(),
            other => format!("; {}", other.describe(statement, wait)),
        }
    }

    /// One clause for the run's message: which happened, and what to do when it matters.
    pub fn describe(&self, statement: &str, wait: Duration) -> String {
        let secs = wait.as_secs();
        match self {
            Stopped::Acknowledged => {
                format!("SQL Server's {statement} was stopped (ATTENTION, acknowledged)")
            }
            Stopped::Killed {
                spid,
                confirmed: true,
            } => format!(
                "SQL Server's {statement} was stopped with KILL {spid} (ATTENTION was not acknowledged within {secs} s)"
            ),
            Stopped::Killed {
                spid,
                confirmed: false,
            } => format!(
                "SQL Server did not acknowledge ATTENTION within {secs} s, so octobackup sent KILL {spid} to end the {statement}; that it has ended could not be seen (sys.dm_exec_requests needs VIEW SERVER STATE, or it is still rolling back): check sys.dm_exec_requests for session {spid}"
            ),
            Stopped::Gone { spid } => format!(
                "SQL Server's {statement} had ended (ATTENTION was not acknowledged within {secs} s, and session {spid} was gone when octobackup sent KILL: Msg 6106)"
            ),
            Stopped::KillRefused {
                spid,
                number,
                message,
            } => format!(
                "SQL Server's {statement} MAY STILL BE RUNNING: ATTENTION was not acknowledged within {secs} s, and KILL {spid} was refused (Msg {number}: {}). The login needs ALTER ANY CONNECTION (GRANT ALTER ANY CONNECTION TO [login], or the processadmin role) for octobackup to end it; a sysadmin can run KILL {spid} now",
                message.trim_end_matches('.')
            ),
            Stopped::NotStopped { reason } => format!(
                "SQL Server's {statement} MAY STILL BE RUNNING: ATTENTION was not acknowledged within {secs} s, and {reason}"
            ),
        }
    }
}

/// A permission refusal of KILL: 6102, or the generic ones (297 "The user does not have
/// permission to perform this action.", 15247 the same text in newer versions, 229/300 denied).
fn is_permission_refusal(number: u32) -> bool {
    matches!(number, 6102 | 297 | 15247 | 229 | 300)
}

impl Session {
    /// ATTENTION, its acknowledgment awaited for at most `wait`; without it, KILL of this
    /// session from a second connection with the same login, and a short watch that the
    /// statement left sys.dm_exec_requests.
    pub async fn stop(&mut self, wait: Duration) -> Stopped {
        if self.attention(wait).await {
            return Stopped::Acknowledged;
        }
        let Some((spid, server)) = self.kill_target.clone() else {
            return Stopped::NotStopped {
                reason: "its session id was not recorded, so it could not be ended with KILL"
                    .into(),
            };
        };
        // Bounded, so a stop never waits on a server that answers nothing at all.
        tokio::time::timeout(KILL_BUDGET, kill(spid, &server))
            .await
            .unwrap_or_else(|_| Stopped::NotStopped {
                reason: format!(
                    "KILL {spid} got no answer within {} s",
                    KILL_BUDGET.as_secs()
                ),
            })
    }
}

/// The most a KILL, with its connection and the watch that follows, may take.
pub const KILL_BUDGET: Duration = Duration::from_secs(40);

/// KILL `spid` from a second connection with the same login.
async fn kill(spid: i64, server: &super::SqlServer) -> Stopped {
    let mut second = match server.connect().await {
        Ok(s) => s,
        Err(e) => {
            return Stopped::NotStopped {
                reason: format!(
                    "a second connection to send KILL {spid} failed ({})",
                    e.to_string().trim_end_matches('.')
                ),
            };
        }
    };
    tracing::info!(target: "octobackup::sql", "ATTENTION unacknowledged: KILL {spid}");
    match second.execute("KILL", &format!("KILL {spid}"), None).await {
        Ok(()) => Stopped::Killed {
            spid,
            confirmed: request_ended(&mut second, spid).await,
        },
        Err(e) => match e.number() {
            Some(6106) => Stopped::Gone { spid },
            Some(n) if is_permission_refusal(n) => Stopped::KillRefused {
                spid,
                number: n,
                message: refusal_text(&e),
            },
            _ => Stopped::NotStopped {
                reason: format!(
                    "KILL {spid} failed ({})",
                    e.to_string().trim_end_matches('.')
                ),
            },
        },
    }
}

/// SQL Server's own words from a refusal.
fn refusal_text(e: &super::SqlError) -> String {
    match e {
        super::SqlError::Permission { message, .. } | super::SqlError::Server { message, .. } => {
            message.clone()
        }
        other => other.to_string(),
    }
}

/// Watches (bounded) for the killed session's request to leave sys.dm_exec_requests. False when
/// it stays, or when this login cannot see other sessions there (no VIEW SERVER STATE).
async fn request_ended(session: &mut Session, spid: i64) -> bool {
    let sees_all = session
        .query_text(
            "VIEW SERVER STATE",
            "SELECT HAS_PERMS_BY_NAME(NULL, NULL, 'VIEW SERVER STATE') AS Sees",
        )
        .await
        .ok()
        .and_then(|rows| rows.first().and_then(|r| r.get("Sees").cloned().flatten()))
        .is_some_and(|v| v == "1");
    if !sees_all {
        return false;
    }
    let query = format!("SELECT command FROM sys.dm_exec_requests WHERE session_id = {spid}");
    let deadline = tokio::time::Instant::now() + ENDED_WAIT;
    loop {
        match session.query_text("the killed request", &query).await {
            Ok(rows) if rows.is_empty() => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(15);

    #[test]
    fn only_a_seen_end_counts_as_ended() {
        assert!(Stopped::Acknowledged.ended());
        assert!(Stopped::Gone { spid: 52 }.ended());
        assert!(
            Stopped::Killed {
                spid: 52,
                confirmed: true
            }
            .ended()
        );
        assert!(
            Stopped::Killed {
                spid: 52,
                confirmed: false
            }
            .may_still_run()
        );
        let refused = Stopped::KillRefused {
            spid: 52,
            number: 6102,
            message: "User does not have permission to use the KILL statement.".into(),
        };
        assert!(refused.may_still_run());
        assert!(Stopped::NotStopped { reason: "x".into() }.may_still_run());
    }

    #[test]
    fn only_what_went_differently_is_added_to_a_message() {
        let wait = Duration::from_secs(30);
        assert_eq!(
            Stopped::Acknowledged.unless_acknowledged("RESTORE", wait),
            ""
        );
        let gone = Stopped::Gone { spid: 52 }.unless_acknowledged("RESTORE", wait);
        assert!(
            gone.starts_with("; SQL Server's RESTORE had ended") && gone.contains("30 s"),
            "{gone}"
        );
    }

    #[test]
    fn each_outcome_says_which_happened() {
        let s = |x: Stopped| x.describe("BACKUP DATABASE", WAIT);
        assert!(s(Stopped::Acknowledged).contains("ATTENTION, acknowledged"));
        let killed = s(Stopped::Killed {
            spid: 52,
            confirmed: true,
        });
        assert!(killed.contains("stopped with KILL 52"), "{killed}");
        assert!(killed.contains("not acknowledged within 15 s"), "{killed}");
        let refused = s(Stopped::KillRefused {
            spid: 52,
            number: 6102,
            message: "User does not have permission to use the KILL statement.".into(),
        });
        assert!(refused.contains("MAY STILL BE RUNNING"), "{refused}");
        assert!(refused.contains("Msg 6102"), "{refused}");
        assert!(refused.contains("ALTER ANY CONNECTION"), "{refused}");
        assert!(s(Stopped::Gone { spid: 52 }).contains("Msg 6106"));
    }

    #[test]
    fn permission_refusals_are_told_apart() {
        assert!(is_permission_refusal(6102));
        assert!(is_permission_refusal(297));
        assert!(!is_permission_refusal(6106));
        assert!(!is_permission_refusal(6104));
    }
}
