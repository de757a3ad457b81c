use super::{emit, repository, ui::Ui};
use crate::config::{self, Config, RepositoryConfig};
use crate::error::{Exit, Failure};
use octobackup_repo::{Repo, RepoError, Storage, StorageFault};
use std::path::Path;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where the repository goes: a folder, s3://HOST/BUCKET[/PATH], azure://CONTAINER[/PATH] or
    /// sftp://USER@HOST[:PORT]/PATH (credentials from the environment). Default: the config's.
    #[arg(long, short)]
    pub repository: Option<String>,
}

pub async fn run(config_path: &Path, args: Args, json: bool, ui: &Ui) -> Result<(), Failure> {
    let existing = config_path.exists();
    let mut config = if existing {
        Config::load(config_path)?
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
    let created_bucket = tokio::task::spawn_blocking(move || {
        match Repo::init(&cfg) {
            // As restic does: create a missing bucket or container, then make the repository.
            Err(RepoError::Storage {
                fault: StorageFault::MissingBucket,
                ..
            }) => {
                let storage = Storage::new(&cfg.repository, cfg.options.clone());
                storage.create_bucket()?;
                Repo::init(&cfg).map(|_| Some(storage.describe()))
            }
            other => other.map(|_| None),
        }
        .and_then(|created| {
            // A bucket's Object Lock is recorded beside the repository: doctor notices it taken
            // away later.
            let storage = Storage::new(&cfg.repository, cfg.options.clone());
            Ok((created, storage.record_object_lock()?))
        })
    })
    .await??;
    let (created_bucket, object_lock) = created_bucket;
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
            if let Some(lock) = &object_lock {
                s.push_str(&format!("the bucket has Object Lock ({}): recorded; forget and prune keep sets and packs until their lock ends\n", lock.describe()));
            }
            if wrote_config {
                s.push_str(&format!("wrote a config template to {}: fill in your Octopus instance, then run `octobackup backup`\n", config_path.display()));
            }
            s
        },
    );
    Ok(())
}
