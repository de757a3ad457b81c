use super::{emit, repository, ui::Ui};
use crate::config::{self, Config, RepositoryConfig};
use crate::error::{Exit, Failure};
use octobackup_repo::{ObjectLock, Repo, RepoConfig, RepoError, Storage, StorageFault};
use std::path::Path;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where the repository goes: a folder, s3://HOST/BUCKET[/PATH], azure://CONTAINER[/PATH] or
    /// sftp://USER@HOST[:PORT]/PATH (credentials from the environment). Default: the config's.
    #[arg(long, short, conflicts_with = "copy")]
    pub repository: Option<String>,
    /// Create the repository of the `[[copy]]` named NAME (its location, options and own
    /// password), for `octobackup copy --to NAME`. The config must exist.
    #[arg(long, value_name = "NAME")]
    pub copy: Option<String>,
}

pub async fn run(config_path: &Path, args: Args, json: bool, ui: &Ui) -> Result<(), Failure> {
    if let Some(name) = &args.copy {
        return init_copy(config_path, name, json).await;
    }
    let existing = config_path.exists();
    let mut config = if existing {
        super::context::load_config(config_path)?
    } else {
        Config::default()
    };
    if let Some(r) = &args.repository {
        config.repository = RepositoryConfig {
            location: r.clone(),
            ..config.repository
        };
    }
    if config.repository.location.is_empty() {
        return Err(super::usage(
            "say where the repository goes: octobackup init --repository PATH",
        ));
    }
    let password = repository::password(&config, true)?;
    let cfg = repository::repo_config(&config, &password);
    let (created_bucket, object_lock) =
        crate::run::blocking::blocking("creating the repository", move || create(&cfg)).await??;
    let wrote_config = if !existing {
        std::fs::write(config_path, config::template(&config.repository.location)).map_err(
            |e| {
                Failure::new(
                    Exit::Failed,
                    format!(
                        "the repository was created, but the config {} could not be written: {e}",
                        config_path.display()
                    ),
                )
            },
        )?;
        true
    } else {
        false
    };
    ui.clear_status();
    emit(
        json,
        &serde_json::json!({"repository": config.repository.location, "config": config_path, "config_written": wrote_config, "created_bucket": created_bucket, "object_lock": object_lock}),
        || {
            let mut s = String::new();
            if let Some(bucket) = &created_bucket {
                s.push_str(&format!("created {bucket}\n"));
            }
            s.push_str(&format!(
                "created repository {}\n",
                config.repository.location
            ));
            s.push_str(&locked(object_lock.as_ref()));
            if wrote_config {
                s.push_str(&format!("wrote a config template to {}: fill in your Octopus instance, then run `octobackup backup`\n", config_path.display()));
            }
            s
        },
    );
    Ok(())
}

/// What init says of a bucket's Object Lock.
fn locked(lock: Option<&ObjectLock>) -> String {
    lock.map(|l| format!("the bucket has Object Lock ({}): recorded; forget and prune keep sets and packs until their lock ends\n", l.describe())).unwrap_or_default()
}

/// Creates the repository; as restic does, a missing bucket or container first. Returns the
/// bucket created, if one was, and the bucket's Object Lock, which is recorded beside the
/// repository (doctor notices it taken away or shortened later).
fn create(cfg: &RepoConfig) -> Result<(Option<String>, Option<ObjectLock>), RepoError> {
    let created = match Repo::init(cfg) {
        Err(RepoError::Storage {
            fault: StorageFault::MissingBucket,
            ..
        }) => {
            let storage = Storage::new(&cfg.repository, cfg.options.clone());
            storage.create_bucket()?;
            Repo::init(cfg).map(|_| Some(storage.describe()))
        }
        other => other.map(|_| None),
    }?;
    let storage = Storage::new(&cfg.repository, cfg.options.clone());
    Ok((created, storage.record_object_lock()?))
}

/// `init --copy NAME`: the `[[copy]]`'s repository, with the copy's own password. `copy` never
/// creates one itself: a mistyped location then fails instead of filling a new place.
async fn init_copy(config_path: &Path, name: &str, json: bool) -> Result<(), Failure> {
    let config = super::context::load_config(config_path)?;
    let copy = repository::copy_entry(&config, name)?.clone();
    let cfg = repository::copy_repo_config(&copy)?;
    let (created_bucket, object_lock) = {
        let copy = copy.clone();
        crate::run::blocking::blocking("creating the copy", move || {
            create(&cfg).map_err(|e| repository::about_copy(&copy, e))
        })
        .await??
    };
    emit(
        json,
        &serde_json::json!({"copy": copy.name, "repository": copy.location, "created_bucket": created_bucket, "object_lock": object_lock}),
        || {
            let mut s = String::new();
            if let Some(bucket) = &created_bucket {
                s.push_str(&format!("created {bucket}\n"));
            }
            s.push_str(&format!(
                "created repository {} for the copy '{}': `octobackup copy --to {}` fills it\n",
                copy.location, copy.name, copy.name
            ));
            s.push_str(&locked(object_lock.as_ref()));
            s
        },
    );
    Ok(())
}
