//! `octobackup key`: the repository's passwords (add, list, remove; several people or machines
//! each with their own), and `key recover`: a set's master key and license from its age escrow,
//! without the repository password.

use super::{emit, repository};
use crate::backupset::escrow;
use crate::config::Config;
use crate::error::{Exit, Failure};
use crate::secret::{Secret, SecretSource};
use octobackup_repo::{KeyInfo, Password, RepoError};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// Where a new password may come from besides a prompt (never the command line).
pub const NEW_PASSWORD_ENV: &str = "OCTOBACKUP_NEW_PASSWORD";

#[derive(clap::Subcommand, Debug)]
pub enum KeyCommand {
    /// Add a password: a prompt, --new-password-file, or OCTOBACKUP_NEW_PASSWORD.
    Add(AddArgs),
    /// List the repository's keys (one per password).
    List,
    /// Remove a key by id (not the last one, nor the one the current password opens).
    Remove(RemoveArgs),
    /// Decrypt a set's escrowed master key (or license) with an age identity file, without the
    /// repository password.
    Recover(RecoverArgs),
}

#[derive(clap::Args, Debug)]
pub struct AddArgs {
    /// A file holding the new password (first line).
    #[arg(long, value_name = "FILE")]
    pub new_password_file: Option<PathBuf>,
    /// Recorded in the key (default: this machine's name).
    #[arg(long)]
    pub host: Option<String>,
    /// Recorded in the key (default: this user).
    #[arg(long)]
    pub user: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct RemoveArgs {
    /// The key's id, or its start, as `key list` shows it.
    pub id: String,
}

#[derive(clap::Args, Debug)]
pub struct RecoverArgs {
    /// An age identity file (as `age-keygen` writes it) whose public key is in escrow.age_recipients.
    #[arg(long, value_name = "FILE")]
    pub identity: PathBuf,
    /// The set id (or its start); default: the newest set with an escrow copy.
    pub set: Option<String>,
    /// Recover the license instead of the master key.
    #[arg(long)]
    pub license: bool,
    /// Read the escrow beside the `[[copy]]` named NAME instead of the main repository.
    #[arg(long, value_name = "NAME")]
    pub copy: Option<String>,
    /// Print the secret on stdout.
    #[arg(long, conflicts_with = "output")]
    pub show_secrets: bool,
    /// Write the secret to this file (created new, readable by its owner only).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

fn new_password(args: &AddArgs) -> Result<Secret, Failure> {
    if let Some(f) = &args.new_password_file {
        return Ok(SecretSource::File(f.clone()).read("new repository password")?);
    }
    if std::env::var_os(NEW_PASSWORD_ENV).is_some() {
        return Ok(SecretSource::Env(NEW_PASSWORD_ENV.into()).read("new repository password")?);
    }
    if std::io::stdin().is_terminal() {
        let p = rpassword::prompt_password("new repository password: ")
            .map_err(|e| Failure::new(Exit::Usage, e.to_string()))?;
        let again = rpassword::prompt_password("again: ")
            .map_err(|e| Failure::new(Exit::Usage, e.to_string()))?;
        if p != again {
            return Err(Failure::new(Exit::Usage, "the passwords differ; try again"));
        }
        if p.is_empty() {
            return Err(Failure::new(
                Exit::Usage,
                "an empty password is not allowed",
            ));
        }
        return Ok(Secret::new(p));
    }
    Err(Failure::new(
        Exit::Usage,
        format!(
            "no new password: give --new-password-file FILE or set {NEW_PASSWORD_ENV} (or run on a terminal to be asked)"
        ),
    ))
}

fn default_host() -> Option<String> {
    std::env::var("COMPUTERNAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|h| !h.is_empty())
}

fn default_user() -> Option<String> {
    std::env::var("USERNAME")
        .or_else(|_| std::env::var("USER"))
        .ok()
        .filter(|u| !u.is_empty())
}

pub async fn run(config_path: &Path, cmd: KeyCommand, json: bool) -> Result<(), Failure> {
    let config = super::context::load_config(config_path)?;
    match cmd {
        KeyCommand::Add(args) => {
            let new = new_password(&args)?;
            let repo = repository::open(&config).await?;
            let host = args.host.clone().or_else(default_host);
            let user = args.user.clone().or_else(default_user);
            let pw = Password::new(new.expose());
            let id = crate::run::blocking::blocking("adding the key", move || {
                repo.add_key(&pw, host, user)
            })
            .await??;
            emit(json, &serde_json::json!({"added": id}), || {
                format!(
                    "added key {}: the new password opens the repository; the others still do\n",
                    &id[..8]
                )
            });
        }
        KeyCommand::List => {
            let repo = repository::open(&config).await?;
            let keys =
                crate::run::blocking::blocking("listing the keys", move || repo.keys()).await??;
            emit(json, &keys, || list_human(&keys));
        }
        KeyCommand::Remove(args) => {
            let repo = repository::open(&config).await?;
            let id = crate::run::blocking::blocking("removing the key", move || {
                repo.remove_key(&args.id)
            })
            .await?
            .map_err(|e| match e {
                RepoError::InvalidInput(m) => Failure::new(Exit::Usage, m),
                other => other.into(),
            })?;
            emit(json, &serde_json::json!({"removed": id}), || {
                format!(
                    "removed key {}: its password no longer opens the repository\n",
                    &id[..8]
                )
            });
        }
        KeyCommand::Recover(args) => recover(&config, args, json)?,
    }
    Ok(())
}

fn list_human(keys: &[KeyInfo]) -> String {
    let mut s = format!(" {:<8} {:<20} {:<16} {}\n", "id", "host", "user", "created");
    for k in keys {
        s.push_str(&format!(
            "{}{:<8} {:<20} {:<16} {}\n",
            if k.current { "*" } else { " " },
            k.short_id,
            k.hostname.clone().unwrap_or_default(),
            k.username.clone().unwrap_or_default(),
            k.created.clone().unwrap_or_default()
        ));
    }
    s.push_str(&format!(
        "{} key(s); * = the one this password opens\n",
        keys.len()
    ));
    s
}

#[derive(serde::Serialize)]
struct Recovered<'a> {
    set_id: &'a str,
    what: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    written_to: Option<String>,
}

fn recover(config: &Config, args: RecoverArgs, json: bool) -> Result<(), Failure> {
    let place = match &args.copy {
        Some(name) => repository::copy_entry(config, name)?.repository(),
        None => config.repository.clone(),
    };
    let r = escrow::recover(&place, args.set.as_deref(), &args.identity)?;
    let (what, secret) = if args.license {
        let l = r.license.as_ref().ok_or_else(|| {
            Failure::new(
                Exit::Failed,
                format!("set {} was sealed without a license", r.set_id),
            )
        })?;
        ("license", l)
    } else {
        // What Octopus would accept: base64 of a 16- or 32-byte AES key.
        if let Err(why) = crate::octopus::master_key::validate(r.master_key.expose()) {
            return Err(Failure::new(
                Exit::CheckFailed,
                format!(
                    "the escrowed master key of set {} decrypts but is not a usable master key ({why})",
                    r.set_id
                ),
            ));
        }
        ("master key", &r.master_key)
    };
    if let Some(path) = &args.output {
        write_private(path, secret)?;
        emit(
            json,
            &Recovered {
                set_id: &r.set_id,
                what,
                secret: None,
                written_to: Some(path.display().to_string()),
            },
            || {
                format!(
                    "the {what} of set {} is in {} (readable by its owner only)\n",
                    r.set_id,
                    path.display()
                )
            },
        );
    } else if args.show_secrets {
        emit(
            json,
            &Recovered {
                set_id: &r.set_id,
                what,
                secret: Some(secret.expose()),
                written_to: None,
            },
            || format!("{}\n", secret.expose()),
        );
    } else {
        emit(
            json,
            &Recovered {
                set_id: &r.set_id,
                what,
                secret: None,
                written_to: None,
            },
            || {
                format!(
                    "the {what} of set {} decrypts with this identity; add --show-secrets to print it or --output FILE to write it\n",
                    r.set_id
                )
            },
        );
    }
    Ok(())
}

/// Creates `path` new (never overwriting), owner-only on Unix, and writes the secret.
fn write_private(path: &Path, secret: &Secret) -> Result<(), Failure> {
    let text = zeroize::Zeroizing::new(format!("{}\n", secret.expose()));
    crate::secret::write_new_private(path, text.as_bytes()).map_err(|e| {
        use std::io::ErrorKind;
        if e.kind() == ErrorKind::AlreadyExists {
            Failure::new(
                Exit::Usage,
                format!(
                    "cannot create {}: {e}; it exists already: choose a new file name or remove it first",
                    path.display()
                ),
            )
        } else if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::PermissionDenied) {
            Failure::new(
                Exit::Usage,
                format!(
                    "cannot create {}: {e}; check the folder exists and is writable",
                    path.display()
                ),
            )
        } else {
            Failure::new(
                Exit::Failed,
                format!("cannot write {}: {e}", path.display()),
            )
        }
    })
}
