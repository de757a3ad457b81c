//! Opening the repository named in the config, with its password from OCTOBACKUP_PASSWORD, the
//! config's source, or a prompt on a terminal.

use crate::config::Config;
use crate::error::{Exit, Failure};
use crate::secret::{Secret, SecretSource};
use octobackup_repo::{Password, Repo, RepoConfig};
use std::io::IsTerminal;

pub const PASSWORD_ENV: &str = "OCTOBACKUP_PASSWORD";

pub fn password(config: &Config, confirm: bool) -> Result<Secret, Failure> {
    if std::env::var_os(PASSWORD_ENV).is_some() {
        return Ok(SecretSource::Env(PASSWORD_ENV.into()).read("repository password")?);
    }
    if let Some(src) = config.repository_password_source() {
        return Ok(src.read("repository password")?);
    }
    if std::io::stdin().is_terminal() {
        let p = rpassword::prompt_password("repository password: ")
            .map_err(|e| Failure::new(Exit::Usage, e.to_string()))?;
        if confirm {
            let again = rpassword::prompt_password("again: ")
                .map_err(|e| Failure::new(Exit::Usage, e.to_string()))?;
            if again != p {
                return Err(Failure::new(Exit::Usage, "the passwords differ"));
            }
        }
        if p.is_empty() {
            return Err(Failure::new(
                Exit::Usage,
                "an empty repository password is not allowed",
            ));
        }
        return Ok(Secret::new(p));
    }
    Err(Failure::new(
        Exit::Usage,
        format!(
            "no repository password: set {PASSWORD_ENV}, or repository.password_file / password_env in the config"
        ),
    ))
}

pub fn repo_config(config: &Config, password: &Secret) -> RepoConfig {
    RepoConfig {
        repository: config.repository.location.clone(),
        options: config.repository.options.clone(),
        password: Password::new(password.expose()),
        retry_budget: config.repository.retry_budget,
    }
}

pub async fn open(config: &Config) -> Result<Repo, Failure> {
    let cfg = repo_config(config, &password(config, false)?);
    Ok(
        crate::run::blocking::blocking("opening the repository", move || Repo::open(&cfg))
            .await??,
    )
}
