//! BACKUP DATABASE: writes one backup set over the stripes, new or appended.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::checksum::StreamChecksum;
use super::error::BakError;
use super::format::{
    FRAME_HEADER_SIZE, MEDIA_HEADER_SIZE, MediaHeader, SET_HEADER_SIZE, SetLayout, SetRecord,
    Trailer,
};
use super::media::{open_stripe, walk_stripe};
use super::{
    BackupFileEntry, BackupOptions, BackupSetHeader, MAX_STRIPES, database_version, sql_lsn,
};
use crate::image::{self, PAGE_SIZE, validate_page};

/// zstd level for COMPRESSION: fast, like SQL Server's own (which favours speed over ratio).
const COMPRESSION_LEVEL: i32 = 1;

/// A stripe being written, and how to undo it if the backup fails.
struct Target {
    path: PathBuf,
    file: File,
    family_number: u32,
    /// Where this backup set starts.
    set_offset: u64,
    data_bytes: u64,
    pages: u64,
    hasher: Option<StreamChecksum>,
    /// None: the file is ours (new or overwritten) and is removed on failure; Some(len): an
    /// existing media we append to, cut back to `len` on failure.
    undo_len: Option<u64>,
}

/// Writes one backup set of the database into the stripe files: every stripe is needed to restore,
/// pages go to the stripes in blocks of `max_transfer_size`. With `init` the files start a new
/// media set; without it the set is appended (position = previous + 1), as SQL Server does.
/// With `checksum`, every page checksum is verified while reading (a bad page fails the backup,
/// Msg 3043) and a backup checksum is written. A full backup that is not `copy_only` becomes the
/// database's differential base. `progress(done_bytes, total_bytes)` is called after every block;
/// `ControlFlow::Break` aborts with [`BakError::Cancelled`]. On any failure the stripes are put
/// back as they were (new files removed, appended files cut back).
pub fn write_backup(
    data_file: &Path,
    log_file: &Path,
    stripes: &[PathBuf],
    opts: &BackupOptions,
    progress: &mut dyn FnMut(u64, u64) -> ControlFlow<()>,
) -> Result<BackupSetHeader, BakError> {
    check_request(stripes, opts)?;
    let log_header = image::read_log_header(log_file).map_err(database_error(log_file))?;
    let data_len = std::fs::metadata(data_file)
        .map_err(BakError::io(data_file))?
        .len();
    let log_len = std::fs::metadata(log_file)
        .map_err(BakError::io(log_file))?
        .len();
    if log_len % PAGE_SIZE as u64 != 0 || log_len / PAGE_SIZE as u64 != log_header.page_count as u64
    {
        return Err(BakError::Database {
            path: log_file.to_path_buf(),
            detail: "the log file size does not match its header".into(),
        });
    }
    let before = image::read_header(data_file).map_err(database_error(data_file))?;
    if log_header.database_guid != before.database_guid {
        return Err(BakError::Database {
            path: log_file.to_path_buf(),
            detail: "the log file belongs to another database".into(),
        });
    }
    // BACKUP starts with a checkpoint: a new LSN in the header.
    let db = image::checkpoint(data_file).map_err(database_error(data_file))?;
    if data_len != db.page_count as u64 * PAGE_SIZE as u64 {
        return Err(BakError::Database {
            path: data_file.to_path_buf(),
            detail: "the data file size does not match its header".into(),
        });
    }

    // A differential holds only the extents the differential bitmap marks since the base; with
    // no base (no full backup that was not COPY_ONLY) SQL Server refuses it (Msg 3035).
    let differential_base = if opts.differential {
        match db.differential_base_guid {
            Some(guid) if db.differential_base_lsn != 0 => Some((db.differential_base_lsn, guid)),
            _ => return Err(BakError::NoDifferentialBase),
        }
    } else {
        None
    };
    let data_runs = if opts.differential {
        Some(image::differential_runs(data_file).map_err(database_error(data_file))?)
    } else {
        None
    };
    let data_pages_in_set = data_runs
        .as_ref()
        .map_or(db.page_count, |runs| runs.iter().map(|r| r.1).sum());

    let (mut targets, media_set_id, position) = open_targets(stripes, opts)?;
    let result = (|| {
        let block_pages = opts.max_transfer_size / PAGE_SIZE as u32;
        let mut record = SetRecord {
            header: BackupSetHeader {
                backup_set_uuid: Uuid::new_v4(),
                media_set_id,
                position,
                name: opts.name.clone(),
                description: opts.description.clone(),
                backup_type: if opts.differential { 5 } else { 1 },
                database_name: db.name.clone(),
                database_guid: db.database_guid,
                family_guid: db.family_guid,
                database_creation_date: db.created,
                server_name: opts.server_name.clone(),
                machine_name: opts
                    .server_name
                    .split('\\')
                    .next()
                    .unwrap_or_default()
                    .to_string(),
                user_name: opts.user_name.clone(),
                software_version: opts.software_version.clone(),
                database_version: database_version(&opts.software_version),
                compatibility_level: db.compatibility_level,
                collation: db.collation.clone(),
                recovery_model: db.recovery_model.clone(),
                backup_start_date: chrono::Local::now().naive_local(),
                backup_finish_date: chrono::Local::now().naive_local(),
                first_lsn: sql_lsn(db.lsn - 1),
                last_lsn: sql_lsn(db.lsn + 1),
                checkpoint_lsn: sql_lsn(db.lsn),
                database_backup_lsn: if db.differential_base_lsn == 0 {
                    0
                } else {
                    sql_lsn(db.differential_base_lsn)
                },
                differential_base_lsn: differential_base.map_or(0, |(lsn, _)| sql_lsn(lsn)),
                differential_base_guid: differential_base.map(|(_, guid)| guid),
                // COPY_ONLY is ignored with DIFFERENTIAL (Microsoft Learn, BACKUP: COPY_ONLY).
                is_copy_only: opts.copy_only && !opts.differential,
                has_backup_checksums: opts.checksum,
                is_compressed: opts.compression,
                backup_size: 0,
                compressed_backup_size: 0,
                files: vec![
                    BackupFileEntry {
                        logical_name: db.logical_data_name.clone(),
                        physical_name: data_file.display().to_string(),
                        file_type: 'D',
                        file_id: 1,
                        size: data_len,
                    },
                    BackupFileEntry {
                        logical_name: db.logical_log_name.clone(),
                        physical_name: log_file.display().to_string(),
                        file_type: 'L',
                        file_id: 2,
                        size: log_len,
                    },
                ],
                stripe_count: targets.len() as u32,
                max_transfer_size: opts.max_transfer_size,
            },
            layout: SetLayout {
                data_pages: data_pages_in_set,
                log_pages: log_header.page_count,
                block_pages,
                stripe_data_bytes: vec![0; targets.len()],
                complete: false,
                data_runs,
            },
        };
        let placeholder = record.encode().map_err(BakError::InvalidRequest)?;
        for target in &mut targets {
            write_at(target, target.set_offset, &placeholder)?;
        }
        copy_pages(
            data_file,
            log_file,
            &record.layout,
            &mut targets,
            opts,
            progress,
        )?;

        let mut on_disk = 0;
        for target in &mut targets {
            let trailer = Trailer {
                position,
                family_number: target.family_number,
                backup_set_uuid: record.header.backup_set_uuid,
                data_bytes: target.data_bytes,
                pages: target.pages,
                data_checksum: target.hasher.take().map(StreamChecksum::finish),
            };
            target
                .file
                .write_all(&trailer.encode())
                .map_err(BakError::io(&target.path))?;
            record.layout.stripe_data_bytes[target.family_number as usize - 1] = target.data_bytes;
            on_disk += (SET_HEADER_SIZE + super::format::TRAILER_SIZE) as u64 + target.data_bytes;
        }
        let overhead =
            targets.len() as u64 * (SET_HEADER_SIZE + super::format::TRAILER_SIZE) as u64;
        record.header.backup_size = overhead + record.layout.total_pages() * PAGE_SIZE as u64;
        record.header.compressed_backup_size = on_disk;
        record.header.backup_finish_date = chrono::Local::now().naive_local();
        record.layout.complete = true;
        let final_header = record.encode().map_err(BakError::InvalidRequest)?;
        for target in &mut targets {
            write_at(target, target.set_offset, &final_header)?;
            target.file.flush().map_err(BakError::io(&target.path))?;
        }
        Ok(record.header)
    })();

    match result {
        Ok(header) => {
            if !opts.copy_only && !opts.differential {
                image::set_differential_base(data_file, db.lsn, header.backup_set_uuid)
                    .map_err(database_error(data_file))?;
            }
            Ok(header)
        }
        Err(err) => {
            for target in targets {
                match target.undo_len {
                    None => {
                        drop(target.file);
                        let _ = std::fs::remove_file(&target.path);
                    }
                    Some(len) => {
                        let _ = target.file.set_len(len);
                    }
                }
            }
            Err(err)
        }
    }
}

fn database_error(path: &Path) -> impl FnOnce(anyhow::Error) -> BakError + '_ {
    move |e| BakError::Database {
        path: path.to_path_buf(),
        detail: format!("{e:#}"),
    }
}

fn check_request(stripes: &[PathBuf], opts: &BackupOptions) -> Result<(), BakError> {
    if stripes.is_empty() {
        return Err(BakError::InvalidRequest(
            "no backup device given".to_string(),
        ));
    }
    if stripes.len() > MAX_STRIPES {
        return Err(BakError::InvalidRequest(format!(
            "at most {MAX_STRIPES} backup devices, got {}",
            stripes.len()
        )));
    }
    for (i, path) in stripes.iter().enumerate() {
        if stripes[..i].contains(path) {
            return Err(BakError::InvalidRequest(format!(
                "backup device '{}' is given twice",
                path.display()
            )));
        }
    }
    let size = opts.max_transfer_size;
    if !(64 * 1024..=4 * 1024 * 1024).contains(&size) || !size.is_multiple_of(64 * 1024) {
        return Err(BakError::InvalidRequest(format!(
            "MAXTRANSFERSIZE must be a multiple of 65536 between 65536 and 4194304, got {size}"
        )));
    }
    Ok(())
}

/// Opens the stripes: a new media set (FORMAT/INIT, or files that do not exist yet), or the
/// existing one to append to. Returns the targets, the media set id and the new set's position.
fn open_targets(
    stripes: &[PathBuf],
    opts: &BackupOptions,
) -> Result<(Vec<Target>, Uuid, u32), BakError> {
    let existing: Vec<bool> = stripes
        .iter()
        .map(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0))
        .collect();
    if opts.init || existing.iter().all(|e| !e) {
        let media_set_id = Uuid::new_v4();
        let media_date = chrono::Utc::now().timestamp();
        let mut targets: Vec<Target> = Vec::with_capacity(stripes.len());
        for (i, path) in stripes.iter().enumerate() {
            let opened = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(path);
            let file = match opened {
                Ok(file) => file,
                Err(e) => {
                    for target in targets {
                        drop(target.file);
                        let _ = std::fs::remove_file(&target.path);
                    }
                    return Err(BakError::cannot_open(path, &e, true));
                }
            };
            let family_number = i as u32 + 1;
            let mut target = new_target(
                path,
                file,
                family_number,
                MEDIA_HEADER_SIZE as u64,
                None,
                opts,
            );
            let media = MediaHeader {
                media_set_id,
                family_number,
                family_count: stripes.len() as u32,
                media_date,
            };
            target
                .file
                .write_all(&media.encode())
                .map_err(BakError::io(path))?;
            targets.push(target);
        }
        return Ok((targets, media_set_id, 1));
    }
    if let Some(missing) = stripes.iter().zip(&existing).find(|(_, e)| !**e) {
        return Err(BakError::mismatched(
            missing.0,
            "the other devices hold a media set and this one does not; use FORMAT to start a new media set",
        ));
    }
    // Append: the devices must be exactly the families of one media set.
    let mut media = Vec::with_capacity(stripes.len());
    for path in stripes {
        let mut stripe = open_stripe(path)?;
        let sets = walk_stripe(&mut stripe)?;
        media.push((stripe, sets));
    }
    let first = media[0].0.media;
    for (stripe, sets) in &media {
        if stripe.media.media_set_id != first.media_set_id {
            return Err(BakError::mismatched(
                &stripe.path,
                "it belongs to another media set",
            ));
        }
        if stripe.media.family_count != stripes.len() as u32 {
            return Err(BakError::mismatched(
                &stripe.path,
                format!(
                    "the media is formatted for {} media families but {} devices were given",
                    stripe.media.family_count,
                    stripes.len()
                ),
            ));
        }
        if sets.len() != media[0].1.len() {
            return Err(BakError::mismatched(
                &stripe.path,
                "it does not hold the same backup sets as the other devices",
            ));
        }
    }
    let mut families: Vec<u32> = media.iter().map(|(s, _)| s.media.family_number).collect();
    families.sort_unstable();
    families.dedup();
    if families.len() != stripes.len() {
        return Err(BakError::mismatched(
            &media[0].0.path,
            "two devices are the same media family",
        ));
    }
    let position = media[0].1.len() as u32 + 1;
    let mut targets = Vec::with_capacity(stripes.len());
    for (stripe, sets) in media {
        let end = sets.last().map_or(MEDIA_HEADER_SIZE as u64, |s| s.end());
        let file = OpenOptions::new()
            .write(true)
            .open(&stripe.path)
            .map_err(|e| BakError::cannot_open(&stripe.path, &e, false))?;
        file.set_len(end).map_err(BakError::io(&stripe.path))?;
        targets.push(new_target(
            &stripe.path,
            file,
            stripe.media.family_number,
            end,
            Some(stripe.len),
            opts,
        ));
    }
    Ok((targets, first.media_set_id, position))
}

fn new_target(
    path: &Path,
    file: File,
    family_number: u32,
    set_offset: u64,
    undo_len: Option<u64>,
    opts: &BackupOptions,
) -> Target {
    Target {
        path: path.to_path_buf(),
        file,
        family_number,
        set_offset,
        data_bytes: 0,
        pages: 0,
        hasher: opts.checksum.then(StreamChecksum::default),
        undo_len,
    }
}

/// Writes `bytes` at `offset` and leaves the file positioned after them.
fn write_at(target: &mut Target, offset: u64, bytes: &[u8]) -> Result<(), BakError> {
    target
        .file
        .seek(SeekFrom::Start(offset))
        .map_err(BakError::io(&target.path))?;
    target
        .file
        .write_all(bytes)
        .map_err(BakError::io(&target.path))
}

/// Streams the data file's pages (all, or a differential's runs) then the log file's to the
/// stripes, block by block (block b to the family (b mod count) + 1), checking page checksums
/// when asked.
fn copy_pages(
    data_file: &Path,
    log_file: &Path,
    layout: &SetLayout,
    targets: &mut [Target],
    opts: &BackupOptions,
    progress: &mut dyn FnMut(u64, u64) -> ControlFlow<()>,
) -> Result<(), BakError> {
    let mut sources = [
        (
            File::open(data_file).map_err(BakError::io(data_file))?,
            data_file,
        ),
        (
            File::open(log_file).map_err(BakError::io(log_file))?,
            log_file,
        ),
    ];
    // (source index, first page, count), in the order the set holds them.
    let mut segments: Vec<(usize, u32, u32)> = match &layout.data_runs {
        Some(runs) => runs
            .iter()
            .map(|&(start, count)| (0, start, count))
            .collect(),
        None => vec![(0, 0, layout.data_pages)],
    };
    segments.push((1, 0, layout.log_pages));
    segments.retain(|s| s.2 > 0);
    for target in targets.iter_mut() {
        let data_start = target.set_offset + SET_HEADER_SIZE as u64;
        target
            .file
            .seek(SeekFrom::Start(data_start))
            .map_err(BakError::io(&target.path))?;
    }
    targets.sort_by_key(|t| t.family_number);
    let total_bytes = layout.total_pages() * PAGE_SIZE as u64;
    let mut block = vec![0u8; layout.block_pages as usize * PAGE_SIZE];
    let mut compressed = Vec::new();
    let mut global = 0u64;
    let (mut segment, mut offset) = (0usize, 0u32);
    for index in 0..layout.block_count() {
        let page_count = layout.pages_in_block(index) as usize;
        let raw = &mut block[..page_count * PAGE_SIZE];
        // Fill the block from the segments, checking pages as they come.
        let mut filled = 0usize;
        while filled < page_count {
            let (source, first, count) = segments[segment];
            let (file, path) = &mut sources[source];
            let take = ((count - offset) as usize).min(page_count - filled);
            let chunk = &mut raw[filled * PAGE_SIZE..(filled + take) * PAGE_SIZE];
            file.seek(SeekFrom::Start((first + offset) as u64 * PAGE_SIZE as u64))
                .map_err(BakError::io(path))?;
            file.read_exact(chunk).map_err(BakError::io(path))?;
            if opts.checksum {
                for (i, page) in chunk.chunks_exact(PAGE_SIZE).enumerate() {
                    let page_id = first + offset + i as u32;
                    if let Some(problem) = validate_page(page, page_id) {
                        return Err(BakError::PageChecksum {
                            path: path.to_path_buf(),
                            file_id: source as u32 + 1,
                            page: page_id,
                            problem,
                        });
                    }
                }
            }
            filled += take;
            global += take as u64;
            offset += take as u32;
            if offset == count {
                segment += 1;
                offset = 0;
            }
        }
        let target = &mut targets[(index % targets.len() as u64) as usize];
        let stored: &[u8] = if opts.compression {
            let frame =
                zstd::bulk::compress(raw, COMPRESSION_LEVEL).map_err(BakError::io(&target.path))?;
            compressed.clear();
            compressed.extend_from_slice(&(raw.len() as u32).to_le_bytes());
            compressed.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            compressed.extend_from_slice(&frame);
            debug_assert_eq!(compressed.len(), FRAME_HEADER_SIZE + frame.len());
            &compressed
        } else {
            raw
        };
        target
            .file
            .write_all(stored)
            .map_err(BakError::io(&target.path))?;
        if let Some(hasher) = &mut target.hasher {
            hasher.update(stored);
        }
        target.data_bytes += stored.len() as u64;
        target.pages += page_count as u64;
        if progress(global * PAGE_SIZE as u64, total_bytes).is_break() {
            return Err(BakError::Cancelled);
        }
    }
    Ok(())
}
