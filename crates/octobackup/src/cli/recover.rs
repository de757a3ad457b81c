use super::emit;
use crate::config::Config;
use crate::error::Failure;
use crate::run::backup::octopus_client;
use crate::run::journal::StateDir;
use crate::run::maintenance;
use std::path::Path;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The instance (optional when the config has one).
    #[arg(long, short)]
    pub instance: Option<String>,
}

pub async fn run(config_path: &Path, args: Args, json: bool) -> Result<(), Failure> {
    let config = Config::load(config_path)?;
    let (name, instance) = config.instance(config_path, args.instance.as_deref())?;
    // What the config leaves out comes from the instance itself ([instance.NAME.discover]).
    let instance = &crate::octopus::discovery::resolve(name, instance).await?;
    let state = StateDir::new(&config.state_dir(config_path));
    let _lock = state.lock(name)?;
    let client = octopus_client(instance)?;
    let r = maintenance::recover(&client, &state, name).await?;
    emit(json, &r, || format!("{}: {}\n", r.instance, r.action));
    Ok(())
}
