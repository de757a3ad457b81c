//! Where the repository lives and how to open it: the one place that turns a [`RepoConfig`]
//! into rustic backends, so S3/Azure/SFTP (through OpenDAL) only ever change this file.

use std::collections::BTreeMap;
use std::fmt;

use rustic_backend::BackendOptions;
use rustic_core::{RepositoryBackends, RepositoryOptions};
use zeroize::Zeroizing;

use crate::error::{RepoError, from_rustic};

/// The repository password. Zeroized on drop; `Debug` prints `***` so it cannot leak into logs.
#[derive(Clone)]
pub struct Password(Zeroizing<String>);

impl Password {
    pub fn new(password: impl Into<String>) -> Self {
        Self(Zeroizing::new(password.into()))
    }

    /// The clear text, for handing to the key derivation only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Password {
    fn from(password: String) -> Self {
        Self::new(password)
    }
}

impl From<&str> for Password {
    fn from(password: &str) -> Self {
        Self::new(password)
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How to reach a repository.
#[derive(Clone)]
pub struct RepoConfig {
    /// A local path, or what rustic_backend understands: `opendal:<service>`, `rest:<url>`,
    /// `rclone:<remote>` (`local:<path>` is accepted too).
    pub repository: String,
    /// Backend options (OpenDAL settings such as `bucket`, `endpoint`, keys).
    pub options: BTreeMap<String, String>,
    pub password: Password,
}

impl fmt::Debug for RepoConfig {
    /// Option values may be cloud credentials: only their names are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let options: BTreeMap<&str, &str> =
            self.options.keys().map(|k| (k.as_str(), "***")).collect();
        f.debug_struct("RepoConfig")
            .field("repository", &self.repository)
            .field("options", &options)
            .field("password", &self.password)
            .finish()
    }
}

/// Backend schemes rustic_backend is built with.
const SCHEMES: [&str; 4] = ["local", "rest", "rclone", "opendal"];

/// What the repository string turned into.
pub(crate) struct Location {
    /// The string handed to rustic_backend.
    pub(crate) backend: String,
    pub(crate) is_local: bool,
}

/// Reads the repository string the way a user means it: a path is local even when it has a
/// colon in it (`/srv/a:b`, `C:/Backups`), and restic-style `s3:...` gets a clear error instead
/// of silently becoming a local folder named `s3:...`.
pub(crate) fn location(repository: &str) -> Result<Location, RepoError> {
    let repository = repository.trim();
    if repository.is_empty() {
        return Err(RepoError::InvalidInput(
            "the repository location is empty: give a folder path or an `opendal:` location".into(),
        ));
    }
    let local = |path: &str| Location {
        backend: local_backend_string(path),
        is_local: true,
    };
    let Some((scheme, rest)) = repository.split_once(':') else {
        return Ok(local(repository));
    };
    if scheme == "local" {
        return Ok(local(rest));
    }
    if SCHEMES.contains(&scheme) {
        return Ok(Location {
            backend: repository.to_string(),
            is_local: false,
        });
    }
    let drive_letter = scheme.len() == 1 && scheme.chars().all(|c| c.is_ascii_alphabetic());
    let colon_inside_path = scheme.contains(['/', '\\']) || scheme.starts_with('.');
    if drive_letter || colon_inside_path {
        return Ok(local(repository));
    }
    Err(RepoError::InvalidInput(format!(
        "unsupported repository location `{repository}`: use a folder path, \
         `opendal:<service>` (s3, azblob, sftp, ...) with backend options, `rest:<url>` or `rclone:<remote>`"
    )))
}

/// The folder of a local repository location (a plain path or `local:<path>`); `None` for a
/// remote backend or a location that is not valid. The one answer to "is this repository local?".
pub fn local_folder(repository: &str) -> Option<std::path::PathBuf> {
    let location = location(repository).ok()?;
    if !location.is_local {
        return None;
    }
    let repository = repository.trim();
    Some(std::path::PathBuf::from(
        repository.strip_prefix("local:").unwrap_or(repository),
    ))
}

/// rustic_backend parses `scheme:path` itself; local paths are passed so that it reads them as
/// local on every platform (on Windows it only recognises drive paths written with backslashes).
fn local_backend_string(path: &str) -> String {
    if cfg!(windows) {
        path.replace('/', "\\")
    } else if path.contains(':') {
        format!("local:{path}")
    } else {
        path.to_string()
    }
}

/// The backends and repository options for `cfg`. Local repositories get no cache (it would
/// only duplicate the repository on the same disk); remote ones use rustic's default cache.
pub(crate) fn backends(
    cfg: &RepoConfig,
) -> Result<(RepositoryBackends, RepositoryOptions), RepoError> {
    let location = location(&cfg.repository)?;
    let backend_opts = BackendOptions::default()
        .repository(location.backend)
        .options(cfg.options.clone());
    let backends = backend_opts
        .to_backends()
        .map_err(|err| from_rustic("cannot reach the repository", &err))?;
    let repo_opts = RepositoryOptions::default().no_cache(location.is_local);
    Ok((backends, repo_opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_hidden_from_debug() {
        let cfg = RepoConfig {
            repository: "/r".into(),
            options: BTreeMap::from([("secret-access-key".into(), "AKIA-SECRET".into())]),
            password: Password::new("hunter2"),
        };
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("AKIA-SECRET"), "{shown}");
        assert!(shown.contains("secret-access-key"), "{shown}");
    }

    #[test]
    fn local_folders_are_told_from_backends() {
        use std::path::PathBuf;
        assert_eq!(
            local_folder("/backups/octo"),
            Some(PathBuf::from("/backups/octo"))
        );
        assert_eq!(local_folder("local:/r"), Some(PathBuf::from("/r")));
        assert_eq!(
            local_folder("C:/Backups"),
            Some(PathBuf::from("C:/Backups"))
        );
        assert_eq!(local_folder("/srv/a:b"), Some(PathBuf::from("/srv/a:b")));
        for remote in ["opendal:s3", "rest:http://x", "rclone:r", "s3:bucket", ""] {
            assert_eq!(local_folder(remote), None, "{remote}");
        }
    }

    #[test]
    fn locations_are_read_as_users_mean_them() {
        let l = location("/srv/backups").unwrap();
        assert!(l.is_local);
        let l = location("opendal:s3").unwrap();
        assert!(!l.is_local);
        assert_eq!(l.backend, "opendal:s3");
        assert!(location("rest:http://host:8000/").is_ok_and(|l| !l.is_local));
        assert!(location("local:/srv/x").unwrap().is_local);
        assert!(location("C:/Backups").unwrap().is_local);
        assert!(location("/srv/a:b").unwrap().is_local);
        assert!(location("s3:s3.amazonaws.com/bucket").is_err());
        assert!(location("  ").is_err());
    }

    #[cfg(not(windows))]
    #[test]
    fn local_paths_with_colons_are_marked_local() {
        assert_eq!(location("/srv/a:b").unwrap().backend, "local:/srv/a:b");
        assert_eq!(location("/srv/ab").unwrap().backend, "/srv/ab");
    }
}
