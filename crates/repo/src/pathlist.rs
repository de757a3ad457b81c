//! Snapshot paths in tree order, read as a stream: how [`crate::Repo::overlay`] is told which
//! entries of its base to keep without holding a set of every path (issue 13: a set of 100,000
//! kept paths, and its copy, were a fifth of a backup's memory; 10 million task logs would need
//! gigabytes).
//!
//! Tree order is the order restic's trees hold entries in, walked depth first: each folder before
//! what it holds, names compared as bytes (on Windows, the WTF-8 bytes of
//! `OsStr::as_encoded_bytes`). Comparing paths as byte strings with `/` below every other byte
//! gives it: `/a/b` comes after `/a` and before `/a.b`.
//!
//! [`PathFile`] keeps such a list in a file, each path stored as the length it shares with the
//! one before and the rest (`/folders/TaskLogs/servertasks-1041.log.txt` after
//! `/folders/TaskLogs/servertasks-1040.log.txt` costs 7 bytes).

use std::cmp::Ordering;
use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Compares two snapshot paths in tree order (see the module).
pub fn tree_order(a: &[u8], b: &[u8]) -> Ordering {
    let key = |c: &u8| if *c == b'/' { 0 } else { *c };
    a.iter().map(key).cmp(b.iter().map(key))
}

/// Paths in tree order, to be read once per call (the overlay reads them twice at most).
pub trait SortedPaths: Sync {
    /// The paths, each at most once, in tree order.
    fn sorted(&self) -> io::Result<Box<dyn Iterator<Item = io::Result<Vec<u8>>> + '_>>;
}

/// A set in memory: sorted on each call (for small sets and tests).
impl SortedPaths for HashSet<String> {
    fn sorted(&self) -> io::Result<Box<dyn Iterator<Item = io::Result<Vec<u8>>> + '_>> {
        let mut paths: Vec<&[u8]> = self.iter().map(|p| p.as_bytes()).collect();
        paths.sort_by(|a, b| tree_order(a, b));
        Ok(Box::new(paths.into_iter().map(|p| Ok(p.to_vec()))))
    }
}

/// A list of paths in tree order, in a file written by [`PathFileWriter`].
#[derive(Debug, Clone)]
pub struct PathFile {
    path: PathBuf,
}

const MAGIC: &[u8; 8] = b"obpaths1";

impl PathFile {
    /// The list in `path` (read when [`SortedPaths::sorted`] is called).
    pub fn open(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl SortedPaths for PathFile {
    fn sorted(&self) -> io::Result<Box<dyn Iterator<Item = io::Result<Vec<u8>>> + '_>> {
        let file = File::open(&self.path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.path.display())))?;
        let mut reader = BufReader::with_capacity(64 << 10, file);
        let mut magic = [0u8; 8];
        if reader.read_exact(&mut magic).is_err() || &magic != MAGIC {
            return Err(bad_list(&self.path, "it is not a list of paths"));
        }
        Ok(Box::new(PathFileIter {
            reader,
            last: Vec::new(),
            file: &self.path,
            done: false,
        }))
    }
}

fn bad_list(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the path list {} cannot be read: {why}", path.display()),
    )
}

struct PathFileIter<'a> {
    reader: BufReader<File>,
    last: Vec<u8>,
    file: &'a Path,
    done: bool,
}

impl PathFileIter<'_> {
    fn read_next(&mut self) -> io::Result<Option<Vec<u8>>> {
        if self.reader.fill_buf()?.is_empty() {
            return Ok(None);
        }
        let shared = read_varint(&mut self.reader)?;
        let rest = read_varint(&mut self.reader)?;
        let shared = usize::try_from(shared)
            .ok()
            .filter(|s| *s <= self.last.len())
            .ok_or_else(|| bad_list(self.file, "a path shares more than the one before"))?;
        let rest = usize::try_from(rest)
            .ok()
            .filter(|r| *r <= 1 << 20)
            .ok_or_else(|| bad_list(self.file, "a path is longer than 1 MiB"))?;
        self.last.truncate(shared);
        let start = self.last.len();
        self.last.resize(start + rest, 0);
        self.reader.read_exact(&mut self.last[start..])?;
        Ok(Some(self.last.clone()))
    }
}

impl Iterator for PathFileIter<'_> {
    type Item = io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.read_next() {
            Ok(Some(p)) => Some(Ok(p)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Writes a [`PathFile`], one path after the other in tree order.
pub struct PathFileWriter {
    out: BufWriter<File>,
    path: PathBuf,
    last: Vec<u8>,
    count: u64,
}

impl PathFileWriter {
    pub fn create(path: &Path) -> io::Result<Self> {
        let mut out = BufWriter::with_capacity(64 << 10, File::create(path)?);
        out.write_all(MAGIC)?;
        Ok(Self {
            out,
            path: path.to_path_buf(),
            last: Vec::new(),
            count: 0,
        })
    }

    /// Adds `path`, which must come after every path added before (tree order).
    pub fn push(&mut self, path: &[u8]) -> io::Result<()> {
        if self.count > 0 && tree_order(&self.last, path) != Ordering::Less {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} does not come after {} in tree order",
                    String::from_utf8_lossy(path),
                    String::from_utf8_lossy(&self.last)
                ),
            ));
        }
        let shared = self
            .last
            .iter()
            .zip(path)
            .take_while(|(a, b)| a == b)
            .count();
        write_varint(&mut self.out, shared as u64)?;
        write_varint(&mut self.out, (path.len() - shared) as u64)?;
        self.out.write_all(&path[shared..])?;
        self.last.clear();
        self.last.extend_from_slice(path);
        self.count += 1;
        Ok(())
    }

    /// How many paths were added.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Writes out what is buffered (and, with `durable`, to the disk) and returns the list.
    pub fn finish(self, durable: bool) -> io::Result<PathFile> {
        let file = self
            .out
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?;
        if durable {
            file.sync_all()?;
        }
        Ok(PathFile { path: self.path })
    }
}

/// LEB128, as many bytes as the value needs.
pub fn write_varint(out: &mut impl Write, mut v: u64) -> io::Result<()> {
    let mut buf = [0u8; 10];
    let mut n = 0;
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            buf[n] = byte;
            n += 1;
            break;
        }
        buf[n] = byte | 0x80;
        n += 1;
    }
    out.write_all(&buf[..n])
}

pub fn read_varint(input: &mut impl Read) -> io::Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let mut byte = [0u8; 1];
        input.read_exact(&mut byte)?;
        v |= u64::from(byte[0] & 0x7f) << shift;
        if byte[0] & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "a number in a path list is too long",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_order_puts_a_folder_before_what_it_holds_and_names_in_byte_order() {
        let mut paths = vec!["/a.b", "/a/b", "/a", "/a/b/c", "/B", "/a-", "/a/a"];
        paths.sort_by(|a, b| tree_order(a.as_bytes(), b.as_bytes()));
        assert_eq!(paths, ["/B", "/a", "/a/a", "/a/b", "/a/b/c", "/a-", "/a.b"]);
    }

    #[test]
    fn a_path_file_reads_back_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keep");
        let paths: Vec<String> = ["/folders", "/folders/TaskLogs"]
            .iter()
            .map(|s| s.to_string())
            .chain((1000..1200).map(|n| format!("/folders/TaskLogs/servertasks-{n}.log.txt")))
            .chain(["/folders/TaskLogs/ü\nx".to_string()])
            .collect();
        let mut w = PathFileWriter::create(&file).unwrap();
        for p in &paths {
            w.push(p.as_bytes()).unwrap();
        }
        assert_eq!(w.count(), paths.len() as u64);
        let list = w.finish(true).unwrap();
        let back: Vec<String> = list
            .sorted()
            .unwrap()
            .map(|p| String::from_utf8(p.unwrap()).unwrap())
            .collect();
        assert_eq!(back, paths);
        // Shared prefixes: far less than the paths themselves.
        let size = std::fs::metadata(&file).unwrap().len();
        let plain: usize = paths.iter().map(String::len).sum();
        assert!(size * 3 < plain as u64, "{size} of {plain}");
        // The same as a set sorted in memory.
        let set: HashSet<String> = paths.iter().cloned().collect();
        let sorted: Vec<Vec<u8>> = set.sorted().unwrap().map(Result::unwrap).collect();
        assert_eq!(
            sorted,
            paths
                .iter()
                .map(|p| p.as_bytes().to_vec())
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_path_out_of_order_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = PathFileWriter::create(&dir.path().join("keep")).unwrap();
        w.push(b"/a/b").unwrap();
        assert!(w.push(b"/a").is_err());
        assert!(w.push(b"/a/b").is_err());
        w.push(b"/a.b").unwrap();
    }

    #[test]
    fn a_file_that_is_not_a_list_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keep");
        std::fs::write(&file, b"{\"keep\": []}").unwrap();
        let err = PathFile::open(&file).sorted().err().unwrap();
        assert!(err.to_string().contains("not a list of paths"), "{err}");
        // Cut short: an error, not a shorter list.
        let mut w = PathFileWriter::create(&file).unwrap();
        w.push(b"/folders/TaskLogs/a").unwrap();
        w.finish(false).unwrap();
        let bytes = std::fs::read(&file).unwrap();
        std::fs::write(&file, &bytes[..bytes.len() - 3]).unwrap();
        let read: Vec<_> = PathFile::open(&file).sorted().unwrap().collect();
        assert!(read.last().unwrap().is_err(), "{read:?}");
    }
}
