//! The master key and license from the set: read from the repository, written only to a file the
//! user names (owner-only, never over an existing file).

use super::set::ChosenSet;
use crate::backupset::{self};
use crate::error::{Exit, Failure};
use crate::secret::Secret;
use octobackup_repo::Repo;
use std::path::Path;
use std::sync::Arc;

/// The master key and license of a set (`None` when the set has none).
pub async fn read_secrets(
    repo: &Arc<Repo>,
    set: &ChosenSet,
) -> Result<(Option<Secret>, Option<Secret>), Failure> {
    let (repo, snap) = (repo.clone(), set.snapshot_id.clone());
    let (has_key, has_license) = (
        set.manifest.secrets.master_key,
        set.manifest.secrets.license,
    );
    crate::run::blocking::blocking("reading the secrets", move || {
        let read = |path: &str| -> Result<Secret, Failure> {
            let bytes = repo.read_file(&snap, path)?;
            let text = std::str::from_utf8(&bytes).map_err(|_| {
                Failure::new(Exit::Repository, format!("{path} in the set is not text"))
            })?;
            Ok(Secret::new(text.trim_end_matches(['\r', '\n'])))
        };
        let key = if has_key {
            Some(read(backupset::MASTER_KEY_PATH)?)
        } else {
            None
        };
        let license = if has_license {
            Some(read(backupset::LICENSE_PATH)?)
        } else {
            None
        };
        Ok((key, license))
    })
    .await?
}

/// Creates `path` for secrets: owner-only permissions, never over an existing file.
pub fn write_secrets_file(path: &Path, content: &str) -> Result<(), Failure> {
    crate::secret::write_new_private(path, content.as_bytes()).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            Failure::new(
                Exit::Usage,
                format!(
                    "the secrets file {} already exists; octobackup never overwrites one. Choose another path or remove it.",
                    path.display()
                ),
            )
        } else {
            Failure::new(
                Exit::Failed,
                format!("cannot write the secrets file {}: {e}", path.display()),
            )
        }
    })
}
