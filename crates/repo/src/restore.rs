//! Restoring a snapshot's folder or file to disk, streamed: each file is written front to back as
//! its blobs are read, so memory stays bounded whatever the size restored. rustic_core's own
//! restorer plans the whole restore first and holds about half the restored size in memory for
//! large files (upstream rustic #1067, #986, #1752); a 2 GB set needed 1.1 GB. Here the listing is
//! streamed from the trees, files go to a few writer threads through a short queue, and a large
//! file's blobs are read a few at a time in parallel and written in order (rustic's `dump`).
//!
//! Existing files whose content already matches (same size, and every chunk hashes to its blob
//! id) are left alone; other files in the destination are never touched. File permissions (Unix)
//! and times are restored; ownership is not (the files belong to whoever restores, as a copy's
//! would).
//!
//! A restore reports success only once what it wrote is on disk. On Linux the disk starts
//! writing each file as it is closed and one `syncfs` waits at the end; a sync per file (as
//! before, and still elsewhere) made each writer wait on the disk once per task log.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};

use rustic_core::repofile::BlobType;
use rustic_core::repofile::{Node, NodeType};
use rustic_core::{IndexedFull, LsOptions, Progress, Repository};
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

/// Files waiting for a writer: enough to keep the writers busy, small enough to bound memory.
const QUEUE: usize = 64;

/// Restores `node` (a folder or a file of a snapshot) to `dest`, reporting bytes to `bar`.
pub(crate) fn restore_node<S: IndexedFull + Sync>(
    repo: &Repository<S>,
    node: &Node,
    dest: &Path,
    bar: &Progress,
    gate: Gate<'_>,
) -> Result<RestoreSummary, RepoError> {
    let summary = Mutex::new(RestoreSummary::default());
    if !node.is_dir() {
        // A file: `dest` is the file to write, or an existing folder to put it in.
        let target = if dest.is_dir() {
            dest.join(node.name())
        } else {
            dest.to_path_buf()
        };
        if let Some(parent) = target.parent() {
            create_dir(parent)?;
        }
        restore_entry(repo, &target, node, bar, &summary, gate)?;
        // Its folder: the file may be a link, whose target need not exist.
        match target.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => sync_tree(parent)?,
            _ => sync_tree(Path::new("."))?,
        }
        bar.finish();
        return Ok(summary.into_inner().unwrap_or_else(PoisonError::into_inner));
    }

    create_dir(dest)?;
    let listing = repo
        .ls(node, &LsOptions::default())
        .map_err(|e| from_rustic("cannot list the snapshot", &e))?;
    // Folders get their times and permissions last: writing their files changes their mtime.
    let mut dirs: Vec<(PathBuf, Node)> = vec![(dest.to_path_buf(), node.clone())];
    // Twice the cores: a writer creating a file or waiting on the file system leaves its core
    // to one that decodes blobs.
    let writers = std::thread::available_parallelism()
        .map(|n| n.get() * 2)
        .unwrap_or(4)
        .clamp(4, 16);
    let (queue, jobs) = mpsc::sync_channel::<(PathBuf, Node)>(QUEUE);
    let jobs = Arc::new(Mutex::new(jobs));
    let first_error: Mutex<Option<RepoError>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..writers {
            let jobs = Arc::clone(&jobs);
            let (summary, first_error) = (&summary, &first_error);
            scope.spawn(move || {
                loop {
                    let job = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
                    let Ok((path, node)) = job else { break };
                    if let Err(e) = restore_entry(repo, &path, &node, bar, summary, gate) {
                        first_error
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .get_or_insert(e);
                        break;
                    }
                }
            });
        }
        for item in listing {
            let failed = || {
                first_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .is_some()
            };
            if failed() {
                break;
            }
            let (relative, node) = match item {
                Ok(item) => item,
                Err(e) => {
                    first_error
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get_or_insert(from_rustic("cannot list the snapshot", &e));
                    break;
                }
            };
            let path = dest.join(&relative);
            if node.is_dir() {
                if let Err(e) = create_dir(&path) {
                    first_error
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get_or_insert(e);
                    break;
                }
                lock(&summary).dirs_restored += 1;
                dirs.push((path, node));
            } else if queue.send((path, node)).is_err() {
                break; // every writer stopped on an error
            }
        }
        drop(queue);
    });
    if let Some(e) = first_error
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
    {
        return Err(e);
    }
    for (path, node) in dirs.iter().rev() {
        set_metadata(path, node, &summary);
    }
    sync_tree(dest)?;
    bar.finish();
    Ok(summary.into_inner().unwrap_or_else(PoisonError::into_inner))
}

fn lock(summary: &Mutex<RestoreSummary>) -> std::sync::MutexGuard<'_, RestoreSummary> {
    summary.lock().unwrap_or_else(PoisonError::into_inner)
}

fn write_error(path: &Path, source: io::Error) -> RepoError {
    RepoError::RestoreTarget {
        path: path.display().to_string(),
        source,
    }
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

/// Restores one file, link or special node to `path`.
fn restore_entry<S: IndexedFull>(
    repo: &Repository<S>,
    path: &Path,
    node: &Node,
    bar: &Progress,
    summary: &Mutex<RestoreSummary>,
    gate: Gate<'_>,
) -> Result<(), RepoError> {
    match &node.node_type {
        NodeType::File => {
            let existing = fs::symlink_metadata(path).ok();
            if matches_content(repo, path, existing.as_ref(), node) {
                lock(summary).files_unchanged += 1;
                bar.inc(node.meta.size);
                set_metadata(path, node, summary);
            } else {
                write_file(repo, path, existing.as_ref(), node, bar, gate, summary)?;
                let mut s = lock(summary);
                s.files_restored += 1;
                s.bytes_restored += node.meta.size;
            }
        }
        NodeType::Symlink { linktarget, .. } => {
            restore_symlink(path, linktarget, summary)?;
        }
        other => lock(summary).warnings.push(format!(
            "{} is a {other} in the set and was not restored: only files, folders and links are",
            path.display()
        )),
    }
    Ok(())
}

/// Asked before each file and each write of a restore, with the bytes about to be written: `false`
/// stops the restore there (the caller was asked to stop). It may also wait (a lab throttle).
pub type Gate<'a> = &'a (dyn Fn(u64) -> bool + Sync);

fn stopped() -> io::Error {
    io::Error::other("stopped on request")
}

/// Writes the file front to back; a link or folder in the way is an error, a file is replaced.
/// Its permissions and time are set through the open file (no second lookup of the path).
fn write_file<S: IndexedFull>(
    repo: &Repository<S>,
    path: &Path,
    existing: Option<&fs::Metadata>,
    node: &Node,
    bar: &Progress,
    gate: Gate<'_>,
    summary: &Mutex<RestoreSummary>,
) -> Result<(), RepoError> {
    // Asked to stop: no new file is begun.
    if !gate(0) {
        return Err(write_error(path, stopped()));
    }
    if existing.is_some_and(|m| m.file_type().is_symlink()) {
        fs::remove_file(path).map_err(|e| write_error(path, e))?;
    }
    let file = match File::create(path) {
        // A read-only file with other content is replaced, as restic does.
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied && path.is_file() => {
            fs::remove_file(path).map_err(|e| write_error(path, e))?;
            File::create(path)
        }
        other => other,
    }
    .map_err(|e| write_error(path, e))?;
    // Blobs are whole chunks (about a MiB for large files, the whole file for small ones): each
    // is written as it comes, with no buffer of our own between.
    let mut out = Counting {
        inner: file,
        bar,
        gate,
        error: None,
    };
    let content = node.content.as_deref().unwrap_or_default();
    let read = if content.len() < 2 {
        // One blob or none: read it straight, without rustic's blob cache (these blobs are
        // never asked for twice) and without `dump`'s read-ahead threads.
        content.iter().try_for_each(|id| {
            let data = repo.cat_blob(BlobType::Data, id.to_hex().as_str())?;
            out.write_all(&data).map_err(|e| {
                rustic_core::RusticError::with_source(
                    rustic_core::ErrorKind::InputOutput,
                    "Failed to write data to writer.",
                    e,
                )
            })
        })
    } else {
        // rustic's `dump` reads the next blobs on other threads while this one writes.
        repo.dump(node, &mut out)
    };
    if let Err(e) = read {
        // A write error is the destination's fault (disk full...), not the repository's.
        return Err(match out.error.take() {
            Some(io) => write_error(path, io),
            None => from_rustic("cannot read from the repository", &e),
        });
    }
    let file = out.inner;
    set_file_metadata(&file, path, node, summary);
    // Durability once for the whole restore on Linux (`sync_tree`), with the disk already
    // writing this file while the next ones are decoded; file by file elsewhere.
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: `file` is open for the duration of the call. Only starts the write-back
        // (no wait); a failure here shows again, and is reported, at the final sync.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    file.sync_data().map_err(|e| write_error(path, e))?;
    Ok(())
}

/// A writer that asks the gate before each write, reports the bytes written and keeps the first
/// I/O error (rustic's `dump` turns it into its own error type).
struct Counting<'a, W: Write> {
    inner: W,
    bar: &'a Progress,
    gate: Gate<'a>,
    error: Option<io::Error>,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !(self.gate)(buf.len() as u64) {
            self.error.get_or_insert(stopped());
            return Err(io::ErrorKind::Other.into());
        }
        match self.inner.write(buf) {
            Ok(n) => {
                self.bar.inc(n as u64);
                Ok(n)
            }
            Err(e) => {
                let kind = e.kind();
                self.error.get_or_insert(e);
                Err(kind.into())
            }
        }
    }

    fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        // One gate question and one progress step per blob, not per partial write.
        if !(self.gate)(buf.len() as u64) {
            self.error.get_or_insert(stopped());
            return Err(io::ErrorKind::Other.into());
        }
        let len = buf.len() as u64;
        while !buf.is_empty() {
            match self.inner.write(buf) {
                Ok(0) => {
                    let e = io::Error::from(io::ErrorKind::WriteZero);
                    let kind = e.kind();
                    self.error.get_or_insert(e);
                    return Err(kind.into());
                }
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let kind = e.kind();
                    self.error.get_or_insert(e);
                    return Err(kind.into());
                }
            }
        }
        self.bar.inc(len);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Whether the file at `path` already holds exactly this node's content: same size, and each
/// chunk of it hashes to the id of the blob stored for that chunk.
fn matches_content<S: IndexedFull>(
    repo: &Repository<S>,
    path: &Path,
    existing: Option<&fs::Metadata>,
    node: &Node,
) -> bool {
    let Some(meta) = existing else {
        return false;
    };
    if !meta.is_file() || meta.len() != node.meta.size {
        return false;
    }
    let Ok(file) = File::open(path) else {
        return false;
    };
    let mut file = BufReader::with_capacity(256 * 1024, file);
    let mut buf = Vec::new();
    for id in node.content.iter().flatten() {
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
    _summary: &Mutex<RestoreSummary>,
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
    summary: &Mutex<RestoreSummary>,
) -> Result<(), RepoError> {
    // Creating links needs a privilege most accounts lack on Windows: say so, restore the rest.
    lock(summary).warnings.push(format!(
        "{} is a link to {target} in the set and was not restored on Windows",
        path.display()
    ));
    Ok(())
}

/// Permissions (Unix) and modification time, as far as the file system allows; what fails is
/// a warning, not a failed restore.
fn set_metadata(path: &Path, node: &Node, summary: &Mutex<RestoreSummary>) {
    let mut problems = Vec::new();
    #[cfg(unix)]
    if let Some(go_mode) = node.meta.mode {
        use std::os::unix::fs::PermissionsExt;
        let perms = fs::Permissions::from_mode(mode::unix_permissions(go_mode));
        if let Err(e) = fs::set_permissions(path, perms) {
            problems.push(format!("permissions: {e}"));
        }
    }
    if let Some(time) = mtime(node)
        && let Err(e) = filetime::set_file_mtime(path, time)
    {
        problems.push(format!("time: {e}"));
    }
    warn_metadata(path, problems, summary);
}

/// `set_metadata` through a file just written, still open.
fn set_file_metadata(file: &File, path: &Path, node: &Node, summary: &Mutex<RestoreSummary>) {
    let mut problems = Vec::new();
    #[cfg(unix)]
    if let Some(go_mode) = node.meta.mode {
        use std::os::unix::fs::PermissionsExt;
        let perms = fs::Permissions::from_mode(mode::unix_permissions(go_mode));
        if let Err(e) = file.set_permissions(perms) {
            problems.push(format!("permissions: {e}"));
        }
    }
    if let Some(time) = mtime(node)
        && let Err(e) = filetime::set_file_handle_times(file, None, Some(time))
    {
        problems.push(format!("time: {e}"));
    }
    warn_metadata(path, problems, summary);
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
