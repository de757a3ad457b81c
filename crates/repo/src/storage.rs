//! Plain objects beside a remote repository, through the same OpenDAL service and options as
//! the repository itself: the escrow copies (`octobackup-escrow/<set>/...`) that must be readable
//! without the repository password, and a probe that tells a missing bucket from an empty one.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::config::{self, Location};
use crate::error::{RepoError, StorageFault, storage_error};

/// Where a repository is, without its password.
#[derive(Clone)]
pub struct Storage {
    location: String,
    options: BTreeMap<String, String>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl Storage {
    /// The repository at `location` with its backend options, as in the config.
    pub fn new(location: impl Into<String>, options: BTreeMap<String, String>) -> Self {
        Storage {
            location: location.into(),
            options,
        }
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    /// The folder of a local repository; `None` for a remote one.
    pub fn local_folder(&self) -> Option<PathBuf> {
        config::local_folder(&self.location)
    }

    /// The bucket or container and endpoint, for messages (no credentials).
    pub fn describe(&self) -> String {
        match self.resolved() {
            Ok((l, o)) if !l.is_local => config::describe(&l, &o),
            _ => self.location.clone(),
        }
    }

    fn resolved(&self) -> Result<(Location, BTreeMap<String, String>), RepoError> {
        let location = config::location(&self.location)?;
        let options =
            config::resolve_options(&location, &self.options, &|v| std::env::var(v).ok())?;
        Ok((location, options))
    }

    /// Runs `work` with an operator for the remote repository's service, on a runtime of its own
    /// (callers may be on an async runtime's thread, where blocking on another is not allowed).
    fn with_operator<T: Send>(
        &self,
        doing: &str,
        work: impl AsyncFnOnce(opendal::Operator) -> opendal::Result<T> + Send,
    ) -> Result<T, RepoError> {
        let (location, options) = self.resolved()?;
        let Some(service) = location.service().map(str::to_string) else {
            return Err(RepoError::InvalidInput(format!(
                "{}: plain objects are only kept beside local and opendal repositories",
                self.location
            )));
        };
        let describe = config::describe(&location, &options);
        std::thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| RepoError::Other(format!("{doing}: {e}")))?;
                rt.block_on(async {
                    let op = opendal::Operator::via_iter(&service, options)
                        .map_err(|e| storage_error(doing, &describe, Some(&service), &e))?;
                    work(op)
                        .await
                        .map_err(|e| storage_error(doing, &describe, Some(&service), &e))
                })
            })
            .join()
            .unwrap_or_else(|_| {
                Err(RepoError::Other(format!(
                    "{doing}: the storage call failed"
                )))
            })
        })
    }

    /// Writes `bytes` at `path` (relative to the repository's root).
    pub fn put(&self, path: &str, bytes: Vec<u8>) -> Result<(), RepoError> {
        let path = path.to_string();
        self.with_operator(
            &format!("cannot write {path} beside the repository"),
            async move |op| op.write(&path, bytes).await.map(|_| ()),
        )
    }

    /// Reads `path`; `None` when it does not exist.
    pub fn get(&self, path: &str) -> Result<Option<Vec<u8>>, RepoError> {
        let owned = path.to_string();
        self.with_operator(
            &format!("cannot read {path} beside the repository"),
            async move |op| match op.read(&owned).await {
                Ok(b) => Ok(Some(b.to_vec())),
                Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            },
        )
    }

    /// The names directly under `folder` (files and folders, without a trailing `/`).
    pub fn list(&self, folder: &str) -> Result<Vec<String>, RepoError> {
        let folder = format!("{}/", folder.trim_end_matches('/'));
        self.with_operator(
            &format!("cannot list {folder} beside the repository"),
            async move |op| match op.list(&folder).await {
                // Some services (SFTP) list the folder itself too.
                Ok(entries) => Ok(entries
                    .iter()
                    .filter(|e| e.path().trim_start_matches('/') != folder.trim_start_matches('/'))
                    .map(|e| e.name().trim_end_matches('/').to_string())
                    .filter(|n| !n.is_empty())
                    .collect()),
                Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(e),
            },
        )
    }

    /// Removes `folder` and everything under it (nothing to do when it does not exist).
    pub fn remove_all(&self, folder: &str) -> Result<(), RepoError> {
        let folder = format!("{}/", folder.trim_end_matches('/'));
        self.with_operator(
            &format!("cannot remove {folder} beside the repository"),
            async move |op| op.delete_with(&folder).recursive(true).await,
        )
    }

    /// For a remote repository that looks empty: is the bucket or container itself there, and
    /// do the credentials open it? `Ok` when it is (or when this cannot tell).
    pub(crate) fn probe(&self) -> Result<(), RepoError> {
        match self.resolved() {
            Ok((l, _)) if matches!(l.service(), Some("s3" | "azblob")) => {}
            _ => return Ok(()),
        }
        let result = self.with_operator(
            &format!("cannot open the repository {}", self.location),
            async move |op| op.list_with("/").limit(1).await.map(|_| ()),
        );
        match result {
            Err(RepoError::Storage { fault, .. }) if fault != StorageFault::Other => result,
            _ => Ok(()),
        }
    }
}
