//! Maintenance mode, always put back the way it was found: on success, on any error, on Ctrl-C or
//! SIGTERM, and after a crash by the next run (`recover`).

use super::journal::{JournalError, MaintenanceRecord, StateDir};
use crate::octopus::{OctopusClient, OctopusError};

/// Tries when putting maintenance mode back: about two minutes of retries, because a server stuck
/// in maintenance mode is the failure users fear most.
const RESTORE_ATTEMPTS: u32 = 12;

#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error(transparent)]
    Octopus(#[from] OctopusError),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// Maintenance mode as octobackup found it, and whether it changed it.
pub struct Window {
    pub previous: bool,
    pub changed: bool,
    pub started: chrono::DateTime<chrono::Utc>,
}

/// Records the state, writes the journal, then turns maintenance mode on (if it was off).
pub async fn enter(
    client: &OctopusClient,
    state: &StateDir,
    instance: &str,
    set_id: &str,
) -> Result<Window, MaintenanceError> {
    let found = client.maintenance().await?;
    let started = chrono::Utc::now();
    if found.is_in_maintenance_mode {
        tracing::info!("maintenance mode is already on; octobackup will leave it on");
        return Ok(Window {
            previous: true,
            changed: false,
            started,
        });
    }
    state.write_record(&MaintenanceRecord {
        instance: instance.to_string(),
        url: client.url().to_string(),
        previous: false,
        set_to: true,
        changed_at: started,
        set_id: set_id.to_string(),
        pid: std::process::id(),
    })?;
    if let Err(e) = client.set_maintenance(true, client.attempts).await {
        // The PUT may have reached the server before failing: put it back to be sure.
        let _ = client.set_maintenance(false, RESTORE_ATTEMPTS).await;
        let _ = state.clear_record(instance);
        return Err(e.into());
    }
    Ok(Window {
        previous: false,
        changed: true,
        started,
    })
}

/// Puts maintenance mode back as found; clears the journal only once that is done.
pub async fn leave(
    client: &OctopusClient,
    state: &StateDir,
    instance: &str,
    window: &Window,
) -> Result<(), MaintenanceError> {
    if window.changed {
        client
            .set_maintenance(window.previous, RESTORE_ATTEMPTS)
            .await?;
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
/// that wrote the record is certainly gone).
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
    let now = client.maintenance().await?;
    let action = if now.is_in_maintenance_mode == record.set_to {
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
