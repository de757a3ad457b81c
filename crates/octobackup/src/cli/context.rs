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

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
[repository]
location = "/var/backups/octopus"

[notify]
[[notify.email]]
server = "smtp.example.com"
from = "octobackup@example.com"
to = ["ops@example.com", "TO"]
"#;

    #[test]
    fn a_bad_e_mail_address_is_a_config_error_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("octobackup.toml");
        std::fs::write(&p, CONFIG.replace("TO", "not an address")).unwrap();
        // The schema alone does not read addresses (it does not import the mail crate) ...
        Config::load(&p).unwrap();
        // ... the config as every command loads it does.
        let e = load_config(&p).unwrap_err().to_string();
        assert!(
            e.contains("notify.email #1: 'not an address' is not an e-mail address"),
            "{e}"
        );
        std::fs::write(&p, CONFIG.replace("TO", "Backups <backups@example.com>")).unwrap();
        load_config(&p).unwrap();
    }

    /// Every command loads the config through `load_config`, so none skips the address check.
    #[test]
    fn commands_load_the_config_through_load_config() {
        let cli = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cli");
        let mut direct = Vec::new();
        for e in std::fs::read_dir(&cli).unwrap() {
            let p = e.unwrap().path();
            if p.file_name().is_some_and(|n| n == "context.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            if text.contains("Config::load(") {
                direct.push(p.display().to_string());
            }
        }
        assert!(
            direct.is_empty(),
            "Config::load called directly in {direct:?}"
        );
    }
}
