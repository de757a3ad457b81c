use super::context::Invocation;
use super::emit;
use crate::error::Failure;
use crate::run::connect::octopus_client;
use crate::run::maintenance;
use crate::sqlserver::lock::LockError;
use std::path::Path;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The instance (optional when the config has one).
    #[arg(long, short)]
    pub instance: Option<String>,
}

pub async fn run(config_path: &Path, args: Args, json: bool) -> Result<(), Failure> {
    let inv = Invocation::load(config_path)?;
    let (name, instance) = &inv.instance(args.instance.as_deref()).await?;
    let state = inv.state();
    let _lock = state.lock(name)?;
    // Never beside a live backup started elsewhere. SQL Server being down must not keep
    // maintenance mode stuck, though: then the local lock is all there is.
    let _instance_lock = match crate::run::connect::sql_server(instance)?
        .lock_instance(name)
        .await
    {
        Ok(lock) => Some(lock),
        // Only a lock another run holds stops recovery; one SQL Server refuses is no reason to
        // leave maintenance mode as a killed run left it.
        Err(e @ (LockError::Sql(_) | LockError::Refused { .. })) => {
            tracing::warn!("recovering without the SQL Server instance lock: {e}");
            None
        }
        Err(e) => return Err(e.into()),
    };
    let client = octopus_client(instance)?;
    let r = maintenance::recover(&client, &state, name).await?;
    // What interrupted runs left on the staging share goes too, but only under the SQL Server
    // lock: without it a run from another machine or config copy may be writing there.
    let staging = if _instance_lock.is_some() {
        crate::run::backup::staging::remove_staging_leftovers(name, instance)
    } else {
        crate::run::backup::staging::staging_leftovers(name, instance)
            .into_iter()
            .map(|dir| {
                format!(
                    "kept {}, the staging folder of an earlier run: without the SQL Server lock (SQL Server did not answer) a run from another machine or config copy may still be writing there. Run `octobackup recover` again once SQL Server answers, or delete it by hand when no backup is running; it holds a copy of the database.",
                    dir.display()
                )
            })
            .collect()
    };
    // Restores' and drills' leftovers: a restore's under the SQL Server lock (it takes that lock
    // too), a drill's under the instance's drill lock.
    let mut staging = staging;
    let leftovers = crate::run::leftovers::find(name, &instance.staging_local());
    if _instance_lock.is_some() {
        let drill_lock = state.lock(&format!("{name} drill"));
        if drill_lock.is_err()
            && leftovers
                .iter()
                .any(|l| l.marker.kind == crate::run::leftovers::Kind::Drill)
        {
            staging.push("kept the drill's staging folder and scratch database: a drill of this instance is running now (its lock is held). Run `octobackup recover` again after it.".to_string());
        }
        let allowed = crate::run::leftovers::Allowed {
            restore: true,
            drill: drill_lock.is_ok(),
            except: None,
        };
        let server = crate::run::connect::sql_server(instance)?;
        staging.extend(
            crate::run::leftovers::remove(name, &instance.staging_local(), &server, allowed).await,
        );
    } else {
        staging.extend(leftovers.iter().map(|l| format!(
            "kept {} and [{}], left by an interrupted restore or drill: without the SQL Server lock (SQL Server did not answer) a run from another machine may still be using them. Run `octobackup recover` again once SQL Server answers; the folder holds a copy of the database.",
            l.dir.display(),
            l.marker.database
        )));
    }
    let out = Outcome {
        recovery: &r,
        staging: &staging,
    };
    emit(json, &out, || {
        let mut s = format!("{}: {}\n", r.instance, r.action);
        for note in &staging {
            s.push_str(&format!("{}: {note}\n", r.instance));
        }
        s
    });
    Ok(())
}

#[derive(serde::Serialize)]
struct Outcome<'a> {
    #[serde(flatten)]
    recovery: &'a maintenance::Recovery,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    staging: &'a [String],
}
