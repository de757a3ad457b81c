//! Opening the repository named in the config, with its password from OCTOBACKUP_PASSWORD, the
//! config's source, or a prompt on a terminal.

use crate::config::Config;
use crate::config::copy::CopyConfig;
use crate::error::{Exit, Failure};
use crate::secret::{Secret, SecretSource};
use octobackup_repo::{Password, Repo, RepoConfig, RepoError};
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

/// As [`open`], the key derived on a thread of its own while the caller goes on: the first use
/// of the repository waits for it, and `Repo::ready` says whether it opened.
pub fn open_deferred(config: &Config) -> Result<Repo, Failure> {
    let cfg = repo_config(config, &password(config, false)?);
    Ok(Repo::open_deferred(&cfg)?)
}

/// The `[[copy]]` named `name`.
pub fn copy_entry<'a>(config: &'a Config, name: &str) -> Result<&'a CopyConfig, Failure> {
    config
        .copies
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| {
            let known: Vec<&str> = config.copies.iter().map(|c| c.name.as_str()).collect();
            Failure::new(
                Exit::Usage,
                if known.is_empty() {
                    format!(
                        "the config has no [[copy]] named '{name}' (it has none): add one with its name, location and password_file or password_env"
                    )
                } else {
                    format!(
                        "the config has no [[copy]] named '{name}' (it has: {})",
                        known.join(", ")
                    )
                },
            )
        })
}

/// A copy's repository settings, with its own password (never OCTOBACKUP_PASSWORD, which is the
/// main repository's).
pub fn copy_repo_config(copy: &CopyConfig) -> Result<RepoConfig, Failure> {
    let source = copy.password_source().ok_or_else(|| {
        Failure::new(
            Exit::Usage,
            format!(
                "[[copy]] '{}' has no password: set password_file or password_env",
                copy.name
            ),
        )
    })?;
    let password = source.read("copy repository password")?;
    Ok(RepoConfig {
        repository: copy.location.clone(),
        options: copy.options.clone(),
        password: Password::new(password.expose()),
        retry_budget: copy.retry_budget,
    })
}

/// What went wrong with a copy's repository, said with the copy's name and the fix that fits
/// it (`init --copy NAME`, the copy's own password), the exit code unchanged.
pub fn about_copy(copy: &CopyConfig, e: RepoError) -> Failure {
    let name = &copy.name;
    let message = match &e {
        RepoError::NotFound { repository } => format!(
            "no repository found at {repository} for the copy '{name}': create it with `octobackup init --copy {name}`, or check [[copy]] location"
        ),
        RepoError::AlreadyExists { repository } => format!(
            "a repository already exists at {repository} (the copy '{name}'): `copy --to {name}` uses it as it is; to start over, point [[copy]] location at an empty place"
        ),
        RepoError::WrongPassword { repository } => format!(
            "wrong password for the copy '{name}' at {repository}: no key in it opens with the password from [[copy]] password_file/password_env (the copy has its own password, not the main repository's)"
        ),
        other => format!("the copy '{name}': {other}"),
    };
    Failure {
        message,
        ..Failure::from(e)
    }
}

/// Opens the `[[copy]]` named `name`.
pub async fn open_copy(config: &Config, name: &str) -> Result<Repo, Failure> {
    let copy = copy_entry(config, name)?.clone();
    let cfg = copy_repo_config(&copy)?;
    crate::run::blocking::blocking("opening the copy", move || {
        Repo::open(&cfg).map_err(|e| about_copy(&copy, e))
    })
    .await?
}

/// The repository a command works on: the main one, or with `--copy NAME` that copy.
pub async fn open_chosen(config: &Config, copy: Option<&str>) -> Result<Repo, Failure> {
    match copy {
        Some(name) => open_copy(config, name).await,
        None => open(config).await,
    }
}
