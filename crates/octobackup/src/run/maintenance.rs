//! Maintenance mode, always put back the way it was found: on success, on any error, on Ctrl-C or
//! SIGTERM, and after a crash by the next run (`recover`).
//!
//! A request can be applied by the server after octobackup stopped waiting for it: a slow server
//! answers after the client's timeout, or octobackup is killed with the request sent. So the
//! journal is written before each request to turn maintenance mode on, and says until when that
//! request could still land. Whoever puts maintenance mode back while such a request may be on its
//! way turns it off explicitly (even when it reads "off") and watches it until that time has
//! passed, turning it off again if the late request lands. Only then is the journal deleted.

use super::journal::{JournalError, MaintenanceRecord, StateDir};
use super::stop::Stop;
use crate::octopus::{OctopusClient, OctopusError};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// Tries when putting maintenance mode back: about two minutes of retries, because a server stuck
/// in maintenance mode is the failure users fear most.
const RESTORE_ATTEMPTS: u32 = 12;

/// How often maintenance mode is read while a late request may still land.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error(transparent)]
    Octopus(#[from] OctopusError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(
        "maintenance mode could not be turned on ({cause}); it is off, as found{}",
        if *watched { " (octobackup turned it off and watched it until its unanswered request could no longer land)" } else { "" }
    )]
    NotTurnedOn { cause: OctopusError, watched: bool },
    #[error(
        "MAINTENANCE MODE MAY BE ON: a request to turn it on got no answer and turning it off failed ({}). Turn it off in Octopus (Configuration > Maintenance), or run `octobackup recover` once the server answers.",
        cause.to_string().trim_end_matches('.')
    )]
    NotPutBack { cause: OctopusError },
}

/// Maintenance mode as octobackup found it, and whether it changed it.
pub struct Window {
    pub previous: bool,
    pub changed: bool,
    pub started: DateTime<Utc>,
    /// An earlier request to turn it on got no answer and may still land until then.
    pub in_flight_until: Option<DateTime<Utc>>,
}

/// What `enter` ended with.
pub enum Entered {
    /// Maintenance mode is on (turned on, or found on).
    Window(Window),
    /// A stop was requested before it was on; maintenance mode is off, as found.
    Stopped(&'static str),
}

/// How long after a request was sent the server might still apply it. A request the server has
/// not answered within the client's timeout is taken to be applied, if ever, within another such
/// span: the server is then slow, not deaf. Stored in the journal, so recovery does not need the
/// config that set it.
fn late_apply_window(client: &OctopusClient) -> chrono::Duration {
    chrono::Duration::from_std(client.timeout * 2).unwrap_or(chrono::Duration::minutes(2))
}

/// Records the state, then turns maintenance mode on (if it was off), with the journal written
/// before each request. A stop requested meanwhile lets the request in flight end, then puts
/// maintenance mode back.
pub async fn enter(
    client: &OctopusClient,
    state: &StateDir,
    instance: &str,
    set_id: &str,
    stop: &Stop,
) -> Result<Entered, MaintenanceError> {
    let found = client.maintenance().await?;
    let started = Utc::now();
    if found.is_in_maintenance_mode {
        tracing::info!("maintenance mode is already on; octobackup will leave it on");
        return Ok(Entered::Window(Window {
            previous: true,
            changed: false,
            started,
            in_flight_until: None,
        }));
    }
    let mut record = MaintenanceRecord {
        instance: instance.to_string(),
        url: client.url().to_string(),
        previous: false,
        set_to: true,
        changed_at: started,
        set_id: set_id.to_string(),
        pid: std::process::id(),
        confirmed: false,
        in_flight_until: None,
    };
    // The latest time an unanswered request may still land.
    let mut unanswered_until: Option<DateTime<Utc>> = None;
    let mut delay = client.retry_delay;
    let mut last_error = None;
    for attempt in 0..client.attempts.max(1) {
        if attempt > 0 {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.wait() => {}
            }
            delay = (delay * 2).min(Duration::from_secs(10));
        }
        if stop.requested().is_some() {
            break;
        }
        // Written before the request: if octobackup dies now, the request may still land.
        record.in_flight_until = Some(Utc::now() + late_apply_window(client));
        if let Err(e) = state.write_record(&record) {
            // Nothing was sent this time; an earlier attempt may still land.
            return Err(
                match put_back(client, state, &record, unanswered_until).await {
                    Ok(_) => e.into(),
                    Err(stuck) => stuck,
                },
            );
        }
        // One request per attempt, its outcome known before the next: the retry is ours, so the
        // journal is written before each one. A stop request does not cut it short: its answer
        // is what tells whether maintenance mode is now on.
        match client.set_maintenance(true, 1).await {
            Ok(_) => {
                record.confirmed = true;
                record.in_flight_until = unanswered_until;
                if let Err(e) = state.write_record(&record) {
                    // The record on disk still says "may be in flight", the safe reading.
                    tracing::warn!(
                        "could not note in the journal that maintenance mode is on: {e}"
                    );
                }
                return Ok(Entered::Window(Window {
                    previous: false,
                    changed: true,
                    started,
                    in_flight_until: unanswered_until,
                }));
            }
            Err(e) if e.transient() => {
                tracing::warn!(
                    "turning maintenance mode on: {e} (attempt {} of {})",
                    attempt + 1,
                    client.attempts
                );
                unanswered_until = record.in_flight_until;
                last_error = Some(e);
            }
            // Refused (401, 403, 400): this request changed nothing.
            Err(e) => {
                last_error = Some(e);
                break;
            }
        }
    }
    let watched = put_back(client, state, &record, unanswered_until).await?;
    match (stop.requested(), last_error) {
        (Some(signal), _) => Ok(Entered::Stopped(signal)),
        (None, Some(cause)) => Err(MaintenanceError::NotTurnedOn { cause, watched }),
        (None, None) => unreachable!("the loop ends with an answer, an error or a stop"),
    }
}

/// After "on" failed or was stopped: when a request may still land, turns maintenance mode off
/// and watches it until it cannot; then clears the journal. True if it had to watch.
async fn put_back(
    client: &OctopusClient,
    state: &StateDir,
    record: &MaintenanceRecord,
    unanswered_until: Option<DateTime<Utc>>,
) -> Result<bool, MaintenanceError> {
    match unanswered_until {
        Some(until) => {
            off_and_watch(client, until)
                .await
                .map_err(|cause| MaintenanceError::NotPutBack { cause })?;
            state.clear_record(&record.instance)?;
            Ok(true)
        }
        None => {
            state.clear_record(&record.instance)?;
            Ok(false)
        }
    }
}

/// Turns maintenance mode off, then reads it until `until` has passed, turning it off again
/// whenever a late request has turned it on. Ends with a read after `until`.
async fn off_and_watch(client: &OctopusClient, until: DateTime<Utc>) -> Result<(), OctopusError> {
    client.set_maintenance(false, RESTORE_ATTEMPTS).await?;
    loop {
        let left = (until - Utc::now()).to_std().unwrap_or_default();
        let last = left.is_zero();
        tokio::time::sleep(left.min(WATCH_INTERVAL)).await;
        if client.maintenance().await?.is_in_maintenance_mode {
            tracing::warn!(
                "a late request turned maintenance mode on again; turning it off (watching until {})",
                until.to_rfc3339()
            );
            client.set_maintenance(false, RESTORE_ATTEMPTS).await?;
        } else if last {
            return Ok(());
        }
    }
}

/// Puts maintenance mode back as found; clears the journal only once that is done.
pub async fn leave(
    client: &OctopusClient,
    state: &StateDir,
    instance: &str,
    window: &Window,
) -> Result<(), MaintenanceError> {
    if window.changed {
        match window.in_flight_until {
            // An unanswered "on" from the first attempts may still land after this "off".
            Some(until) if until > Utc::now() => off_and_watch(client, until).await?,
            _ => {
                client
                    .set_maintenance(window.previous, RESTORE_ATTEMPTS)
                    .await?;
            }
        }
    }
    state.clear_record(instance)?;
    Ok(())
}

/// What `recover` found and did.
#[derive(Debug, serde::Serialize)]
pub struct Recovery {
    pub instance: String,
    pub found_record: bool,
    pub action: String,
}

/// Undoes the maintenance change of a run that died. Call with the instance lock held (so the run
/// that wrote the record is certainly gone). A record whose request may still be on its way is
/// never read as "nothing changed": maintenance mode is turned off explicitly and watched.
pub async fn recover(
    client: &OctopusClient,
    state: &StateDir,
    instance: &str,
) -> Result<Recovery, MaintenanceError> {
    let Some(record) = state.read_record(instance)? else {
        return Ok(Recovery {
            instance: instance.into(),
            found_record: false,
            action: "nothing to recover".into(),
        });
    };
    let may_still_land =
        !record.confirmed || record.in_flight_until.is_some_and(|u| u > Utc::now());
    let action = if may_still_land && !record.previous {
        // Records of older versions carry no time: give them the default window.
        let until = record
            .in_flight_until
            .unwrap_or(record.changed_at + chrono::Duration::minutes(2));
        off_and_watch(client, until).await?;
        format!(
            "a run (set {}, pid {}) asked for maintenance mode on at {} and did not finish; that request may still have been on its way, so maintenance mode was turned off and watched until {}: it is off",
            record.set_id,
            record.pid,
            record.changed_at.to_rfc3339(),
            until.to_rfc3339()
        )
    } else {
        let now = client.maintenance().await?;
        if now.is_in_maintenance_mode == record.set_to {
            client
                .set_maintenance(record.previous, RESTORE_ATTEMPTS)
                .await?;
            format!(
                "a run (set {}, pid {}) turned maintenance mode {} at {} and did not finish; put it back {}",
                record.set_id,
                record.pid,
                on_off(record.set_to),
                record.changed_at.to_rfc3339(),
                on_off(record.previous)
            )
        } else {
            format!(
                "maintenance mode is already {}, as the interrupted run found it; nothing changed",
                on_off(now.is_in_maintenance_mode)
            )
        }
    };
    state.clear_record(instance)?;
    Ok(Recovery {
        instance: instance.into(),
        found_record: true,
        action,
    })
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}
