//! Secrets (API key, SQL password, master key, license, repository password): held zeroized,
//! never printed. `Debug` and `Display` show `***`, so a secret that slips into a log line or an
//! error message does no harm.

use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

#[derive(Clone, Default)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(Zeroizing::new(s.into()))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Writes `bytes` to `path` as a new file that only its owner may read (0600 on Unix; on Windows
/// the folder's permissions apply), flushed to disk. Never over an existing file: the error's kind
/// is then `AlreadyExists`, for the caller to say so. The one writer for the secrets octobackup
/// hands out (the repository key file, a restore's secrets file).
pub fn write_new_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Where a secret comes from. Config files name a source, never hold the value itself: a value
/// written into the config would sit in backups of the config, in editors' swap files and in
/// support tickets.
#[derive(Clone, Debug, PartialEq)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {0} is not set (it should hold the {1})")]
    EnvMissing(String, &'static str),
    #[error("cannot read the {what} from {path}: {cause}")]
    File {
        what: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("the {0} is empty")]
    Empty(&'static str),
}

impl SecretSource {
    /// Reads the secret; `what` names it in errors ("Octopus API key").
    pub fn read(&self, what: &'static str) -> Result<Secret, SecretError> {
        let value = match self {
            SecretSource::Env(var) => {
                std::env::var(var).map_err(|_| SecretError::EnvMissing(var.clone(), what))?
            }
            SecretSource::File(path) => read_file(path, what)?,
        };
        let trimmed = value.trim_end_matches(['\r', '\n']).to_string();
        if trimmed.is_empty() {
            return Err(SecretError::Empty(what));
        }
        Ok(Secret::new(trimmed))
    }

    pub fn describe(&self) -> String {
        match self {
            SecretSource::Env(v) => format!("environment variable {v}"),
            SecretSource::File(p) => format!("file {}", p.display()),
        }
    }
}

fn read_file(path: &Path, what: &'static str) -> Result<String, SecretError> {
    std::fs::read_to_string(path).map_err(|cause| SecretError::File {
        what,
        path: path.to_path_buf(),
        cause,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("API-TOPSECRET");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert_eq!(s.expose(), "API-TOPSECRET");
    }

    #[test]
    fn file_source_trims_the_trailing_newline_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, " pass word \r\n").unwrap();
        assert_eq!(
            SecretSource::File(p).read("key").unwrap().expose(),
            " pass word "
        );
    }

    #[test]
    fn missing_sources_say_what_and_where() {
        let e = SecretSource::Env("OCTOBACKUP_TEST_SURELY_UNSET".into())
            .read("Octopus API key")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "environment variable OCTOBACKUP_TEST_SURELY_UNSET is not set (it should hold the Octopus API key)"
        );
        let e = SecretSource::File("/nonexistent/k".into())
            .read("SQL password")
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot read the SQL password from /nonexistent/k")
        );
    }
}
