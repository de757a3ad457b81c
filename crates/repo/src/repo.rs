//! Opening and creating a repository, and the calls that are not backup or restore.

use std::sync::{Arc, Mutex, PoisonError};

use rustic_core::repofile::{IndexId, KeyId, MasterKey, SnapshotFile, SnapshotId};
use rustic_core::{
    CheckOptions, ConfigOptions, Credentials, IndexedFiles, IndexedFullStatus, IndexedIdsStatus,
    KeyOptions, OpenStatus, Repository, RepositoryBackends, RepositoryOptions,
    compression_level_range,
};

use crate::budget::Health;
use crate::check::CheckReport;
use crate::config::{self, RepoConfig};
use crate::error::{RepoError, from_rustic, from_rustic_at};
use crate::progress::{NoProgress, ProgressRouter, ProgressSink};
use crate::snapshots::{SnapshotInfo, readable_snapshots, resolve_snapshot};
use crate::storage::Storage;

/// zstd level for new repositories (rustic keeps it in the config file; restic ignores it).
/// 1, not restic's and rustic's 3: on an Octopus server's data (incompressible packages, task
/// logs, the `.bak`) it stores as much (the medium lab: 1375.8 MiB against 1374.6 MiB, restic
/// 1381.6 MiB) and a first backup takes about a tenth less time (`lab bench --compression`,
/// README "Benchmark"). A repository made before keeps the level in its config.
pub const DEFAULT_COMPRESSION: i32 = 1;

/// An open repository. Calls on one `Repo` run one at a time (open a second `Repo` to work in
/// parallel); each runs rustic on a helper thread, so they may be called from any thread.
pub struct Repo {
    location: String,
    storage: Storage,
    backends: RepositoryBackends,
    options: RepositoryOptions,
    pub(crate) router: ProgressRouter,
    /// The master key found with the password, and the key file that opened it: each call
    /// reopens the repository with it (rustic's open repository cannot be shared between calls
    /// that index it). Shared with twins.
    key: Arc<KeySlot>,
    /// The storage's retry budget, shared by every call of the run.
    health: Arc<Health>,
    pub(crate) busy: Mutex<()>,
    /// The index read by the last call that reads files back (a restore reads a manifest per
    /// set, the secrets, the listing and the files: one index read, not one each), kept while
    /// the repository's index files are the same ones. Any other call drops it, so a backup or
    /// a prune does not carry it.
    indexed: Mutex<Option<Indexed>>,
    /// The index as the last call that adds data read it, and the index files it was read
    /// from: the next one reads only the index files added since (a backup set is stored in
    /// several snapshots, each of which read the whole index; rustic_core change 12). Shared
    /// with twins.
    ids_index: Arc<Mutex<Option<IndexedFiles>>>,
    /// Files a restore plans at a time (`restore.rs`).
    pub(crate) restore_batch: std::sync::atomic::AtomicUsize,
}

/// The master key of an open repository: found when it was opened ([`Repo::open`]), or being
/// found on a thread of its own ([`Repo::open_deferred`]) and waited for at first use.
pub(crate) struct KeySlot {
    state: Mutex<KeyState>,
}

enum KeyState {
    Found(Credentials, Option<KeyId>),
    Finding(std::thread::JoinHandle<Result<(MasterKey, Option<KeyId>), RepoError>>),
    /// The search failed and its error was returned once; later calls get its message.
    Failed(String),
}

impl KeySlot {
    fn found((key, key_id): (MasterKey, Option<KeyId>)) -> Self {
        KeySlot {
            state: Mutex::new(KeyState::Found(Credentials::Masterkey(key), key_id)),
        }
    }

    /// The key and its key file's id, waiting for the search if it still runs.
    fn get(&self) -> Result<(Credentials, Option<KeyId>), RepoError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(*state, KeyState::Finding(_)) {
            let KeyState::Finding(search) = std::mem::replace(
                &mut *state,
                KeyState::Failed("the repository could not be opened".into()),
            ) else {
                unreachable!("matched above")
            };
            match search.join() {
                Ok(Ok((key, key_id))) => {
                    *state = KeyState::Found(Credentials::Masterkey(key), key_id);
                }
                Ok(Err(e)) => {
                    *state = KeyState::Failed(e.to_string());
                    return Err(e);
                }
                Err(_) => {
                    return Err(RepoError::Other(
                        "opening the repository failed unexpectedly".into(),
                    ));
                }
            }
        }
        match &*state {
            KeyState::Found(key, key_id) => Ok((key.clone(), *key_id)),
            KeyState::Failed(message) => Err(RepoError::Other(message.clone())),
            KeyState::Finding(_) => unreachable!("waited for above"),
        }
    }
}

/// The repository's index files, sorted.
fn index_files<S: rustic_core::Open>(repo: &Repository<S>) -> Result<Vec<IndexId>, RepoError> {
    let mut files: Vec<IndexId> = repo
        .list::<IndexId>()
        .map_err(|e| from_rustic("cannot read the repository index", &e))?
        .collect();
    files.sort_unstable();
    Ok(files)
}

/// A repository with its full index, and the index files it was read from.
struct Indexed {
    files: Vec<IndexId>,
    repo: Arc<Repository<IndexedFullStatus>>,
}

impl std::fmt::Debug for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repo")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// The scrypt cost (log2 N, r, p) of the key `init` writes: N=2^16, r=8, p=2, one of the
/// settings OWASP's Password Storage Cheat Sheet gives as equal in strength to its first
/// (N=2^17, r=8, p=1: the same work, 64 MiB a lane instead of 128 MiB). Its two lanes are
/// independent, so the key is derived on two cores (scrypt's `parallel` feature): about half
/// the wall time of N=2^17, p=1, which a nightly backup waits for (issue 13). Opening honours
/// whatever cost a key file carries: repositories made before keep theirs. restic calibrates
/// its own at `init` (N=2^15, r=8, p=6 on the project's machine: 32 MiB a lane, one lane at a
/// time).
pub const KEY_COST: (u8, u32, u32) = (16, 8, 2);

impl Repo {
    /// Creates a repository (restic format v2, zstd level [`DEFAULT_COMPRESSION`]) and opens
    /// it. Refuses a location that already holds one. Its key costs [`KEY_COST`].
    pub fn init(cfg: &RepoConfig) -> Result<Repo, RepoError> {
        Self::init_with_cost(cfg, KEY_COST)
    }

    /// As [`Repo::init`], with a key that costs a test repository's scrypt (N=2^10, r=8, p=1:
    /// about 1 ms to open instead of 0.3 s of CPU, which tests pay on every command they run).
    /// Only the lab and tests build it (feature `test-keys`): the shipped binary cannot make a
    /// cheap key. Opening honours whatever cost a key file carries, as restic and rustic do.
    #[cfg(feature = "test-keys")]
    pub fn init_for_tests(cfg: &RepoConfig) -> Result<Repo, RepoError> {
        Self::init_with_cost(cfg, (10, 8, 1))
    }

    fn init_with_cost(cfg: &RepoConfig, scrypt_cost: (u8, u32, u32)) -> Result<Repo, RepoError> {
        let (backends, options, health) = config::backends(cfg)?;
        let storage = Storage::new(&cfg.repository, cfg.options.clone());
        let at = At::new(cfg);
        let router = ProgressRouter::default();
        let key = router.run(&NoProgress, || {
            let repo = Repository::new_with_progress(&options, &backends, router.clone())
                .map_err(|e| at.error("cannot reach the repository", &e))?;
            let existing = repo
                .config_id()
                .map_err(|e| at.error("cannot look into the repository", &e))?;
            if existing.is_some() {
                return Err(RepoError::AlreadyExists {
                    repository: cfg.repository.clone(),
                });
            }
            // A missing bucket lists as empty: say so before rustic fails on its first write.
            storage.probe()?;
            let credentials = Credentials::password(cfg.password.expose());
            let config = ConfigOptions::default().set_compression(DEFAULT_COMPRESSION);
            let repo = repo
                .init(
                    &credentials,
                    &KeyOptions::default()
                        .with_created(true)
                        .scrypt_cost(Some(scrypt_cost)),
                    &config,
                )
                .map_err(|e| at.error("cannot create the repository", &e))?;
            Ok((repo.key(), *repo.key_id()))
        });
        let key = gone_first(&health, key)?;
        Ok(Self::new(
            cfg,
            backends,
            options,
            router,
            KeySlot::found(key),
            health,
        ))
    }

    /// Opens an existing repository.
    pub fn open(cfg: &RepoConfig) -> Result<Repo, RepoError> {
        let (backends, options, health) = config::backends(cfg)?;
        let router = ProgressRouter::default();
        let key = find_key(cfg, &backends, &options, &router, &health)?;
        Ok(Self::new(
            cfg,
            backends,
            options,
            router,
            KeySlot::found(key),
            health,
        ))
    }

    /// Opens an existing repository while the caller goes on: the key is derived from the
    /// password (scrypt, about 0.3 s of one core, and the listing of the key files) on a thread
    /// of its own, and the first call that needs it waits for it. [`Repo::ready`] waits and
    /// says whether it opened, with the errors [`Repo::open`] gives. A backup overlaps it with
    /// its checks of the servers and its listing of the folders (issue 13).
    pub fn open_deferred(cfg: &RepoConfig) -> Result<Repo, RepoError> {
        let (backends, options, health) = config::backends(cfg)?;
        let search = {
            let (cfg, backends, options, health) = (
                cfg.clone(),
                backends.clone(),
                options.clone(),
                health.clone(),
            );
            std::thread::Builder::new()
                .name("octobackup-repo".into())
                .spawn(move || {
                    // A router of its own: the opening reports nothing, and a call of this
                    // `Repo` may meanwhile route its progress through the repository's one.
                    find_key(
                        &cfg,
                        &backends,
                        &options,
                        &ProgressRouter::default(),
                        &health,
                    )
                })
                .map_err(|e| RepoError::Other(format!("cannot start a worker thread: {e}")))?
        };
        let key = KeySlot {
            state: Mutex::new(KeyState::Finding(search)),
        };
        Ok(Self::new(
            cfg,
            backends,
            options,
            ProgressRouter::default(),
            key,
            health,
        ))
    }

    /// Waits until the repository is open (see [`Repo::open_deferred`]): its error if it could
    /// not be.
    pub fn ready(&self) -> Result<(), RepoError> {
        self.key.get().map(|_| ())
    }

    /// The key file the password opened (`None` when opened otherwise).
    pub(crate) fn key_id(&self) -> Result<Option<KeyId>, RepoError> {
        self.key.get().map(|(_, key_id)| key_id)
    }
}

/// Finds the repository's master key with the password: the repository's config and key
/// files checked, the key derived (scrypt).
fn find_key(
    cfg: &RepoConfig,
    backends: &RepositoryBackends,
    options: &RepositoryOptions,
    router: &ProgressRouter,
    health: &Arc<Health>,
) -> Result<(MasterKey, Option<KeyId>), RepoError> {
    let at = At::new(cfg);
    let key = router.run(&NoProgress, || {
        let repo = Repository::new_with_progress(options, backends, router.clone())
            .map_err(|e| at.error("cannot reach the repository", &e))?;
        let existing = repo
            .config_id()
            .map_err(|e| at.error("cannot look into the repository", &e))?;
        if existing.is_none() {
            // A missing bucket or refused key can look like an empty repository.
            Storage::new(&cfg.repository, cfg.options.clone()).probe()?;
            return Err(RepoError::NotFound {
                repository: cfg.repository.clone(),
            });
        }
        // Without key files no password can open it: say so, not "wrong password".
        let keys = repo.list::<KeyId>().map(Iterator::count).unwrap_or(0);
        if keys == 0 {
            return Err(RepoError::NoKeys {
                repository: cfg.repository.clone(),
            });
        }
        let credentials = Credentials::password(cfg.password.expose());
        let began = std::time::Instant::now();
        let repo = repo.open(&credentials).map_err(|e| {
            if e.is_incorrect_password() {
                RepoError::WrongPassword {
                    repository: cfg.repository.clone(),
                }
            } else {
                at.error("cannot open the repository", &e)
            }
        })?;
        log::debug!(
            "the password opened a key in {:.3}s",
            began.elapsed().as_secs_f64()
        );
        Ok((repo.key(), *repo.key_id()))
    });
    gone_first(health, key)
}

impl Repo {
    fn new(
        cfg: &RepoConfig,
        backends: RepositoryBackends,
        options: RepositoryOptions,
        router: ProgressRouter,
        key: KeySlot,
        health: Arc<Health>,
    ) -> Self {
        Self {
            location: cfg.repository.clone(),
            storage: Storage::new(&cfg.repository, cfg.options.clone()),
            backends,
            options,
            router,
            key: Arc::new(key),
            health,
            busy: Mutex::new(()),
            indexed: Mutex::new(None),
            ids_index: Arc::default(),
            restore_batch: crate::restore::BATCH_FILES.into(),
        }
    }

    /// A second handle on this repository (same key, same storage budget): its calls run
    /// beside this one's instead of after them, e.g. the .bak stored while the folders are.
    pub fn twin(&self) -> Repo {
        Self {
            location: self.location.clone(),
            storage: self.storage.clone(),
            backends: self.backends.clone(),
            options: self.options.clone(),
            router: ProgressRouter::default(),
            key: self.key.clone(),
            health: self.health.clone(),
            busy: Mutex::new(()),
            indexed: Mutex::new(None),
            ids_index: self.ids_index.clone(),
            restore_batch: crate::restore::BATCH_FILES.into(),
        }
    }

    /// Restores plan this many files at a time instead of the usual 32,768 (tests: several
    /// batches from a small set).
    #[doc(hidden)]
    pub fn set_restore_batch(&self, files: usize) {
        self.restore_batch
            .store(files.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// The master key's bytes, from which keys of octobackup's own records are derived (the
    /// chunk memory's fingerprints). Never stored or shown.
    pub(crate) fn key_material(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let mut material = zeroize::Zeroizing::new(Vec::new());
        // Not open (a wrong password): no material, and the call that wanted it fails on its
        // own opening with the real error.
        if let Ok((Credentials::Masterkey(key), _)) = self.key.get() {
            material.extend_from_slice(&key.encrypt);
            material.extend_from_slice(&key.mac.k);
            material.extend_from_slice(&key.mac.r);
        }
        material
    }

    /// The repository location as configured (for messages).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The repository's storage, for plain objects beside it (escrow copies).
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Opens the repository again with the master key (no key derivation: cheap).
    pub(crate) fn reopen(&self) -> Result<Repository<OpenStatus>, RepoError> {
        let (key, _) = self.key.get()?;
        Repository::new_with_progress(&self.options, &self.backends, self.router.clone())
            .and_then(|r| r.open(&key))
            .map_err(|e| from_rustic("cannot open the repository", &e))
    }

    /// As [`Repo::reopen`], its progress bars reporting through `router` (another
    /// repository's call, such as a copy from it).
    pub(crate) fn reopen_with(
        &self,
        router: &ProgressRouter,
    ) -> Result<Repository<OpenStatus>, RepoError> {
        let (key, _) = self.key.get()?;
        Repository::new_with_progress(&self.options, &self.backends, router.clone())
            .and_then(|r| r.open(&key))
            .map_err(|e| from_rustic(&format!("cannot open the repository {}", self.location), &e))
    }

    /// `repo` indexed for adding data (blob ids, trees). The index files an earlier call of
    /// this repository (or a twin) read are not read again: only those added since.
    pub(crate) fn index_ids(
        &self,
        repo: Repository<OpenStatus>,
    ) -> Result<Repository<IndexedIdsStatus>, RepoError> {
        let earlier = self
            .ids_index
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let began = std::time::Instant::now();
        let (repo, read) = repo
            .to_indexed_ids_since(earlier.as_ref())
            .map_err(|e| from_rustic("cannot read the repository index", &e))?;
        log::debug!(
            "the index of {} files ready in {:.3}s ({} read before)",
            read.file_count(),
            began.elapsed().as_secs_f64(),
            earlier.as_ref().map_or(0, IndexedFiles::file_count)
        );
        let mut kept = self
            .ids_index
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Kept unless a twin storing at the same time read further (its files a strict
        // superset of these). After a prune the new read has fewer files, and replaces the
        // stale one.
        let twin_read_further = kept
            .as_ref()
            .is_some_and(|k| k.includes(&read) && k.file_count() > read.file_count());
        if !twin_read_further {
            *kept = Some(read);
        }
        Ok(repo)
    }

    /// A failed call whose storage (this repository's) is gone reports that.
    pub(crate) fn gone_first<T>(&self, result: Result<T, RepoError>) -> Result<T, RepoError> {
        gone_first(&self.health, result)
    }

    /// Runs `work` on a freshly opened repository, on the helper thread, reporting to `sink`.
    pub(crate) fn run<T: Send>(
        &self,
        sink: &dyn ProgressSink,
        work: impl FnOnce(Repository<OpenStatus>) -> Result<T, RepoError> + Send,
    ) -> Result<T, RepoError> {
        let _busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        self.drop_index();
        let result = self.router.run(sink, || work(self.reopen()?));
        gone_first(&self.health, result)
    }

    /// As [`Repo::run`], without dropping the index kept by reads (listing snapshots).
    pub(crate) fn run_keeping_index<T: Send>(
        &self,
        sink: &dyn ProgressSink,
        work: impl FnOnce(Repository<OpenStatus>) -> Result<T, RepoError> + Send,
    ) -> Result<T, RepoError> {
        let _busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        let result = self.router.run(sink, || work(self.reopen()?));
        gone_first(&self.health, result)
    }

    /// Runs `work` on the repository with its full index: the one kept from the last read when
    /// the repository's index files are still the same ones (one listing of `index/`), else
    /// read now and kept.
    pub(crate) fn run_indexed<T: Send>(
        &self,
        sink: &dyn ProgressSink,
        work: impl FnOnce(&Repository<IndexedFullStatus>) -> Result<T, RepoError> + Send,
    ) -> Result<T, RepoError> {
        let _busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        let result = self.router.run(sink, || {
            let kept = self
                .indexed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            let indexed = match kept {
                Some(k) if index_files(&*k.repo)? == k.files => {
                    log::debug!("the index kept from the last read is current");
                    k
                }
                _ => {
                    let began = std::time::Instant::now();
                    let repo = self.reopen()?;
                    let files = index_files(&repo)?;
                    let repo = repo
                        .to_indexed()
                        .map_err(|e| from_rustic("cannot read the repository index", &e))?;
                    log::debug!(
                        "read the index ({} files) in {:.3}s",
                        files.len(),
                        began.elapsed().as_secs_f64()
                    );
                    Indexed {
                        files,
                        repo: Arc::new(repo),
                    }
                }
            };
            let repo = indexed.repo.clone();
            *self.indexed.lock().unwrap_or_else(PoisonError::into_inner) = Some(indexed);
            work(&repo)
        });
        gone_first(&self.health, result)
    }

    /// Forgets the index kept by reads.
    fn drop_index(&self) {
        self.indexed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    /// Set once the storage did not answer within the run's retry budget: every later call
    /// fails at once with the same message.
    pub fn storage_gone(&self) -> Option<crate::Gone> {
        self.health.gone()
    }

    /// Makes `level` the repository's compression (stored in its config, as rustic does) and
    /// returns the repository reopened, since rustic only reads the level when opening.
    pub(crate) fn with_compression(
        &self,
        mut repo: Repository<OpenStatus>,
        level: i32,
    ) -> Result<Repository<OpenStatus>, RepoError> {
        if repo.config().compression == Some(level) {
            return Ok(repo);
        }
        let range = compression_level_range();
        if !range.contains(&level) {
            return Err(RepoError::InvalidInput(format!(
                "compression level {level} is not supported: use 0 (off) or a zstd level from {} to {}",
                range.start(),
                range.end()
            )));
        }
        repo.apply_config(&ConfigOptions::default().set_compression(level))
            .map_err(|e| from_rustic("cannot change the compression", &e))?;
        self.reopen()
    }

    /// All snapshots, oldest first.
    pub fn snapshots(&self) -> Result<Vec<SnapshotInfo>, RepoError> {
        self.run_keeping_index(&NoProgress, |repo| {
            let mut snaps = readable_snapshots(&repo)?;
            snaps.sort_by(|a, b| a.time.cmp(&b.time));
            Ok(snaps.iter().map(SnapshotInfo::from_snapshot).collect())
        })
    }

    /// The snapshot whose id starts with `id_prefix` (at least one hex digit), or `latest`.
    pub fn find_snapshot(&self, id_prefix: &str) -> Result<SnapshotInfo, RepoError> {
        self.run_keeping_index(&NoProgress, |repo| {
            resolve_snapshot(&repo, id_prefix).map(|s| SnapshotInfo::from_snapshot(&s))
        })
    }

    /// Deletes snapshots (ids or unique prefixes). Nothing is deleted if one is not found.
    /// Their data stays until a prune.
    pub fn delete_snapshots(&self, ids: &[String]) -> Result<(), RepoError> {
        self.run(&NoProgress, |repo| {
            let ids: Vec<SnapshotId> = ids
                .iter()
                .map(|id| resolve_snapshot(&repo, id).map(|s: SnapshotFile| s.id))
                .collect::<Result<_, _>>()?;
            repo.delete_snapshots(&ids)
                .map_err(|e| match from_rustic("cannot delete snapshots", &e) {
                    // Reading and writing worked to get here: a refusal now is of the delete.
                    RepoError::Storage {
                        fault: crate::StorageFault::Credentials,
                        ..
                    } => RepoError::Storage {
                        message: "cannot delete snapshots: the storage refused to delete them (the credentials may add but not delete: an append-only bucket policy)".into(),
                        fault: crate::StorageFault::Credentials,
                    },
                    other => other,
                })
        })
    }

    /// Checks the repository's structure, and with `read_data` reads and verifies every pack.
    pub fn check(&self, read_data: bool) -> Result<CheckReport, RepoError> {
        self.run(&NoProgress, |repo| {
            let results = repo
                .check(CheckOptions::default().read_data(read_data))
                .map_err(|e| from_rustic("cannot check the repository", &e))?;
            Ok(CheckReport::from_results(&results))
        })
    }
}

/// A failed call whose storage is gone reports that, whatever rustic made of it (a failed pack,
/// a missing parent, a panic in the engine): one line naming the endpoint and the operation.
fn gone_first<T>(health: &Health, result: Result<T, RepoError>) -> Result<T, RepoError> {
    match (result, health.gone()) {
        (Err(_), Some(g)) => Err(RepoError::StorageGone(g)),
        (r, _) => r,
    }
}

/// The repository being opened, for errors that name it and the fix for its service.
struct At {
    repository: String,
    service: Option<String>,
}

impl At {
    fn new(cfg: &RepoConfig) -> Self {
        let service = config::location(&cfg.repository)
            .ok()
            .and_then(|l| l.service().map(str::to_string));
        At {
            repository: cfg.repository.clone(),
            service,
        }
    }

    fn error(&self, doing: &str, err: &rustic_core::RusticError) -> RepoError {
        let doing = format!("{doing} {}", self.repository);
        from_rustic_at(&doing, self.service.as_deref(), err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repo_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Repo>();
    }
}
