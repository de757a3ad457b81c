//! What a walk started ahead of a backup ([`crate::WalkedAhead`]) met, entry by entry, for a
//! caller that must know exactly what the backup stores: octobackup's window is judged by a
//! listing of the server folders, and a listing written by the pass's own walk is both free (no
//! second walk of 28,000 files before the pass, issue 13) and exact (each entry as the pass
//! stored it, where a listing taken before the pass could miss what appeared meanwhile).

use std::fs;
use std::path::Path;

use rustic_core::repofile::{Node, NodeType};

use crate::browse::EntryKind;

/// One entry as the walk met it: the metadata the backup stores for it, in the form the
/// standard library gives it for the same entry (so that a later `lstat` of an untouched entry
/// gives the same values).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalkedEntry {
    pub kind: EntryKind,
    /// 0 for a folder.
    pub size: u64,
    /// Nanoseconds since the Unix epoch.
    pub mtime: Option<i128>,
    /// Unix: the inode's change time; Windows: the creation time (nanoseconds).
    pub change: Option<i128>,
    /// Unix: the inode number; Windows: none.
    pub id: Option<u64>,
}

impl WalkedEntry {
    /// From the standard library's metadata of the entry (`lstat`; for a walked folder's root,
    /// `stat`).
    pub fn of(meta: &fs::Metadata) -> WalkedEntry {
        let ty = meta.file_type();
        let kind = if ty.is_symlink() {
            EntryKind::Symlink
        } else if ty.is_dir() {
            EntryKind::Dir
        } else if ty.is_file() {
            EntryKind::File
        } else {
            EntryKind::Other
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
        WalkedEntry {
            kind,
            size: if kind == EntryKind::Dir {
                0
            } else {
                meta.len()
            },
            mtime: meta.modified().ok().map(nanos),
            change,
            id,
        }
    }

    /// From the node rustic's walk built from the entry's `lstat` (`ignore/mapper.rs`: size 0
    /// for a folder, ctime from `ctime`/`ctime_nsec` on Unix and the creation time on Windows,
    /// the inode on Unix only).
    pub(crate) fn of_node(node: &Node) -> WalkedEntry {
        let kind = match node.node_type {
            NodeType::File => EntryKind::File,
            NodeType::Dir => EntryKind::Dir,
            NodeType::Symlink { .. } => EntryKind::Symlink,
            _ => EntryKind::Other,
        };
        let m = &node.meta;
        WalkedEntry {
            kind,
            size: m.size,
            mtime: m.mtime.map(|t| t.as_nanosecond()),
            change: m.ctime.map(|t| t.as_nanosecond()),
            id: cfg!(unix).then_some(m.inode),
        }
    }
}

/// Told every entry a walk started ahead yields, on the walk's thread, in the order the backup
/// stores them (tree order: each folder right before what it holds, names in byte order).
pub trait WalkRecorder: Send + 'static {
    /// `path`: the snapshot path, names joined by `/` (`/folders/Packages/a.nupkg`), as bytes
    /// (`OsStr::as_encoded_bytes`); `exact`: every name in it is valid Unicode.
    fn entry(&mut self, path: &[u8], exact: bool, entry: &WalkedEntry);
    /// The walk met its last entry. Not called when the backup stopped taking entries early.
    fn finish(self: Box<Self>);
}

/// The snapshot path of `path` (a virtual path the source built) as `/`-joined bytes, and
/// whether every name in it is valid Unicode.
pub(crate) fn snapshot_bytes(path: &Path) -> (Vec<u8>, bool) {
    // The source builds its paths from `/` and names alone: on Unix they are already the
    // snapshot path (28,000 entries a night: no need to split them again).
    #[cfg(unix)]
    {
        let bytes = path.as_os_str().as_encoded_bytes();
        if bytes.first() == Some(&b'/') && !bytes.ends_with(b"/") && !has_dot_or_empty_name(bytes) {
            return (bytes.to_vec(), std::str::from_utf8(bytes).is_ok());
        }
    }
    let mut out = Vec::with_capacity(path.as_os_str().len() + 1);
    let mut exact = true;
    for c in path.components() {
        if let std::path::Component::Normal(name) = c {
            out.push(b'/');
            out.extend_from_slice(name.as_encoded_bytes());
            exact &= name.to_str().is_some();
        }
    }
    (out, exact)
}

/// Whether a `/`-separated path has a `.` or `..` name or an empty one (`//`), which
/// `Path::components` would drop or keep differently from the plain bytes.
#[cfg(unix)]
fn has_dot_or_empty_name(bytes: &[u8]) -> bool {
    bytes[1..]
        .split(|b| *b == b'/')
        .any(|name| name.is_empty() || name == b"." || name == b"..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_paths_are_slash_joined_names() {
        let (p, exact) = snapshot_bytes(Path::new("/folders/Packages/a.nupkg"));
        assert_eq!(
            (p.as_slice(), exact),
            (b"/folders/Packages/a.nupkg".as_slice(), true)
        );
        let (p, _) = snapshot_bytes(Path::new("/folders//Packages/./a"));
        assert_eq!(p, b"/folders/Packages/a");
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            let odd = std::ffi::OsStr::from_bytes(b"/folders/TaskLogs/\xff.log");
            let (p, exact) = snapshot_bytes(Path::new(odd));
            assert_eq!((p.as_slice(), exact), (odd.as_bytes(), false));
        }
    }
}
