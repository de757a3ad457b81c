//! Tables: chains of data pages holding row records, with large values in LOB page chains.
//!
//! Rows stay on the page they were written to; an update rewrites only the pages whose rows
//! changed, and a page that overflows splits (its last rows move to a new page linked after it),
//! so a day of updates touches few pages, as on a real server.

use anyhow::{Context, Result, bail, ensure};

use super::db::{Db, TableEntry};
use super::page::{PAGE_BODY_SIZE, Page, PageType};
use super::values::{
    Cell, ColumnType, Value, cell_from_value, cell_value, cells_from_row, join_records, parse_row,
    serialize_row, spill_to_fit, split_records,
};

impl Db {
    /// Adds an empty table (one empty data page).
    pub fn add_table(
        &mut self,
        schema: &str,
        name: &str,
        columns: &[(String, ColumnType)],
    ) -> Result<usize> {
        ensure!(
            !schema.is_empty() && !name.is_empty(),
            "a table needs a schema and a name"
        );
        ensure!(!columns.is_empty(), "table {schema}.{name} has no columns");
        ensure!(
            self.table_index(schema, name).is_err(),
            "There is already an object named '{schema}.{name}' in the database."
        );
        for (i, (column, _)) in columns.iter().enumerate() {
            ensure!(
                !columns[..i]
                    .iter()
                    .any(|(c, _)| c.eq_ignore_ascii_case(column)),
                "Column names in each table must be unique. Column name '{column}' in table '{schema}.{name}' is specified more than once."
            );
        }
        let object_id = self.catalog.next_object_id;
        self.catalog.next_object_id += 1;
        let lsn = self.next_lsn();
        let id = self.allocate();
        let mut page = Page::new(PageType::Data, id, object_id, lsn);
        self.write_page(&mut page)?;
        self.catalog.tables.push(TableEntry {
            object_id,
            schema: schema.to_string(),
            name: name.to_string(),
            columns: columns.to_vec(),
            first_page: id,
            last_page: id,
            row_count: 0,
        });
        Ok(self.catalog.tables.len() - 1)
    }

    /// Every row of a table, in storage order.
    pub fn read_rows(&mut self, index: usize) -> Result<Vec<Vec<Value>>> {
        let entry = self.catalog.tables[index].clone();
        let mut rows = Vec::with_capacity(entry.row_count as usize);
        for page_id in self.chain(&entry)? {
            let page = self.read_page(page_id)?;
            for record in split_records(page.content(), page.record_count())? {
                let cells = parse_row(&entry.columns, &record)
                    .with_context(|| format!("bad row on page {page_id}"))?;
                let mut row = Vec::with_capacity(cells.len());
                for ((_, ty), cell) in entry.columns.iter().zip(&cells) {
                    row.push(cell_value(*ty, cell, &mut |first, len| {
                        self.read_lob(first, len)
                    })?);
                }
                rows.push(row);
            }
        }
        Ok(rows)
    }

    /// The table's data page ids, checking each link points to a data page of this table.
    pub fn chain(&mut self, entry: &TableEntry) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        let mut next = entry.first_page;
        while next != 0 {
            ensure!(
                ids.len() <= self.header.page_count as usize,
                "page chain of {}.{} loops",
                entry.schema,
                entry.name
            );
            let page = self.read_page(next)?;
            ensure!(
                page.page_type() == Some(PageType::Data) && page.object_id() == entry.object_id,
                "page {next} in the chain of {}.{} is not one of its data pages",
                entry.schema,
                entry.name
            );
            ids.push(next);
            next = page.next_page();
        }
        ensure!(
            ids.last() == Some(&entry.last_page),
            "chain of {}.{} does not end at its last page {}",
            entry.schema,
            entry.name,
            entry.last_page
        );
        Ok(ids)
    }

    /// Appends rows after the table's last row; nothing is written if any row is invalid.
    pub fn append_rows(&mut self, index: usize, rows: &[Vec<Value>]) -> Result<()> {
        let entry = self.catalog.tables[index].clone();
        let mut all_cells = Vec::with_capacity(rows.len());
        for row in rows {
            all_cells.push(
                cells_from_row(&entry.columns, row)
                    .with_context(|| format!("{}.{}", entry.schema, entry.name))?,
            );
        }
        let lsn = self.next_lsn();
        let mut current = self.read_page(entry.last_page)?;
        let mut records = split_records(current.content(), current.record_count())?;
        let mut used = current.used();
        for mut cells in all_cells {
            spill_to_fit(&mut cells, &mut |bytes| {
                self.write_lob(entry.object_id, bytes, lsn)
            })?;
            let record = serialize_row(&cells);
            if used + 2 + record.len() > PAGE_BODY_SIZE {
                let new_id = self.allocate();
                current.set_next_page(new_id);
                self.write_data_page(&mut current, &records, lsn)?;
                current = Page::new(PageType::Data, new_id, entry.object_id, lsn);
                records.clear();
                used = 0;
            }
            used += 2 + record.len();
            records.push(record);
        }
        self.write_data_page(&mut current, &records, lsn)?;
        let entry = &mut self.catalog.tables[index];
        entry.last_page = current.page_id();
        entry.row_count += rows.len() as u64;
        Ok(())
    }

    /// `UPDATE t SET set_column = new_value WHERE where_column = where_value`; returns rows affected.
    pub fn update_rows(
        &mut self,
        index: usize,
        set_column: &str,
        new_value: &Value,
        where_column: &str,
        where_value: &Value,
    ) -> Result<u64> {
        let entry = self.catalog.tables[index].clone();
        let column_index = |name: &str| {
            entry
                .columns
                .iter()
                .position(|(c, _)| c.eq_ignore_ascii_case(name))
                .with_context(|| format!("Invalid column name '{name}'."))
        };
        let set_index = column_index(set_column)?;
        let where_index = column_index(where_column)?;
        let (set_name, set_type) = &entry.columns[set_index];
        let new_cell = cell_from_value(set_name, *set_type, new_value)?;
        if *where_value == Value::Null {
            return Ok(0); // `= NULL` is never true in SQL.
        }
        let lsn = self.next_lsn();
        let mut affected = 0;
        let mut freed_lobs = Vec::new();
        let mut last_page = entry.last_page;
        for page_id in self.chain(&entry)? {
            let mut page = self.read_page(page_id)?;
            let mut records = split_records(page.content(), page.record_count())?;
            let mut changed = false;
            for record in &mut records {
                let mut cells = parse_row(&entry.columns, record)?;
                let current = cell_value(
                    entry.columns[where_index].1,
                    &cells[where_index],
                    &mut |first, len| self.read_lob(first, len),
                )?;
                if current != *where_value {
                    continue;
                }
                if let Cell::Lob { first_page, .. } = cells[set_index] {
                    freed_lobs.push(first_page);
                }
                cells[set_index] = new_cell.clone();
                spill_to_fit(&mut cells, &mut |bytes| {
                    self.write_lob(entry.object_id, bytes, lsn)
                })?;
                *record = serialize_row(&cells);
                affected += 1;
                changed = true;
            }
            if changed {
                let last = self.store_records(&mut page, records, lsn)?;
                if page_id == last_page {
                    last_page = last;
                }
            }
        }
        for first in freed_lobs {
            self.free_lob(first, lsn)?;
        }
        self.catalog.tables[index].last_page = last_page;
        Ok(affected)
    }

    /// Writes `records` to `page`, splitting into new pages linked after it if they do not fit.
    /// Returns the id of the last page written.
    fn store_records(&mut self, page: &mut Page, records: Vec<Vec<u8>>, lsn: u64) -> Result<u32> {
        let mut groups: Vec<Vec<Vec<u8>>> = vec![Vec::new()];
        let mut used = 0;
        for record in records {
            if used + 2 + record.len() > PAGE_BODY_SIZE {
                groups.push(Vec::new());
                used = 0;
            }
            used += 2 + record.len();
            groups.last_mut().expect("at least one group").push(record);
        }
        let original_next = page.next_page();
        let mut ids = vec![page.page_id()];
        for _ in 1..groups.len() {
            ids.push(self.allocate());
        }
        for (i, group) in groups.iter().enumerate() {
            let mut target = if i == 0 {
                page.clone()
            } else {
                Page::new(PageType::Data, ids[i], page.object_id(), lsn)
            };
            target.set_next_page(ids.get(i + 1).copied().unwrap_or(original_next));
            self.write_data_page(&mut target, group, lsn)?;
        }
        Ok(*ids.last().expect("at least one page"))
    }

    fn write_data_page(&mut self, page: &mut Page, records: &[Vec<u8>], lsn: u64) -> Result<()> {
        page.set_content(&join_records(records));
        page.set_record_count(records.len() as u16);
        page.set_lsn(lsn);
        self.write_page(page)
    }

    /// Stores a large value in a new chain of LOB pages; returns the first page.
    fn write_lob(&mut self, object_id: u32, bytes: &[u8], lsn: u64) -> Result<u32> {
        let chunks: Vec<&[u8]> = bytes.chunks(PAGE_BODY_SIZE).collect();
        ensure!(!chunks.is_empty(), "empty values are stored in row");
        let ids: Vec<u32> = chunks.iter().map(|_| self.allocate()).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let mut page = Page::new(PageType::Lob, ids[i], object_id, lsn);
            page.set_content(chunk);
            page.set_next_page(ids.get(i + 1).copied().unwrap_or(0));
            self.write_page(&mut page)?;
        }
        Ok(ids[0])
    }

    pub fn read_lob(&mut self, first: u32, len: u32) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(len as usize);
        let mut next = first;
        while next != 0 && out.len() < len as usize {
            let page = self.read_page(next)?;
            if page.page_type() != Some(PageType::Lob) {
                bail!(
                    "page {next} should hold a large value but is {:?}",
                    page.page_type()
                );
            }
            out.extend_from_slice(page.content());
            next = page.next_page();
        }
        ensure!(
            out.len() == len as usize,
            "large value at page {first} has {} bytes, expected {len}",
            out.len()
        );
        Ok(out)
    }

    fn free_lob(&mut self, first: u32, lsn: u64) -> Result<()> {
        let mut next = first;
        while next != 0 {
            let page = self.read_page(next)?;
            ensure!(
                page.page_type() == Some(PageType::Lob),
                "page {next} is not a LOB page"
            );
            self.free(next, lsn)?;
            next = page.next_page();
        }
        Ok(())
    }
}
