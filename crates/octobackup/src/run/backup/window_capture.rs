//! The server folders inside the maintenance window, without the repository: a slow or missing
//! repository must never lengthen the time Octopus spends in maintenance mode.
//!
//! Before the window, octobackup lists the folders (path, kind, size, mtime, and the file's
//! identity: inode and change time on Unix, creation time on Windows) into the run's staging
//! folder, then stores them once (the pass before the window). Inside the window it lists them
//! again, copies what differs from that listing onto the run's staging folder, and leaves: a
//! slow or missing repository cannot lengthen the window. After the window the set's folder
//! tree is written as the pass before the window, less every entry the window did not keep
//! unchanged, plus the copies ([`octobackup_repo::Repo::overlay`]): exactly the folders as they
//! were inside the window.
//!
//! The listing is taken *before* the pass reads the folders, so anything that changes while the
//! pass runs differs from it and is copied inside the window; an entry the pass stored that is
//! not in the window at all is simply not kept.

use crate::backupset::{self, manifest::FolderInfo};
use crate::error::{Exit, Failure};
use octobackup_repo::{BackupSummary, SetOptions, SourceItem};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The listing's file in the run's staging folder.
pub const LISTING_FILE: &str = "window-listing.json";
/// The folder in the run's staging folder that receives the copies made inside the window.
pub const CAPTURE_DIR: &str = "window";

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Dir,
    Link,
    Other,
}

/// What a listing records of one entry: enough to tell that it was not touched.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
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
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub exact: bool,
}

fn yes() -> bool {
    true
}
fn is_true(b: &bool) -> bool {
    *b
}

impl Meta {
    fn of(meta: &std::fs::Metadata, exact: bool) -> Meta {
        let ty = meta.file_type();
        let kind = if ty.is_symlink() {
            Kind::Link
        } else if ty.is_dir() {
            Kind::Dir
        } else if ty.is_file() {
            Kind::File
        } else {
            Kind::Other
        };
        let nanos = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as i128)
                .unwrap_or_else(|e| -(e.duration().as_nanos() as i128))
        };
        #[cfg(unix)]
        let (change, id) = {
            use std::os::unix::fs::MetadataExt;
            (
                Some(meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128),
                Some(meta.ino()),
            )
        };
        #[cfg(not(unix))]
        let (change, id) = (meta.created().ok().map(nanos), None);
        Meta {
            kind,
            size: if kind == Kind::Dir { 0 } else { meta.len() },
            mtime: meta.modified().ok().map(nanos),
            change,
            id,
            exact,
        }
    }

    /// The same entry, untouched since `earlier` was listed.
    fn unchanged_since(&self, earlier: &Meta) -> bool {
        self.exact && earlier.exact && self == earlier
    }
}

/// Every entry under the server folders, by snapshot path (`/folders/Packages/a/b.nupkg`; each
/// folder's root is listed as `/folders/Packages`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Listing {
    pub entries: BTreeMap<String, Meta>,
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
struct Found {
    /// Index of its server folder.
    folder: usize,
    vpath: String,
    /// Path relative to its server folder (empty for the root).
    relative: PathBuf,
    real: PathBuf,
    meta: std::fs::Metadata,
    exact: bool,
}

/// Walks the folders (without following links), calling `visit` on every entry, roots first,
/// each folder before what it holds.
fn walk(
    folders: &[(String, PathBuf)],
    cancel: &AtomicBool,
    mut visit: impl FnMut(Found) -> Result<(), Failure>,
) -> Result<(), Failure> {
    for (index, (name, root)) in folders.iter().enumerate() {
        let meta = std::fs::metadata(root).map_err(|e| failed("cannot read", root, e))?;
        let vroot = format!("{}/{name}", backupset::FOLDERS_DIR);
        let mut stack = vec![(root.clone(), PathBuf::new(), vroot.clone(), true)];
        visit(Found {
            folder: index,
            vpath: vroot,
            relative: PathBuf::new(),
            real: root.clone(),
            meta,
            exact: true,
        })?;
        while let Some((dir, rel, vdir, exact_dir)) = stack.pop() {
            if cancel.load(Ordering::Relaxed) {
                return Err(cancelled());
            }
            // Octopus runs during the listing before the window: what disappears meanwhile is gone,
            // not an error (the window then finds it gone too).
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if gone(&e) && dir != *root => continue,
                Err(e) => return Err(failed("cannot list", &dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| failed("cannot list", &dir, e))?;
                let real = entry.path();
                // The entry's own metadata (links not followed), looked up from its folder rather
                // than by its whole path again: the walk stats every one of 25,000 task logs.
                let meta = match entry.metadata() {
                    Ok(meta) => meta,
                    Err(e) if gone(&e) => continue,
                    Err(e) => return Err(failed("cannot read", &real, e)),
                };
                let file_name = entry.file_name();
                let (name, exact) = match file_name.to_str() {
                    Some(n) => (n.to_string(), exact_dir),
                    None => (file_name.to_string_lossy().into_owned(), false),
                };
                let vpath = format!("{vdir}/{name}");
                let relative = rel.join(&file_name);
                if meta.is_dir() {
                    stack.push((real.clone(), relative.clone(), vpath.clone(), exact));
                }
                visit(Found {
                    folder: index,
                    vpath,
                    relative,
                    real,
                    meta,
                    exact,
                })?;
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

impl Listing {
    /// Lists the folders as they are now (metadata only: no file is opened).
    pub fn take(folders: &[(String, PathBuf)]) -> Result<Listing, Failure> {
        let mut entries = BTreeMap::new();
        walk(folders, &AtomicBool::new(false), |f| {
            entries.insert(f.vpath, Meta::of(&f.meta, f.exact));
            Ok(())
        })?;
        Ok(Listing { entries })
    }

    /// Writes the listing into the run's staging folder (durably: the window is judged by it).
    pub fn save(&self, staging: &Path) -> Result<PathBuf, Failure> {
        let path = staging.join(LISTING_FILE);
        let json = serde_json::to_vec(self).expect("a listing serializes");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&path)?;
            f.write_all(&json)?;
            f.sync_all()
        };
        write().map_err(|e| {
            if crate::run::space::is_disk_full(&e.to_string()) {
                // Said as a full staging share is said for BACKUP: where, how much, what to do.
                let _ = std::fs::remove_file(&path);
                return crate::run::space::full(
                    Exit::Failed,
                    "the staging folder",
                    staging,
                    Some(json.len() as u64),
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
        })?;
        Ok(path)
    }

    pub fn load(path: &Path) -> Result<Listing, Failure> {
        let bytes = std::fs::read(path).map_err(|e| failed("cannot read", path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| failed("cannot parse", path, e))
    }
}

/// What the window captured: handed to [`ingest`] once maintenance mode is back (or kept on
/// staging with its copies for the next run, `run/backup/kept.rs`).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Capture {
    /// Snapshot paths of the entries the window left as the pass before it stored them.
    pub keep: HashSet<String>,
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
    let mut seen = 0u64;
    let root_of = |i: usize| dest.join(i.to_string());
    for i in 0..folders.len() {
        let root = root_of(i);
        std::fs::create_dir_all(&root).map_err(|e| failed("cannot create", &root, e))?;
    }
    walk(folders, cancel, |f| {
        let meta = Meta::of(&f.meta, f.exact);
        if meta.kind == Kind::File {
            files[f.folder].0 += 1;
            files[f.folder].1 += meta.size;
        }
        let earlier = before.and_then(|l| l.entries.get(&f.vpath));
        if earlier.is_some() {
            seen += 1;
        }
        if earlier.is_some_and(|e| meta.unchanged_since(e)) {
            out.keep.insert(f.vpath);
            return Ok(());
        }
        out.changed += 1;
        let target = root_of(f.folder).join(&f.relative);
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
                let Some(n) = copy_file(&f.real, &target, cancel)? else {
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
            Kind::Link => {
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| failed("cannot create", parent, e))?;
                }
                copy_link(&f.real, &target)?;
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
    // Every folder of the copy gets the live folder's mode and time, deepest first (filling a
    // folder changes its time).
    let mut dirs = Vec::new();
    dirs_to_stamp(folders, &root_of, &mut dirs);
    dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    for (copy, meta) in &dirs {
        stamp_dir(copy, meta);
    }
    out.deleted = before.map_or(0, |l| l.entries.len() as u64 - seen);
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
    let mut keep = capture.keep.clone();
    // The folder above the server folders is the pass's own, never listed.
    keep.insert(backupset::FOLDERS_DIR.to_string());
    let summary =
        crate::run::blocking::blocking("storing the server folders", move || match base {
            Some(base) => repo.overlay(&base, &keep, items, &opts, &*sink),
            None => repo.backup(items, &opts, &*sink),
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

    #[test]
    fn only_what_changed_since_the_listing_is_copied() {
        let dir = tempfile::tempdir().unwrap();
        let packages = dir.path().join("Packages");
        let logs = dir.path().join("TaskLogs");
        write(&packages.join("a/A.1.0.0.nupkg"), b"one");
        write(&packages.join("a/A.1.0.1.nupkg"), b"two");
        write(&logs.join("ServerTasks-1.log.txt"), b"started\n");
        write(&logs.join("ServerTasks-2.log.txt"), b"done\n");
        let folders = vec![
            ("Packages".to_string(), packages.clone()),
            ("TaskLogs".to_string(), logs.clone()),
        ];
        let before = Listing::take(&folders).unwrap();
        assert!(
            before
                .entries
                .contains_key("/folders/Packages/a/A.1.0.0.nupkg")
        );
        assert!(before.entries.contains_key("/folders/TaskLogs"));

        // Saved and read back unchanged.
        let staging = dir.path().join("staging");
        std::fs::create_dir_all(&staging).unwrap();
        let saved = before.save(&staging).unwrap();
        assert_eq!(Listing::load(&saved).unwrap(), before);

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
            std::fs::read(dest.join("1/ServerTasks-1.log.txt")).unwrap(),
            b"started\nfinished\n"
        );
        assert_eq!(
            std::fs::read(dest.join("0/b/B.2.0.0.nupkg")).unwrap(),
            b"three"
        );
        assert!(!dest.join("0/a/A.1.0.0.nupkg").exists());
        assert!(c.keep.contains("/folders/Packages/a/A.1.0.0.nupkg"));
        assert!(c.keep.contains("/folders/TaskLogs/ServerTasks-2.log.txt"));
        assert!(!c.keep.contains("/folders/TaskLogs/ServerTasks-1.log.txt"));
        assert!(!c.keep.contains("/folders/Packages/a/A.1.0.1.nupkg"));
        // The copy keeps the source's time.
        let live = std::fs::metadata(logs.join("ServerTasks-1.log.txt")).unwrap();
        let copy = std::fs::metadata(dest.join("1/ServerTasks-1.log.txt")).unwrap();
        assert_eq!(live.modified().unwrap(), copy.modified().unwrap());
        assert_eq!(c.infos[0].files, 2);
        assert_eq!(c.infos[1].bytes, 22);
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
        assert!(c.keep.is_empty());
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
