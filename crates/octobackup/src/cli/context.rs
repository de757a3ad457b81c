//! The start-up every command on an instance shares, written once: the config, the instance
//! (what the config leaves out comes from the instance itself, `[instance.NAME.discover]`), the
//! repository and the state folder.

use super::repository;
use crate::config::{Config, InstanceConfig};
use crate::error::Failure;
use crate::run::journal::StateDir;
use octobackup_repo::Repo;
use std::path::Path;
use std::sync::Arc;

pub struct Invocation<'a> {
    pub config: Config,
    pub config_path: &'a Path,
}

impl<'a> Invocation<'a> {
    pub fn load(config_path: &'a Path) -> Result<Self, Failure> {
        Ok(Invocation {
            config: Config::load(config_path)?,
            config_path,
        })
    }

    /// The instance (`wanted`, or the config's only one): its name and its settings, with
    /// discovery applied.
    pub async fn instance(&self, wanted: Option<&str>) -> Result<(&str, InstanceConfig), Failure> {
        let (name, configured) = self.config.instance(self.config_path, wanted)?;
        Ok((
            name,
            crate::octopus::discovery::resolve(name, configured).await?,
        ))
    }

    pub async fn repo(&self) -> Result<Arc<Repo>, Failure> {
        Ok(Arc::new(repository::open(&self.config).await?))
    }

    /// The run journal and locks.
    pub fn state(&self) -> StateDir {
        StateDir::new(&self.config.state_dir(self.config_path))
    }
}
