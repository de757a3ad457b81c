//! The backup source of one set: several local folders or files and in-memory items, each put
//! under its own snapshot path. rustic's `backup()` can only rename one path, so this feeds
//! `Repository::archive` one stream of entries in snapshot-path order, wrapping one
//! `LocalSource` per folder or file.
//!
//! It also records every file it could not read (rustic would only log and skip it), and caps
//! each file at the size it had when listed, so an appended log is stored as it was at listing
//! time with a size that matches its content.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Cursor, Read, Seek, SeekFrom};
use std::iter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::mpsc::{Receiver, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};

use rustic_core::repofile::{Metadata, Node, NodeType};
use rustic_core::{
    ChunkMemory, ErrorKind, Excludes, LocalSource, LocalSourceFilterOptions,
    LocalSourceSaveOptions, ReadSource, ReadSourceEntry, ReadSourceOpen, RusticError, RusticResult,
};
use zeroize::Zeroizing;

use crate::chunk_memory::ChunkMemoryFile;
use crate::error::{RepoError, from_rustic, summarize};
use crate::logging::RECORDED_MARKER;
use crate::mode;
use crate::vpath::{VirtualPath, check_disjoint};
use crate::walk_record::{WalkRecorder, WalkedEntry, snapshot_bytes};

/// Files larger than this are read in segments of this length at fixed offsets, each chunked on
/// a core of its own (issue 13: the .bak, one large file, was chunked and hashed on one core).
/// Chunk boundaries then also fall at every multiple of it, so this must never change: the
/// .bak of the next night deduplicates against this one only if it is cut at the same offsets.
pub const SEGMENT_LEN: u64 = 32 << 20;

/// One thing to put into a backup set.
#[derive(Clone)]
pub enum SourceItem {
    /// A folder (its contents go under `target`) or a single file (stored as `target`).
    /// Symbolic links inside are stored as links; the source path itself is resolved.
    Path { source: PathBuf, target: String },
    /// Bytes that never touch the disk (manifest, master key, license), stored as a regular
    /// file with this Unix permission `mode` (e.g. `0o600`); only the `0o777` bits are kept.
    Memory {
        target: String,
        bytes: Zeroizing<Vec<u8>>,
        mode: u32,
    },
}

impl std::fmt::Debug for SourceItem {
    /// Memory items are secrets: only their size is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Path { source, target } => f
                .debug_struct("Path")
                .field("source", source)
                .field("target", target)
                .finish(),
            Self::Memory {
                target,
                bytes,
                mode,
            } => f
                .debug_struct("Memory")
                .field("target", target)
                .field("bytes", &format_args!("<{} bytes>", bytes.len()))
                .field("mode", &format_args!("{mode:o}"))
                .finish(),
        }
    }
}

/// Files left out of the set, as (snapshot path, reason).
#[derive(Debug, Default)]
pub(crate) struct Unreadable(Mutex<Vec<(String, String)>>);

impl Unreadable {
    pub(crate) fn record(&self, path: String, reason: String) {
        log::warn!(target: "octobackup_repo", "not backed up: {path}: {reason}");
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((path, reason));
    }

    pub(crate) fn take(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// In-memory bytes shared with the reader without copying them to another unzeroized buffer.
#[derive(Clone)]
pub(crate) struct SharedBytes(Arc<Zeroizing<Vec<u8>>>);

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

enum Part {
    /// A folder: its own node (with its real mode and mtime), then its walk.
    Folder {
        root: PathBuf,
        target: VirtualPath,
        node: Node,
        local: Box<LocalSource>,
    },
    /// A single file (or other non-folder) stored as `target`.
    File {
        root: PathBuf,
        target: VirtualPath,
        local: Box<LocalSource>,
    },
    Memory {
        target: VirtualPath,
        node: Node,
        bytes: SharedBytes,
    },
}

impl Part {
    fn target(&self) -> &VirtualPath {
        match self {
            Self::Folder { target, .. }
            | Self::File { target, .. }
            | Self::Memory { target, .. } => target,
        }
    }
}

/// The whole set as one rustic `ReadSource`.
pub(crate) struct SetSource {
    parts: Vec<Part>,
    unreadable: Arc<Unreadable>,
    memory: Option<Arc<ChunkMemoryFile>>,
    /// The entries of a walk started ahead of the backup ([`WalkedAhead`]), taken by the first
    /// call of `entries`.
    ahead: Mutex<Option<Receiver<RusticResult<ReadSourceEntry<SetOpen>>>>>,
    /// The bytes of the files that walk met, once it has met them all (`None`: it had to wait
    /// for the backup before the end, so [`SetSource::total_bytes`] walks on its own).
    ahead_total: Mutex<Option<Receiver<Option<u64>>>>,
}

/// How many entries a walk started ahead may hold before the backup takes them: about 900
/// bytes each (path, node, how to open; the lab's 27,661 entries held at once raised the
/// backup's peak by about 25 MiB), so at most ~30 MB whatever the folders hold.
const WALK_AHEAD: usize = 32_768;

/// Sources whose walk (listing folders, reading every entry's metadata) started before the
/// backup that stores them, on a thread of its own: [`crate::Repo::backup_walked`]. A backup's
/// walk needs no repository, so it can run while the repository's key is still being derived
/// (issue 13: a nightly's pass over 28,000 unchanged files spent a third of its CPU walking).
/// What the walk read is what the backup stores, as if the backup had walked then; rustic's
/// warnings are captured from the start.
pub struct WalkedAhead {
    pub(crate) source: SetSource,
    pub(crate) capture: crate::logging::CaptureGuard,
}

impl WalkedAhead {
    /// Checks and opens `items` as [`crate::Repo::backup`] does and starts walking them.
    pub fn start(items: Vec<SourceItem>) -> Result<Self, RepoError> {
        Self::start_recorded(items, None)
    }

    /// As [`WalkedAhead::start`], telling `recorder` every entry the backup will store, as the
    /// walk meets it (a folder's root with its `stat`, since the walk follows a root that is a
    /// link; in-memory items are not entries of a walk and are not told).
    pub fn start_recorded(
        items: Vec<SourceItem>,
        mut recorder: Option<Box<dyn WalkRecorder>>,
    ) -> Result<Self, RepoError> {
        let capture = crate::logging::capture();
        let source = SetSource::new(items)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(WALK_AHEAD);
        let (total_tx, total_rx) = std::sync::mpsc::sync_channel(1);
        let entries = source.entries_recording(&source.unreadable, true);
        let roots: Vec<(PathBuf, PathBuf)> = source
            .parts
            .iter()
            .filter_map(|part| match part {
                Part::Folder { root, target, .. } => Some((target.to_path(), root.clone())),
                _ => None,
            })
            .collect();
        std::thread::Builder::new()
            .name("octobackup-walk".into())
            .spawn(move || {
                // The progress total, counted as the walk goes (no second walk of every file)
                // until the buffer is full: then the backup is taking entries, and whoever
                // waits for the total must not wait for the walk's end.
                let mut total = Some(0u64);
                for entry in entries {
                    if let (Some(recorder), Ok(e)) = (recorder.as_mut(), &entry)
                        && !matches!(e.open, Some(SetOpen::Memory(_)))
                    {
                        let (path, exact) = snapshot_bytes(&e.path);
                        // Only a folder's root comes without a way to open it.
                        let root = e
                            .open
                            .is_none()
                            .then(|| roots.iter().find(|(target, _)| *target == e.path))
                            .flatten();
                        let walked = match root.map(|(_, real)| fs::metadata(real)) {
                            Some(Ok(meta)) => WalkedEntry::of(&meta),
                            _ => WalkedEntry::of_node(&e.node),
                        };
                        recorder.entry(&path, exact, &walked);
                    }
                    if let (Some(sum), Ok(e)) = (total.as_mut(), &entry)
                        && e.node.is_file()
                    {
                        *sum += e.node.meta.size;
                    }
                    let entry = match tx.try_send(entry) {
                        Ok(()) => continue,
                        Err(TrySendError::Full(entry)) => entry,
                        // The backup was dropped before it took everything: stop.
                        Err(TrySendError::Disconnected(_)) => return,
                    };
                    if total.take().is_some() {
                        _ = total_tx.send(None);
                    }
                    if tx.send(entry).is_err() {
                        return;
                    }
                }
                if let Some(total) = total {
                    _ = total_tx.send(Some(total));
                }
                if let Some(recorder) = recorder {
                    recorder.finish();
                }
            })
            .map_err(|e| RepoError::Other(format!("cannot start the walk of the sources: {e}")))?;
        *source.ahead.lock().unwrap_or_else(PoisonError::into_inner) = Some(rx);
        *source
            .ahead_total
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(total_rx);
        Ok(Self { source, capture })
    }
}

impl SetSource {
    /// Checks the targets and opens every source; a source that cannot be found or read at all
    /// fails the call before anything is written.
    pub(crate) fn new(items: Vec<SourceItem>) -> Result<Self, RepoError> {
        if items.is_empty() {
            return Err(RepoError::InvalidInput(
                "a backup set needs at least one source".into(),
            ));
        }
        let mut parts = Vec::with_capacity(items.len());
        let mut missing = Vec::new();
        for item in items {
            match item {
                SourceItem::Path { source, target } => {
                    let target = VirtualPath::parse_target(&target)?;
                    match local_part(&source, target) {
                        Ok(part) => parts.push(part),
                        Err(reason) => missing.push(format!("{} ({reason})", shown(&source))),
                    }
                }
                SourceItem::Memory {
                    target,
                    bytes,
                    mode,
                } => {
                    let target = VirtualPath::parse_target(&target)?;
                    let node = memory_node(target.file_name(), bytes.len() as u64, mode);
                    parts.push(Part::Memory {
                        target,
                        node,
                        bytes: SharedBytes(Arc::new(bytes)),
                    });
                }
            }
        }
        if !missing.is_empty() {
            return Err(RepoError::Unreadable { paths: missing });
        }
        check_disjoint(&parts.iter().map(Part::target).collect::<Vec<_>>())?;
        // Disjoint targets sorted by name, each walked in name order, give rustic the
        // globally sorted stream its tree builder needs.
        parts.sort_by(|a, b| a.target().cmp(b.target()));
        Ok(Self {
            parts,
            unreadable: Arc::default(),
            memory: None,
            ahead: Mutex::default(),
            ahead_total: Mutex::default(),
        })
    }

    /// Large files read in segments use (and refresh) this memory of their chunks.
    pub(crate) fn with_chunk_memory(mut self, memory: Option<Arc<ChunkMemoryFile>>) -> Self {
        self.memory = memory;
        self
    }

    /// The snapshot paths, recorded as the snapshot's `paths`.
    pub(crate) fn targets(&self) -> Vec<PathBuf> {
        self.parts.iter().map(|p| p.target().to_path()).collect()
    }

    pub(crate) fn unreadable(&self) -> &Unreadable {
        &self.unreadable
    }

    /// The record of unreadable files, shared (for a source that wraps this one).
    pub(crate) fn unreadable_handle(&self) -> Arc<Unreadable> {
        self.unreadable.clone()
    }

    /// The snapshot path of every entry (folders too) and whether it is a folder, walked
    /// without recording errors (the backup's own walk records them).
    pub(crate) fn entry_paths(&self) -> Vec<(PathBuf, bool)> {
        let scratch = Arc::new(Unreadable::default());
        self.entries_recording(&scratch, false)
            .filter_map(Result::ok)
            .map(|e| {
                let dir = e.node.is_dir();
                (e.path, dir)
            })
            .collect()
    }

    /// Total bytes of all files, walked once before the backup for an exact progress total.
    /// One `lstat` per file and nothing more: the backup's own walk builds each entry's node
    /// (owner names, extended attributes), which a total does not need (issue 13: that second
    /// full walk cost a third of a nightly pass over 25,000 unchanged task logs).
    pub(crate) fn total_bytes(&self) -> u64 {
        let counted = self
            .ahead_total
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(Ok(Some(total))) = counted.map(|counted| counted.recv()) {
            return total;
        }
        // Errors of this walk are reported by the real one.
        self.parts
            .iter()
            .map(|part| match part {
                Part::Folder { root, .. } => file_bytes_under(root),
                Part::File { root, .. } => fs::symlink_metadata(root)
                    .ok()
                    .filter(fs::Metadata::is_file)
                    .map_or(0, |m| m.len()),
                Part::Memory { bytes, .. } => bytes.as_ref().len() as u64,
            })
            .sum()
    }

    fn entries_recording(&self, unreadable: &Arc<Unreadable>, log: bool) -> SetEntries {
        let record = Recorder {
            unreadable: unreadable.clone(),
            log,
        };
        let streams = self.parts.iter().map(|part| -> SetEntries {
            match part {
                Part::Folder {
                    root,
                    target,
                    node,
                    local,
                } => {
                    let root_entry = ReadSourceEntry {
                        path: target.to_path(),
                        node: node.clone(),
                        open: None,
                    };
                    let walk = map_walk(local, root, target, &record, &self.memory);
                    Box::new(iter::once(Ok(root_entry)).chain(walk))
                }
                Part::File {
                    root,
                    target,
                    local,
                } => Box::new(map_walk(local, root, target, &record, &self.memory)),
                Part::Memory {
                    target,
                    node,
                    bytes,
                } => Box::new(iter::once(Ok(ReadSourceEntry {
                    path: target.to_path(),
                    node: node.clone(),
                    open: Some(SetOpen::Memory(bytes.clone())),
                }))),
            }
        });
        Box::new(streams.collect::<Vec<_>>().into_iter().flatten())
    }
}

type SetEntries = Box<dyn Iterator<Item = RusticResult<ReadSourceEntry<SetOpen>>> + Send>;

/// Records source errors, or stays silent for the size pre-scan.
#[derive(Clone)]
pub(crate) struct Recorder {
    unreadable: Arc<Unreadable>,
    log: bool,
}

impl Recorder {
    fn record(&self, path: String, reason: String) {
        if self.log {
            self.unreadable.record(path, reason);
        }
    }
}

/// The walk of one local source with real paths replaced by snapshot paths. Walk errors are
/// recorded and dropped (rustic would only log them).
fn map_walk(
    local: &LocalSource,
    root: &Path,
    target: &VirtualPath,
    record: &Recorder,
    memory: &Option<Arc<ChunkMemoryFile>>,
) -> impl Iterator<Item = RusticResult<ReadSourceEntry<SetOpen>>> + Send + 'static {
    let root = root.to_path_buf();
    let target = target.clone();
    let record = record.clone();
    let memory = memory.clone();
    // Formatted once per walk, not once per entry (28,000 entries a night in the lab).
    let target_text = target.to_string();
    let target_path = target.to_path();
    local.entries().filter_map(move |entry| match entry {
        Ok(ReadSourceEntry { path, node, open }) => {
            let relative = path.strip_prefix(&root).unwrap_or(Path::new(""));
            let mut virtual_path = target_path.clone();
            virtual_path.extend(relative.components());
            let open = open.map(|inner| SetOpen::File {
                inner,
                expected: node.meta.size,
                snapshot_path: snapshot_path(&target_text, relative),
                real_path: path.clone(),
                record: record.clone(),
                failed: Arc::default(),
                memory: memory.clone(),
            });
            Some(Ok(ReadSourceEntry {
                path: virtual_path,
                node,
                open,
            }))
        }
        Err(err) => {
            let (_, reason) = summarize(&err);
            record.record(target_text.clone(), reason);
            None
        }
    })
}

/// The bytes of the regular files under `root` (links not followed).
fn file_bytes_under(root: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                Ok(t) if t.is_file() => total += entry.metadata().map_or(0, |m| m.len()),
                _ => {}
            }
        }
    }
    total
}

/// The snapshot path of `relative` under the target `target_text` (`/`-joined names).
fn snapshot_path(target_text: &str, relative: &Path) -> String {
    let mut text = String::with_capacity(target_text.len() + relative.as_os_str().len() + 1);
    text.push_str(target_text.strip_suffix('/').unwrap_or(target_text));
    for name in relative.components() {
        text.push('/');
        text.push_str(&name.as_os_str().to_string_lossy());
    }
    if text.is_empty() {
        text.push('/');
    }
    text
}

/// A path as users wrote it: without the `\\?\` prefix `canonicalize` adds on Windows.
fn shown(path: &Path) -> String {
    let text = path.display().to_string();
    match text.strip_prefix(r"\\?\") {
        Some(rest) if cfg!(windows) && !rest.starts_with("UNC\\") => rest.to_string(),
        _ => text,
    }
}

/// Resolves a local source (a link to a folder backs up the folder) and describes it.
fn local_part(source: &Path, target: VirtualPath) -> Result<Part, String> {
    let root = fs::canonicalize(source).map_err(|e| e.to_string())?;
    let meta = fs::metadata(&root).map_err(|e| e.to_string())?;
    let local = Box::new(
        LocalSource::new(
            LocalSourceSaveOptions::default(),
            &Excludes::default(),
            &LocalSourceFilterOptions::default(),
            &[&root],
        )
        .map_err(|e| from_rustic("cannot walk", &e).to_string())?,
    );
    if meta.is_dir() {
        let node = Node::new_node(
            OsStr::new(target.file_name()),
            NodeType::Dir,
            mode::folder_metadata(&meta),
        );
        Ok(Part::Folder {
            root,
            target,
            node,
            local,
        })
    } else {
        Ok(Part::File {
            root,
            target,
            local,
        })
    }
}

/// A regular-file node for in-memory bytes. Its mtime and ctime are a timestamp unique to this
/// process, so rustic's parent matching (size + mtime + ctime) can never reuse the content of
/// an earlier, different memory item of the same size.
fn memory_node(name: &str, size: u64, unix_mode: u32) -> Node {
    let now = mode::unique_now();
    let meta = Metadata {
        mode: Some(mode::go_file_mode(unix_mode)),
        mtime: Some(now),
        atime: Some(now),
        ctime: Some(now),
        size,
        ..Metadata::default()
    };
    Node::new_node(OsStr::new(name), NodeType::File, meta)
}

impl ReadSource for SetSource {
    type Open = SetOpen;
    type Iter = SetEntries;

    /// Not used: the backup runs with `no_scan` after [`SetSource::total_bytes`].
    fn size(&self) -> RusticResult<Option<u64>> {
        Ok(Some(self.total_bytes()))
    }

    fn entries(&self) -> Self::Iter {
        let ahead = self
            .ahead
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match ahead {
            Some(walked) => Box::new(walked.into_iter()),
            None => self.entries_recording(&self.unreadable, true),
        }
    }
}

/// How to open one entry.
pub(crate) enum SetOpen {
    File {
        inner: <LocalSource as ReadSource>::Open,
        expected: u64,
        snapshot_path: String,
        real_path: PathBuf,
        record: Recorder,
        /// Set once the file's failure is recorded (shared by its segments).
        failed: Arc<AtomicBool>,
        memory: Option<Arc<ChunkMemoryFile>>,
    },
    Memory(SharedBytes),
}

impl ReadSourceOpen for SetOpen {
    type Reader = SetReader;

    fn open(self) -> RusticResult<SetReader> {
        match self {
            Self::Memory(bytes) => Ok(SetReader::Memory(Cursor::new(bytes))),
            Self::File {
                inner,
                expected,
                snapshot_path,
                real_path,
                record,
                failed,
                memory: _,
            } => match inner.open() {
                Ok(file) => Ok(SetReader::File(CappedReader {
                    inner: file,
                    remaining: expected,
                    end: expected,
                    expected,
                    failed,
                    snapshot_path,
                    real_path,
                    record,
                })),
                Err(err) => {
                    let cause = std::error::Error::source(&*err)
                        .map_or_else(|| summarize(&err).1, ToString::to_string);
                    let reason = format!("{}: {cause}", shown(&real_path));
                    record.record(snapshot_path.clone(), reason.clone());
                    Err(recorded_error(&snapshot_path, reason))
                }
            },
        }
    }

    fn segment_len(&self) -> Option<u64> {
        match self {
            Self::File { .. } => Some(SEGMENT_LEN),
            Self::Memory(_) => None,
        }
    }

    fn chunk_memory(&self) -> Option<Arc<dyn ChunkMemory>> {
        match self {
            Self::File {
                memory: Some(memory),
                snapshot_path,
                ..
            } => Some(memory.for_file(snapshot_path)),
            _ => None,
        }
    }

    /// One segment of a file: its own handle, positioned at `offset` and capped at `len` bytes.
    /// The segments of one file share its failure record, so a file is listed once however
    /// many of its segments fail.
    fn open_segment(&self, offset: u64, len: u64) -> RusticResult<SetReader> {
        let Self::File {
            expected,
            snapshot_path,
            real_path,
            record,
            failed,
            ..
        } = self
        else {
            return Err(RusticError::new(
                ErrorKind::Internal,
                "an in-memory item was asked for a segment",
            ));
        };
        let opened = fs::File::open(real_path).and_then(|mut file| {
            file.seek(SeekFrom::Start(offset))?;
            Ok(file)
        });
        match opened {
            Ok(file) => Ok(SetReader::File(CappedReader {
                inner: file,
                remaining: len,
                end: offset + len,
                expected: *expected,
                failed: failed.clone(),
                snapshot_path: snapshot_path.clone(),
                real_path: real_path.clone(),
                record: record.clone(),
            })),
            Err(err) => {
                let reason = format!("{}: {err}", shown(real_path));
                if !failed.swap(true, AtomicOrdering::Relaxed) {
                    record.record(snapshot_path.clone(), reason.clone());
                }
                Err(recorded_error(snapshot_path, reason))
            }
        }
    }
}

/// The error handed back to rustic for a file we recorded; the marker keeps rustic's long
/// repetition of it out of the captured warnings.
fn recorded_error(snapshot_path: &str, reason: String) -> Box<RusticError> {
    RusticError::with_source(
        ErrorKind::InputOutput,
        format!("`{{path}}` not backed up {RECORDED_MARKER}"),
        io::Error::other(reason),
    )
    .attach_context("path", snapshot_path.to_string())
}

pub(crate) enum SetReader {
    File(CappedReader<fs::File>),
    Memory(Cursor<SharedBytes>),
}

impl Read for SetReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::File(r) => r.read(buf),
            Self::Memory(r) => r.read(buf),
        }
    }
}

/// Reads a file up to the size it had when listed, and records a read error or a file that
/// shrank (its content would no longer match its size).
pub(crate) struct CappedReader<R> {
    inner: R,
    /// Bytes left to read, up to `end`.
    remaining: u64,
    /// Where this reader stops: the listed size, or the end of its segment.
    end: u64,
    /// The file's size when listed.
    expected: u64,
    failed: Arc<AtomicBool>,
    snapshot_path: String,
    real_path: PathBuf,
    record: Recorder,
}

impl<R: Read> CappedReader<R> {
    fn fail(&mut self, err: io::Error) -> io::Error {
        if !self.failed.swap(true, AtomicOrdering::Relaxed) {
            let reason = format!("{}: {err}", shown(&self.real_path));
            self.record.record(self.snapshot_path.clone(), reason);
        }
        io::Error::new(err.kind(), format!("{err} {RECORDED_MARKER}"))
    }
}

impl<R: Read> Read for CappedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = usize::try_from(self.remaining).map_or(buf.len(), |r| r.min(buf.len()));
        match self.inner.read(&mut buf[..want]) {
            Ok(0) => {
                let read = self.end - self.remaining;
                let err = io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "the file shrank while it was read ({read} of {} bytes); back it up again when it is not being rewritten",
                        self.expected
                    ),
                );
                Err(self.fail(err))
            }
            Ok(n) => {
                self.remaining -= n as u64;
                Ok(n)
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => Err(err),
            Err(err) => Err(self.fail(err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_paths_join_the_target_and_the_relative_names() {
        let names = Path::new("Spaces-1").join("ServerTasks-1.log.txt");
        assert_eq!(
            snapshot_path("/folders/TaskLogs", &names),
            "/folders/TaskLogs/Spaces-1/ServerTasks-1.log.txt"
        );
        assert_eq!(
            snapshot_path("/folders/TaskLogs", Path::new("")),
            "/folders/TaskLogs"
        );
        assert_eq!(snapshot_path("/", Path::new("a.txt")), "/a.txt");
        assert_eq!(snapshot_path("/", Path::new("")), "/");
    }

    fn capped<R: Read>(inner: R, expected: u64, unreadable: &Arc<Unreadable>) -> CappedReader<R> {
        CappedReader {
            inner,
            remaining: expected,
            end: expected,
            expected,
            failed: Arc::default(),
            snapshot_path: "/folders/TaskLogs/a.txt".into(),
            real_path: PathBuf::from("/data/TaskLogs/a.txt"),
            record: Recorder {
                unreadable: unreadable.clone(),
                log: true,
            },
        }
    }

    struct Failing;
    impl Read for Failing {
        fn read(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("disk on fire"))
        }
    }

    #[test]
    fn a_read_error_is_recorded_once_with_both_paths() {
        let unreadable = Arc::new(Unreadable::default());
        let mut reader = capped(Failing, 10, &unreadable);
        let mut buf = [0; 4];
        assert!(reader.read(&mut buf).is_err());
        assert!(reader.read(&mut buf).is_err());
        let recorded = unreadable.take();
        assert_eq!(recorded.len(), 1);
        assert_eq!(recorded[0].0, "/folders/TaskLogs/a.txt");
        assert!(
            recorded[0].1.contains("/data/TaskLogs/a.txt"),
            "{recorded:?}"
        );
        assert!(recorded[0].1.contains("disk on fire"), "{recorded:?}");
    }

    #[test]
    fn a_growing_file_is_cut_at_its_listed_size() {
        let unreadable = Arc::new(Unreadable::default());
        let mut reader = capped(&b"0123456789appended"[..], 10, &unreadable);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"0123456789");
        assert!(unreadable.take().is_empty());
    }

    #[test]
    fn a_shrinking_file_is_recorded() {
        let unreadable = Arc::new(Unreadable::default());
        let mut reader = capped(&b"0123"[..], 10, &unreadable);
        let mut out = Vec::new();
        assert!(reader.read_to_end(&mut out).is_err());
        let recorded = unreadable.take();
        assert!(recorded[0].1.contains("shrank"), "{recorded:?}");
    }

    #[test]
    fn a_file_that_shrinks_under_its_segments_is_recorded_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("OctopusDeploy.bak");
        // Sparse: three segments' worth of size without writing them.
        let file = fs::File::create(&path).unwrap();
        file.set_len(2 * SEGMENT_LEN + 77).unwrap();
        let source = SetSource::new(vec![SourceItem::Path {
            source: path.clone(),
            target: "/database/OctopusDeploy.bak".into(),
        }])
        .unwrap();
        let entry = source
            .entries()
            .find_map(|e| e.ok().filter(|e| e.open.is_some()))
            .unwrap();
        let open = entry.open.unwrap();
        assert_eq!(open.segment_len(), Some(SEGMENT_LEN));
        // Cut to half a segment after it was listed: the last two segments find nothing.
        file.set_len(SEGMENT_LEN / 2).unwrap();
        let mut first = open.open_segment(0, SEGMENT_LEN).unwrap();
        let mut buf = Vec::new();
        assert!(first.read_to_end(&mut buf).is_err());
        for i in 1..3 {
            let offset = i * SEGMENT_LEN;
            let len = SEGMENT_LEN.min(2 * SEGMENT_LEN + 77 - offset);
            let mut segment = open.open_segment(offset, len).unwrap();
            let err = segment.read_to_end(&mut Vec::new()).unwrap_err();
            assert!(err.to_string().contains("shrank"), "{err}");
        }
        let recorded = source.unreadable().take();
        assert_eq!(recorded.len(), 1, "{recorded:?}");
        assert_eq!(recorded[0].0, "/database/OctopusDeploy.bak");
        assert!(recorded[0].1.contains("shrank"), "{recorded:?}");
        assert!(
            recorded[0]
                .1
                .contains(&format!("of {} bytes", 2 * SEGMENT_LEN + 77)),
            "{recorded:?}"
        );
    }

    #[test]
    fn missing_sources_fail_before_anything_is_written() {
        let err = SetSource::new(vec![SourceItem::Path {
            source: PathBuf::from("/nonexistent/octobackup/source"),
            target: "/folders/x".into(),
        }])
        .err()
        .unwrap();
        assert!(matches!(err, RepoError::Unreadable { .. }), "{err:?}");
    }

    #[test]
    fn memory_items_hide_their_bytes_from_debug() {
        let item = SourceItem::Memory {
            target: "/secrets/master-key".into(),
            bytes: Zeroizing::new(b"TOPSECRET".to_vec()),
            mode: 0o600,
        };
        let shown = format!("{item:?}");
        assert!(!shown.contains("TOPSECRET"), "{shown}");
        assert!(shown.contains("9 bytes"), "{shown}");
    }

    /// Tells when the walk met its last entry.
    struct Finished(std::sync::mpsc::Sender<()>);

    impl WalkRecorder for Finished {
        fn entry(&mut self, _path: &[u8], _exact: bool, _entry: &WalkedEntry) {}
        fn finish(self: Box<Self>) {
            _ = self.0.send(());
        }
    }

    #[test]
    fn a_walk_started_ahead_counts_the_progress_total_as_it_goes() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("Spaces-1")).unwrap();
        fs::write(dir.path().join("a.txt"), vec![b'a'; 1000]).unwrap();
        fs::write(dir.path().join("Spaces-1/b.txt"), vec![b'b'; 234]).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("a.txt", dir.path().join("link")).unwrap();
        let items = vec![
            SourceItem::Path {
                source: dir.path().to_path_buf(),
                target: "/folders/TaskLogs".into(),
            },
            SourceItem::Memory {
                target: "/meta/manifest.json".into(),
                bytes: Zeroizing::new(vec![0; 56]),
                mode: 0o600,
            },
        ];
        let (tx, finished) = std::sync::mpsc::channel();
        let walked = WalkedAhead::start_recorded(items, Some(Box::new(Finished(tx)))).unwrap();
        finished.recv().unwrap();
        // Gone after the walk counted it: the total is the walk's, not a second walk's.
        fs::remove_file(dir.path().join("a.txt")).unwrap();
        assert_eq!(walked.source.total_bytes(), 1000 + 234 + 56);
        // Taken once; asked again, the folders are walked for it.
        assert_eq!(walked.source.total_bytes(), 234 + 56);
    }

    #[test]
    fn a_walk_that_fills_its_buffer_leaves_the_total_to_a_walk_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..=WALK_AHEAD {
            fs::File::create(dir.path().join(format!("ServerTasks-{i}.log.txt"))).unwrap();
        }
        fs::write(dir.path().join("big.txt"), vec![b'x'; 4321]).unwrap();
        let items = vec![SourceItem::Path {
            source: dir.path().to_path_buf(),
            target: "/folders/TaskLogs".into(),
        }];
        let (tx, finished) = std::sync::mpsc::channel();
        let walked = WalkedAhead::start_recorded(items, Some(Box::new(Finished(tx)))).unwrap();
        // The walk waits for the backup to take entries: the total does not wait for it.
        assert_eq!(walked.source.total_bytes(), 4321);
        let taken = walked.source.entries().count();
        assert_eq!(taken, WALK_AHEAD + 3, "the folder, the logs and big.txt");
        finished.recv().unwrap();
    }
}
