//! The maintenance window: maintenance mode on, the wait for running tasks, BACKUP DATABASE and
//! the copy of the changed folder files side by side, whether the window held, and maintenance
//! mode put back. Nothing here reads or writes the repository, and the whole of it runs within
//! the window's budget (`wait.max_window`).

use super::database::{backup_database, stop_after_backup, stop_cut_backup};
use super::staging::SetFolder;
use super::{BackupJob, Captured, Folders, Servers, chain, on_off, window_capture};
use crate::backupset::Manifest;
use crate::config::OnWaitTimeout;
use crate::error::{Exit, Failure};
use crate::octopus::{OctopusClient, OctopusError};
use crate::run::maintenance::{self, Entered, Held, MaintenanceError, Window};
use crate::run::steps::{Steps, ended};
use std::time::Duration;

/// The window, from maintenance mode on to maintenance mode put back: what it captured, or the
/// failure (maintenance mode as found, or exit 7 when it could not be put back). The caller
/// discards what the run staged on failure.
pub(super) async fn hold(
    job: &BackupJob,
    servers: &Servers,
    folders: &Folders,
    set: &SetFolder,
    m: &mut Manifest,
    steps: &mut Steps,
) -> Result<Captured, Failure> {
    let window = enter(job, &servers.octopus, &m.set_id, steps).await?;
    m.octopus.maintenance_before = window.previous;
    m.window.start = Some(window.started);
    m.window.changed_by_octobackup = window.changed;
    let (inside, theirs) = within_budget(job, servers, folders, set, &window, m, steps).await;
    let left = leave(job, &servers.octopus, &window, theirs, m, steps).await;
    // A BACKUP DATABASE the budget or a stop cut short is told to stop, maintenance mode back.
    let inside = match inside {
        Err(f) => Err(stop_cut_backup(job, &set.local, f).await),
        ok => ok,
    };
    if let Err(e) = left {
        return Err(job.raise_alarm(stuck(&window, e)).await);
    }
    let captured = inside?;
    // A stop heard while maintenance mode was put back.
    if let Some(sig) = job.stop.requested() {
        return Err(Failure::new(
            Exit::Interrupted,
            format!(
                "interrupted by {sig}; maintenance mode was put back {}; nothing was marked complete",
                on_off(window.previous)
            ),
        ));
    }
    Ok(captured)
}

/// Turns maintenance mode on (or finds it on), as the step "maintenance mode on".
async fn enter(
    job: &BackupJob,
    octopus: &OctopusClient,
    set_id: &str,
    steps: &mut Steps,
) -> Result<Window, Failure> {
    let enter = steps.start("maintenance mode on");
    match maintenance::enter(octopus, &job.state, &job.instance_name, set_id, &job.stop).await {
        Ok(Entered::Stopped(sig)) => {
            steps.finish(enter, false, Some(format!("stopped by {sig}")));
            Err(Failure::new(
                Exit::Interrupted,
                format!(
                    "interrupted by {sig} while turning maintenance mode on; it is off, as found, and nothing was backed up"
                ),
            ))
        }
        Ok(Entered::Window(w)) => {
            steps.finish(
                enter,
                true,
                Some(if w.changed {
                    "turned on".into()
                } else {
                    "was already on; left on".into()
                }),
            );
            Ok(w)
        }
        Err(e) => {
            steps.finish(enter, false, Some(e.to_string()));
            Err(e.into())
        }
    }
}

/// The work inside the window, cut short by its budget or a stop, and whether the window held.
/// The `bool` is true when maintenance mode is now someone else's to put back (left as it is).
async fn within_budget(
    job: &BackupJob,
    servers: &Servers,
    folders: &Folders,
    set: &SetFolder,
    window: &Window,
    m: &mut Manifest,
    steps: &mut Steps,
) -> (Result<Captured, Failure>, bool) {
    let stop = &job.stop;
    // The window's budget runs from the moment maintenance mode went on.
    let budget = job.instance.wait.window_budget();
    let deadline = tokio::time::Instant::now()
        + budget.saturating_sub(
            (chrono::Utc::now() - window.started)
                .to_std()
                .unwrap_or_default(),
        );
    let track = window_capture::Track::default();
    let inside = tokio::select! {
        r = tokio::time::timeout_at(deadline, inside_window(job, servers, folders, set, &track, m, steps)) => {
            r.unwrap_or_else(|_| Err(window_capture::overran(budget, &track.running(), window.previous)))
        }
        // While BACKUP DATABASE runs, its own step stops it on the server first (ATTENTION).
        sig = stop_after_backup(stop, &track) => Err(Failure::new(Exit::Interrupted, format!("interrupted by {sig}; maintenance mode was put back {}; nothing was marked complete", on_off(window.previous)))),
    };
    let inside = inside.map_err(|mut e| {
        if stop.requested().is_some()
            && e.message.starts_with("interrupted by ")
            && !e.message.contains("maintenance mode was put back")
        {
            e.message = format!(
                "{}; maintenance mode was put back {}; nothing was marked complete",
                e.message,
                on_off(window.previous)
            );
        }
        e
    });
    if inside.is_err() {
        return (inside, false);
    }
    // Reading maintenance mode back is part of the window, so of its budget.
    let held = tokio::time::timeout_at(
        deadline,
        maintenance::check_window(&servers.octopus, window),
    )
    .await
    .ok();
    match held_or_theirs(job, window, budget, held, m) {
        Ok(theirs) => (inside, theirs),
        Err((e, theirs)) => (Err(e), theirs),
    }
}

/// Did the window hold? Someone may have turned maintenance mode off (the backup may then hold
/// changes made outside it) or set it on themselves (theirs now: left on). `Ok(theirs)`, or the
/// failure with it. `held` is `None` when reading it back overran the window's budget.
fn held_or_theirs(
    job: &BackupJob,
    window: &Window,
    budget: Duration,
    held: Option<Result<Held, OctopusError>>,
    m: &mut Manifest,
) -> Result<bool, (Failure, bool)> {
    match held {
        Some(Ok(Held::Yes)) => Ok(false),
        None => Err((
            window_capture::overran(
                budget,
                &["reading maintenance mode back".to_string()],
                window.previous,
            ),
            false,
        )),
        Some(Ok(Held::TurnedOff { by, at })) => Err((
            Failure::new(
                Exit::Failed,
                format!(
                    "maintenance mode was turned off during the window (by {by} at {at}), so the database backup may hold changes made outside it: nothing was marked complete. Maintenance mode stays off, as {by} set it; run the backup again."
                ),
            ),
            true,
        )),
        Some(Ok(Held::SetByOthers { by, at })) => {
            let note = format!(
                "maintenance mode was set by {by} at {at} during the window; octobackup leaves it on"
            );
            job.ui.note(&note);
            m.window.changed_by_others = Some(note);
            Ok(window.changed)
        }
        Some(Err(e)) => Err((
            Failure::new(
                Exit::Octopus,
                format!(
                    "maintenance mode could not be read after the database backup ({}), so whether the window held is unknown: nothing was marked complete",
                    e.to_string().trim_end_matches('.')
                ),
            ),
            false,
        )),
    }
}

/// Puts maintenance mode back as found (or only ends the journal when it is someone else's now),
/// as the step "maintenance mode restored", and closes the window's record.
async fn leave(
    job: &BackupJob,
    octopus: &OctopusClient,
    window: &Window,
    theirs: bool,
    m: &mut Manifest,
    steps: &mut Steps,
) -> Result<(), MaintenanceError> {
    let leave = steps.start("maintenance mode restored");
    let left = if theirs {
        maintenance::release(&job.state, &job.instance_name)
    } else {
        maintenance::leave(octopus, &job.state, &job.instance_name, window).await
    };
    let window_end = chrono::Utc::now();
    steps.finish(
        leave,
        left.is_ok(),
        left.as_ref().err().map(|e| e.to_string()),
    );
    m.window.end = Some(window_end);
    m.window.seconds = (window_end - window.started).num_milliseconds() as f64 / 1000.0;
    left
}

/// Maintenance mode could not be put back: exit 7, with what to do.
fn stuck(window: &Window, e: MaintenanceError) -> Failure {
    Failure::new(
        Exit::MaintenanceStuck,
        format!(
            "MAINTENANCE MODE COULD NOT BE PUT BACK {}: {}. Turn it {} in Octopus (Configuration > Maintenance) or run `octobackup recover` once the server answers.",
            if window.previous { "ON" } else { "OFF" },
            e.to_string().trim_end_matches('.'),
            if window.previous { "on" } else { "off" }
        ),
    )
}

/// The work inside the window: the wait for running tasks, then BACKUP DATABASE and the copy of
/// the changed folder files side by side.
async fn inside_window(
    job: &BackupJob,
    servers: &Servers,
    folders: &Folders,
    set: &SetFolder,
    track: &window_capture::Track,
    m: &mut Manifest,
    steps: &mut Steps,
) -> Result<Captured, Failure> {
    let pre_pass = folders.pre_pass.as_ref();
    m.window.inside.push("wait for running tasks".into());
    track.start("the wait for running tasks");
    let running = steps
        .run(
            "wait for running tasks",
            wait_for_tasks(job, &servers.octopus),
        )
        .await?;
    track.end("the wait for running tasks");
    m.tasks_running_at_backup = running;

    // The database backup (SQL Server's work) and the folder capture (local copies, never the
    // repository) do not depend on each other: run them side by side so the window lasts as long
    // as the longer one.
    m.window.inside.push("database backup".into());
    let db = m.database.name.clone();
    let set_id = m.set_id.clone();
    let differential = chain::differential_tonight(&m.database);
    let db_step = steps.start(if differential {
        "database backup (differential)"
    } else {
        "database backup"
    });
    let folder_step = steps.start(if pre_pass.is_some() {
        "server folders (capture changes)"
    } else {
        "server folders (capture)"
    });
    let ((db_result, db_end), (folder_result, folder_end)) = tokio::join!(
        ended(async {
            track.start("BACKUP DATABASE");
            let r = backup_database(job, &servers.sql, &db, set, &set_id, differential).await;
            track.end("BACKUP DATABASE");
            r
        }),
        ended(async {
            track.start("the copy of the changed folder files onto staging");
            let r = window_capture::capture_blocking(
                folders.list.clone(),
                pre_pass.map(|p| p.1.clone()),
                set.local.join(window_capture::CAPTURE_DIR),
            )
            .await;
            track.end("the copy of the changed folder files onto staging");
            r
        })
    );
    steps.finish_with_at(db_step, db_end, &db_result);
    steps.finish_with_at(folder_step, folder_end, &folder_result);
    db_result?;
    let capture = folder_result?;
    m.window.inside.push(match pre_pass {
        Some(_) if capture.changed == 0 => {
            "server folders (checked: unchanged since the first pass)".into()
        }
        Some(_) => "server folders (changes since the first pass, copied to staging)".into(),
        None => "server folders (copied to staging)".into(),
    });
    m.folders = capture.infos.clone();
    m.window.folder_files_read = capture.files_copied;

    Ok(Captured {
        folders: capture,
        pre_pass: pre_pass.map(|p| p.0.clone()),
    })
}

/// Waits until no task is Executing or Cancelling (and none Queued if configured); returns the
/// names of tasks still running when the wait gave up under on_timeout = continue.
///
/// A cancelled task keeps running while it is Cancelling (its step is stopped and cleaned up), so
/// it counts as running, as in Octopus's own drain script (`states=Executing,Cancelling`). A task
/// list that cannot be read for a while (a restarting node, a load balancer) is asked again until
/// `wait.timeout`: only then does the wait fail.
async fn wait_for_tasks(job: &BackupJob, octopus: &OctopusClient) -> Result<Vec<String>, Failure> {
    let wait = &job.instance.wait;
    let states: &[&str] = if wait.include_queued {
        &["Executing", "Cancelling", "Queued"]
    } else {
        &["Executing", "Cancelling"]
    };
    let deadline = tokio::time::Instant::now() + wait.timeout;
    loop {
        let tasks = match octopus.tasks(states).await {
            Ok(tasks) => tasks,
            Err(e) if e.transient() && tokio::time::Instant::now() < deadline => {
                job.ui.note(&format!(
                    "cannot read the task list ({e}); asking again until the wait's limit ({})",
                    humantime::format_duration(wait.timeout)
                ));
                tokio::time::sleep(
                    wait.poll_interval
                        .min(deadline.saturating_duration_since(tokio::time::Instant::now()))
                        .max(Duration::from_millis(50)),
                )
                .await;
                continue;
            }
            Err(e) if e.transient() => {
                return Err(Failure::new(
                    Exit::Octopus,
                    format!(
                        "the task list could not be read within the wait's limit ({}): {e}. Nothing was backed up and maintenance mode is put back. Check the Octopus Server's health, or raise wait.timeout.",
                        humantime::format_duration(wait.timeout)
                    ),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<String> = tasks
            .iter()
            .map(|t| format!("{} ({}, {})", t.id, t.description.trim(), t.state))
            .collect();
        job.ui.status(&format!(
            "waiting for {} task(s): {}",
            tasks.len(),
            names.join("; ")
        ));
        if tokio::time::Instant::now() >= deadline {
            return match wait.on_timeout {
                OnWaitTimeout::Abort => Err(Failure::new(
                    Exit::Failed,
                    format!(
                        "tasks still running after waiting {}: {}. Nothing was backed up and maintenance mode is put back. Let them finish, cancel them, or set wait.on_timeout = \"continue\".",
                        humantime::format_duration(wait.timeout),
                        names.join("; ")
                    ),
                )),
                OnWaitTimeout::Continue => {
                    job.ui.note(&format!(
                        "going on while tasks still run (wait.on_timeout = continue): {}",
                        names.join("; ")
                    ));
                    Ok(names)
                }
            };
        }
        tokio::time::sleep(
            wait.poll_interval
                .min(deadline.saturating_duration_since(tokio::time::Instant::now()))
                .max(Duration::from_millis(50)),
        )
        .await;
    }
}
