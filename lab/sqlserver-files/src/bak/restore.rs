//! RESTORE DATABASE ... WITH MOVE: writes the data and log files back from a backup set.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::error::BakError;
use super::media::open_media;
use crate::image::{self, DatabaseHeader, PAGE_SIZE};

/// What a restore wrote (for "RESTORE DATABASE successfully processed N pages").
#[derive(Debug, Clone, PartialEq)]
pub struct RestoreSummary {
    pub data_pages: u32,
    pub log_pages: u32,
    /// The restored database's header: the new name and a new database GUID (SQL Server gives
    /// every restored copy its own), the family GUID of the original.
    pub database: DatabaseHeader,
}

/// Restores the set at `position` into `data_target` and `log_target` (overwritten), naming the
/// database `new_database_name`. Checksums are verified when the set has them, as RESTORE does
/// by default. On any failure the partly written target files are removed.
pub fn restore(
    stripes: &[PathBuf],
    position: u32,
    data_target: &Path,
    log_target: &Path,
    new_database_name: &str,
    progress: &mut dyn FnMut(u64, u64) -> ControlFlow<()>,
) -> Result<RestoreSummary, BakError> {
    if new_database_name.is_empty() {
        return Err(BakError::InvalidRequest(
            "a restored database needs a name".to_string(),
        ));
    }
    if data_target == log_target {
        return Err(BakError::InvalidRequest(
            "the data and log files cannot be the same file".to_string(),
        ));
    }
    let mut media = open_media(stripes)?;
    let set = media.locate(position)?;
    let layout = set[0].record.layout.clone();
    let has_checksums = set[0].record.header.has_backup_checksums;

    let result = (|| {
        let mut data = create_target(data_target)?;
        let mut log = create_target(log_target)?;
        let data_bytes = layout.data_pages as u64 * PAGE_SIZE as u64;
        media.stream_set(
            &set,
            has_checksums,
            &mut |first_page, pages| {
                let start = first_page * PAGE_SIZE as u64;
                let end = start + pages.len() as u64;
                let split = (data_bytes.clamp(start, end) - start) as usize;
                data.write_all(&pages[..split])
                    .map_err(BakError::io(data_target))?;
                log.write_all(&pages[split..])
                    .map_err(BakError::io(log_target))?;
                Ok(())
            },
            progress,
        )?;
        data.flush().map_err(BakError::io(data_target))?;
        log.flush().map_err(BakError::io(log_target))?;
        drop((data, log));
        let as_database = |e: anyhow::Error, path: &Path| BakError::Database {
            path: path.to_path_buf(),
            detail: format!("{e:#}"),
        };
        let new_guid = Uuid::new_v4();
        image::set_database_name(data_target, new_database_name)
            .map_err(|e| as_database(e, data_target))?;
        image::set_database_guid(data_target, new_guid).map_err(|e| as_database(e, data_target))?;
        image::set_log_database_guid(log_target, new_guid)
            .map_err(|e| as_database(e, log_target))?;
        let database = image::read_header(data_target).map_err(|e| as_database(e, data_target))?;
        Ok(RestoreSummary {
            data_pages: layout.data_pages,
            log_pages: layout.log_pages,
            database,
        })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(data_target);
        let _ = std::fs::remove_file(log_target);
    }
    result
}

fn create_target(path: &Path) -> Result<BufWriter<File>, BakError> {
    let file = File::create(path).map_err(|e| BakError::cannot_open(path, &e, true))?;
    Ok(BufWriter::with_capacity(1 << 20, file))
}

/// Restores the differential set at `position` onto a database restored from its base (RESTORE
/// DATABASE ... FROM <differential>): the changed data pages go to their places in `data_target`
/// (grown or cut to the size the database had), the log file is rewritten. The database keeps
/// the name and GUID it was restored under. The caller checks that the base is the right one
/// (SQL Server's Msg 3136/3117); a set that is not a differential is refused here.
pub fn restore_differential(
    stripes: &[PathBuf],
    position: u32,
    data_target: &Path,
    log_target: &Path,
    progress: &mut dyn FnMut(u64, u64) -> ControlFlow<()>,
) -> Result<RestoreSummary, BakError> {
    use std::io::{Seek, SeekFrom};
    let mut media = open_media(stripes)?;
    let set = media.locate(position)?;
    let record = set[0].record.clone();
    if !record.header.is_differential() {
        return Err(BakError::InvalidRequest(
            "the backup set is not a differential backup".to_string(),
        ));
    }
    let as_database = |e: anyhow::Error, path: &Path| BakError::Database {
        path: path.to_path_buf(),
        detail: format!("{e:#}"),
    };
    let target = image::read_header(data_target).map_err(|e| as_database(e, data_target))?;
    let data_size = record
        .header
        .files
        .iter()
        .find(|f| f.file_type == 'D')
        .map_or(0, |f| f.size);
    let layout = record.layout.clone();
    let mut data = std::fs::OpenOptions::new()
        .write(true)
        .open(data_target)
        .map_err(|e| BakError::cannot_open(data_target, &e, false))?;
    data.set_len(data_size).map_err(BakError::io(data_target))?;
    let mut log = create_target(log_target)?;
    media.stream_set(
        &set,
        record.header.has_backup_checksums,
        &mut |first_page, pages| {
            for (i, page) in pages.chunks_exact(PAGE_SIZE).enumerate() {
                match layout.locate(first_page + i as u64) {
                    (1, id) => {
                        data.seek(SeekFrom::Start(id as u64 * PAGE_SIZE as u64))
                            .map_err(BakError::io(data_target))?;
                        data.write_all(page).map_err(BakError::io(data_target))?;
                    }
                    _ => log.write_all(page).map_err(BakError::io(log_target))?,
                }
            }
            Ok(())
        },
        progress,
    )?;
    data.flush().map_err(BakError::io(data_target))?;
    log.flush().map_err(BakError::io(log_target))?;
    drop((data, log));
    // The differential carries the source's file header: the copy keeps its own name and GUID.
    image::set_database_name(data_target, &target.name).map_err(|e| as_database(e, data_target))?;
    image::set_database_guid(data_target, target.database_guid)
        .map_err(|e| as_database(e, data_target))?;
    image::set_log_database_guid(log_target, target.database_guid)
        .map_err(|e| as_database(e, log_target))?;
    let database = image::read_header(data_target).map_err(|e| as_database(e, data_target))?;
    Ok(RestoreSummary {
        data_pages: layout.data_pages,
        log_pages: layout.log_pages,
        database,
    })
}
