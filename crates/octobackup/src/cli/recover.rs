use super::context::Invocation;
use super::emit;
use crate::error::Failure;
use crate::run::backup::octopus_client;
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
    let _instance_lock = match crate::run::backup::sql_server(instance)?
        .lock_instance(name)
        .await
    {
        Ok(lock) => Some(lock),
        Err(e @ LockError::Sql(_)) => {
            tracing::warn!("recovering without the SQL Server instance lock: {e}");
            None
        }
        Err(e) => return Err(e.into()),
    };
    let client = octopus_client(instance)?;
    let r = maintenance::recover(&client, &state, name).await?;
    // What interrupted runs left on the staging share goes too (the lock says none is running).
    let staging = crate::run::backup::remove_staging_leftovers(name, instance);
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
