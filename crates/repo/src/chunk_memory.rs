//! What a part stored of each large file, chunk by chunk, kept in a file beside the state
//! between nights (rustic_core change 7, `ChunkMemory`). SQL Server writes the database
//! backup whole every night, so restic and rustic chunk and SHA-256 every byte of it again
//! although most of it did not change; with the chunks remembered, a chunk found again at the
//! same offset with the same bytes (same fingerprint) is taken as it is, and only the rest is
//! chunked, hashed and stored.
//!
//! A fingerprint is keyed BLAKE3 of the chunk's id and bytes, the key derived from the
//! repository's master key: cryptographic (two chunks with one fingerprint cannot be found,
//! let alone made by someone who writes into the database), bound to the id (entries cannot be
//! swapped), and useless to anyone without the repository's key. Nothing depends on the file
//! being there or intact: a missing, damaged or foreign file only means every chunk is hashed
//! again, and a remembered blob the repository no longer has is stored again.
//!
//! The file (little-endian): the magic line, then per file its target path (u32 length and
//! UTF-8) and chunk count (u64), then each chunk's offset (u64), length (u64), id (32 bytes)
//! (64 hexadecimal digits) and fingerprint (32 bytes).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rustic_core::{ChunkMemory, DataId, Id, RememberedChunk};

const MAGIC: &[u8] = b"octobackup chunk memory 1\n";
/// The derivation context of the fingerprint key (BLAKE3 `derive_key`): fixed forever.
const KEY_CONTEXT: &str = "octobackup 2026-11-30 chunk memory fingerprints";
/// More chunks than a file of 64 TiB holds at the smallest chunk size means a damaged file.
const MAX_CHUNKS: u64 = 1 << 27;

/// The chunks remembered from the last part that stored large files, and those stored now.
pub(crate) struct ChunkMemoryFile {
    path: PathBuf,
    key: [u8; 32],
    earlier: HashMap<String, Arc<HashMap<u64, RememberedChunk>>>,
    now: Mutex<BTreeMap<String, Vec<RememberedChunk>>>,
    taken: AtomicU64,
}

impl ChunkMemoryFile {
    /// Reads `path` (a missing or unreadable file remembers nothing). `key_material` is the
    /// repository's master key.
    pub(crate) fn load(path: &Path, key_material: &[u8]) -> Self {
        let earlier = match fs::read(path) {
            Ok(bytes) => parse(&bytes).unwrap_or_else(|err| {
                log::debug!("chunk memory {} not used: {err}", path.display());
                HashMap::new()
            }),
            Err(err) => {
                if err.kind() != io::ErrorKind::NotFound {
                    log::debug!("chunk memory {} not read: {err}", path.display());
                }
                HashMap::new()
            }
        };
        Self {
            path: path.to_path_buf(),
            key: blake3::derive_key(KEY_CONTEXT, key_material),
            earlier: earlier
                .into_iter()
                .map(|(target, chunks)| {
                    let by_offset = chunks.into_iter().map(|c| (c.offset, c)).collect();
                    (target, Arc::new(by_offset))
                })
                .collect(),
            now: Mutex::default(),
            taken: AtomicU64::new(0),
        }
    }

    /// The bytes this part took from the memory (found unchanged, not hashed again).
    pub(crate) fn taken(&self) -> u64 {
        self.taken.load(Ordering::Relaxed)
    }

    /// The memory of the file stored as `target` (snapshot path).
    pub(crate) fn for_file(self: &Arc<Self>, target: &str) -> Arc<dyn ChunkMemory> {
        Arc::new(FileMemory {
            file: self.clone(),
            target: target.to_string(),
            earlier: self.earlier.get(target).cloned().unwrap_or_default(),
        })
    }

    /// Writes what this part stored in place of what was remembered (a file the part no
    /// longer holds is forgotten). Called once the part's snapshot is saved; a failure only
    /// costs the next night its shortcut, so it is logged, not returned.
    pub(crate) fn save(&self) {
        let now = std::mem::take(&mut *self.now.lock().unwrap_or_else(PoisonError::into_inner));
        if now.is_empty() {
            return;
        }
        let mut out = MAGIC.to_vec();
        for (target, chunks) in &now {
            out.extend_from_slice(&(target.len() as u32).to_le_bytes());
            out.extend_from_slice(target.as_bytes());
            out.extend_from_slice(&(chunks.len() as u64).to_le_bytes());
            for c in chunks {
                out.extend_from_slice(&c.offset.to_le_bytes());
                out.extend_from_slice(&c.length.to_le_bytes());
                out.extend_from_slice(c.id.to_hex().as_bytes());
                out.extend_from_slice(&c.fingerprint);
            }
        }
        if let Err(err) = write_replacing(&self.path, &out) {
            log::warn!(
                "cannot keep the database backup's chunk list in {} ({err}): the next backup \
                 reads it whole",
                self.path.display()
            );
        }
    }
}

/// One file's memory, as rustic_core asks for it.
struct FileMemory {
    file: Arc<ChunkMemoryFile>,
    target: String,
    earlier: Arc<HashMap<u64, RememberedChunk>>,
}

impl ChunkMemory for FileMemory {
    fn known_at(&self, offset: u64) -> Option<RememberedChunk> {
        self.earlier.get(&offset).copied()
    }

    fn fingerprint(&self, id: &DataId, data: &[u8]) -> [u8; 32] {
        fingerprint(&self.file.key, id, data)
    }

    fn remember(&self, chunks: Vec<RememberedChunk>, taken: u64) {
        _ = self.file.taken.fetch_add(taken, Ordering::Relaxed);
        _ = self
            .file
            .now
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(self.target.clone(), chunks);
    }
}

fn fingerprint(key: &[u8; 32], id: &DataId, data: &[u8]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_keyed(key);
    _ = hasher.update(id.to_hex().as_bytes());
    _ = hasher.update(data);
    *hasher.finalize().as_bytes()
}

fn parse(mut bytes: &[u8]) -> Result<HashMap<String, Vec<RememberedChunk>>, String> {
    fn take<const N: usize>(bytes: &mut &[u8]) -> Result<[u8; N], String> {
        let mut out = [0; N];
        bytes
            .read_exact(&mut out)
            .map_err(|_| "the file ends too early".to_string())?;
        Ok(out)
    }
    if !bytes.starts_with(MAGIC) {
        return Err("not a chunk memory of this version".into());
    }
    bytes = &bytes[MAGIC.len()..];
    let mut files = HashMap::new();
    while !bytes.is_empty() {
        let len = u32::from_le_bytes(take(&mut bytes)?) as usize;
        if len > bytes.len() {
            return Err("the file ends too early".into());
        }
        let target = std::str::from_utf8(&bytes[..len])
            .map_err(|_| "a path is not UTF-8")?
            .to_string();
        bytes = &bytes[len..];
        let count = u64::from_le_bytes(take(&mut bytes)?);
        if count > MAX_CHUNKS {
            return Err(format!("{count} chunks for one file"));
        }
        let mut chunks = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let offset = u64::from_le_bytes(take(&mut bytes)?);
            let length = u64::from_le_bytes(take(&mut bytes)?);
            let hex: [u8; 64] = take(&mut bytes)?;
            let id = std::str::from_utf8(&hex)
                .ok()
                .and_then(|hex| hex.parse::<Id>().ok())
                .map(DataId::from)
                .ok_or("an id is not hexadecimal")?;
            let fingerprint = take(&mut bytes)?;
            chunks.push(RememberedChunk {
                offset,
                length,
                id,
                fingerprint,
            });
        }
        _ = files.insert(target, chunks);
    }
    Ok(files)
}

/// `bytes` in place of `path`'s content, whole or not at all (a temporary file renamed over it).
fn write_replacing(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".new");
    let temporary = path.with_file_name(name);
    let mut file = fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(offset: u64, length: u64, seed: u8) -> RememberedChunk {
        RememberedChunk {
            offset,
            length,
            id: DataId::from(Id::new([seed; 32])),
            fingerprint: [seed ^ 0x5a; 32],
        }
    }

    #[test]
    fn what_is_saved_is_read_back_by_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chunks");
        let memory = Arc::new(ChunkMemoryFile::load(&path, b"key"));
        let stored = vec![chunk(0, 700, 1), chunk(700, 300, 2)];
        memory
            .for_file("/database/OctopusDeploy.bak")
            .remember(stored.clone(), 0);
        memory.save();

        let again = Arc::new(ChunkMemoryFile::load(&path, b"key"));
        let file = again.for_file("/database/OctopusDeploy.bak");
        assert_eq!(file.known_at(700), Some(stored[1]));
        assert_eq!(file.known_at(0), Some(stored[0]));
        assert_eq!(file.known_at(300), None);
        assert_eq!(again.for_file("/database/other.bak").known_at(0), None);
    }

    #[test]
    fn a_damaged_or_foreign_file_remembers_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chunks");
        let memory = Arc::new(ChunkMemoryFile::load(&path, b"key"));
        memory.for_file("/a").remember(vec![chunk(0, 10, 1)], 0);
        memory.save();
        let whole = fs::read(&path).unwrap();
        for cut in [0, MAGIC.len() - 1, MAGIC.len() + 3, whole.len() - 1] {
            fs::write(&path, &whole[..cut]).unwrap();
            let read = Arc::new(ChunkMemoryFile::load(&path, b"key"));
            assert_eq!(read.for_file("/a").known_at(0), None, "cut at {cut}");
        }
        fs::write(&path, b"something else entirely").unwrap();
        let read = Arc::new(ChunkMemoryFile::load(&path, b"key"));
        assert_eq!(read.for_file("/a").known_at(0), None);
    }

    #[test]
    fn fingerprints_depend_on_the_key_the_id_and_every_byte() {
        let id = DataId::from(Id::new([7; 32]));
        let other_id = DataId::from(Id::new([8; 32]));
        let a = ChunkMemoryFile::load(Path::new("/nonexistent/x"), b"repository one");
        let b = ChunkMemoryFile::load(Path::new("/nonexistent/x"), b"repository two");
        let data = vec![3u8; 4096];
        let mut changed = data.clone();
        changed[4095] ^= 1;
        let base = fingerprint(&a.key, &id, &data);
        assert_eq!(base, fingerprint(&a.key, &id, &data));
        assert_ne!(base, fingerprint(&b.key, &id, &data));
        assert_ne!(base, fingerprint(&a.key, &other_id, &data));
        assert_ne!(base, fingerprint(&a.key, &id, &changed));
        assert_ne!(base, fingerprint(&a.key, &id, &data[..4095]));
    }

    #[test]
    fn nothing_stored_keeps_the_earlier_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chunks");
        let memory = Arc::new(ChunkMemoryFile::load(&path, b"key"));
        memory.for_file("/a").remember(vec![chunk(0, 10, 1)], 0);
        memory.save();
        let before = fs::read(&path).unwrap();
        ChunkMemoryFile::load(&path, b"key").save();
        assert_eq!(fs::read(&path).unwrap(), before);
    }
}
