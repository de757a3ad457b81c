//! Patched for octobackup: reading a pack's blobs in one request and decoding them with one
//! reused zstd context, for a restore that reads each pack once.
//!
//! `Repository::get_blob_cached` and `dump` read each blob with a request of its own (a local
//! backend opens the pack file per blob) and `decode_all` builds a new zstd decoder per blob.
//! A caller that groups the blobs it needs by pack can instead read one range of a pack
//! (`read_pack_range`) and decode every blob inside it (`decode_blob_in_place`) with a `BlobDecoder`
//! kept per thread. Nothing in the repository format changes.

use std::num::NonZeroU32;

use bytes::Bytes;

use crate::{
    backend::{FileType, ReadBackend, decrypt::DecryptWriteBackend},
    error::{ErrorKind, RusticError, RusticResult},
    repofile::packfile::PackId,
    repository::{Open, Repository},
};

/// A zstd decompression context to decode many blobs with, one per thread.
pub struct BlobDecoder {
    zstd: zstd::bulk::Decompressor<'static>,
}

impl std::fmt::Debug for BlobDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobDecoder").finish_non_exhaustive()
    }
}

impl BlobDecoder {
    /// A new decoder.
    ///
    /// # Errors
    ///
    /// * If zstd cannot create its context (out of memory).
    pub fn new() -> RusticResult<Self> {
        let zstd = zstd::bulk::Decompressor::new().map_err(|err| {
            RusticError::with_source(
                ErrorKind::Internal,
                "Failed to create a zstd decompressor.",
                err,
            )
        })?;
        Ok(Self { zstd })
    }
}

impl<S: Open> Repository<S> {
    /// Reads `length` bytes at `offset` of the pack `pack`, as stored (encrypted), in one
    /// request and without the cache. The blobs in it are decoded with [`Self::decode_blob_in_place`].
    ///
    /// # Errors
    ///
    /// * If the backend cannot read the range.
    pub fn read_pack_range(&self, pack: &PackId, offset: u32, length: u32) -> RusticResult<Bytes> {
        self.dbe()
            .read_partial(FileType::Pack, pack, false, offset, length)
    }

    /// Checks and decrypts one blob's stored bytes (a slice of [`Self::read_pack_range`]'s
    /// answer at the blob's location, which the caller gives up: they are decrypted where they
    /// lie, with no copy of the ciphertext, and hold plaintext afterwards, so a blob is decoded
    /// once) and, when `uncompressed_length` says it is compressed, decompresses it with
    /// `decoder` into `out` (cleared first). Returns the blob's data: the decrypted slice itself
    /// for an uncompressed blob, `out` for a compressed one.
    ///
    /// # Errors
    ///
    /// * If the data cannot be decrypted (wrong key, damaged pack).
    /// * If it cannot be decompressed, or its length is not `uncompressed_length`.
    pub fn decode_blob_in_place<'a>(
        &self,
        stored: &'a mut [u8],
        uncompressed_length: Option<NonZeroU32>,
        decoder: &mut BlobDecoder,
        out: &'a mut Vec<u8>,
    ) -> RusticResult<&'a [u8]> {
        let plain = self.dbe().key().decrypt_in_place(stored)?;
        let Some(length) = uncompressed_length else {
            return Ok(plain);
        };
        let length = length.get() as usize;
        out.clear();
        out.reserve(length);
        let written = decoder
            .zstd
            .decompress_to_buffer(plain, out)
            .map_err(|err| {
                RusticError::with_source(
                    ErrorKind::Internal,
                    "Failed to decode zstd compressed data. The data may be corrupted.",
                    err,
                )
            })?;
        if written != length || out.len() != length {
            return Err(RusticError::new(
                ErrorKind::Internal,
                "Length of uncompressed data `{actual_length}` does not match the given length `{expected_length}`.",
            )
            .attach_context("expected_length", length.to_string())
            .attach_context("actual_length", written.to_string()));
        }
        Ok(out)
    }
}
