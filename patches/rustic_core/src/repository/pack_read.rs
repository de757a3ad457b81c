//! Patched for octobackup: reading a pack's blobs in one request and decoding them with one
//! reused zstd context, for a restore that reads each pack once.
//!
//! `Repository::get_blob_cached` and `dump` read each blob with a request of its own (a local
//! backend opens the pack file per blob) and `decode_all` builds a new zstd decoder per blob.
//! A caller that groups the blobs it needs by pack can instead read one range of a pack
//! (`read_pack_range`) and decode every blob inside it (`decode_blob`) with a `BlobDecoder`
//! kept per thread. Nothing in the repository format changes.

use std::num::NonZeroU32;

use bytes::Bytes;

use crate::{
    backend::{
        FileType, ReadBackend,
        decrypt::{DecryptReadBackend, DecryptWriteBackend},
    },
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
    /// request and without the cache. The blobs in it are decoded with [`Self::decode_blob`].
    ///
    /// # Errors
    ///
    /// * If the backend cannot read the range.
    pub fn read_pack_range(&self, pack: &PackId, offset: u32, length: u32) -> RusticResult<Bytes> {
        self.dbe()
            .read_partial(FileType::Pack, pack, false, offset, length)
    }

    /// Decrypts one blob's stored bytes (a slice of [`Self::read_pack_range`]'s answer at the
    /// blob's location) and, when `uncompressed_length` says it is compressed, decompresses it
    /// with `decoder`. The blob's data is left in `out` (cleared first).
    ///
    /// # Errors
    ///
    /// * If the data cannot be decrypted (wrong key, damaged pack).
    /// * If it cannot be decompressed, or its length is not `uncompressed_length`.
    pub fn decode_blob(
        &self,
        stored: &[u8],
        uncompressed_length: Option<NonZeroU32>,
        decoder: &mut BlobDecoder,
        out: &mut Vec<u8>,
    ) -> RusticResult<()> {
        let plain = self.dbe().decrypt(stored)?;
        Self::decompress_blob(&plain, uncompressed_length, decoder, out)
    }

    /// [`Self::decode_blob`] on stored bytes the caller owns and gives up: they are decrypted
    /// where they lie (no copy of the ciphertext; the slice holds plaintext afterwards, so a
    /// blob is decoded this way once). An uncompressed blob is not copied into `out`: its data
    /// is returned, a compressed one's is `out`.
    ///
    /// # Errors
    ///
    /// As [`Self::decode_blob`].
    pub fn decode_blob_in_place<'a>(
        &self,
        stored: &'a mut [u8],
        uncompressed_length: Option<NonZeroU32>,
        decoder: &mut BlobDecoder,
        out: &'a mut Vec<u8>,
    ) -> RusticResult<&'a [u8]> {
        let plain = self.dbe().key().decrypt_in_place(stored)?;
        if uncompressed_length.is_none() {
            return Ok(plain);
        }
        Self::decompress_blob(plain, uncompressed_length, decoder, out)?;
        Ok(out)
    }

    fn decompress_blob(
        plain: &[u8],
        uncompressed_length: Option<NonZeroU32>,
        decoder: &mut BlobDecoder,
        out: &mut Vec<u8>,
    ) -> RusticResult<()> {
        out.clear();
        let Some(length) = uncompressed_length else {
            out.extend_from_slice(plain);
            return Ok(());
        };
        let length = length.get() as usize;
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
        Ok(())
    }
}
