//! Restoring a snapshot's folder or file to disk in bounded memory, reading each pack once.
//! rustic_core's own restorer holds about half the restored size in memory for large files
//! (upstream rustic #1067, #986, #1752; a 2 GB set needed 1.1 GB), and reading file by file
//! (rustic's `dump`) opens a pack and builds a zstd decoder for every blob.
//!
//! Here the listing is walked once into plans of a batch of files each (32,768 at most): which
//! files need writing, and for each pack the blobs wanted from it and every place (file,
//! offset) each one goes. A few workers then take the packs in the order the files first need
//! them; each reads a pack's wanted bytes in a few large ranges, decodes the blobs with one
//! zstd context of its own (`patches/rustic_core`: `read_pack_range`,
//! `decode_blob_in_place`) and writes each blob at its offset in every file it belongs to. Memory is a few ranges and blobs per
//! worker, plus one batch's plan (about 250 bytes a file), whatever the number of files.
//!
//! Existing files whose content already matches (same size, and every chunk hashes to its blob
//! id) are left alone; other files in the destination are never touched. File permissions (Unix)
//! and times are restored; ownership is not (the files belong to whoever restores, as a copy's
//! would).
//!
//! A restore reports success only once what it wrote is on disk. On Linux a thread of its own
//! has the file system write what was written every [`WRITEBACK_EVERY`] bytes, and one
//! `syncfs` waits at the end; a sync per file (as before, and still elsewhere) made each
//! writer wait on the disk once per task log, and starting each file's write-back as it was
//! finished cost the writers a request to the disk per task log.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use rustic_core::repofile::{Node, NodeType, PackId};
use rustic_core::{BlobDecoder, DataId, IndexedFull, LsOptions, Progress, Repository};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{RepoError, from_rustic};
use crate::mode;

/// What a restore wrote.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreSummary {
    /// Files written (new or replaced).
    pub files_restored: u64,
    /// Files already present with the right content (checked by reading them), left alone.
    pub files_unchanged: u64,
    pub dirs_restored: u64,
    pub bytes_restored: u64,
    /// What rustic could not apply, e.g. ownership when not running as root.
    pub warnings: Vec<String>,
}

/// The most read from a pack in one request: a range covers many small blobs, and a few of
/// them in flight (one per worker) keep memory bounded.
const MAX_RANGE: u32 = 4 << 20;
/// Unwanted bytes between two wanted blobs that are still read through rather than asked for
/// in a second request.
const MAX_GAP: u32 = 256 << 10;

/// Packs in flight. Each worker holds a range and a blob or two (about 4 MiB each in the
/// bounded-memory test, whatever the file's size); a worker waiting on the file system leaves
/// its core to one that decodes. Fixed rather than per core: memory stays the same on any
/// machine, and 4 keep two cores busy.
const WORKERS: usize = 4;

/// A file to write (or to check and leave alone).
struct Target {
    /// Which of the restored parts it belongs to (its summary).
    part: usize,
    path: PathBuf,
    /// Its folder was created by this restore: nothing can be in its place, so it is neither
    /// looked at nor checked before it is written.
    fresh: bool,
    size: u64,
    /// The blobs of its content, in order.
    content: Vec<DataId>,
    meta: Meta,
    /// Whether the file was created (truncated) by this restore, and how many blob writes it
    /// still waits for; the worker that makes the last one finishes the file.
    state: Mutex<(bool, u32)>,
}

/// One place a blob of a pack goes.
struct BlobUse {
    offset: u32,
    length: u32,
    uncompressed_length: Option<NonZeroU32>,
    target: usize,
    at: u64,
}

/// A pack and the blobs wanted from it, sorted by their place in the pack.
struct PackJob {
    pack: PackId,
    blobs: Vec<BlobUse>,
}

/// Files planned at a time: the listing is walked into batches of this many files (and at
/// most [`BATCH_BLOBS`] blobs), each restored before the next is planned, so the plan's memory
/// (about 250 bytes a file: 8 MiB a batch) stays bounded whatever the number of files. The backup packs
/// files in listing order, so a pack rarely serves two batches (and then only its wanted
/// ranges are read twice, as two requests).
pub(crate) const BATCH_FILES: usize = 32_768;
/// Blobs planned at a time (32 bytes each in the plan, beside the file's own list of ids).
const BATCH_BLOBS: usize = 1 << 20;
/// The first batch when nobody watches the total: planned in about a hundredth of a second,
/// where 27,000 task logs took a quarter of one (tree reads and their JSON) before any pack
/// was read. The next batch is planned while this one is restored.
const FIRST_BATCH_FILES: usize = 1024;

/// What the workers share.
struct Shared<'a> {
    bar: &'a Progress,
    gate: Gate<'a>,
    /// One per part restored.
    summaries: &'a [Mutex<RestoreSummary>],
    first_error: Mutex<Option<RepoError>>,
    failed: AtomicBool,
    writeback: &'a Writeback,
}

impl Shared<'_> {
    fn fail(&self, e: RepoError) {
        self.failed.store(true, Ordering::SeqCst);
        self.first_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(e);
    }

    fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }
}

/// The listings of the parts, walked once, a file at a time: folders are created and links
/// made as they come, files are handed out to be planned.
struct Walk<'r, 'p, S: IndexedFull> {
    repo: &'r Repository<S>,
    parts: &'p [(Node, &'p Path)],
    /// The next part to start.
    part: usize,
    /// The listing of the part being walked.
    listing: Option<Listing<'r>>,
    summaries: &'p [Mutex<RestoreSummary>],
    /// Folders get their times and permissions last: writing their files changes their mtime.
    dirs: Vec<(usize, PathBuf, Meta)>,
    /// The folders this restore created (a fresh restore: all of them).
    fresh: HashSet<PathBuf>,
    synced: Vec<PathBuf>,
    /// Every listing walked to its end.
    done: bool,
    /// Files planned at a time.
    batch_files: usize,
}

type Listing<'r> = Box<dyn Iterator<Item = rustic_core::RusticResult<(PathBuf, Node)>> + 'r>;

impl<S: IndexedFull> Walk<'_, '_, S> {
    fn next_file(&mut self) -> Result<Option<Target>, RepoError> {
        loop {
            if let Some(listing) = &mut self.listing {
                let part = self.part - 1;
                let Some(item) = listing.next() else {
                    self.listing = None;
                    continue;
                };
                let (relative, node) =
                    item.map_err(|e| from_rustic("cannot list the snapshot", &e))?;
                let path = self.parts[part].1.join(&relative);
                let fresh = path.parent().is_some_and(|p| self.fresh.contains(p));
                if node.is_dir() {
                    if new_dir(&path, fresh)? {
                        self.fresh.insert(path.clone());
                    }
                    lock(&self.summaries[part]).dirs_restored += 1;
                    self.dirs.push((part, path, Meta::of(&node)));
                } else if let Some(t) = plan_entry(part, path, fresh, node, &self.summaries[part])?
                {
                    return Ok(Some(t));
                }
                continue;
            }
            let Some((node, dest)) = self.parts.get(self.part) else {
                self.done = true;
                return Ok(None);
            };
            let part = self.part;
            self.part += 1;
            if node.is_dir() {
                let existed = dest.exists();
                create_dir(dest)?;
                if !existed {
                    self.fresh.insert(dest.to_path_buf());
                }
                self.dirs.push((part, dest.to_path_buf(), Meta::of(node)));
                let repo = self.repo;
                self.listing = Some(Box::new(
                    repo.ls(node, &LsOptions::default())
                        .map_err(|e| from_rustic("cannot list the snapshot", &e))?,
                ));
                self.synced.push(dest.to_path_buf());
            } else {
                // A file: `dest` is the file to write, or an existing folder to put it in.
                let target = if dest.is_dir() {
                    dest.join(node.name())
                } else {
                    dest.to_path_buf()
                };
                if let Some(parent) = target.parent() {
                    create_dir(parent)?;
                }
                // Its folder: the file may be a link, whose target need not exist.
                self.synced.push(match target.parent() {
                    Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
                    _ => PathBuf::from("."),
                });
                let t = plan_entry(part, target, false, node.clone(), &self.summaries[part])?;
                if let Some(t) = t {
                    return Ok(Some(t));
                }
            }
        }
    }

    /// The next files to restore, up to `files` (and [`BATCH_BLOBS`] blobs); empty at the end.
    /// Ends early once `stopped` says so (the batch being restored meanwhile failed or was
    /// stopped): no folder or link is made for a batch that will not be restored.
    fn next_batch(
        &mut self,
        files: usize,
        stopped: &dyn Fn() -> bool,
    ) -> Result<Vec<Target>, RepoError> {
        let mut batch = Vec::new();
        let mut blobs = 0;
        while batch.len() < files && blobs < BATCH_BLOBS && !stopped() {
            let Some(t) = self.next_file()? else { break };
            blobs += t.content.len();
            batch.push(t);
        }
        Ok(batch)
    }
}

/// The bytes of the files of `parts`, from a walk of their listings of its own (for sets
/// larger than a batch: the progress wants a total before the first byte is written).
fn total_size<S: IndexedFull>(
    repo: &Repository<S>,
    parts: &[(Node, &Path)],
) -> Result<u64, RepoError> {
    let mut total = 0;
    for (node, _) in parts {
        if !node.is_dir() {
            total += file_size(node);
            continue;
        }
        for item in repo
            .ls(node, &LsOptions::default())
            .map_err(|e| from_rustic("cannot list the snapshot", &e))?
        {
            let (_, node) = item.map_err(|e| from_rustic("cannot list the snapshot", &e))?;
            total += file_size(&node);
        }
    }
    Ok(total)
}

fn file_size(node: &Node) -> u64 {
    if matches!(node.node_type, NodeType::File) {
        node.meta.size
    } else {
        0
    }
}

/// Restores each `(node, dest)` (a folder or a file of a snapshot, and where it goes) in one
/// walk of their listings, a batch of files at a time; a summary for each. `progress`: whether
/// a total is wanted, and what gets the bytes to restore (when known or wanted) and returns the
/// bar to report them to. `batch_files`: files planned at a time ([`BATCH_FILES`]).
pub(crate) fn restore_nodes<S: IndexedFull + Sync>(
    repo: &Repository<S>,
    parts: &[(Node, &Path)],
    (wants_total, progress): (bool, impl FnOnce(Option<u64>) -> Progress),
    gate: Gate<'_>,
    batch_files: usize,
) -> Result<Vec<RestoreSummary>, RepoError> {
    let summaries: Vec<Mutex<RestoreSummary>> = parts.iter().map(|_| Mutex::default()).collect();
    let mut walk = Walk {
        repo,
        parts,
        part: 0,
        listing: None,
        summaries: &summaries,
        dirs: Vec::new(),
        fresh: HashSet::new(),
        synced: Vec::new(),
        done: false,
        batch_files: batch_files.max(1),
    };
    // Nobody watching the total: a short first batch, so that the packs are being read while
    // the rest of the listing is planned. A total wanted: a full one, which holds the whole
    // set (and so its total) for up to `batch_files` files.
    let first = if wants_total {
        walk.batch_files
    } else {
        walk.batch_files.min(FIRST_BATCH_FILES)
    };
    let batch = walk.next_batch(first, &|| false)?;
    // A set that fits in the first batch has its total at hand; a larger one is listed once
    // more, when someone watches the total.
    let total = if walk.done {
        Some(batch.iter().map(|t| t.size).sum())
    } else if wants_total {
        Some(total_size(repo, parts)?)
    } else {
        None
    };
    let bar = progress(total);
    let writeback = Writeback::default();
    let shared = Shared {
        bar: &bar,
        gate,
        summaries: &summaries,
        first_error: Mutex::new(None),
        failed: AtomicBool::new(false),
        writeback: &writeback,
    };
    let roots: Vec<&Path> = parts.iter().map(|(_, dest)| *dest).collect();
    std::thread::scope(|scope| {
        scope.spawn(|| writeback.run(&roots));
        let walked = restore_batches(repo, &shared, &mut walk, batch);
        writeback.stop();
        walked
    })?;
    let Walk { dirs, synced, .. } = walk;
    for (part, path, meta) in dirs.iter().rev() {
        set_metadata(path, meta, &summaries[*part]);
    }
    // One `syncfs` per file system is enough; a second one of the same finds little to do.
    for path in &synced {
        sync_tree(path)?;
    }
    bar.finish();
    Ok(summaries
        .into_iter()
        .map(|s| s.into_inner().unwrap_or_else(PoisonError::into_inner))
        .collect())
}

/// Restores `batch` and the rest of the walk's files a batch at a time, each batch planned
/// while the one before it is restored.
fn restore_batches<S: IndexedFull + Sync>(
    repo: &Repository<S>,
    shared: &Shared<'_>,
    walk: &mut Walk<'_, '_, S>,
    mut batch: Vec<Target>,
) -> Result<(), RepoError> {
    while !batch.is_empty() {
        let began = std::time::Instant::now();
        let next = std::thread::scope(|scope| {
            scope.spawn(|| restore_batch(repo, shared, &batch));
            // Given up on a failure: the restore stops at the batch that failed.
            walk.next_batch(walk.batch_files, &|| shared.failed())
        });
        log::debug!(
            "restored a batch of {} files in {:.3}s",
            batch.len(),
            began.elapsed().as_secs_f64()
        );
        if let Some(e) = shared
            .first_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            return Err(e);
        }
        batch = next?;
    }
    Ok(())
}

/// Restores one batch of files, reading each pack they need once; a failure is left in
/// `shared`.
fn restore_batch<S: IndexedFull + Sync>(
    repo: &Repository<S>,
    shared: &Shared<'_>,
    targets: &[Target],
) {
    if let Err(e) = plan_and_restore(repo, shared, targets) {
        shared.fail(e);
    }
}

fn plan_and_restore<S: IndexedFull + Sync>(
    repo: &Repository<S>,
    shared: &Shared<'_>,
    targets: &[Target],
) -> Result<(), RepoError> {
    // Files already in place are read and hashed in parallel; the rest are planned.
    let unchanged: Vec<AtomicBool> = (0..targets.len()).map(|_| AtomicBool::new(false)).collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(t) = targets.get(i) else {
                        break;
                    };
                    if !t.fresh && matches_content(repo, &t.path, t.size, &t.content) {
                        unchanged[i].store(true, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let mut packs: Vec<PackJob> = Vec::new();
    let mut pack_of: HashMap<PackId, usize> = HashMap::new();
    for (i, t) in targets.iter().enumerate() {
        if unchanged[i].load(Ordering::Relaxed) {
            lock(&shared.summaries[t.part]).files_unchanged += 1;
            shared.bar.inc(t.size);
            set_metadata(&t.path, &t.meta, &shared.summaries[t.part]);
            continue;
        }
        let content = &t.content;
        if content.is_empty() {
            // Nothing to read: the file is written here.
            write_empty(shared, t)?;
            continue;
        }
        let mut at = 0;
        for id in content {
            let entry = repo
                .get_index_entry(id)
                .map_err(|e| from_rustic("cannot read from the repository", &e))?;
            let job = *pack_of.entry(entry.pack).or_insert_with(|| {
                packs.push(PackJob {
                    pack: entry.pack,
                    blobs: Vec::new(),
                });
                packs.len() - 1
            });
            packs[job].blobs.push(BlobUse {
                offset: entry.location.offset,
                length: entry.location.length,
                uncompressed_length: entry.location.uncompressed_length,
                target: i,
                at,
            });
            at += u64::from(entry.data_length());
        }
        lock_state(t).1 = u32::try_from(content.len()).unwrap_or(u32::MAX);
    }
    drop(pack_of);
    for job in &mut packs {
        job.blobs.sort_by_key(|b| b.offset);
    }

    // The packs, in the order the files first need them, a few at a time.
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..WORKERS.min(packs.len()) {
            scope.spawn(|| {
                let mut decoder = match BlobDecoder::new() {
                    Ok(d) => d,
                    Err(e) => {
                        shared.fail(from_rustic("cannot read from the repository", &e));
                        return;
                    }
                };
                let mut data = Vec::new();
                while !shared.failed() {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = packs.get(i) else { break };
                    if let Err(e) =
                        restore_pack(repo, job, targets, shared, &mut decoder, &mut data)
                    {
                        shared.fail(e);
                    }
                }
            });
        }
    });
    Ok(())
}

/// One entry of the listing that is not a folder: a file is returned to be planned, a link is
/// made now.
fn plan_entry(
    part: usize,
    path: PathBuf,
    fresh: bool,
    node: Node,
    summary: &Mutex<RestoreSummary>,
) -> Result<Option<Target>, RepoError> {
    match &node.node_type {
        NodeType::File => {
            return Ok(Some(Target {
                part,
                path,
                fresh,
                size: node.meta.size,
                meta: Meta::of(&node),
                content: node.content.unwrap_or_default(),
                state: Mutex::new((false, 0)),
            }));
        }
        NodeType::Symlink { linktarget, .. } => {
            restore_symlink(&path, linktarget, &mut lock(summary))?;
        }
        other => lock(summary).warnings.push(format!(
            "{} is a {other} in the set and was not restored: only files, folders and links are",
            path.display()
        )),
    }
    Ok(None)
}

fn lock(summary: &Mutex<RestoreSummary>) -> std::sync::MutexGuard<'_, RestoreSummary> {
    summary.lock().unwrap_or_else(PoisonError::into_inner)
}

fn lock_state(t: &Target) -> std::sync::MutexGuard<'_, (bool, u32)> {
    t.state.lock().unwrap_or_else(PoisonError::into_inner)
}

fn write_error(path: &Path, source: io::Error) -> RepoError {
    RepoError::RestoreTarget {
        path: path.display().to_string(),
        source,
    }
}

/// Reads the blobs wanted from one pack, a range at a time, and writes each where it goes.
fn restore_pack<S: IndexedFull>(
    repo: &Repository<S>,
    job: &PackJob,
    targets: &[Target],
    shared: &Shared<'_>,
    decoder: &mut BlobDecoder,
    data: &mut Vec<u8>,
) -> Result<(), RepoError> {
    let blobs = &job.blobs;
    let mut first = 0;
    while first < blobs.len() {
        // Extend the range while the next blob is near and the range stays small.
        let start = blobs[first].offset;
        let mut end = start + blobs[first].length;
        let mut last = first + 1;
        while let Some(b) = blobs.get(last) {
            let b_end = b.offset + b.length;
            if b.offset > end.saturating_add(MAX_GAP) || b_end.max(end) - start > MAX_RANGE {
                break;
            }
            end = end.max(b_end);
            last += 1;
        }
        // Owned (the backend's buffer, not a copy): each blob is decrypted where it lies.
        let mut range: Vec<u8> = repo
            .read_pack_range(&job.pack, start, end - start)
            .map_err(|e| from_rustic("cannot read from the repository", &e))?
            .into();
        let mut i = first;
        while i < last {
            let b = &blobs[i];
            let from = (b.offset - start) as usize;
            let stored = range
                .get_mut(from..from + b.length as usize)
                .ok_or_else(|| {
                    RepoError::InvalidInput(format!(
                        "pack {} is shorter than the index says: run `check`",
                        job.pack
                    ))
                })?;
            let plain = repo
                .decode_blob_in_place(stored, b.uncompressed_length, decoder, data)
                .map_err(|e| from_rustic("cannot read from the repository", &e))?;
            // The same blob in several places (a file repeating a chunk, two equal files):
            // decoded once (they sort together), written to each.
            let mut j = i;
            while let Some(u) = blobs[..last].get(j).filter(|u| u.offset == b.offset) {
                if shared.failed() {
                    return Ok(());
                }
                write_blob(shared, &targets[u.target], u.at, plain)?;
                j += 1;
            }
            i = j;
        }
        first = last;
    }
    Ok(())
}

/// Asked before each file and each write of a restore, with the bytes about to be written: `false`
/// stops the restore there (the caller was asked to stop). It may also wait (a lab throttle).
pub type Gate<'a> = &'a (dyn Fn(u64) -> bool + Sync);

fn stopped() -> io::Error {
    io::Error::other("stopped on request")
}

/// What a restore has written and the disk not yet been asked to write. The disk is kept busy
/// while the restore goes on, and the final sync finds little left: after every
/// [`WRITEBACK_EVERY`] bytes written, a thread of its own syncs the destinations' file
/// systems, waiting on the disk so that the writers never do. The kernel writes many small
/// files in one pass, in large requests; asked file by file (`sync_file_range` as each was
/// finished) it made one request per task log, in the writers' time: 0.6-0.9 s more of about
/// 3.5 s for the medium lab's 27,000 files (`octobackup-lab restore-set`, a fresh file system
/// each run).
#[derive(Default)]
struct Writeback {
    /// Bytes written since the last sync began, and whether the restore is over.
    state: Mutex<(u64, bool)>,
    wake: std::sync::Condvar,
}

/// Bytes written between two syncs of the file system during a restore: large enough that
/// the kernel has many files to write in one pass, small next to what it lets wait in memory
/// (a tenth of it by default) and to what a disk writes in a second.
const WRITEBACK_EVERY: u64 = 128 << 20;

impl Writeback {
    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, bool)> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `bytes` more were written.
    fn wrote(&self, bytes: u64) {
        if cfg!(target_os = "linux") {
            let mut state = self.lock();
            state.0 += bytes;
            if state.0 >= WRITEBACK_EVERY {
                self.wake.notify_one();
            }
        }
    }

    /// The restore is over (or failed): [`Writeback::run`] returns.
    fn stop(&self) {
        self.lock().1 = true;
        self.wake.notify_one();
    }

    /// Syncs the file systems of `roots` (the destinations) each time enough was written,
    /// until [`Writeback::stop`]. A failure is left for the final sync to report.
    fn run(&self, roots: &[&Path]) {
        if !cfg!(target_os = "linux") {
            return;
        }
        loop {
            {
                let mut state = self.lock();
                while state.0 < WRITEBACK_EVERY && !state.1 {
                    state = self
                        .wake
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                if state.1 {
                    return;
                }
                state.0 = 0;
            }
            for root in file_systems(roots) {
                let _ = sync_tree(&root);
            }
        }
    }
}

/// One existing folder on each file system that `roots` (paths that may not exist yet) are
/// on: the nearest existing ancestor of each, the first of each device.
fn file_systems(roots: &[&Path]) -> Vec<PathBuf> {
    let mut seen = Vec::new();
    let mut found = Vec::new();
    for root in roots {
        // A relative path with no existing ancestor is under the current folder.
        let Some((dir, meta)) = root
            .ancestors()
            .filter(|p| !p.as_os_str().is_empty())
            .chain(root.is_relative().then_some(Path::new(".")))
            .find_map(|p| Some((p, fs::metadata(p).ok().filter(fs::Metadata::is_dir)?)))
        else {
            continue;
        };
        let device = device_of(&meta);
        if !seen.contains(&device) {
            seen.push(device);
            found.push(dir.to_path_buf());
        }
    }
    found
}

#[cfg(unix)]
fn device_of(meta: &fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::dev(meta)
}

#[cfg(not(unix))]
fn device_of(_meta: &fs::Metadata) -> u64 {
    0
}

/// Creates (or empties) the file at `path`; a link in the way is removed, a read-only file
/// with other content is replaced (as restic does).
fn create_file(path: &Path, fresh: bool) -> Result<File, RepoError> {
    if fresh {
        return File::create(path).map_err(|e| write_error(path, e));
    }
    if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        fs::remove_file(path).map_err(|e| write_error(path, e))?;
    }
    match File::create(path) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied && path.is_file() => {
            fs::remove_file(path).map_err(|e| write_error(path, e))?;
            File::create(path)
        }
        other => other,
    }
    .map_err(|e| write_error(path, e))
}

/// An empty file of the set.
fn write_empty(shared: &Shared<'_>, t: &Target) -> Result<(), RepoError> {
    // Asked to stop: no new file is begun.
    if !(shared.gate)(0) {
        return Err(write_error(&t.path, stopped()));
    }
    let file = create_file(&t.path, t.fresh)?;
    finish_file(shared, t, &file)
}

/// Writes one blob at `at` in the target file: the first write creates the file, the last
/// finishes it.
fn write_blob(shared: &Shared<'_>, t: &Target, at: u64, data: &[u8]) -> Result<(), RepoError> {
    let file = {
        let mut state = lock_state(t);
        if state.0 {
            fs::OpenOptions::new()
                .write(true)
                .open(&t.path)
                .map_err(|e| write_error(&t.path, e))?
        } else {
            // Asked to stop: no new file is begun.
            if !(shared.gate)(0) {
                return Err(write_error(&t.path, stopped()));
            }
            let file = create_file(&t.path, t.fresh)?;
            state.0 = true;
            file
        }
    };
    if !(shared.gate)(data.len() as u64) {
        return Err(write_error(&t.path, stopped()));
    }
    write_all_at(&file, data, at).map_err(|e| write_error(&t.path, e))?;
    shared.writeback.wrote(data.len() as u64);
    shared.bar.inc(data.len() as u64);
    let done = {
        let mut state = lock_state(t);
        state.1 = state.1.saturating_sub(1);
        state.1 == 0
    };
    if done {
        finish_file(shared, t, &file)?;
    }
    Ok(())
}

#[cfg(unix)]
fn write_all_at(file: &File, data: &[u8], at: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, data, at)
}

#[cfg(windows)]
fn write_all_at(file: &File, mut data: &[u8], mut at: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !data.is_empty() {
        match file.seek_write(data, at) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                data = &data[n..];
                at += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A file fully written: its permissions and time through the open file, the disk started on
/// it, and the count.
fn finish_file(shared: &Shared<'_>, t: &Target, file: &File) -> Result<(), RepoError> {
    set_file_metadata(file, &t.path, &t.meta, &shared.summaries[t.part]);
    // Durability once for the whole restore on Linux (`sync_tree`, with `Writeback` keeping
    // the disk busy meanwhile); file by file elsewhere.
    #[cfg(not(target_os = "linux"))]
    file.sync_data().map_err(|e| write_error(&t.path, e))?;
    let mut s = lock(&shared.summaries[t.part]);
    s.files_restored += 1;
    s.bytes_restored += t.size;
    Ok(())
}

/// Makes what the restore wrote durable before it reports success. On Linux one `syncfs` of
/// the destination's file system does it for every file at once: a sync per file made each
/// writer wait on the disk's journal once per file (20k task logs, 20k waits). Elsewhere each
/// file was synced as it was written.
fn sync_tree(path: &Path) -> Result<(), RepoError> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let handle = File::open(path).map_err(|e| write_error(path, e))?;
        // SAFETY: `handle` is an open descriptor for the duration of the call.
        if unsafe { libc::syncfs(handle.as_raw_fd()) } != 0 {
            return Err(write_error(path, io::Error::last_os_error()));
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = path;
    Ok(())
}

fn create_dir(path: &Path) -> Result<(), RepoError> {
    fs::create_dir_all(path).map_err(|e| write_error(path, e))
}

/// Creates the folder at `path` (its parent exists) and says whether this made it: `false`
/// when it was there already. `parent_fresh`: its parent was made by this restore, so it
/// cannot be there yet.
fn new_dir(path: &Path, parent_fresh: bool) -> Result<bool, RepoError> {
    match fs::create_dir(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && !parent_fresh && path.is_dir() => {
            Ok(false)
        }
        Err(e) => Err(write_error(path, e)),
    }
}

/// Whether the file at `path` already holds exactly this content: same size, and each chunk
/// of it hashes to the id of the blob stored for that chunk.
fn matches_content<S: IndexedFull>(
    repo: &Repository<S>,
    path: &Path,
    size: u64,
    content: &[DataId],
) -> bool {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return false;
    };
    if !meta.is_file() || meta.len() != size {
        return false;
    }
    let Ok(file) = File::open(path) else {
        return false;
    };
    let mut file = BufReader::with_capacity(256 * 1024, file);
    let mut buf = Vec::new();
    for id in content {
        let Ok(entry) = repo.get_index_entry(id) else {
            return false;
        };
        buf.resize(entry.data_length() as usize, 0);
        if file.read_exact(&mut buf).is_err() {
            return false;
        }
        if hex(&Sha256::digest(&buf)) != id.to_hex().as_str() {
            return false;
        }
    }
    // Nothing may follow the last chunk.
    matches!(file.read(&mut [0u8; 1]), Ok(0))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(unix)]
fn restore_symlink(
    path: &Path,
    target: &str,
    _summary: &mut RestoreSummary,
) -> Result<(), RepoError> {
    if fs::read_link(path).is_ok_and(|t| t == Path::new(target)) {
        return Ok(());
    }
    if fs::symlink_metadata(path).is_ok() {
        fs::remove_file(path).map_err(|e| write_error(path, e))?;
    }
    std::os::unix::fs::symlink(target, path).map_err(|e| write_error(path, e))
}

#[cfg(windows)]
fn restore_symlink(
    path: &Path,
    target: &str,
    summary: &mut RestoreSummary,
) -> Result<(), RepoError> {
    // Creating links needs a privilege most accounts lack on Windows: say so, restore the rest.
    summary.warnings.push(format!(
        "{} is a link to {target} in the set and was not restored on Windows",
        path.display()
    ));
    Ok(())
}

/// Permissions (Unix) and modification time, as far as the file system allows; what fails is
/// a warning, not a failed restore.
fn set_metadata(path: &Path, meta: &Meta, summary: &Mutex<RestoreSummary>) {
    let mut problems = Vec::new();
    #[cfg(unix)]
    if let Some(mode) = meta.mode {
        use std::os::unix::fs::PermissionsExt;
        let perms = fs::Permissions::from_mode(mode);
        if let Err(e) = fs::set_permissions(path, perms) {
            problems.push(format!("permissions: {e}"));
        }
    }
    if let Some(time) = meta.mtime
        && let Err(e) = filetime::set_file_mtime(path, time)
    {
        problems.push(format!("time: {e}"));
    }
    warn_metadata(path, problems, summary);
}

/// `set_metadata` through a file just written, still open.
fn set_file_metadata(file: &File, path: &Path, meta: &Meta, summary: &Mutex<RestoreSummary>) {
    let mut problems = Vec::new();
    #[cfg(unix)]
    if let Some(mode) = meta.mode {
        use std::os::unix::fs::PermissionsExt;
        let perms = fs::Permissions::from_mode(mode);
        if let Err(e) = file.set_permissions(perms) {
            problems.push(format!("permissions: {e}"));
        }
    }
    if let Some(time) = meta.mtime
        && let Err(e) = filetime::set_file_handle_times(file, None, Some(time))
    {
        problems.push(format!("time: {e}"));
    }
    warn_metadata(path, problems, summary);
}

/// What a restore sets on a file or folder once written: Unix permissions and the
/// modification time (a plan holds this, not the whole node).
struct Meta {
    /// Unix permission bits (set on Unix only).
    #[cfg_attr(windows, allow(dead_code))]
    mode: Option<u32>,
    mtime: Option<filetime::FileTime>,
}

impl Meta {
    fn of(node: &Node) -> Self {
        Meta {
            mode: node.meta.mode.map(mode::unix_permissions),
            mtime: mtime(node),
        }
    }
}

/// The node's modification time, as filetime wants it.
fn mtime(node: &Node) -> Option<filetime::FileTime> {
    #[cfg(windows)]
    let _ = mode::unix_permissions;
    let mtime = node.meta.mtime?;
    // jiff gives the fraction the sign of the time; filetime wants it positive.
    let (mut secs, mut nanos) = (mtime.as_second(), mtime.subsec_nanosecond());
    if nanos < 0 {
        secs -= 1;
        nanos += 1_000_000_000;
    }
    Some(filetime::FileTime::from_unix_time(
        secs,
        nanos.unsigned_abs(),
    ))
}

fn warn_metadata(path: &Path, problems: Vec<String>, summary: &Mutex<RestoreSummary>) {
    if !problems.is_empty() {
        lock(summary).warnings.push(format!(
            "{}: cannot set {}",
            path.display(),
            problems.join(", ")
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_systems_are_found_from_paths_not_made_yet_once_each() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("restore/folders/TaskLogs");
        let b = dir.path().join("restore/database/OctopusDeploy.bak");
        // Neither exists: both are on the file system of `dir`, synced once.
        assert_eq!(file_systems(&[&a, &b]), vec![dir.path().to_path_buf()]);
        fs::create_dir_all(&a).unwrap();
        assert_eq!(file_systems(&[&a, &b]), vec![a.clone()]);
        // A relative path with nothing of it made yet: the current folder's.
        assert_eq!(
            file_systems(&[Path::new("not-made-yet-by-this-test/x")]),
            vec![PathBuf::from(".")]
        );
    }

    #[test]
    fn the_writeback_thread_syncs_what_was_written_and_ends_with_the_restore() {
        let dir = tempfile::tempdir().unwrap();
        let writeback = Writeback::default();
        let roots = [dir.path()];
        std::thread::scope(|scope| {
            let thread = scope.spawn(|| writeback.run(&roots));
            writeback.wrote(WRITEBACK_EVERY + 1);
            // The thread takes the bytes written (and syncs) on its own, before any end.
            // Elsewhere than Linux nothing is counted.
            let mut waited = 0;
            while writeback.lock().0 != 0 {
                assert!(
                    waited < 1000,
                    "the write-back thread never took the bytes written"
                );
                std::thread::sleep(std::time::Duration::from_millis(10));
                waited += 1;
            }
            writeback.stop();
            thread.join().unwrap();
        });
    }
}
