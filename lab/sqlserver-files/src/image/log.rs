//! The log file (.ldf): a header page and a fixed run of log pages.
//!
//! SQL Server backs up the active part of the log with a full backup and recreates the file on
//! restore; here the whole (small) file travels in the backup and comes back byte for byte,
//! except the database GUID in its header, which follows the restored database.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{Context, Result, ensure};
use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::filler::fill_page;
use super::page::{PAGE_BODY_SIZE, PAGE_SIZE, Page, PageType, validate};
use crate::rng::SplitMix64;

/// Log pages after the header page: the file is 1 MiB.
pub(crate) const LOG_PAGES: u32 = 127;
const LOG_FORMAT: &str = "octobackup-lab-ldf";

/// Page 0 of a log file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogHeader {
    pub format: String,
    pub database_guid: Uuid,
    pub logical_name: String,
    pub created: NaiveDateTime,
    /// Pages in the file, header included.
    pub page_count: u32,
}

pub(crate) fn create_log(
    path: &Path,
    database_guid: Uuid,
    logical_name: &str,
    created: NaiveDateTime,
    seed: u64,
) -> Result<()> {
    let header = LogHeader {
        format: LOG_FORMAT.to_string(),
        database_guid,
        logical_name: logical_name.to_string(),
        created,
        page_count: LOG_PAGES + 1,
    };
    let file =
        File::create(path).with_context(|| format!("cannot create log file {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    out.write_all(&header_page(&header)?.bytes[..])?;
    let mut buf = vec![0u8; PAGE_SIZE];
    for id in 1..=LOG_PAGES {
        fill_page(
            &mut buf,
            PageType::Log,
            id,
            1,
            &mut SplitMix64::derived(&[seed, id as u64, 0x10C]),
        );
        out.write_all(&buf)?;
    }
    out.flush()?;
    Ok(())
}

fn header_page(header: &LogHeader) -> Result<Page> {
    let json = serde_json::to_vec(header)?;
    ensure!(json.len() + 4 <= PAGE_BODY_SIZE, "log header is too large");
    let mut content = (json.len() as u32).to_le_bytes().to_vec();
    content.extend_from_slice(&json);
    let mut page = Page::new(PageType::LogHeader, 0, 0, 1);
    page.set_content(&content);
    page.seal();
    Ok(page)
}

/// Reads the header of a log file.
pub fn read_log_header(log_file: &Path) -> Result<LogHeader> {
    let mut file = File::open(log_file)
        .with_context(|| format!("cannot open log file {}", log_file.display()))?;
    let mut bytes = vec![0u8; PAGE_SIZE];
    file.read_exact(&mut bytes)
        .with_context(|| format!("{} is too short to be a log file", log_file.display()))?;
    if let Some(problem) = validate(&bytes, 0) {
        anyhow::bail!("log file {} header page: {problem}", log_file.display());
    }
    let page = Page::from_bytes(&bytes);
    ensure!(
        page.page_type() == Some(PageType::LogHeader),
        "{} is not a lab log file",
        log_file.display()
    );
    let content = page.content();
    ensure!(content.len() >= 4, "log header is empty");
    let len = u32::from_le_bytes(content[..4].try_into()?) as usize;
    ensure!(content.len() >= 4 + len, "log header is truncated");
    let header: LogHeader =
        serde_json::from_slice(&content[4..4 + len]).context("log header is unreadable")?;
    ensure!(
        header.format == LOG_FORMAT,
        "{} has format {}, expected {LOG_FORMAT}",
        log_file.display(),
        header.format
    );
    Ok(header)
}

/// Points a log file at another database GUID (after a restore).
pub(crate) fn set_log_database_guid(log_file: &Path, guid: Uuid) -> Result<()> {
    let mut header = read_log_header(log_file)?;
    header.database_guid = guid;
    let mut file = OpenOptions::new().write(true).open(log_file)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&header_page(&header)?.bytes[..])?;
    Ok(())
}
