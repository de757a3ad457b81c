//! The start-up every command on an instance shares, written once: the config, the instance
//! (what the config leaves out comes from the instance itself, `[instance.NAME.discover]`), the
//! repository and the state folder.

use super::repository;
use crate::config::{Config, ConfigError, InstanceConfig};
use crate::error::Failure;
use crate::run::journal::StateDir;
use octobackup_repo::Repo;
use std::path::Path;
use std::sync::Arc;

/// The config file, read and checked: the schema's own checks (`Config::load`), then the e-mail
/// addresses of `[notify]` as the mail crate reads them (the schema does not import it).
pub fn load_config(path: &Path) -> Result<Config, ConfigError> {
    let config = Config::load(path)?;
    if let Some(n) = &config.notify {
        crate::notify::addresses(n).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })?;
    }
    Ok(config)
}

pub struct Invocation<'a> {
    pub config: Config,
    pub config_path: &'a Path,
}

impl<'a> Invocation<'a> {
    pub fn load(config_path: &'a Path) -> Result<Self, Failure> {
        Ok(Invocation {
            config: load_config(config_path)?,
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
