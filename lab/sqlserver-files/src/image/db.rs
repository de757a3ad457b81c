//! An open data file: its header page, its catalog, and page reads/writes/allocation.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::page::{PAGE_BODY_SIZE, PAGE_SIZE, Page, PageType, validate};
use super::values::ColumnType;

pub(crate) const FORMAT_NAME: &str = "octobackup-lab-mdf";
pub(crate) const FORMAT_VERSION: u32 = 1;
pub(crate) const CATALOG_PAGE: u32 = 1;

/// What page 0 of a data file says about the database (RESTORE FILELISTONLY, HEADERONLY and
/// `sys.databases` draw on it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatabaseHeader {
    pub format: String,
    pub format_version: u32,
    pub name: String,
    /// Identifies this copy of the database; a restore assigns a new one, as SQL Server does.
    pub database_guid: Uuid,
    /// Identifies the database's lineage; kept by restores.
    pub family_guid: Uuid,
    pub logical_data_name: String,
    pub logical_log_name: String,
    pub created: NaiveDateTime,
    /// Pages in the data file, header page included.
    pub page_count: u32,
    /// The newest log sequence number used (a counter; see [`crate::bak::sql_lsn`]).
    pub lsn: u64,
    /// Checkpoint LSN of the last full backup that was not COPY_ONLY (0 = none): the differential base.
    pub differential_base_lsn: u64,
    pub differential_base_guid: Option<Uuid>,
    pub recovery_model: String,
    pub collation: String,
    pub compatibility_level: u16,
    pub catalog_page: u32,
}

/// A run of consecutive page ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Extent {
    pub start: u32,
    pub count: u32,
}

/// A set of page ids kept as sorted-by-insertion runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Extents(pub Vec<Extent>);

impl Extents {
    pub fn push(&mut self, id: u32) {
        self.push_run(id, 1);
    }
    pub fn push_run(&mut self, start: u32, count: u32) {
        if count == 0 {
            return;
        }
        if let Some(last) = self.0.last_mut()
            && last.start + last.count == start
        {
            last.count += count;
            return;
        }
        self.0.push(Extent { start, count });
    }
    pub fn pop_first(&mut self) -> Option<u32> {
        let first = self.0.first_mut()?;
        let id = first.start;
        first.start += 1;
        first.count -= 1;
        if first.count == 0 {
            self.0.remove(0);
        }
        Some(id)
    }
    pub fn len(&self) -> u64 {
        self.0.iter().map(|e| e.count as u64).sum()
    }
    /// The `index`-th page id (in extent order).
    pub fn nth(&self, mut index: u64) -> Option<u32> {
        for extent in &self.0 {
            if index < extent.count as u64 {
                return Some(extent.start + index as u32);
            }
            index -= extent.count as u64;
        }
        None
    }
}

/// Where a table lives.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TableEntry {
    pub object_id: u32,
    pub schema: String,
    pub name: String,
    pub columns: Vec<(String, ColumnType)>,
    /// First and last page of the table's chain of data pages.
    pub first_page: u32,
    pub last_page: u32,
    pub row_count: u64,
}

/// The table directory and page allocation state, stored as JSON in a chain of catalog pages.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Catalog {
    pub tables: Vec<TableEntry>,
    pub filler: Extents,
    pub free: Extents,
    pub next_object_id: u32,
    /// The differential bitmap (SQL Server's DCM pages): one bit per extent of 8 pages written
    /// since the last full backup that was not COPY_ONLY.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed_extents: Vec<u64>,
}

/// Pages per extent, the unit SQL Server's differential bitmap tracks.
pub(crate) const EXTENT_PAGES: u32 = 8;

impl Catalog {
    /// Marks the extents holding pages `first..first + count` as changed.
    pub fn mark_changed(&mut self, first: u32, count: u32) {
        if count == 0 {
            return;
        }
        let (from, to) = (first / EXTENT_PAGES, (first + count - 1) / EXTENT_PAGES);
        let words = to as usize / 64 + 1;
        if self.changed_extents.len() < words {
            self.changed_extents.resize(words, 0);
        }
        for extent in from..=to {
            self.changed_extents[extent as usize / 64] |= 1 << (extent % 64);
        }
    }

    pub fn is_changed(&self, extent: u32) -> bool {
        self.changed_extents
            .get(extent as usize / 64)
            .is_some_and(|w| w & (1 << (extent % 64)) != 0)
    }
}

/// A page that failed its checksum or header check while being read (SQL Server's Msg 824).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SQL Server detected a logical consistency-based I/O error: {problem}. It occurred during a read of page (1:{page}) in file '{}'.", file.display())]
pub struct CorruptPage {
    pub file: PathBuf,
    pub page: u32,
    pub problem: String,
}

/// An open data file.
pub(crate) struct Db {
    file: File,
    pub path: PathBuf,
    pub header: DatabaseHeader,
    pub catalog: Catalog,
    /// The catalog pages as last read or written, to skip rewriting unchanged ones.
    catalog_pages: Vec<Page>,
}

impl Db {
    /// Creates a data file holding only its header and an empty catalog.
    pub fn create_empty(path: &Path, header: DatabaseHeader) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .with_context(|| format!("cannot create data file {}", path.display()))?;
        let mut db = Self {
            file,
            path: path.to_path_buf(),
            header,
            catalog: Catalog::default(),
            catalog_pages: Vec::new(),
        };
        db.header.page_count = CATALOG_PAGE + 1;
        db.header.catalog_page = CATALOG_PAGE;
        db.catalog.next_object_id = 100;
        db.catalog_pages
            .push(Page::new(PageType::Catalog, CATALOG_PAGE, 0, db.header.lsn));
        db.write_catalog_page(0, true)?;
        db.write_header()?;
        Ok(db)
    }

    pub fn open(path: &Path, writable: bool) -> Result<Self> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(path)
            .with_context(|| format!("cannot open data file {}", path.display()))?;
        let header = read_header_page(&mut file, path)?;
        let len = file.metadata()?.len();
        ensure!(
            len == header.page_count as u64 * PAGE_SIZE as u64,
            "data file {} is {len} bytes but its header says {} pages",
            path.display(),
            header.page_count
        );
        let mut db = Self {
            file,
            path: path.to_path_buf(),
            header,
            catalog: Catalog::default(),
            catalog_pages: Vec::new(),
        };
        let mut json = Vec::new();
        let mut next = db.header.catalog_page;
        let mut total = None;
        while next != 0 {
            ensure!(db.catalog_pages.len() < 1 << 20, "catalog chain loops");
            let page = db.read_page(next)?;
            ensure!(
                page.page_type() == Some(PageType::Catalog),
                "page {next} should be a catalog page"
            );
            let content = page.content();
            if total.is_none() {
                ensure!(content.len() >= 4, "catalog page {next} is empty");
                total = Some(u32::from_le_bytes(content[..4].try_into()?) as usize);
                json.extend_from_slice(&content[4..]);
            } else {
                json.extend_from_slice(content);
            }
            next = page.next_page();
            db.catalog_pages.push(page);
        }
        let total = total.context("catalog is missing")?;
        ensure!(json.len() >= total, "catalog is truncated");
        db.catalog = serde_json::from_slice(&json[..total]).context("catalog is unreadable")?;
        Ok(db)
    }

    /// Reads a page and checks it, failing as SQL Server's Msg 824 on a bad page.
    pub fn read_page(&mut self, id: u32) -> Result<Page> {
        ensure!(
            id < self.header.page_count,
            "page {id} is beyond the end of the file"
        );
        let mut page = Page {
            bytes: Box::new([0; PAGE_SIZE]),
        };
        self.file
            .seek(SeekFrom::Start(id as u64 * PAGE_SIZE as u64))?;
        self.file.read_exact(&mut page.bytes[..])?;
        if let Some(problem) = validate(&page.bytes[..], id) {
            return Err(CorruptPage {
                file: self.path.clone(),
                page: id,
                problem,
            }
            .into());
        }
        Ok(page)
    }

    /// Reads a page without checking it.
    pub fn read_raw(&mut self, id: u32, out: &mut [u8]) -> Result<()> {
        self.file
            .seek(SeekFrom::Start(id as u64 * PAGE_SIZE as u64))?;
        self.file.read_exact(out)?;
        Ok(())
    }

    /// Seals and writes a page at its id.
    pub fn write_page(&mut self, page: &mut Page) -> Result<()> {
        page.seal();
        self.write_raw(page.page_id(), &page.bytes[..])
    }

    pub fn write_raw(&mut self, id: u32, bytes: &[u8]) -> Result<()> {
        self.catalog
            .mark_changed(id, (bytes.len() / PAGE_SIZE) as u32);
        self.file
            .seek(SeekFrom::Start(id as u64 * PAGE_SIZE as u64))?;
        self.file.write_all(bytes)?;
        Ok(())
    }

    /// Appends already sealed pages (a multiple of the page size) at the end of the file.
    pub fn append_raw(&mut self, pages: &[u8]) -> Result<()> {
        debug_assert_eq!(pages.len() % PAGE_SIZE, 0);
        let first = self.header.page_count;
        self.write_raw(first, pages)?;
        self.header.page_count += (pages.len() / PAGE_SIZE) as u32;
        Ok(())
    }

    /// A new LSN for the pages about to be written.
    pub fn next_lsn(&mut self) -> u64 {
        self.header.lsn += 1;
        self.header.lsn
    }

    /// A page id to write: a freed page if any, else a new one at the end. The caller writes it.
    pub fn allocate(&mut self) -> u32 {
        if let Some(id) = self.catalog.free.pop_first() {
            return id;
        }
        self.allocate_at_end()
    }

    fn allocate_at_end(&mut self) -> u32 {
        let id = self.header.page_count;
        self.header.page_count += 1;
        id
    }

    /// Deallocates a page: it becomes a free page, ready for reuse.
    pub fn free(&mut self, id: u32, lsn: u64) -> Result<()> {
        let mut page = Page::new(PageType::Free, id, 0, lsn);
        self.write_page(&mut page)?;
        self.catalog.free.push(id);
        Ok(())
    }

    /// Writes the catalog (only pages whose content changed) and the header page.
    pub fn save(&mut self) -> Result<()> {
        let json = serde_json::to_vec(&self.catalog)?;
        let mut stream = (json.len() as u32).to_le_bytes().to_vec();
        stream.extend_from_slice(&json);
        let chunks: Vec<&[u8]> = stream.chunks(PAGE_BODY_SIZE).collect();
        while self.catalog_pages.len() < chunks.len() {
            let id = self.allocate_at_end();
            self.catalog_pages
                .push(Page::new(PageType::Catalog, id, 0, 0));
        }
        let lsn = self.header.lsn;
        for index in 0..self.catalog_pages.len() {
            let content = chunks.get(index).copied().unwrap_or(&[]);
            let next = self.catalog_pages_next(index);
            let page = &mut self.catalog_pages[index];
            let changed = page.content() != content
                || page.next_page() != next
                || page.used() != content.len();
            if changed {
                page.set_content(content);
                page.set_next_page(next);
                page.set_lsn(lsn);
                self.write_catalog_page(index, false)?;
            }
        }
        self.write_header()
    }

    /// Ids of the catalog pages.
    pub fn catalog_page_ids(&self) -> Vec<u32> {
        self.catalog_pages.iter().map(Page::page_id).collect()
    }

    fn catalog_pages_next(&self, index: usize) -> u32 {
        self.catalog_pages.get(index + 1).map_or(0, Page::page_id)
    }

    fn write_catalog_page(&mut self, index: usize, initial: bool) -> Result<()> {
        if initial {
            let stream = (2u32)
                .to_le_bytes()
                .iter()
                .chain(b"{}")
                .copied()
                .collect::<Vec<u8>>();
            self.catalog_pages[index].set_content(&stream);
        }
        let mut page = self.catalog_pages[index].clone();
        self.write_page(&mut page)?;
        self.catalog_pages[index] = page;
        Ok(())
    }

    pub fn write_header(&mut self) -> Result<()> {
        let mut page = header_page(&self.header)?;
        self.write_page(&mut page)
    }

    pub fn flush(&mut self) -> Result<()> {
        self.file.flush()?;
        Ok(())
    }

    pub fn table_index(&self, schema: &str, name: &str) -> Result<usize> {
        self.catalog
            .tables
            .iter()
            .position(|t| {
                t.schema.eq_ignore_ascii_case(schema) && t.name.eq_ignore_ascii_case(name)
            })
            .with_context(|| format!("Invalid object name '{schema}.{name}'."))
    }
}

/// Page 0: the header as JSON with a length prefix.
pub(crate) fn header_page(header: &DatabaseHeader) -> Result<Page> {
    let json = serde_json::to_vec(header)?;
    ensure!(
        json.len() + 4 <= PAGE_BODY_SIZE,
        "database header is too large"
    );
    let mut content = (json.len() as u32).to_le_bytes().to_vec();
    content.extend_from_slice(&json);
    let mut page = Page::new(PageType::FileHeader, 0, 0, header.lsn);
    page.set_content(&content);
    page.seal();
    Ok(page)
}

/// Parses page 0 of a data file (already read into memory).
pub(crate) fn parse_header_page(bytes: &[u8], path: &Path) -> Result<DatabaseHeader> {
    if let Some(problem) = validate(bytes, 0) {
        return Err(CorruptPage {
            file: path.to_path_buf(),
            page: 0,
            problem,
        }
        .into());
    }
    let page = Page::from_bytes(bytes);
    ensure!(
        page.page_type() == Some(PageType::FileHeader),
        "{} is not a lab database data file",
        path.display()
    );
    let content = page.content();
    ensure!(content.len() >= 4, "database header is empty");
    let len = u32::from_le_bytes(content[..4].try_into()?) as usize;
    ensure!(content.len() >= 4 + len, "database header is truncated");
    let header: DatabaseHeader =
        serde_json::from_slice(&content[4..4 + len]).context("database header is unreadable")?;
    if header.format != FORMAT_NAME || header.format_version != FORMAT_VERSION {
        bail!(
            "{} has format {} v{}, expected {FORMAT_NAME} v{FORMAT_VERSION}",
            path.display(),
            header.format,
            header.format_version
        );
    }
    Ok(header)
}

fn read_header_page(file: &mut File, path: &Path) -> Result<DatabaseHeader> {
    let mut bytes = vec![0u8; PAGE_SIZE];
    file.read_exact(&mut bytes)
        .with_context(|| format!("{} is too short to be a database file", path.display()))?;
    parse_header_page(&bytes, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extents_merge_pop_and_index() {
        let mut e = Extents::default();
        e.push(5);
        e.push(6);
        e.push_run(7, 3);
        e.push(20);
        assert_eq!(e.0.len(), 2);
        assert_eq!(e.len(), 6);
        assert_eq!(e.nth(4), Some(9));
        assert_eq!(e.nth(5), Some(20));
        assert_eq!(e.nth(6), None);
        assert_eq!(e.pop_first(), Some(5));
        assert_eq!(e.nth(0), Some(6));
    }
}
