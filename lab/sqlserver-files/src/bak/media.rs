//! Reading a media set: opening and matching the stripes, finding backup sets, streaming a set's
//! pages back in order with its checks. Shared by HEADERONLY, VERIFYONLY and RESTORE.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use super::checksum::StreamChecksum;

use super::error::BakError;
use super::format::{
    FRAME_HEADER_SIZE, MEDIA_HEADER_SIZE, MediaHeader, SET_HEADER_SIZE, SetRecord, TRAILER_SIZE,
    Trailer,
};
use super::{BackupSetHeader, MAX_STRIPES};
use crate::image::{PAGE_HEADER_SIZE, PAGE_SIZE, validate_page};

/// Receives a block of pages read back from a backup set: (first page in database order, pages).
pub(crate) type PageSink<'a> = dyn FnMut(u64, &[u8]) -> Result<(), BakError> + 'a;

/// One opened stripe file.
pub(crate) struct Stripe {
    pub path: PathBuf,
    pub file: File,
    pub len: u64,
    pub media: MediaHeader,
}

/// A backup set as found on one stripe.
#[derive(Debug, Clone)]
pub(crate) struct StripeSet {
    /// Where the set header block starts.
    pub offset: u64,
    pub record: SetRecord,
    pub trailer: Trailer,
}

impl StripeSet {
    pub fn data_offset(&self) -> u64 {
        self.offset + SET_HEADER_SIZE as u64
    }
    pub fn end(&self) -> u64 {
        self.data_offset() + self.trailer.data_bytes + TRAILER_SIZE as u64
    }
}

/// The stripes of one media set, ordered by family number, with the sets found on each.
pub(crate) struct Media {
    pub stripes: Vec<Stripe>,
    /// `sets[family - 1]` = the sets on that stripe, in position order.
    pub sets: Vec<Vec<StripeSet>>,
}

pub(crate) fn read_exact_at(
    file: &mut File,
    path: &Path,
    offset: u64,
    buf: &mut [u8],
) -> Result<(), BakError> {
    file.seek(SeekFrom::Start(offset))
        .map_err(BakError::io(path))?;
    file.read_exact(buf).map_err(BakError::io(path))
}

/// Opens one stripe and reads its media header.
pub(crate) fn open_stripe(path: &Path) -> Result<Stripe, BakError> {
    let mut file = File::open(path).map_err(|e| BakError::cannot_open(path, &e, false))?;
    let len = file.metadata().map_err(BakError::io(path))?.len();
    if path.is_dir() {
        return Err(BakError::cannot_open(
            path,
            &std::io::Error::from(std::io::ErrorKind::IsADirectory),
            false,
        ));
    }
    if len < MEDIA_HEADER_SIZE as u64 {
        return Err(BakError::NotABackup {
            path: path.to_path_buf(),
            detail: format!("the file has only {len} bytes"),
        });
    }
    let mut block = vec![0u8; MEDIA_HEADER_SIZE];
    read_exact_at(&mut file, path, 0, &mut block)?;
    let media = MediaHeader::decode(&block).map_err(|(not_a_backup, detail)| {
        if not_a_backup {
            BakError::NotABackup {
                path: path.to_path_buf(),
                detail,
            }
        } else {
            BakError::damaged(path, detail)
        }
    })?;
    Ok(Stripe {
        path: path.to_path_buf(),
        file,
        len,
        media,
    })
}

/// The complete backup sets on one stripe. A set that is cut short or was never finished is an
/// error: SQL Server cannot read past it either.
pub(crate) fn walk_stripe(stripe: &mut Stripe) -> Result<Vec<StripeSet>, BakError> {
    let mut sets = Vec::new();
    let mut offset = MEDIA_HEADER_SIZE as u64;
    let mut block = vec![0u8; SET_HEADER_SIZE];
    let mut trailer_block = vec![0u8; TRAILER_SIZE];
    let family = stripe.media.family_number;
    while offset < stripe.len {
        let position = sets.len() as u32 + 1;
        let path = &stripe.path;
        if stripe.len - offset < SET_HEADER_SIZE as u64 {
            return Err(BakError::damaged(
                path,
                format!("backup set {position} is truncated (its header is cut short)"),
            ));
        }
        read_exact_at(&mut stripe.file, path, offset, &mut block)?;
        let record = SetRecord::decode(&block)
            .map_err(|d| BakError::damaged(path, format!("backup set {position}: {d}")))?;
        if !record.layout.complete {
            return Err(BakError::damaged(
                path,
                format!("backup set {position} is incomplete: the backup did not finish"),
            ));
        }
        if record.header.position != position {
            return Err(BakError::damaged(
                path,
                format!(
                    "backup set {position} says it is set {}",
                    record.header.position
                ),
            ));
        }
        let data_bytes = *record
            .layout
            .stripe_data_bytes
            .get(family as usize - 1)
            .ok_or_else(|| {
                BakError::damaged(
                    path,
                    format!("backup set {position} has no layout for family {family}"),
                )
            })?;
        let trailer_at = offset + SET_HEADER_SIZE as u64 + data_bytes;
        if trailer_at + TRAILER_SIZE as u64 > stripe.len {
            return Err(BakError::damaged(
                path,
                format!(
                    "backup set {position} is truncated: the file ends at byte {} but the set needs {}",
                    stripe.len,
                    trailer_at + TRAILER_SIZE as u64
                ),
            ));
        }
        read_exact_at(&mut stripe.file, path, trailer_at, &mut trailer_block)?;
        let trailer = Trailer::decode(&trailer_block)
            .map_err(|d| BakError::damaged(path, format!("backup set {position}: {d}")))?;
        if trailer.position != position
            || trailer.family_number != family
            || trailer.backup_set_uuid != record.header.backup_set_uuid
            || trailer.data_bytes != data_bytes
        {
            return Err(BakError::damaged(
                path,
                format!("backup set {position}: its end marker belongs to another set"),
            ));
        }
        let set = StripeSet {
            offset,
            record,
            trailer,
        };
        offset = set.end();
        sets.push(set);
    }
    Ok(sets)
}

/// Opens every stripe of a media set and checks that they form exactly one complete media set.
pub(crate) fn open_media(paths: &[PathBuf]) -> Result<Media, BakError> {
    if paths.is_empty() {
        return Err(BakError::InvalidRequest(
            "no backup device given".to_string(),
        ));
    }
    if paths.len() > MAX_STRIPES {
        return Err(BakError::InvalidRequest(format!(
            "at most {MAX_STRIPES} backup devices, got {}",
            paths.len()
        )));
    }
    let mut stripes = paths
        .iter()
        .map(|p| open_stripe(p))
        .collect::<Result<Vec<_>, _>>()?;
    let first = stripes[0].media;
    for stripe in &stripes[1..] {
        if stripe.media.media_set_id != first.media_set_id {
            return Err(BakError::mismatched(
                &stripe.path,
                "it belongs to another media set",
            ));
        }
    }
    let given = stripes.len() as u32;
    if given > first.family_count {
        return Err(BakError::mismatched(
            &stripes[0].path,
            format!(
                "the media set has {} media families but {given} devices were given",
                first.family_count
            ),
        ));
    }
    stripes.sort_by_key(|s| s.media.family_number);
    for pair in stripes.windows(2) {
        if pair[0].media.family_number == pair[1].media.family_number {
            return Err(BakError::mismatched(
                &pair[1].path,
                format!(
                    "it is a duplicate of media family {} ('{}')",
                    pair[0].media.family_number,
                    pair[0].path.display()
                ),
            ));
        }
    }
    if given < first.family_count {
        return Err(BakError::MissingStripe {
            expected: first.family_count,
            found: given,
        });
    }
    let mut sets = Vec::with_capacity(stripes.len());
    for stripe in &mut stripes {
        sets.push(walk_stripe(stripe)?);
    }
    for (stripe, stripe_sets) in stripes.iter().zip(&sets).skip(1) {
        let same = stripe_sets.len() == sets[0].len()
            && stripe_sets
                .iter()
                .zip(&sets[0])
                .all(|(a, b)| a.record.header.backup_set_uuid == b.record.header.backup_set_uuid);
        if !same {
            return Err(BakError::mismatched(
                &stripe.path,
                "it does not hold the same backup sets as the other devices",
            ));
        }
    }
    Ok(Media { stripes, sets })
}

impl Media {
    pub fn headers(&self) -> Vec<BackupSetHeader> {
        self.sets[0]
            .iter()
            .map(|s| s.record.header.clone())
            .collect()
    }

    /// The set at `position` on every stripe (index = family - 1).
    pub fn locate(&self, position: u32) -> Result<Vec<StripeSet>, BakError> {
        let available = self.sets[0].len() as u32;
        if position == 0 || position > available {
            return Err(BakError::NoSuchPosition {
                position,
                available,
            });
        }
        Ok(self
            .sets
            .iter()
            .map(|s| s[position as usize - 1].clone())
            .collect())
    }

    /// Reads the set's pages back in database order, one block at a time, and hands each block to
    /// `sink(first_global_page, pages)`. Checks that every block is present and every page is the
    /// one expected; with `check_checksums`, also every page checksum and the backup checksum.
    pub fn stream_set(
        &mut self,
        set: &[StripeSet],
        check_checksums: bool,
        sink: &mut PageSink<'_>,
        progress: &mut dyn FnMut(u64, u64) -> ControlFlow<()>,
    ) -> Result<(), BakError> {
        let layout = &set[0].record.layout;
        let header = &set[0].record.header;
        let families = self.stripes.len();
        let mut positions: Vec<u64> = set.iter().map(StripeSet::data_offset).collect();
        let mut read_bytes = vec![0u64; families];
        let mut hashers: Vec<StreamChecksum> = vec![StreamChecksum::default(); families];
        for (stripe, at) in self.stripes.iter_mut().zip(&positions) {
            stripe
                .file
                .seek(SeekFrom::Start(*at))
                .map_err(BakError::io(&stripe.path))?;
        }
        let total_bytes = layout.total_pages() * PAGE_SIZE as u64;
        let mut pages = vec![0u8; layout.block_pages as usize * PAGE_SIZE];
        let mut frame = Vec::new();
        for block in 0..layout.block_count() {
            let family = (block % families as u64) as usize;
            let stripe = &mut self.stripes[family];
            let path = stripe.path.clone();
            let page_count = layout.pages_in_block(block) as usize;
            let raw = &mut pages[..page_count * PAGE_SIZE];
            let stored_len = if header.is_compressed {
                let mut frame_header = [0u8; FRAME_HEADER_SIZE];
                read_data(&mut stripe.file, &path, &mut frame_header)?;
                let raw_len =
                    u32::from_le_bytes(frame_header[..4].try_into().expect("4 bytes")) as usize;
                let compressed_len =
                    u32::from_le_bytes(frame_header[4..].try_into().expect("4 bytes")) as usize;
                if raw_len != raw.len() || compressed_len > set[family].trailer.data_bytes as usize
                {
                    return Err(BakError::damaged(
                        &path,
                        format!("block {block} has an impossible frame header"),
                    ));
                }
                frame.resize(compressed_len, 0);
                read_data(&mut stripe.file, &path, &mut frame)?;
                hashers[family].update(&frame_header);
                hashers[family].update(&frame);
                let written = zstd::bulk::decompress_to_buffer(&frame, raw).map_err(|e| {
                    BakError::damaged(&path, format!("block {block} does not decompress: {e}"))
                })?;
                if written != raw.len() {
                    return Err(BakError::damaged(
                        &path,
                        format!("block {block} decompresses to the wrong size"),
                    ));
                }
                FRAME_HEADER_SIZE + compressed_len
            } else {
                read_data(&mut stripe.file, &path, raw)?;
                hashers[family].update(&*raw);
                raw.len()
            };
            read_bytes[family] += stored_len as u64;
            positions[family] += stored_len as u64;
            if read_bytes[family] > set[family].trailer.data_bytes {
                return Err(BakError::damaged(
                    &path,
                    "the backup set holds more data than its end marker says",
                ));
            }
            let first_page = block * layout.block_pages as u64;
            for (i, page) in raw.chunks_exact(PAGE_SIZE).enumerate() {
                let global = first_page + i as u64;
                let (file_id, page_id) = layout.locate(global);
                if check_checksums {
                    if let Some(problem) = validate_page(page, page_id) {
                        return Err(BakError::PageChecksum {
                            path: path.clone(),
                            file_id,
                            page: page_id,
                            problem,
                        });
                    }
                } else if u32::from_le_bytes(page[4..8].try_into().expect("4 bytes")) != page_id {
                    return Err(BakError::damaged(
                        &path,
                        format!("page ({file_id}:{page_id}) is missing from the backup set"),
                    ));
                }
            }
            sink(first_page, raw)?;
            let done = (first_page + page_count as u64) * PAGE_SIZE as u64;
            if progress(done, total_bytes).is_break() {
                return Err(BakError::Cancelled);
            }
        }
        for (family, stripe) in self.stripes.iter().enumerate() {
            let trailer = &set[family].trailer;
            if read_bytes[family] != trailer.data_bytes {
                return Err(BakError::damaged(
                    &stripe.path,
                    "the backup set holds less data than its end marker says",
                ));
            }
            if check_checksums {
                let computed = std::mem::take(&mut hashers[family]).finish();
                if trailer.data_checksum != Some(computed) {
                    return Err(BakError::damaged(
                        &stripe.path,
                        "the backup checksum does not match: damage to the backup set was detected",
                    ));
                }
            }
        }
        Ok(())
    }
}

fn read_data(file: &mut File, path: &Path, buf: &mut [u8]) -> Result<(), BakError> {
    file.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            BakError::damaged(
                path,
                "the backup set ends early (38: Reached the end of the file.)",
            )
        } else {
            BakError::Io {
                path: path.to_path_buf(),
                source: e,
            }
        }
    })
}

/// RESTORE HEADERONLY: every backup set on the media, in position order. All stripes are needed.
pub fn read_headers(stripes: &[PathBuf]) -> Result<Vec<BackupSetHeader>, BakError> {
    Ok(open_media(stripes)?.headers())
}

/// RESTORE VERIFYONLY: the set at `position` is complete and readable on every stripe, and, when
/// the set was written WITH CHECKSUM, every page checksum and the backup checksum match (SQL
/// Server's default). `check_checksums` is the statement's `WITH CHECKSUM`: it also fails when the
/// set has no checksums (Msg 3187). As in SQL Server, this is not a structural check of the
/// database (that is DBCC CHECKDB after a restore), and a set written without CHECKSUM can hide a
/// damaged page body.
pub fn verify(stripes: &[PathBuf], position: u32, check_checksums: bool) -> Result<(), BakError> {
    let mut media = open_media(stripes)?;
    let set = media.locate(position)?;
    let has_checksums = set[0].record.header.has_backup_checksums;
    if check_checksums && !has_checksums {
        return Err(BakError::NoChecksums);
    }
    media.stream_set(&set, has_checksums, &mut |_, _| Ok(()), &mut |_, _| {
        ControlFlow::Continue(())
    })
}

/// Test helper: flips one byte inside a page of the newest backup set on this stripe (the middle
/// of its data), as a bad disk or a bad copy would. Returns the byte offset changed.
pub fn corrupt_one_page(stripe: &Path) -> Result<u64, BakError> {
    let mut opened = open_stripe(stripe)?;
    let sets = walk_stripe(&mut opened)?;
    let set = sets
        .last()
        .ok_or_else(|| BakError::damaged(stripe, "the device holds no backup set"))?;
    if set.trailer.data_bytes == 0 {
        return Err(BakError::damaged(
            stripe,
            "the newest backup set has no data on this device",
        ));
    }
    let middle = if set.record.header.is_compressed {
        set.trailer.data_bytes / 2
    } else {
        (set.trailer.data_bytes / PAGE_SIZE as u64 / 2) * PAGE_SIZE as u64
            + PAGE_HEADER_SIZE as u64
            + 1_000
    };
    let offset = set.data_offset() + middle;
    let mut byte = [0u8; 1];
    read_exact_at(&mut opened.file, stripe, offset, &mut byte)?;
    byte[0] ^= 0x5A;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(stripe)
        .map_err(BakError::io(stripe))?;
    file.seek(SeekFrom::Start(offset))
        .map_err(BakError::io(stripe))?;
    file.write_all(&byte).map_err(BakError::io(stripe))?;
    Ok(offset)
}
