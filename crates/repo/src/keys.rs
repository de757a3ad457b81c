//! The repository's keys: each key file holds the one master key, encrypted with one password,
//! so several people or machines can each have their own password (restic's `key` command).

use rustic_core::KeyOptions;
use rustic_core::repofile::{KeyFile, KeyId};
use serde::Serialize;

use crate::config::Password;
use crate::error::{RepoError, from_rustic};
use crate::progress::NoProgress;
use crate::repo::Repo;
use crate::snapshots::timestamp_to_chrono;

/// One key file (no secret in it: the master key inside is encrypted with its password).
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    pub id: String,
    pub short_id: String,
    pub hostname: Option<String>,
    pub username: Option<String>,
    pub created: Option<String>,
    /// The key this `Repo` was opened with.
    pub current: bool,
}

impl Repo {
    /// Every key of the repository, oldest first.
    pub fn keys(&self) -> Result<Vec<KeyInfo>, RepoError> {
        let current = self.key_id()?;
        self.run(&NoProgress, |repo| {
            let ids: Vec<KeyId> = repo
                .list::<KeyId>()
                .map_err(|e| from_rustic("cannot list the keys", &e))?
                .collect();
            let mut out = Vec::new();
            for id in ids {
                let file: KeyFile = repo
                    .get_file(&id)
                    .map_err(|e| from_rustic("cannot read a key", &e))?;
                let hex = id.to_hex().to_string();
                out.push((
                    file.created.as_ref().map(|c| c.timestamp()),
                    KeyInfo {
                        short_id: hex.chars().take(8).collect(),
                        id: hex,
                        hostname: file.hostname.clone(),
                        username: file.username.clone(),
                        created: file
                            .created
                            .as_ref()
                            .map(|c| timestamp_to_chrono(c.timestamp()).to_rfc3339()),
                        current: current == Some(id),
                    },
                ));
            }
            out.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
            Ok(out.into_iter().map(|(_, k)| k).collect())
        })
    }

    /// Adds a key: `password` then opens the repository too. Returns the new key's id.
    pub fn add_key(
        &self,
        password: &Password,
        hostname: Option<String>,
        username: Option<String>,
    ) -> Result<String, RepoError> {
        if password.expose().is_empty() {
            return Err(RepoError::InvalidInput(
                "an empty password is not allowed".into(),
            ));
        }
        self.run(&NoProgress, |repo| {
            let opts = KeyOptions::default()
                .hostname(hostname)
                .username(username)
                .with_created(true)
                .scrypt_cost(Some(crate::repo::KEY_COST));
            let id = repo
                .add_key(password.expose(), &opts)
                .map_err(|e| from_rustic("cannot add the key", &e))?;
            Ok(id.to_hex().to_string())
        })
    }

    /// Removes the key whose id starts with `id_prefix`. Refuses the last key (the repository
    /// could never be opened again) and the key this `Repo` was opened with.
    pub fn remove_key(&self, id_prefix: &str) -> Result<String, RepoError> {
        let keys = self.keys()?;
        let wanted = id_prefix.trim().to_ascii_lowercase();
        if wanted.is_empty() || !wanted.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(RepoError::InvalidInput(format!(
                "`{id_prefix}` is not a key id: ids are hexadecimal, as `key list` shows them"
            )));
        }
        let matching: Vec<&KeyInfo> = keys.iter().filter(|k| k.id.starts_with(&wanted)).collect();
        let key = match matching.as_slice() {
            [] => {
                return Err(RepoError::InvalidInput(format!(
                    "no key with id `{wanted}` in the repository: list them with `key list`"
                )));
            }
            [one] => *one,
            more => {
                return Err(RepoError::InvalidInput(format!(
                    "key id `{wanted}` is ambiguous ({} keys start with it): give more characters",
                    more.len()
                )));
            }
        };
        if keys.len() <= 1 {
            return Err(RepoError::InvalidInput(format!(
                "key {} is the repository's last key: without it nobody could open the repository again. Add another key first.",
                key.short_id
            )));
        }
        if key.current {
            return Err(RepoError::InvalidInput(format!(
                "key {} is the one this password opens: to remove it, use another key's password (OCTOBACKUP_PASSWORD or the password file)",
                key.short_id
            )));
        }
        let id: KeyId = key
            .id
            .parse::<rustic_core::Id>()
            .map_err(|e| from_rustic("bad key id", &e))?
            .into();
        self.run(&NoProgress, |repo| {
            repo.delete_key(&id)
                .map_err(|e| from_rustic("cannot remove the key", &e))
        })?;
        Ok(key.id.clone())
    }
}
