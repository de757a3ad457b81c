//! The server folders inside the maintenance window, without the repository: a slow or missing
//! repository must never lengthen the time Octopus spends in maintenance mode.
//!
//! Before the window, octobackup stores the folders once (the pass before the window), and the
//! pass's walk lists them as it goes (path, kind, size, mtime, and the file's identity: inode
//! and change time on Unix, creation time on Windows) into the run's staging folder. Inside the window it lists them
//! again, copies what differs from that listing onto the run's staging folder, and leaves: a
//! slow or missing repository cannot lengthen the window. After the window the set's folder
//! tree is written as the pass before the window, less every entry the window did not keep
//! unchanged, plus the copies ([`octobackup_repo::Repo::overlay`]): exactly the folders as they
//! were inside the window.
//!
//! Each entry is listed *before* the pass reads it, so anything that changes while the pass
//! runs differs from the listing and is copied inside the window; an entry the pass stored that
//! is not in the window at all is simply not kept.

use crate::backupset::{self, manifest::FolderInfo};
use crate::error::{Exit, Failure};
use octobackup_repo::{
    BackupSummary, EntryKind as Kind, PathFile, PathFileWriter, SetOptions, SourceItem,
    WalkRecorder, WalkedEntry, tree_order,
};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering as Order;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The listing's file in the run's staging folder.
pub const LISTING_FILE: &str = "window-listing";
/// The folder in the run's staging folder that receives the copies made inside the window.
pub const CAPTURE_DIR: &str = "window";
/// The list of the entries the window kept, in the capture folder beside the copies.
pub const KEEP_FILE: &str = "kept-paths";

/// What a listing records of one entry: enough to tell that it was not touched. The walk of
/// the pass before the window and the window's own walk build it the same way
/// ([`WalkedEntry`]: from a node of the pass, from an `lstat` in the window).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    pub kind: Kind,
    pub size: u64,
    /// Nanoseconds since the Unix epoch.
    pub mtime: Option<i128>,
    /// Unix: the inode's change time (any write or chmod moves it); Windows: the creation time.
    pub change: Option<i128>,
    /// Unix: the inode number (a file replaced by another gets a new one). Windows: none.
    pub id: Option<u64>,
    /// False for a name that is not valid Unicode: such an entry is never taken as unchanged.
    pub exact: bool,
}

impl Meta {
    fn of(meta: &std::fs::Metadata, exact: bool) -> Meta {
        Meta::walked(&WalkedEntry::of(meta), exact)
    }

    fn walked(e: &WalkedEntry, exact: bool) -> Meta {
        Meta {
            kind: e.kind,
            size: e.size,
            mtime: e.mtime,
            change: e.change,
            id: e.id,
            exact,
        }
    }

    /// The same entry, untouched since `earlier` was listed.
    fn unchanged_since(&self, earlier: &Meta) -> bool {
        self.exact && earlier.exact && self == earlier
    }

    /// The record of one entry in the listing's file: kind, flags, then the fields present.
    fn write(&self, out: &mut Vec<u8>) {
        out.push(match self.kind {
            Kind::File => 0,
            Kind::Dir => 1,
            Kind::Symlink => 2,
            Kind::Other => 3,
        });
        let flags = u8::from(self.exact)
            | u8::from(self.mtime.is_some()) << 1
            | u8::from(self.change.is_some()) << 2
            | u8::from(self.id.is_some()) << 3;
        out.push(flags);
        out.extend_from_slice(&self.size.to_le_bytes());
        for t in [self.mtime, self.change].into_iter().flatten() {
            out.extend_from_slice(&t.to_le_bytes());
        }
        if let Some(id) = self.id {
            out.extend_from_slice(&id.to_le_bytes());
        }
    }

    fn read(input: &mut impl Read) -> std::io::Result<Meta> {
        let mut head = [0u8; 10];
        input.read_exact(&mut head)?;
        let kind = match head[0] {
            0 => Kind::File,
            1 => Kind::Dir,
            2 => Kind::Symlink,
            3 => Kind::Other,
            _ => return Err(std::io::Error::other("an entry of an unknown kind")),
        };
        let flags = head[1];
        let size = u64::from_le_bytes(head[2..10].try_into().expect("8 bytes"));
        let mut time = |present: bool| -> std::io::Result<Option<i128>> {
            if !present {
                return Ok(None);
            }
            let mut b = [0u8; 16];
            input.read_exact(&mut b)?;
            Ok(Some(i128::from_le_bytes(b)))
        };
        let mtime = time(flags & 2 != 0)?;
        let change = time(flags & 4 != 0)?;
        let id = if flags & 8 != 0 {
            let mut b = [0u8; 8];
            input.read_exact(&mut b)?;
            Some(u64::from_le_bytes(b))
        } else {
            None
        };
        Ok(Meta {
            kind,
            size,
            mtime,
            change,
            id,
            exact: flags & 1 != 0,
        })
    }
}

/// Every entry under the server folders, by snapshot path (`/folders/Packages/a/b.nupkg`; each
/// folder's root is listed as `/folders/Packages`), in a file on the run's staging folder, in
/// tree order (each folder before what it holds, names in byte order: `tree_order`). The window
/// walks the folders in the same order and reads the listing beside its walk, so neither side
/// is held in memory (issue 13: held as a map, it cost about 250 bytes a file).
///
/// Each record: the length of the path it shares with the one before (LEB128), the length of
/// the rest, the rest, then the entry's [`Meta`].
#[derive(Clone, Debug)]
pub struct Listing {
    pub file: PathBuf,
    pub entries: u64,
}

const LISTING_MAGIC: &[u8; 8] = b"oblist01";

/// A record's length field (LEB128, as the kept-path lists write theirs).
fn put_len(out: &mut Vec<u8>, v: usize) {
    // Writing into a Vec cannot fail.
    let _ = octobackup_repo::write_varint(out, v as u64);
}

fn get_len(input: &mut impl Read) -> std::io::Result<usize> {
    let v = octobackup_repo::read_varint(input)?;
    usize::try_from(v).map_err(|_| std::io::Error::other("a length too long for a path"))
}

/// Writes a listing's records. After the first write error it only counts, so that a full
/// staging share can be said with the size the listing needs.
struct ListingWriter {
    out: Option<BufWriter<std::fs::File>>,
    error: Option<std::io::Error>,
    bytes: u64,
    last: Vec<u8>,
    record: Vec<u8>,
}

impl ListingWriter {
    fn write(&mut self, bytes: &[u8]) {
        self.bytes += bytes.len() as u64;
        if let Some(out) = self.out.as_mut()
            && let Err(e) = out.write_all(bytes)
        {
            self.error = Some(e);
            self.out = None;
        }
    }

    fn push(&mut self, path: &[u8], meta: &Meta) {
        let shared = self
            .last
            .iter()
            .zip(path)
            .take_while(|(a, b)| a == b)
            .count();
        let mut record = std::mem::take(&mut self.record);
        record.clear();
        put_len(&mut record, shared);
        put_len(&mut record, path.len() - shared);
        record.extend_from_slice(&path[shared..]);
        meta.write(&mut record);
        self.write(&record);
        self.record = record;
        self.last.clear();
        self.last.extend_from_slice(path);
    }

    fn finish(mut self) -> Result<u64, (std::io::Error, u64)> {
        let bytes = self.bytes;
        if let Some(e) = self.error.take() {
            return Err((e, bytes));
        }
        let out = self
            .out
            .take()
            .expect("a writer without an error has its file");
        let file = out.into_inner().map_err(|e| (e.into_error(), bytes))?;
        file.sync_all().map_err(|e| (e, bytes))?;
        Ok(bytes)
    }
}

/// Reads a listing's records in order, one at a time.
struct ListingReader {
    input: BufReader<std::fs::File>,
    file: PathBuf,
    path: Vec<u8>,
    meta: Option<Meta>,
}

impl ListingReader {
    fn open(listing: &Listing) -> Result<ListingReader, Failure> {
        let file = &listing.file;
        let f = std::fs::File::open(file).map_err(|e| failed("cannot read", file, e))?;
        let mut input = BufReader::with_capacity(64 << 10, f);
        let mut magic = [0u8; 8];
        if input.read_exact(&mut magic).is_err() || &magic != LISTING_MAGIC {
            return Err(failed("cannot parse", file, "it is not a folder listing"));
        }
        let mut r = ListingReader {
            input,
            file: file.clone(),
            path: Vec::new(),
            meta: None,
        };
        r.advance()?;
        Ok(r)
    }

    /// The entry the reader is at (`None` past the last).
    fn head(&self) -> Option<(&[u8], &Meta)> {
        self.meta.as_ref().map(|m| (self.path.as_slice(), m))
    }

    fn advance(&mut self) -> Result<(), Failure> {
        let mut next = || -> std::io::Result<Option<Meta>> {
            if self.input.fill_buf()?.is_empty() {
                return Ok(None);
            }
            let shared = get_len(&mut self.input)?;
            let rest = get_len(&mut self.input)?;
            if shared > self.path.len() || rest > 1 << 20 {
                return Err(std::io::Error::other("a damaged record"));
            }
            self.path.truncate(shared);
            let start = self.path.len();
            self.path.resize(start + rest, 0);
            self.input.read_exact(&mut self.path[start..])?;
            Meta::read(&mut self.input).map(Some)
        };
        self.meta = next().map_err(|e| failed("cannot parse", &self.file.clone(), e))?;
        Ok(())
    }
}

fn failed(what: &str, path: &Path, e: impl std::fmt::Display) -> Failure {
    Failure::new(
        Exit::Failed,
        format!(
            "{what} {}: {e}. The server folders must be readable by the account octobackup runs as.",
            path.display()
        ),
    )
}

/// One entry met by the walk.
struct Found<'a> {
    /// Index of its server folder.
    folder: usize,
    /// Its snapshot path, as bytes (`OsStr::as_encoded_bytes` for the names).
    vpath: &'a [u8],
    /// Path relative to its server folder (empty for the root).
    relative: &'a Path,
    real: &'a Path,
    meta: std::fs::Metadata,
    exact: bool,
}

/// A folder the walk is in: what it holds, sorted by name, and the next to visit.
struct Open {
    rel: PathBuf,
    vdir: Vec<u8>,
    exact: bool,
    entries: Vec<(OsString, std::fs::DirEntry)>,
    next: usize,
}

/// What `dir` holds, sorted by name (byte order: the order of restic's trees).
fn sorted_entries(dir: &Path) -> std::io::Result<Vec<(OsString, std::fs::DirEntry)>> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        entries.push((entry.file_name(), entry));
    }
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(entries)
}

/// Walks the folders (without following links), calling `visit` on every entry in tree order:
/// roots first, each folder right before what it holds, names in byte order. The listing before
/// the window and the window's own walk meet the entries in the same order.
fn walk(
    folders: &[(String, PathBuf)],
    cancel: &AtomicBool,
    mut visit: impl FnMut(Found) -> Result<(), Failure>,
) -> Result<(), Failure> {
    // The folders by name, as the set holds them (the config may list them in any order).
    let mut order: Vec<usize> = (0..folders.len()).collect();
    order.sort_by(|a, b| folders[*a].0.cmp(&folders[*b].0));
    for index in order {
        let (name, root) = &folders[index];
        let meta = std::fs::metadata(root).map_err(|e| failed("cannot read", root, e))?;
        let vroot = format!("{}/{name}", backupset::FOLDERS_DIR).into_bytes();
        visit(Found {
            folder: index,
            vpath: &vroot,
            relative: Path::new(""),
            real: root,
            meta,
            exact: true,
        })?;
        let entries = sorted_entries(root).map_err(|e| failed("cannot list", root, e))?;
        let mut stack = vec![Open {
            rel: PathBuf::new(),
            vdir: vroot,
            exact: true,
            entries,
            next: 0,
        }];
        while let Some(open) = stack.last_mut() {
            if cancel.load(Ordering::Relaxed) {
                return Err(cancelled());
            }
            let Some((file_name, entry)) = open.entries.get(open.next) else {
                stack.pop();
                continue;
            };
            open.next += 1;
            let real = entry.path();
            // The entry's own metadata (links not followed), looked up from its folder rather
            // than by its whole path again: the walk stats every one of 25,000 task logs.
            // Octopus runs during the listing before the window: what disappears meanwhile is
            // gone, not an error (the window then finds it gone too).
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                Err(e) if gone(&e) => continue,
                Err(e) => return Err(failed("cannot read", &real, e)),
            };
            let exact = open.exact && file_name.to_str().is_some();
            let mut vpath = Vec::with_capacity(open.vdir.len() + 1 + file_name.len());
            vpath.extend_from_slice(&open.vdir);
            vpath.push(b'/');
            vpath.extend_from_slice(file_name.as_encoded_bytes());
            let relative = open.rel.join(file_name);
            let is_dir = meta.is_dir();
            visit(Found {
                folder: index,
                vpath: &vpath,
                relative: &relative,
                real: &real,
                meta,
                exact,
            })?;
            if is_dir {
                let entries = match sorted_entries(&real) {
                    Ok(entries) => entries,
                    Err(e) if gone(&e) => continue,
                    Err(e) => return Err(failed("cannot list", &real, e)),
                };
                stack.push(Open {
                    rel: relative,
                    vdir: vpath,
                    exact,
                    entries,
                    next: 0,
                });
            }
        }
    }
    Ok(())
}

fn gone(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound
}

fn cancelled() -> Failure {
    Failure::new(
        Exit::Failed,
        "the capture of the server folders was stopped",
    )
}

impl ListingWriter {
    /// A new listing file in the run's staging folder, its magic written.
    fn create(staging: &Path) -> Result<(ListingWriter, PathBuf), Failure> {
        let path = staging.join(LISTING_FILE);
        let file = std::fs::File::create(&path).map_err(|e| listing_error(staging, &path, e, 0))?;
        let mut out = ListingWriter {
            out: Some(BufWriter::with_capacity(64 << 10, file)),
            error: None,
            bytes: 0,
            last: Vec::new(),
            record: Vec::new(),
        };
        out.write(LISTING_MAGIC);
        Ok((out, path))
    }
}

impl Listing {
    /// Lists the folders as they are now (metadata only: no file is opened) into the run's
    /// staging folder, durably. The run's own listing is written by the pass's walk instead
    /// ([`Listing::recorder`]); this one is what it must equal.
    #[cfg(test)]
    pub fn take(folders: &[(String, PathBuf)], staging: &Path) -> Result<Listing, Failure> {
        let (mut out, path) = ListingWriter::create(staging)?;
        let mut entries = 0u64;
        walk(folders, &AtomicBool::new(false), |f| {
            out.push(f.vpath, &Meta::of(&f.meta, f.exact));
            entries += 1;
            Ok(())
        })?;
        out.finish()
            .map_err(|(e, bytes)| listing_error(staging, &path, e, bytes))?;
        Ok(Listing {
            file: path,
            entries,
        })
    }

    /// A listing of the server folders written, durably, into the run's staging folder by the
    /// walk of the pass before the window ([`octobackup_repo::WalkedAhead::start_recorded`]):
    /// each entry as the pass stores it, its metadata read before the pass reads the file, so
    /// anything that changes after differs from it and is copied inside the window. No second
    /// walk of the folders before the pass (issue 13: listing 28,000 files first held the
    /// pass's walk back by a fifth of a second), and nothing the pass stored is missing from
    /// it. Returns the recorder for the walk and the listing to wait for once the pass ended.
    pub fn recorder(staging: &Path) -> Result<(Box<dyn WalkRecorder>, PendingListing), Failure> {
        let (out, file) = ListingWriter::create(staging)?;
        let (tx, rx) = std::sync::mpsc::channel();
        let recorder = ListingRecorder {
            out,
            file,
            staging: staging.to_path_buf(),
            entries: 0,
            done: tx,
        };
        Ok((Box::new(recorder), PendingListing { done: rx }))
    }
}

/// The listing the pass's walk writes ([`Listing::recorder`]).
pub struct PendingListing {
    done: std::sync::mpsc::Receiver<Result<Listing, Failure>>,
}

impl PendingListing {
    /// The listing, once the walk met its last entry (right after, when the pass ended).
    pub async fn finished(self) -> Result<Listing, Failure> {
        crate::run::blocking::blocking("the folder listing", move || {
            self.done.recv().unwrap_or_else(|_| {
                Err(Failure::new(
                    Exit::Failed,
                    "the walk of the server folders stopped before it listed them all; nothing was marked complete",
                ))
            })
        })
        .await?
    }
}

struct ListingRecorder {
    out: ListingWriter,
    file: PathBuf,
    staging: PathBuf,
    entries: u64,
    done: std::sync::mpsc::Sender<Result<Listing, Failure>>,
}

impl WalkRecorder for ListingRecorder {
    fn entry(&mut self, path: &[u8], exact: bool, entry: &WalkedEntry) {
        // The window reads the listing beside its own walk, in tree order (rustic's walk sorts
        // each folder's names as the window's does).
        debug_assert!(
            self.entries == 0 || tree_order(&self.out.last, path) == Order::Less,
            "{} after {}",
            String::from_utf8_lossy(path),
            String::from_utf8_lossy(&self.out.last)
        );
        self.out.push(path, &Meta::walked(entry, exact));
        self.entries += 1;
    }

    fn finish(self: Box<Self>) {
        let ListingRecorder {
            out,
            file,
            staging,
            entries,
            done,
        } = *self;
        let listing = match out.finish() {
            Ok(_) => Ok(Listing { file, entries }),
            Err((e, bytes)) => Err(listing_error(&staging, &file, e, bytes)),
        };
        let _ = done.send(listing);
    }
}

fn listing_error(staging: &Path, path: &Path, e: std::io::Error, needed: u64) -> Failure {
    if crate::run::space::is_disk_full(&e.to_string()) {
        // Said as a full staging share is said for BACKUP: where, how much, what to do.
        let _ = std::fs::remove_file(path);
        return crate::run::space::full(
            Exit::Failed,
            "the staging folder",
            staging,
            Some(needed),
            "octobackup could not write its folder listing there, before the window. Free space on the staging share or point staging at a bigger one; nothing was marked complete.",
        );
    }
    Failure::new(
        Exit::Failed,
        format!(
            "cannot write the folder listing {} on the staging share: {e}",
            path.display()
        ),
    )
}

/// What the window captured: handed to [`ingest`] once maintenance mode is back (or kept on
/// staging with its copies for the next run, `run/backup/kept.rs`).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Capture {
    /// The list of the snapshot paths of the entries the window left as the pass before it
    /// stored them ([`KEEP_FILE`] in the capture folder, in tree order, `/folders` first).
    pub keep: PathBuf,
    /// How many paths it holds.
    pub kept: u64,
    /// (folder name, its copy on staging): the entries the window changed or added.
    pub roots: Vec<(String, PathBuf)>,
    pub files_copied: u64,
    pub bytes_copied: u64,
    /// Entries of the listing that were gone inside the window.
    pub deleted: u64,
    /// Entries added, changed or removed: 0 means the window found the folders as listed.
    pub changed: u64,
    /// The folders as the set holds them.
    pub infos: Vec<FolderInfo>,
}

/// Inside the window: lists the folders, and copies onto `dest` every entry that is not as
/// `before` recorded it (every entry when there is no listing). `cancel` stops it between
/// files and between blocks of a large file.
///
/// Copies, never hard links: a hard link shares the file with Octopus, and once maintenance
/// mode is off Octopus appends to task logs and may rewrite a file in place (a package pushed
/// again with "overwrite", an artifact), so the linked "capture" would change before it is
/// stored and the set would no longer be the window's state. A copy is only the changes since
/// the pass before the window, which are small.
pub fn capture(
    folders: &[(String, PathBuf)],
    before: Option<&Listing>,
    dest: &Path,
    cancel: &AtomicBool,
) -> Result<Capture, Failure> {
    let mut out = Capture::default();
    let mut files = vec![(0u64, 0u64); folders.len()];
    let root_of = |i: usize| dest.join(i.to_string());
    for i in 0..folders.len() {
        let root = root_of(i);
        std::fs::create_dir_all(&root).map_err(|e| failed("cannot create", &root, e))?;
    }
    out.keep = dest.join(KEEP_FILE);
    let write_error = |e: std::io::Error| failed("cannot write", &dest.join(KEEP_FILE), e);
    let mut keep = PathFileWriter::create(&out.keep).map_err(write_error)?;
    // The folder above the server folders is the pass's own, never listed.
    keep.push(backupset::FOLDERS_DIR.as_bytes())
        .map_err(write_error)?;
    let mut listed = before.map(ListingReader::open).transpose()?;
    walk(folders, cancel, |f| {
        let meta = Meta::of(&f.meta, f.exact);
        if meta.kind == Kind::File {
            files[f.folder].0 += 1;
            files[f.folder].1 += meta.size;
        }
        // The listing's entries before this one (in the walk's order) are gone.
        let mut earlier = None;
        if let Some(listed) = listed.as_mut() {
            while let Some((path, m)) = listed.head() {
                match tree_order(path, f.vpath) {
                    Order::Less => out.deleted += 1,
                    Order::Equal => earlier = Some(m.clone()),
                    Order::Greater => break,
                }
                listed.advance()?;
                if earlier.is_some() {
                    break;
                }
            }
        }
        if earlier.is_some_and(|e| meta.unchanged_since(&e)) {
            keep.push(f.vpath).map_err(write_error)?;
            return Ok(());
        }
        out.changed += 1;
        let target = root_of(f.folder).join(f.relative);
        match meta.kind {
            Kind::Dir => {
                std::fs::create_dir_all(&target)
                    .map_err(|e| failed("cannot create", &target, e))?;
            }
            Kind::File => {
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| failed("cannot create", parent, e))?;
                }
                let Some(n) = copy_file(f.real, &target, cancel)? else {
                    // Removed since it was listed: gone, as the set will have it.
                    files[f.folder].0 -= 1;
                    files[f.folder].1 -= meta.size;
                    return Ok(());
                };
                out.files_copied += 1;
                out.bytes_copied += n;
                // The copy's length is what the set holds.
                if n != meta.size {
                    files[f.folder].1 = files[f.folder].1 - meta.size + n;
                }
            }
            Kind::Symlink => {
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| failed("cannot create", parent, e))?;
                }
                copy_link(f.real, &target)?;
            }
            Kind::Other => {
                return Err(Failure::new(
                    Exit::Failed,
                    format!(
                        "{} is neither a file, a folder nor a link (a socket, a pipe or a device), so it cannot be captured. Move it out of the server folders.",
                        f.real.display()
                    ),
                ));
            }
        }
        Ok(())
    })?;
    // What the listing holds past the walk's last entry is gone too.
    if let Some(listed) = listed.as_mut() {
        while listed.head().is_some() {
            out.deleted += 1;
            listed.advance()?;
        }
    }
    out.kept = keep.count();
    // Not synced: the list is read right after the window, or kept with the copies, which are
    // not synced either.
    keep.finish(false).map_err(write_error)?;
    // Every folder of the copy gets the live folder's mode and time, deepest first (filling a
    // folder changes its time).
    let mut dirs = Vec::new();
    dirs_to_stamp(folders, &root_of, &mut dirs);
    dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    for (copy, meta) in &dirs {
        stamp_dir(copy, meta);
    }
    out.changed += out.deleted;
    out.roots = folders
        .iter()
        .enumerate()
        .map(|(i, (name, _))| (name.clone(), root_of(i)))
        .collect();
    out.infos = folders
        .iter()
        .zip(&files)
        .map(|((name, path), (n, b))| FolderInfo {
            name: name.clone(),
            source_path: path.display().to_string(),
            files: *n,
            bytes: *b,
        })
        .collect();
    Ok(out)
}

/// The live folders that have a counterpart in the copy, with their metadata.
fn dirs_to_stamp(
    folders: &[(String, PathBuf)],
    root_of: &dyn Fn(usize) -> PathBuf,
    dirs: &mut Vec<(PathBuf, std::fs::Metadata)>,
) {
    for (i, (_, live_root)) in folders.iter().enumerate() {
        let copy_root = root_of(i);
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let copy = copy_root.join(&rel);
            let live = live_root.join(&rel);
            if let Ok(meta) = std::fs::metadata(&live) {
                dirs.push((copy.clone(), meta));
            }
            let Ok(entries) = std::fs::read_dir(&copy) else {
                continue;
            };
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(rel.join(e.file_name()));
                }
            }
        }
    }
}

/// Gives a copied folder the live folder's permissions and modification time. Best effort: a
/// folder's time is not worth failing the window for. The owner keeps the right to write, so
/// the staging folder can always be removed.
fn stamp_dir(copy: &Path, live: &std::fs::Metadata) {
    let mut perms = live.permissions();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        perms.set_mode(perms.mode() | 0o700);
    }
    // On Windows this only clears the read-only attribute (the lint is about Unix modes).
    #[cfg(not(unix))]
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    let _ = std::fs::set_permissions(copy, perms);
    if let Ok(mtime) = live.modified() {
        let _ = open_dir_for_times(copy).and_then(|d| d.set_modified(mtime));
    }
}

#[cfg(unix)]
fn open_dir_for_times(dir: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::open(dir)
}

#[cfg(windows)]
fn open_dir_for_times(dir: &Path) -> std::io::Result<std::fs::File> {
    use std::os::windows::fs::OpenOptionsExt;
    // A folder opens only with backup semantics; FILE_WRITE_ATTRIBUTES is enough to set times.
    std::fs::OpenOptions::new()
        .access_mode(0x100)
        .custom_flags(0x0200_0000)
        .open(dir)
}

/// Copies a file block by block (so a stop is heard inside a large one), then gives the copy
/// the source's permissions and modification time. Returns the bytes copied, or `None` when the
/// file no longer exists.
fn copy_file(src: &Path, dst: &Path, cancel: &AtomicBool) -> Result<Option<u64>, Failure> {
    let mut from = match std::fs::File::open(src) {
        Ok(f) => f,
        Err(e) if gone(&e) => return Ok(None),
        Err(e) => return Err(failed("cannot read", src, e)),
    };
    let meta = from.metadata().map_err(|e| failed("cannot read", src, e))?;
    let mut to = std::fs::File::create(dst).map_err(|e| failed("cannot write", dst, e))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(cancelled());
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(failed("cannot read", src, e)),
        };
        to.write_all(&buf[..n])
            .map_err(|e| failed("cannot write", dst, e))?;
        total += n as u64;
    }
    if let Ok(mtime) = meta.modified() {
        to.set_modified(mtime)
            .map_err(|e| failed("cannot set the time of", dst, e))?;
    }
    drop(to);
    std::fs::set_permissions(dst, meta.permissions())
        .map_err(|e| failed("cannot set the permissions of", dst, e))?;
    Ok(Some(total))
}

fn copy_link(src: &Path, dst: &Path) -> Result<(), Failure> {
    let target = std::fs::read_link(src).map_err(|e| failed("cannot read the link", src, e))?;
    #[cfg(unix)]
    let made = std::os::unix::fs::symlink(&target, dst);
    #[cfg(windows)]
    let made = if std::fs::metadata(src).is_ok_and(|m| m.is_dir()) {
        std::os::windows::fs::symlink_dir(&target, dst)
    } else {
        std::os::windows::fs::symlink_file(&target, dst)
    };
    made.map_err(|e| failed("cannot copy the link", src, e))
}

/// After the window: stores the folders as the window had them, as a part of the set (tagged
/// as `opts` says). With the pass before the window as `base`, only the copies are read; without
/// one (`folders_before_window = false`) the copies are the whole folders.
pub async fn ingest(
    job: &super::BackupJob,
    capture: &Capture,
    base: Option<&str>,
    opts: SetOptions,
) -> Result<BackupSummary, Failure> {
    let items: Vec<SourceItem> = capture
        .roots
        .iter()
        .map(|(name, copy)| SourceItem::Path {
            source: copy.clone(),
            target: format!("{}/{name}", backupset::FOLDERS_DIR),
        })
        .collect();
    let repo = job.repo.clone();
    let sink = job.ui.repo_sink("folders");
    let base = base.map(str::to_string);
    let keep = PathFile::open(&capture.keep);
    let unchanged = capture.changed == 0;
    let summary = crate::run::blocking::blocking("storing the server folders", move || {
        let Some(base) = base else {
            return repo.backup(items, &opts, &*sink);
        };
        // What the pass before the window added is this run's too.
        let pass = repo.find_snapshot(&base)?;
        let pass_added = pass.summary.as_ref().map_or(0, |s| s.data_added);
        if unchanged {
            // The window found every entry as the pass stored it (the listing it was judged
            // by is that pass's own walk), and nothing added or gone: the pass's snapshot is
            // the folders' part as it stands, with nothing to read or write again.
            return Ok(BackupSummary {
                snapshot_id: pass.id,
                data_added: pass_added,
                ..BackupSummary::default()
            });
        }
        let mut overlaid = repo.overlay(&base, &keep, items, &opts, &*sink)?;
        overlaid.data_added += pass_added;
        Ok(overlaid)
    })
    .await??;
    if !summary.unreadable.is_empty() {
        return Err(super::unreadable_files(
            &summary.unreadable,
            "could not be stored",
        ));
    }
    Ok(summary)
}

/// [`capture`] on a blocking thread. Dropping the future (the window's budget ran out, or a stop)
/// stops the copy at the next block.
pub async fn capture_blocking(
    folders: Vec<(String, PathBuf)>,
    before: Option<Arc<Listing>>,
    dest: PathBuf,
) -> Result<Capture, Failure> {
    struct CancelOnDrop(Arc<AtomicBool>);
    impl Drop for CancelOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let cancel = Arc::new(AtomicBool::new(false));
    let _guard = CancelOnDrop(cancel.clone());
    crate::run::blocking::blocking("the capture of the server folders", move || {
        capture(&folders, before.as_deref(), &dest, &cancel)
    })
    .await?
}

/// What is running inside the window, so that an overrun can say what it waited on.
#[derive(Clone, Default)]
pub struct Track(Arc<Mutex<Vec<String>>>);

impl Track {
    pub fn start(&self, what: &str) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(what.to_string());
    }

    pub fn end(&self, what: &str) {
        let mut running = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = running.iter().position(|r| r == what) {
            running.remove(i);
        }
    }

    pub fn running(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The failure of a window that ran past `wait.max_window`. Maintenance mode is put back as
/// found right after; the run exits 1 (the run failed, nothing claims to be complete).
pub fn overran(budget: Duration, running: &[String], previous: bool) -> Failure {
    let what = if running.is_empty() {
        "the window's work".to_string()
    } else {
        running.join(" and ")
    };
    Failure::new(
        Exit::Failed,
        format!(
            "the maintenance window overran its budget (wait.max_window = {}): {what} had not finished. octobackup stopped it, put maintenance mode back {} as found, and marked nothing complete; the set is incomplete. Find out why {what} was slow, or raise wait.max_window.",
            humantime::format_duration(budget),
            if previous { "(on)" } else { "(off)" },
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, bytes: &[u8]) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }

    fn listed(l: &Listing) -> Vec<(String, Meta)> {
        let mut r = ListingReader::open(l).unwrap();
        let mut out = Vec::new();
        while let Some((p, m)) = r.head() {
            out.push((String::from_utf8_lossy(p).into_owned(), m.clone()));
            r.advance().unwrap();
        }
        out
    }

    fn kept(c: &Capture) -> Vec<String> {
        use octobackup_repo::SortedPaths;
        PathFile::open(&c.keep)
            .sorted()
            .unwrap()
            .map(|p| String::from_utf8(p.unwrap()).unwrap())
            .collect()
    }

    /// The listing the pass's walk writes (from rustic's nodes, roots through `stat`) is the
    /// listing a walk of the folders takes (from `lstat`), record for record: otherwise the
    /// window would take untouched entries for changed ones and copy them.
    #[test]
    fn the_listing_the_pass_writes_is_the_listing_a_walk_takes() {
        let dir = tempfile::tempdir().unwrap();
        let packages = dir.path().join("Packages");
        let logs = dir.path().join("TaskLogs");
        write(&packages.join("feeds/Acme/Acme.1.0.0.nupkg"), b"one");
        write(&packages.join("feeds/Acme/Acme.1.0.1.nupkg"), b"two two");
        write(&packages.join("feeds/Zed/Zed.1.nupkg"), b"");
        std::fs::create_dir_all(packages.join("empty")).unwrap();
        for n in 0..50 {
            write(&logs.join(format!("ServerTasks-{n}.log.txt")), b"log\n");
        }
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            std::os::unix::fs::symlink("feeds/Acme", packages.join("latest")).unwrap();
            let odd = std::ffi::OsStr::from_bytes(b"odd-\xff.log");
            write(&logs.join(odd), b"not unicode");
        }
        let folders = vec![
            ("TaskLogs".to_string(), logs.clone()),
            ("Packages".to_string(), packages.clone()),
        ];
        let (walked_at, taken_at) = (dir.path().join("walked"), dir.path().join("taken"));
        std::fs::create_dir_all(&walked_at).unwrap();
        std::fs::create_dir_all(&taken_at).unwrap();

        let (recorder, pending) = Listing::recorder(&walked_at).unwrap();
        let walk = super::super::store::walk_folders(&folders, recorder).unwrap();
        let walked = pending.done.recv().unwrap().unwrap();
        drop(walk);
        let taken = Listing::take(&folders, &taken_at).unwrap();

        assert_eq!(walked.entries, taken.entries);
        assert_eq!(listed(&walked), listed(&taken));
        assert_eq!(
            std::fs::read(&walked.file).unwrap(),
            std::fs::read(&taken.file).unwrap()
        );
        // And the window, walking the same folders, finds nothing changed (but the name that
        // is not Unicode, which it always copies).
        let c = capture(
            &folders,
            Some(&walked),
            &walked_at.join(CAPTURE_DIR),
            &AtomicBool::new(false),
        )
        .unwrap();
        let odd = u64::from(cfg!(unix));
        assert_eq!((c.changed, c.files_copied), (odd, odd), "{c:?}");
    }

    /// A walk that stops before its last entry (the pass failed) leaves no listing to judge
    /// the window by.
    #[tokio::test]
    async fn a_walk_that_stopped_early_gives_no_listing() {
        let dir = tempfile::tempdir().unwrap();
        let (recorder, pending) = Listing::recorder(dir.path()).unwrap();
        drop(recorder);
        let e = pending.finished().await.unwrap_err();
        assert!(
            e.message.contains("stopped before it listed them all"),
            "{e:?}"
        );
    }

    #[test]
    fn only_what_changed_since_the_listing_is_copied() {
        let dir = tempfile::tempdir().unwrap();
        let packages = dir.path().join("Packages");
        let logs = dir.path().join("TaskLogs");
        write(&packages.join("a/A.1.0.0.nupkg"), b"one");
        write(&packages.join("a/A.1.0.1.nupkg"), b"two");
        write(&logs.join("ServerTasks-1.log.txt"), b"started\n");
        write(&logs.join("ServerTasks-2.log.txt"), b"done\n");
        // Not in name order, as a config may list them: the listing is in tree order all the same.
        let folders = vec![
            ("TaskLogs".to_string(), logs.clone()),
            ("Packages".to_string(), packages.clone()),
        ];
        let staging = dir.path().join("staging");
        std::fs::create_dir_all(&staging).unwrap();
        let before = Listing::take(&folders, &staging).unwrap();
        // Roots, folders and files, in tree order, each once.
        let listed = listed(&before);
        assert_eq!(
            listed.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
            [
                "/folders/Packages",
                "/folders/Packages/a",
                "/folders/Packages/a/A.1.0.0.nupkg",
                "/folders/Packages/a/A.1.0.1.nupkg",
                "/folders/TaskLogs",
                "/folders/TaskLogs/ServerTasks-1.log.txt",
                "/folders/TaskLogs/ServerTasks-2.log.txt",
            ]
        );
        assert_eq!(before.entries, 7);
        assert_eq!(listed[2].1.kind, Kind::File);
        assert_eq!(listed[2].1.size, 3);
        assert_eq!(listed[1].1.kind, Kind::Dir);

        // A log appended, a package added, one removed.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(logs.join("ServerTasks-1.log.txt"))
            .unwrap();
        f.write_all(b"finished\n").unwrap();
        drop(f);
        write(&packages.join("b/B.2.0.0.nupkg"), b"three");
        std::fs::remove_file(packages.join("a/A.1.0.1.nupkg")).unwrap();

        let dest = staging.join(CAPTURE_DIR);
        let c = capture(&folders, Some(&before), &dest, &AtomicBool::new(false)).unwrap();
        assert_eq!(c.files_copied, 2, "{c:?}");
        assert_eq!(c.deleted, 1);
        assert_eq!(
            std::fs::read(dest.join("0/ServerTasks-1.log.txt")).unwrap(),
            b"started\nfinished\n"
        );
        assert_eq!(
            std::fs::read(dest.join("1/b/B.2.0.0.nupkg")).unwrap(),
            b"three"
        );
        assert!(!dest.join("1/a/A.1.0.0.nupkg").exists());
        let kept = kept(&c);
        assert_eq!(
            kept,
            [
                "/folders",
                "/folders/Packages/a/A.1.0.0.nupkg",
                "/folders/TaskLogs",
                "/folders/TaskLogs/ServerTasks-2.log.txt",
            ],
            "the folders that gained or lost an entry changed; the appended log changed"
        );
        assert_eq!(c.kept, 4);
        // The copy keeps the source's time.
        let live = std::fs::metadata(logs.join("ServerTasks-1.log.txt")).unwrap();
        let copy = std::fs::metadata(dest.join("0/ServerTasks-1.log.txt")).unwrap();
        assert_eq!(live.modified().unwrap(), copy.modified().unwrap());
        // The folders' figures in the config's order.
        assert_eq!(c.infos[1].name, "Packages");
        assert_eq!(c.infos[1].files, 2);
        assert_eq!(c.infos[0].bytes, 22);
    }

    /// `a-b.txt` and `a.txt` come before `a/x.txt` as text but after it in tree order: the
    /// listing and the window's walk must meet every entry in the same order, so what is gone
    /// anywhere is counted and everything else is kept.
    #[test]
    fn the_walk_and_the_listing_meet_in_tree_order() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("TaskLogs");
        for name in ["a/x.txt", "a/y/z.txt", "a-b.txt", "a.txt", "b.txt"] {
            write(&logs.join(name), name.as_bytes());
        }
        let folders = vec![("TaskLogs".to_string(), logs.clone())];
        let staging = dir.path().join("staging");
        std::fs::create_dir_all(&staging).unwrap();
        let before = Listing::take(&folders, &staging).unwrap();
        assert_eq!(
            listed(&before)
                .into_iter()
                .map(|(p, _)| p)
                .collect::<Vec<_>>(),
            [
                "/folders/TaskLogs",
                "/folders/TaskLogs/a",
                "/folders/TaskLogs/a/x.txt",
                "/folders/TaskLogs/a/y",
                "/folders/TaskLogs/a/y/z.txt",
                "/folders/TaskLogs/a-b.txt",
                "/folders/TaskLogs/a.txt",
                "/folders/TaskLogs/b.txt",
            ]
        );
        for gone in ["a/x.txt", "a-b.txt", "b.txt"] {
            std::fs::remove_file(logs.join(gone)).unwrap();
        }
        let c = capture(
            &folders,
            Some(&before),
            &staging.join(CAPTURE_DIR),
            &AtomicBool::new(false),
        )
        .unwrap();
        assert_eq!(c.deleted, 3, "{c:?}");
        assert_eq!(c.files_copied, 0, "{c:?}");
        assert_eq!(
            kept(&c),
            [
                "/folders",
                "/folders/TaskLogs/a/y",
                "/folders/TaskLogs/a/y/z.txt",
                "/folders/TaskLogs/a.txt",
            ]
        );
        // The two folders that lost an entry, and the three entries.
        assert_eq!(c.changed, 5, "{c:?}");
    }

    /// A name that is not valid Unicode is listed, but never taken as unchanged.
    #[cfg(unix)]
    #[test]
    fn a_name_that_is_not_unicode_is_always_copied() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("TaskLogs");
        let odd = logs.join(std::ffi::OsStr::from_bytes(b"caf\xe9.log"));
        write(&odd, b"latin-1");
        write(&logs.join("z.log"), b"z");
        let folders = vec![("TaskLogs".to_string(), logs.clone())];
        let staging = dir.path().join("staging");
        std::fs::create_dir_all(&staging).unwrap();
        let before = Listing::take(&folders, &staging).unwrap();
        assert_eq!(before.entries, 3);
        let dest = staging.join(CAPTURE_DIR);
        let c = capture(&folders, Some(&before), &dest, &AtomicBool::new(false)).unwrap();
        assert_eq!(c.files_copied, 1, "{c:?}");
        assert_eq!(c.deleted, 0, "{c:?}");
        assert_eq!(
            kept(&c),
            ["/folders", "/folders/TaskLogs", "/folders/TaskLogs/z.log"]
        );
        assert_eq!(
            std::fs::read(dest.join("0").join(odd.file_name().unwrap())).unwrap(),
            b"latin-1"
        );
    }

    #[test]
    fn without_a_listing_everything_is_copied() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("TaskLogs");
        write(&logs.join("x/ServerTasks-1.log.txt"), b"log");
        std::fs::create_dir_all(logs.join("empty")).unwrap();
        let folders = vec![("TaskLogs".to_string(), logs)];
        let dest = dir.path().join("window");
        let c = capture(&folders, None, &dest, &AtomicBool::new(false)).unwrap();
        assert_eq!(kept(&c), ["/folders"]);
        assert_eq!(c.files_copied, 1);
        assert!(dest.join("0/empty").is_dir());
        assert_eq!(
            std::fs::read(dest.join("0/x/ServerTasks-1.log.txt")).unwrap(),
            b"log"
        );
    }

    #[test]
    fn a_stop_ends_the_capture() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("TaskLogs");
        write(&logs.join("a.txt"), b"a");
        let folders = vec![("TaskLogs".to_string(), logs)];
        let e = capture(
            &folders,
            None,
            &dir.path().join("w"),
            &AtomicBool::new(true),
        )
        .unwrap_err();
        assert!(e.message.contains("stopped"), "{}", e.message);
    }
}
