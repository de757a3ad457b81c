use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::{
    archiver::{
        parent::{ItemWithParent, ParentResult},
        tree::TreeType,
        tree_archiver::TreeItem,
    },
    backend::{
        ChunkMemory, ReadSourceOpen, RememberedChunk,
        decrypt::DecryptWriteBackend,
        node::{Node, NodeType},
    },
    blob::{
        BlobId, BlobType, DataId,
        packer::{PackSizer, Packer, PackerStats},
    },
    chunker::{ChunkIter, cuts_after},
    crypto::hasher::hash,
    error::{ErrorKind, RusticError, RusticResult},
    index::{ReadGlobalIndex, indexer::SharedIndexer},
    progress::Progress,
    repofile::configfile::ConfigFile,
};

/// The chunks of a file or segment, as (id, length).
type ChunkList = Vec<(DataId, u64)>;

/// The `FileArchiver` is responsible for archiving files.
/// It will read the file, chunk it, and write the chunks to the backend.
///
/// # Type Parameters
///
/// * `BE` - The backend type.
/// * `I` - The index to read from.
#[derive(Clone)]
pub(crate) struct FileArchiver<'a, BE: DecryptWriteBackend, I: ReadGlobalIndex> {
    index: &'a I,
    data_packer: Packer<BE>,
    config: ConfigFile,
}

impl<'a, BE: DecryptWriteBackend, I: ReadGlobalIndex> FileArchiver<'a, BE, I> {
    /// Creates a new `FileArchiver`.
    ///
    /// # Type Parameters
    ///
    /// * `BE` - The backend type.
    /// * `I` - The index to read from.
    ///
    /// # Arguments
    ///
    /// * `be` - The backend to write to.
    /// * `index` - The index to read from.
    /// * `indexer` - The indexer to write to.
    /// * `config` - The config file.
    ///
    /// # Errors
    ///
    /// * If sending the message to the raw packer fails.
    /// * If converting the data length to u64 fails
    pub(crate) fn new(
        be: BE,
        index: &'a I,
        indexer: SharedIndexer<BE>,
        config: &ConfigFile,
    ) -> RusticResult<Self> {
        let pack_sizer =
            PackSizer::from_config(config, BlobType::Data, index.total_size(BlobType::Data));
        let data_packer = Packer::new(be, BlobType::Data, indexer, pack_sizer)?;

        Ok(Self {
            index,
            data_packer,
            config: config.clone(),
        })
    }

    /// Processes the given item.
    ///
    /// # Type Parameters
    ///
    /// * `O` - The type of the tree item.
    ///
    /// # Arguments
    ///
    /// * `item` - The item to process.
    /// * `p` - The progress tracker.
    ///
    /// # Errors
    ///
    /// * If the item could not be unpacked.
    ///
    /// # Returns
    ///
    /// The processed item.
    pub(crate) fn process<O: ReadSourceOpen + Send>(
        &self,
        item: ItemWithParent<Option<O>>,
        p: &Progress,
    ) -> RusticResult<TreeItem> {
        Ok(match item {
            TreeType::NewTree(item) => TreeType::NewTree(item),
            TreeType::EndTree => TreeType::EndTree,
            TreeType::Other((path, node, (open, parent))) => {
                let (node, filesize) = if matches!(parent, ParentResult::Matched(())) {
                    let size = node.meta.size;
                    p.inc(size);
                    (node, size)
                } else if node.node_type == NodeType::File {
                    let open = open
                        .ok_or_else(
                            || RusticError::new(
                                ErrorKind::Internal,
                                "Failed to unpack tree type optional at `{path}`. Option should contain a value, but contained `None`.",
                            )
                            .attach_context("path", path.display().to_string())
                            .ask_report(),
                        )?;
                    // Patched for octobackup: a large file its source can open at any offset
                    // is chunked in fixed-offset segments, several at once.
                    if let Some(segment) = open
                        .segment_len()
                        .filter(|&len| len > 0 && node.meta.size > len)
                    {
                        self.backup_segments(open, node, segment, p)
                            .map_err(|err| {
                                err.prepend_guidance_line("Error while backing up `{path}`")
                                    .attach_context("path", path.display().to_string())
                            })?
                    } else {
                        let r = open.open().map_err(|err| {
                            err.overwrite_kind(ErrorKind::InputOutput)
                                .prepend_guidance_line("Failed to open ReadSourceOpen at `{path}`")
                                .attach_context("path", path.display().to_string())
                        })?;

                        self.backup_reader(r, node, p).map_err(|err| {
                            err.prepend_guidance_line("Error while backing up `{path}`")
                                .attach_context("path", path.display().to_string())
                        })?
                    }
                } else {
                    (node, 0)
                };
                TreeType::Other((path, node, (parent, filesize)))
            }
        })
    }

    // TODO: add documentation!
    fn backup_reader(
        &self,
        r: impl Read + Send + 'static,
        node: Node,
        p: &Progress,
    ) -> RusticResult<(Node, u64)> {
        let chunks = self.chunk_reader(r, node.meta.size, p)?;

        let filesize = chunks.iter().map(|x| x.1).sum();
        let content = chunks.into_iter().map(|x| x.0).collect();

        let mut node = node;
        node.content = Some(content);
        Ok((node, filesize))
    }

    /// Patched for octobackup: stores a file read in segments of `segment` bytes at fixed
    /// offsets, chunked and hashed on as many threads as there are cores (the packer already
    /// compresses and encrypts on all of them). The content is the segments' chunks in order.
    fn backup_segments<O: ReadSourceOpen + Send>(
        &self,
        open: O,
        node: Node,
        segment: u64,
        p: &Progress,
    ) -> RusticResult<(Node, u64)> {
        let size = node.meta.size;
        let count = usize::try_from(size.div_ceil(segment)).unwrap_or(usize::MAX);
        let workers = std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .min(count);
        // Patched for octobackup: chunks an earlier backup stored of this file (ChunkMemory).
        let memory = open.chunk_memory();
        // Opening is cheap: one worker at a time, so the source need not be `Sync`.
        let open = Mutex::new(open);
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let done: Mutex<Vec<Option<Vec<RememberedChunk>>>> = Mutex::new(vec![None; count]);
        let taken = AtomicU64::new(0);
        let first_error: Mutex<Option<Box<RusticError>>> = Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..workers {
                let _handle = s.spawn(|| {
                    // Patched for octobackup: one read buffer per worker for all its segments.
                    let mut buf = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= count || failed.load(Ordering::Relaxed) {
                            break;
                        }
                        let offset = segment * i as u64;
                        let len = segment.min(size - offset);
                        let opened = open
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .open_segment(offset, len);
                        let chunked = opened.and_then(|r| match &memory {
                            Some(memory) => {
                                self.chunk_remembered(r, offset, &**memory, &taken, p, &mut buf)
                            }
                            None => self.chunk_reader(r, len, p).map(|chunks| {
                                let mut at = offset;
                                chunks
                                    .into_iter()
                                    .map(|(id, length)| {
                                        at += length;
                                        RememberedChunk {
                                            offset: at - length,
                                            length,
                                            id,
                                            fingerprint: [0; 32],
                                        }
                                    })
                                    .collect()
                            }),
                        });
                        match chunked {
                            Ok(chunks) => {
                                done.lock().unwrap_or_else(PoisonError::into_inner)[i] =
                                    Some(chunks);
                            }
                            Err(err) => {
                                failed.store(true, Ordering::Relaxed);
                                let _ = first_error
                                    .lock()
                                    .unwrap_or_else(PoisonError::into_inner)
                                    .get_or_insert(err);
                                break;
                            }
                        }
                    }
                });
            }
        });
        if let Some(err) = first_error
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
        {
            return Err(err);
        }
        let chunks: Vec<RememberedChunk> = done
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
            .into_iter()
            .flat_map(Option::unwrap_or_default)
            .collect();
        let filesize = chunks.iter().map(|c| c.length).sum();
        let content = chunks.iter().map(|c| c.id).collect();
        if let Some(memory) = memory {
            memory.remember(chunks, taken.into_inner());
        }
        let mut node = node;
        node.content = Some(content);
        Ok((node, filesize))
    }

    /// Chunks, hashes and stores (unless known) what `r` reads: the ids and sizes of its chunks.
    fn chunk_reader(
        &self,
        r: impl Read + Send + 'static,
        size_hint: u64,
        p: &Progress,
    ) -> RusticResult<ChunkList> {
        ChunkIter::from_config(
            &self.config,
            r,
            usize::try_from(size_hint).unwrap_or(usize::MAX),
        )?
        .map(|chunk| {
            let chunk = chunk?;
            let id = hash(&chunk);
            let size = chunk.len() as u64;

            if !self.index.has_data(&DataId::from(id)) {
                self.data_packer.add(chunk.into(), BlobId::from(id))?;
            }
            p.inc(size);
            Ok((DataId::from(id), size))
        })
        .collect()
    }

    /// Patched for octobackup: as [`Self::chunk_reader`] for the segment at `offset` of a file
    /// whose earlier chunks `memory` knows: where a remembered chunk starts and the bytes there
    /// still have its fingerprint (and the repository still has its blob), the chunk is taken
    /// as it is; elsewhere the chunker runs from there, one chunk at a time, exactly as it
    /// would over the whole segment (it starts afresh at every chunk), so the boundaries and
    /// ids are the ones [`Self::chunk_reader`] finds.
    ///
    /// `buf` is the worker's read buffer, kept from one segment to the next: a fresh 16 MiB
    /// buffer per segment was zeroed and page-faulted in every time (a quarter of the time
    /// storing a nightly's .bak).
    fn chunk_remembered(
        &self,
        mut r: impl Read + Send + 'static,
        offset: u64,
        memory: &dyn ChunkMemory,
        taken: &AtomicU64,
        p: &Progress,
        buf: &mut Vec<u8>,
    ) -> RusticResult<Vec<RememberedChunk>> {
        let read_error = |err| {
            RusticError::with_source(
                ErrorKind::InputOutput,
                "Failed to read from reader in iterator",
                err,
            )
        };
        // The longest chunk the chunker can cut: with that much ahead (or the segment's end),
        // chunking a slice finds the same boundary as chunking the stream.
        let window = self.config.chunk_max_size().max(self.config.chunk_size());
        if buf.len() < 2 * window {
            buf.resize(2 * window, 0);
        }
        // The bytes read and not yet chunked are `buf[start..end]`.
        let mut start = 0;
        let mut end = 0;
        let mut at = offset;
        let mut eof = false;
        let mut chunks = Vec::new();
        let mut rabin = None;
        loop {
            if !eof && end - start < window {
                buf.copy_within(start..end, 0);
                end -= start;
                start = 0;
                while end < buf.len() {
                    match r.read(&mut buf[end..]) {
                        Ok(0) => {
                            eof = true;
                            break;
                        }
                        Ok(n) => end += n,
                        Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(err) => return Err(read_error(err)),
                    }
                }
            }
            let ahead = &buf[start..end];
            if ahead.is_empty() {
                break;
            }
            // Taken only where the chunker would cut too: at its own boundary, or at this
            // segment's end (a chunk cut by an earlier, shorter file's end is not taken).
            let mut known = None;
            if let Some(k) = memory.known_at(at) {
                let l = usize::try_from(k.length).unwrap_or(usize::MAX);
                if l > 0
                    && l <= ahead.len()
                    && self.index.has_data(&k.id)
                    && ((eof && l == ahead.len())
                        || cuts_after(&self.config, &mut rabin, &ahead[..l])?)
                    && memory.fingerprint(&k.id, &ahead[..l]) == k.fingerprint
                {
                    known = Some(k);
                }
            }
            let chunk = if let Some(known) = known {
                _ = taken.fetch_add(known.length, Ordering::Relaxed);
                known
            } else {
                let data = ChunkIter::from_config(&self.config, ahead, ahead.len())?
                    .next()
                    .transpose()?
                    .unwrap_or_default();
                let id = DataId::from(hash(&data));
                let chunk = RememberedChunk {
                    offset: at,
                    length: data.len() as u64,
                    id,
                    fingerprint: memory.fingerprint(&id, &data),
                };
                if !self.index.has_data(&id) {
                    self.data_packer.add(data.into(), BlobId::from(*id))?;
                }
                chunk
            };
            p.inc(chunk.length);
            start += chunk.length as usize;
            at += chunk.length;
            chunks.push(chunk);
        }
        Ok(chunks)
    }

    /// Finalizes the archiver.
    ///
    /// # Returns
    ///
    /// The statistics of the archiver.
    ///
    /// # Panics
    ///
    /// * If the channel could not be dropped
    pub(crate) fn finalize(self) -> RusticResult<PackerStats> {
        self.data_packer.finalize()
    }
}
