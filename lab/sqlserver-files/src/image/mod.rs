//! The lab database's files: the data file (.mdf) and the log file (.ldf).
//!
//! The data file is a sequence of 8 KiB pages ([`PAGE_SIZE`]). Page 0 is the file header
//! ([`DatabaseHeader`]: database name, GUIDs, logical file names); page 1 starts the catalog (tables,
//! filler and free page lists, as JSON); then data pages (table rows), LOB pages (large values),
//! filler pages (realistic bulk, churned day by day) and free pages, each with a checksum. Reads are
//! streamed or per page; nothing loads a whole file into memory.
//!
//! These functions take no locks: the caller (the SQL Server stand-in, the lab) serialises access
//! to one database, as SQL Server's own locking would.

mod db;
mod filler;
mod log;
mod page;
mod tables;
mod values;

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{Context, Result, ensure};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use db::{CorruptPage, DatabaseHeader};
pub use log::{LogHeader, read_log_header};
pub use page::{PAGE_HEADER_SIZE, PAGE_SIZE, PageType, page_checksum};
pub use values::{ColumnType, Table, Value};

pub(crate) use db::parse_header_page;
pub(crate) use log::set_log_database_guid;
pub(crate) use page::validate as validate_page;

use crate::rng::SplitMix64;
use db::{Db, FORMAT_NAME, FORMAT_VERSION};
use filler::fill_page;

/// What a new database holds.
#[derive(Debug, Clone)]
pub struct DatabaseSpec {
    pub name: String,
    pub database_guid: Uuid,
    pub tables: Vec<Table>,
    /// Pages of realistic bulk data (8 KiB each) after the tables.
    pub filler_pages: u32,
    /// Seeds the filler content, so the same spec gives the same pages.
    pub seed: u64,
}

/// What one [`churn`] day did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChurnStats {
    pub day: u32,
    pub pages_changed: u32,
    pub pages_added: u32,
    /// Pages chosen for change but left alone because their checksum was already wrong (kept
    /// corrupt so that checks keep finding them).
    pub corrupt_pages_skipped: u32,
    /// Pages in the data file afterwards.
    pub page_count: u32,
}

/// One problem DBCC CHECKDB would report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageProblem {
    pub page: u32,
    pub problem: String,
}

/// The result of [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    pub database_name: String,
    pub pages_checked: u64,
    pub problems: Vec<PageProblem>,
}

impl CheckReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Pages generated and written per write call when filling: 1 MiB.
const FILL_BATCH_PAGES: usize = 128;
/// First LSN of a new database.
const INITIAL_LSN: u64 = 1_000;

/// Creates (or overwrites) a database: data file with the tables then the filler pages, and its log.
/// Logical file names are `<name>` and `<name>_log`, as SQL Server names them by default.
pub fn create(spec: &DatabaseSpec, data_file: &Path, log_file: &Path) -> Result<()> {
    ensure!(!spec.name.is_empty(), "a database needs a name");
    // Check every row before writing anything.
    for table in &spec.tables {
        for row in &table.rows {
            values::cells_from_row(&table.columns, row)
                .with_context(|| format!("{}.{}", table.schema, table.name))?;
        }
    }
    let created = chrono::Local::now().naive_local();
    let header = DatabaseHeader {
        format: FORMAT_NAME.to_string(),
        format_version: FORMAT_VERSION,
        name: spec.name.clone(),
        database_guid: spec.database_guid,
        family_guid: spec.database_guid,
        logical_data_name: spec.name.clone(),
        logical_log_name: format!("{}_log", spec.name),
        created,
        page_count: 0,
        lsn: INITIAL_LSN,
        differential_base_lsn: 0,
        differential_base_guid: None,
        recovery_model: "FULL".to_string(),
        collation: "SQL_Latin1_General_CP1_CI_AS".to_string(),
        compatibility_level: 160,
        catalog_page: 0,
    };
    let mut db = Db::create_empty(data_file, header)?;
    for table in &spec.tables {
        let index = db.add_table(&table.schema, &table.name, &table.columns)?;
        db.append_rows(index, &table.rows)?;
    }
    append_filler(&mut db, spec.filler_pages, |id| {
        SplitMix64::derived(&[spec.seed, id as u64, 0])
    })?;
    db.save()?;
    db.flush()?;
    log::create_log(
        log_file,
        spec.database_guid,
        &format!("{}_log", spec.name),
        created,
        spec.seed,
    )
}

/// Appends `count` filler pages in 1 MiB writes.
fn append_filler(db: &mut Db, count: u32, rng_for_page: impl Fn(u32) -> SplitMix64) -> Result<()> {
    let lsn = db.next_lsn();
    let first = db.header.page_count;
    let mut buf = vec![0u8; FILL_BATCH_PAGES * PAGE_SIZE];
    let mut done = 0u32;
    while done < count {
        let batch = (count - done).min(FILL_BATCH_PAGES as u32) as usize;
        for (i, page) in buf.chunks_exact_mut(PAGE_SIZE).take(batch).enumerate() {
            let id = first + done + i as u32;
            fill_page(page, PageType::Filler, id, lsn, &mut rng_for_page(id));
        }
        db.append_raw(&buf[..batch * PAGE_SIZE])?;
        done += batch as u32;
    }
    db.catalog.filler.push_run(first, count);
    Ok(())
}

/// The data file's header page.
pub fn read_header(data_file: &Path) -> Result<DatabaseHeader> {
    let mut file = File::open(data_file)
        .with_context(|| format!("cannot open data file {}", data_file.display()))?;
    let mut bytes = vec![0u8; PAGE_SIZE];
    file.read_exact(&mut bytes)
        .with_context(|| format!("{} is too short to be a database file", data_file.display()))?;
    parse_header_page(&bytes, data_file)
}

/// Renames the database in its header (RESTORE ... AS a new name, ALTER DATABASE ... MODIFY NAME).
/// Logical file names stay, as in SQL Server.
pub fn set_database_name(data_file: &Path, name: &str) -> Result<()> {
    ensure!(!name.is_empty(), "a database needs a name");
    let mut db = Db::open(data_file, true)?;
    db.header.name = name.to_string();
    db.write_header()
}

/// Sets the database GUID in the header (a restore gives the copy a new one).
pub fn set_database_guid(data_file: &Path, guid: Uuid) -> Result<()> {
    let mut db = Db::open(data_file, true)?;
    db.header.database_guid = guid;
    db.write_header()
}

/// Records a full backup in the header: the checkpoint LSN that becomes the differential base,
/// and clears the differential bitmap, as a full backup that is not COPY_ONLY does.
pub(crate) fn set_differential_base(data_file: &Path, lsn: u64, backup_set: Uuid) -> Result<()> {
    let mut db = Db::open(data_file, true)?;
    db.header.differential_base_lsn = lsn;
    db.header.differential_base_guid = Some(backup_set);
    db.catalog.changed_extents.clear();
    db.save()?;
    db.flush()
}

/// The data pages a differential backup holds, as (first page, count) runs in page order: the
/// extents the differential bitmap marks, plus the file header's and the catalog's extents, which
/// SQL Server's differential backups always carry too (file header and allocation pages).
pub fn differential_runs(data_file: &Path) -> Result<Vec<(u32, u32)>> {
    let db = Db::open(data_file, false)?;
    let page_count = db.header.page_count;
    let extents = page_count.div_ceil(db::EXTENT_PAGES);
    let mut always = vec![0u32];
    always.extend(db.catalog_page_ids().iter().map(|p| p / db::EXTENT_PAGES));
    always.sort_unstable();
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for extent in 0..extents {
        if !db.catalog.is_changed(extent) && always.binary_search(&extent).is_err() {
            continue;
        }
        let start = extent * db::EXTENT_PAGES;
        let count = db::EXTENT_PAGES.min(page_count - start);
        match runs.last_mut() {
            Some((s, c)) if *s + *c == start => *c += count,
            _ => runs.push((start, count)),
        }
    }
    Ok(runs)
}

/// Extents the differential bitmap marks as changed since the differential base.
pub fn changed_extent_count(data_file: &Path) -> Result<u64> {
    let db = Db::open(data_file, false)?;
    Ok(db
        .catalog
        .changed_extents
        .iter()
        .map(|w| w.count_ones() as u64)
        .sum())
}

/// Writes a checkpoint (a new LSN in the header, as BACKUP does first) and returns the header.
pub(crate) fn checkpoint(data_file: &Path) -> Result<DatabaseHeader> {
    let mut db = Db::open(data_file, true)?;
    db.next_lsn();
    db.write_header()?;
    Ok(db.header.clone())
}

/// The tables, as (schema, name), in creation order.
pub fn list_tables(data_file: &Path) -> Result<Vec<(String, String)>> {
    let db = Db::open(data_file, false)?;
    Ok(db
        .catalog
        .tables
        .iter()
        .map(|t| (t.schema.clone(), t.name.clone()))
        .collect())
}

/// A table with all its rows. Names match case-insensitively, as with SQL Server's default collation.
pub fn read_table(data_file: &Path, schema: &str, table: &str) -> Result<Table> {
    let mut db = Db::open(data_file, false)?;
    let index = db.table_index(schema, table)?;
    let rows = db.read_rows(index)?;
    let entry = &db.catalog.tables[index];
    Ok(Table {
        schema: entry.schema.clone(),
        name: entry.name.clone(),
        columns: entry.columns.clone(),
        rows,
    })
}

/// Appends rows to a table (all or none are checked before anything is written).
pub fn insert_rows(
    data_file: &Path,
    schema: &str,
    table: &str,
    rows: Vec<Vec<Value>>,
) -> Result<()> {
    let mut db = Db::open(data_file, true)?;
    let index = db.table_index(schema, table)?;
    db.append_rows(index, &rows)?;
    db.save()?;
    db.flush()
}

/// `UPDATE [schema].[table] SET set_column = new_value WHERE where_column = where_value`.
/// Values compare exactly (text case-sensitively); `WHERE x = NULL` matches nothing, as in SQL.
/// Returns the number of rows affected.
pub fn update_rows(
    data_file: &Path,
    schema: &str,
    table: &str,
    set_column: &str,
    new_value: &Value,
    where_column: &str,
    where_value: &Value,
) -> Result<u64> {
    let mut db = Db::open(data_file, true)?;
    let index = db.table_index(schema, table)?;
    let affected = db.update_rows(index, set_column, new_value, where_column, where_value)?;
    if affected > 0 {
        db.save()?;
        db.flush()?;
    }
    Ok(affected)
}

/// One simulated day: rewrites about `changed_fraction` of the filler pages in place (small edits
/// inside the page, as row updates do) and appends `new_pages` filler pages. Deterministic from
/// `seed`, `day` and the file's current content.
pub fn churn(
    data_file: &Path,
    day: u32,
    changed_fraction: f64,
    new_pages: u32,
    seed: u64,
) -> Result<ChurnStats> {
    ensure!(
        (0.0..=1.0).contains(&changed_fraction),
        "changed_fraction must be between 0 and 1, got {changed_fraction}"
    );
    let mut db = Db::open(data_file, true)?;
    let filler_count = db.catalog.filler.len();
    let to_change = (changed_fraction * filler_count as f64).round() as u64;
    let mut rng = SplitMix64::derived(&[seed, day as u64, 0xC4]);
    // A real database's daily changes cluster: updates hit hot tables and recent rows, inserts
    // land at the end of clustered indexes. So a day's changes fall in runs of CHURN_RUN
    // consecutive pages rather than scattered one by one; this is what decides how much of a
    // nightly .bak a content-defined chunker (restic's, ~1 MiB chunks) finds unchanged.
    let runs = filler_count / CHURN_RUN;
    let mut indices: Vec<u64> = if runs == 0 {
        sample_indices(&mut rng, filler_count, to_change)
    } else {
        let mut starts = sample_indices(&mut rng, runs, to_change.div_ceil(CHURN_RUN));
        starts.sort_unstable();
        starts
            .into_iter()
            .flat_map(|r| r * CHURN_RUN..(r + 1) * CHURN_RUN)
            .take(to_change as usize)
            .collect()
    };
    indices.sort_unstable();
    let mut chosen: Vec<u32> = indices
        .into_iter()
        .map(|i| {
            db.catalog
                .filler
                .nth(i)
                .expect("index below the filler count")
        })
        .collect();
    chosen.sort_unstable();

    let lsn = db.next_lsn();
    let mut stats = ChurnStats {
        day,
        pages_changed: 0,
        pages_added: 0,
        corrupt_pages_skipped: 0,
        page_count: 0,
    };
    let mut page = vec![0u8; PAGE_SIZE];
    for id in chosen {
        db.read_raw(id, &mut page)?;
        if page::validate(&page, id).is_some() {
            stats.corrupt_pages_skipped += 1;
            continue;
        }
        let mut page_rng = SplitMix64::derived(&[seed, day as u64, id as u64, 0xED]);
        if filler::edit_page(&mut page, lsn, &mut page_rng) {
            db.write_raw(id, &page)?;
            stats.pages_changed += 1;
        }
    }
    append_filler(&mut db, new_pages, |id| {
        SplitMix64::derived(&[seed, id as u64, day as u64 + 1])
    })?;
    stats.pages_added = new_pages;
    db.save()?;
    db.flush()?;
    stats.page_count = db.header.page_count;
    Ok(stats)
}

/// Pages a day's changes come in runs of (256 KiB).
const CHURN_RUN: u64 = 32;

/// `amount` distinct indices below `len` (Floyd's algorithm: memory in the amount, not the length).
fn sample_indices(rng: &mut SplitMix64, len: u64, amount: u64) -> Vec<u64> {
    let amount = amount.min(len);
    let mut chosen = std::collections::HashSet::with_capacity(amount as usize);
    for j in len - amount..len {
        let t = rng.below(j + 1);
        if !chosen.insert(t) {
            chosen.insert(j);
        }
    }
    chosen.into_iter().collect()
}

/// SHA-256 over the database's content: every page after the header page, in order. The header
/// (name, GUID, LSN counter, differential base) is left out, so a copy restored under another name
/// and path has the same digest as the original, and any change to a row or page changes it.
pub fn content_digest(data_file: &Path) -> Result<[u8; 32]> {
    let header = read_header(data_file)?;
    let file = File::open(data_file)?;
    let len = file.metadata()?.len();
    ensure!(
        len == header.page_count as u64 * PAGE_SIZE as u64,
        "data file size does not match its header"
    );
    let mut reader = BufReader::with_capacity(1 << 20, file);
    reader.seek(SeekFrom::Start(PAGE_SIZE as u64))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

/// What DBCC CHECKDB reports: every page whose checksum or header is wrong, then the structure
/// (catalog, table page chains, rows, large values) as far as it can be read.
pub fn check(data_file: &Path) -> Result<CheckReport> {
    let file = File::open(data_file)
        .with_context(|| format!("cannot open data file {}", data_file.display()))?;
    let len = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut report = CheckReport {
        database_name: String::new(),
        pages_checked: 0,
        problems: Vec::new(),
    };
    let mut page = vec![0u8; PAGE_SIZE];
    let whole_pages = len / PAGE_SIZE as u64;
    let mut newest_lsn = u64::MAX;
    for id in 0..whole_pages {
        reader.read_exact(&mut page)?;
        report.pages_checked += 1;
        if let Some(problem) = page::validate(&page, id as u32) {
            report.problems.push(PageProblem {
                page: id as u32,
                problem,
            });
        } else if id == 0 {
            if let Ok(header) = parse_header_page(&page, data_file) {
                newest_lsn = header.lsn;
            }
        } else if page::read_u64(&page, 8) > newest_lsn {
            report.problems.push(PageProblem {
                page: id as u32,
                problem: format!(
                    "page LSN {} is newer than the database's last LSN {newest_lsn}",
                    page::read_u64(&page, 8)
                ),
            });
        }
    }
    if len % PAGE_SIZE as u64 != 0 {
        report.problems.push(PageProblem {
            page: whole_pages as u32,
            problem: format!(
                "page is truncated ({} of {PAGE_SIZE} bytes)",
                len % PAGE_SIZE as u64
            ),
        });
    }
    let bad_pages: std::collections::HashSet<u32> =
        report.problems.iter().map(|p| p.page).collect();
    if bad_pages.contains(&0) {
        return Ok(report);
    }
    let mut db = match Db::open(data_file, false) {
        Ok(db) => db,
        Err(err) => {
            if err.downcast_ref::<CorruptPage>().is_none() {
                report.problems.push(PageProblem {
                    page: 0,
                    problem: format!("{err:#}"),
                });
            }
            return Ok(report);
        }
    };
    report.database_name = db.header.name.clone();
    for index in 0..db.catalog.tables.len() {
        let entry = db.catalog.tables[index].clone();
        if let Err(err) = db.read_rows(index) {
            match err.downcast_ref::<CorruptPage>() {
                Some(corrupt) if bad_pages.contains(&corrupt.page) => {}
                _ => report.problems.push(PageProblem {
                    page: entry.first_page,
                    problem: format!("table {}.{}: {err:#}", entry.schema, entry.name),
                }),
            }
        }
    }
    Ok(report)
}

/// Test helper: flips one byte in the body of a page without fixing its checksum, as a disk or
/// controller fault would.
pub fn corrupt_page(data_file: &Path, page_id: u32) -> Result<()> {
    let mut file = OpenOptions::new().read(true).write(true).open(data_file)?;
    let offset = page_id as u64 * PAGE_SIZE as u64 + PAGE_HEADER_SIZE as u64 + 4_000;
    ensure!(
        offset < file.metadata()?.len(),
        "page {page_id} is beyond the end of {}",
        data_file.display()
    );
    let mut byte = [0u8; 1];
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(&mut byte)?;
    byte[0] ^= 0x5A;
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(&byte)?;
    Ok(())
}

/// Test helper: corrupts one page (a filler page in the middle if any, else the last page) and
/// returns its id.
pub fn corrupt_one_page(data_file: &Path) -> Result<u32> {
    let db = Db::open(data_file, false)?;
    let filler = &db.catalog.filler;
    let page = filler
        .nth(filler.len() / 2)
        .unwrap_or(db.header.page_count - 1);
    drop(db);
    corrupt_page(data_file, page)?;
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_gives_distinct_indices_in_range() {
        let mut rng = SplitMix64::new(3);
        let mut picked = sample_indices(&mut rng, 1000, 100);
        assert_eq!(picked.len(), 100);
        assert!(picked.iter().all(|i| *i < 1000));
        picked.sort_unstable();
        picked.dedup();
        assert_eq!(picked.len(), 100);
        assert_eq!(sample_indices(&mut rng, 5, 10).len(), 5);
    }
}
