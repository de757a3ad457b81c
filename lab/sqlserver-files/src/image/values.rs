//! Column types, values, and how a row is stored in a page.
//!
//! A stored row is: column count (u16), a null bitmap, then each non-null column in order. Fixed
//! types take their natural size (int 4, bigint 8, bit 1, datetime2 12, uniqueidentifier 16).
//! Variable types (nvarchar as UTF-16LE, as SQL Server stores it; varbinary) take a storage tag then
//! either the bytes inline (u16 length) or a pointer to a chain of LOB pages (first page, length).
//! Values move out of row, largest first, only when the row would not fit in a page, as
//! SQL Server does with `max` columns.

use anyhow::{Context, Result, bail, ensure};
use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::page::PAGE_BODY_SIZE;

/// A column's SQL type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ColumnType {
    Int,
    BigInt,
    NVarChar,
    VarBinary,
    Bit,
    DateTime2,
    UniqueIdentifier,
}

impl ColumnType {
    /// The type as T-SQL spells it (for result-set metadata and messages).
    pub fn sql_name(self) -> &'static str {
        match self {
            Self::Int => "int",
            Self::BigInt => "bigint",
            Self::NVarChar => "nvarchar(max)",
            Self::VarBinary => "varbinary(max)",
            Self::Bit => "bit",
            Self::DateTime2 => "datetime2(7)",
            Self::UniqueIdentifier => "uniqueidentifier",
        }
    }

    fn fixed_size(self) -> Option<usize> {
        match self {
            Self::Int => Some(4),
            Self::BigInt => Some(8),
            Self::Bit => Some(1),
            Self::DateTime2 => Some(12),
            Self::UniqueIdentifier => Some(16),
            Self::NVarChar | Self::VarBinary => None,
        }
    }
}

/// One value of a row. `Int` serves both `int` and `bigint` columns.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Binary(Vec<u8>),
    Bit(bool),
    DateTime(NaiveDateTime),
    Guid(Uuid),
}

/// A table with its rows, as given to [`super::create`] and returned by [`super::read_table`].
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub schema: String,
    pub name: String,
    pub columns: Vec<(String, ColumnType)>,
    pub rows: Vec<Vec<Value>>,
}

/// A stored column of a row, before LOB pointers are followed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Null,
    Fixed(Vec<u8>),
    Inline(Vec<u8>),
    Lob { first_page: u32, len: u32 },
}

const TAG_INLINE: u8 = 0;
const TAG_LOB: u8 = 1;
/// A row record is stored with a u16 length prefix in the page body.
pub(crate) const MAX_ROW_SIZE: usize = PAGE_BODY_SIZE - 2;

impl Cell {
    fn stored_size(&self) -> usize {
        match self {
            Cell::Null => 0,
            Cell::Fixed(bytes) => bytes.len(),
            Cell::Inline(bytes) => 3 + bytes.len(),
            Cell::Lob { .. } => 9,
        }
    }
}

/// Checks a value against its column and converts it to a cell (variable values inline).
pub(crate) fn cell_from_value(column: &str, ty: ColumnType, value: &Value) -> Result<Cell> {
    let mismatch = || {
        anyhow::anyhow!(
            "value {value:?} does not fit column {column} of type {}",
            ty.sql_name()
        )
    };
    Ok(match (ty, value) {
        (_, Value::Null) => Cell::Null,
        (ColumnType::Int, Value::Int(v)) => {
            let v = i32::try_from(*v).map_err(|_| mismatch())?;
            Cell::Fixed(v.to_le_bytes().to_vec())
        }
        (ColumnType::BigInt, Value::Int(v)) => Cell::Fixed(v.to_le_bytes().to_vec()),
        (ColumnType::Bit, Value::Bit(v)) => Cell::Fixed(vec![u8::from(*v)]),
        (ColumnType::DateTime2, Value::DateTime(v)) => {
            let utc = v.and_utc();
            let mut bytes = utc.timestamp().to_le_bytes().to_vec();
            bytes.extend_from_slice(&utc.timestamp_subsec_nanos().to_le_bytes());
            Cell::Fixed(bytes)
        }
        (ColumnType::UniqueIdentifier, Value::Guid(v)) => Cell::Fixed(v.as_bytes().to_vec()),
        (ColumnType::NVarChar, Value::Text(v)) => {
            let len = v.encode_utf16().count() * 2;
            ensure!(
                len <= u32::MAX as usize,
                "value of column {column} is too large"
            );
            Cell::Inline(v.encode_utf16().flat_map(u16::to_le_bytes).collect())
        }
        (ColumnType::VarBinary, Value::Binary(v)) => {
            ensure!(
                v.len() <= u32::MAX as usize,
                "value of column {column} is too large"
            );
            Cell::Inline(v.clone())
        }
        _ => return Err(mismatch()),
    })
}

/// Checks and converts a whole row.
pub(crate) fn cells_from_row(columns: &[(String, ColumnType)], row: &[Value]) -> Result<Vec<Cell>> {
    ensure!(
        row.len() == columns.len(),
        "row has {} values but the table has {} columns",
        row.len(),
        columns.len()
    );
    columns
        .iter()
        .zip(row)
        .map(|((name, ty), value)| cell_from_value(name, *ty, value))
        .collect()
}

/// Size of the row once serialized.
pub(crate) fn row_size(cells: &[Cell]) -> usize {
    2 + cells.len().div_ceil(8) + cells.iter().map(Cell::stored_size).sum::<usize>()
}

/// Moves inline values out of row, largest first, until the row fits in a page.
/// `store` writes the bytes to LOB pages and returns the first page.
pub(crate) fn spill_to_fit(
    cells: &mut [Cell],
    store: &mut dyn FnMut(&[u8]) -> Result<u32>,
) -> Result<()> {
    while row_size(cells) > MAX_ROW_SIZE {
        let largest = cells
            .iter()
            .enumerate()
            .filter_map(|(i, c)| match c {
                Cell::Inline(bytes) if bytes.len() > 6 => Some((i, bytes.len())),
                _ => None,
            })
            .max_by_key(|(_, len)| *len);
        let Some((index, _)) = largest else {
            bail!(
                "row of {} bytes does not fit in a page even with every value out of row",
                row_size(cells)
            );
        };
        let Cell::Inline(bytes) = std::mem::replace(&mut cells[index], Cell::Null) else {
            unreachable!("selected an inline cell")
        };
        let first_page = store(&bytes)?;
        cells[index] = Cell::Lob {
            first_page,
            len: bytes.len() as u32,
        };
    }
    Ok(())
}

pub(crate) fn serialize_row(cells: &[Cell]) -> Vec<u8> {
    let mut out = Vec::with_capacity(row_size(cells));
    out.extend_from_slice(&(cells.len() as u16).to_le_bytes());
    let mut bitmap = vec![0u8; cells.len().div_ceil(8)];
    for (i, cell) in cells.iter().enumerate() {
        if *cell == Cell::Null {
            bitmap[i / 8] |= 1 << (i % 8);
        }
    }
    out.extend_from_slice(&bitmap);
    for cell in cells {
        match cell {
            Cell::Null => {}
            Cell::Fixed(bytes) => out.extend_from_slice(bytes),
            Cell::Inline(bytes) => {
                out.push(TAG_INLINE);
                out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
                out.extend_from_slice(bytes);
            }
            Cell::Lob { first_page, len } => {
                out.push(TAG_LOB);
                out.extend_from_slice(&first_page.to_le_bytes());
                out.extend_from_slice(&len.to_le_bytes());
            }
        }
    }
    out
}

pub(crate) fn parse_row(columns: &[(String, ColumnType)], bytes: &[u8]) -> Result<Vec<Cell>> {
    let mut reader = Reader { bytes, at: 0 };
    let count = u16::from_le_bytes(reader.take(2)?.try_into()?) as usize;
    ensure!(
        count == columns.len(),
        "row has {count} columns, table has {}",
        columns.len()
    );
    let bitmap = reader.take(count.div_ceil(8))?.to_vec();
    let mut cells = Vec::with_capacity(count);
    for (i, (_, ty)) in columns.iter().enumerate() {
        if bitmap[i / 8] & (1 << (i % 8)) != 0 {
            cells.push(Cell::Null);
            continue;
        }
        cells.push(match ty.fixed_size() {
            Some(size) => Cell::Fixed(reader.take(size)?.to_vec()),
            None => match reader.take(1)?[0] {
                TAG_INLINE => {
                    let len = u16::from_le_bytes(reader.take(2)?.try_into()?) as usize;
                    Cell::Inline(reader.take(len)?.to_vec())
                }
                TAG_LOB => {
                    let first_page = u32::from_le_bytes(reader.take(4)?.try_into()?);
                    let len = u32::from_le_bytes(reader.take(4)?.try_into()?);
                    Cell::Lob { first_page, len }
                }
                tag => bail!("unknown storage tag {tag}"),
            },
        });
    }
    ensure!(
        reader.at == bytes.len(),
        "{} stray bytes after the row",
        bytes.len() - reader.at
    );
    Ok(cells)
}

/// The value of a cell; `load` reads a LOB chain (first page, length).
pub(crate) fn cell_value(
    ty: ColumnType,
    cell: &Cell,
    load: &mut dyn FnMut(u32, u32) -> Result<Vec<u8>>,
) -> Result<Value> {
    let variable_bytes = |load: &mut dyn FnMut(u32, u32) -> Result<Vec<u8>>| -> Result<Vec<u8>> {
        match cell {
            Cell::Inline(bytes) => Ok(bytes.clone()),
            Cell::Lob { first_page, len } => load(*first_page, *len),
            _ => bail!("a {} value is stored as a fixed-size cell", ty.sql_name()),
        }
    };
    let fixed = || -> Result<&[u8]> {
        match cell {
            Cell::Fixed(bytes) => Ok(bytes),
            _ => bail!("a {} value is stored as a variable cell", ty.sql_name()),
        }
    };
    Ok(match ty {
        _ if *cell == Cell::Null => Value::Null,
        ColumnType::Int => Value::Int(i32::from_le_bytes(fixed()?.try_into()?) as i64),
        ColumnType::BigInt => Value::Int(i64::from_le_bytes(fixed()?.try_into()?)),
        ColumnType::Bit => Value::Bit(fixed()?[0] != 0),
        ColumnType::DateTime2 => {
            let bytes = fixed()?;
            let secs = i64::from_le_bytes(bytes[..8].try_into()?);
            let nanos = u32::from_le_bytes(bytes[8..].try_into()?);
            let time = chrono::DateTime::from_timestamp(secs, nanos)
                .context("datetime2 value out of range")?;
            Value::DateTime(time.naive_utc())
        }
        ColumnType::UniqueIdentifier => Value::Guid(Uuid::from_slice(fixed()?)?),
        ColumnType::NVarChar => {
            let bytes = variable_bytes(load)?;
            ensure!(
                bytes.len() % 2 == 0,
                "nvarchar value has an odd byte length"
            );
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            Value::Text(String::from_utf16(&units).context("nvarchar value is not valid UTF-16")?)
        }
        ColumnType::VarBinary => Value::Binary(variable_bytes(load)?),
    })
}

/// Splits a data page's content into its row records (each stored with a u16 length prefix).
pub(crate) fn split_records(content: &[u8], count: u16) -> Result<Vec<Vec<u8>>> {
    let mut reader = Reader {
        bytes: content,
        at: 0,
    };
    let mut records = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let len = u16::from_le_bytes(reader.take(2)?.try_into()?) as usize;
        records.push(reader.take(len)?.to_vec());
    }
    ensure!(
        reader.at == content.len(),
        "page body has {} stray bytes",
        content.len() - reader.at
    );
    Ok(records)
}

pub(crate) fn join_records(records: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.iter().map(|r| r.len() + 2).sum());
    for record in records {
        out.extend_from_slice(&(record.len() as u16).to_le_bytes());
        out.extend_from_slice(record);
    }
    out
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        ensure!(self.at + len <= self.bytes.len(), "record ends early");
        let slice = &self.bytes[self.at..self.at + len];
        self.at += len;
        Ok(slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns() -> Vec<(String, ColumnType)> {
        [
            ("Id", ColumnType::NVarChar),
            ("Count", ColumnType::Int),
            ("Big", ColumnType::BigInt),
            ("Flag", ColumnType::Bit),
            ("When", ColumnType::DateTime2),
            ("Guid", ColumnType::UniqueIdentifier),
            ("Blob", ColumnType::VarBinary),
        ]
        .into_iter()
        .map(|(n, t)| (n.to_string(), t))
        .collect()
    }

    #[test]
    fn row_round_trips_through_bytes() {
        let when = chrono::NaiveDate::from_ymd_opt(2024, 2, 29)
            .unwrap()
            .and_hms_nano_opt(13, 14, 15, 123_456_700)
            .unwrap();
        let row = vec![
            Value::Text("Projects-1 ✓".into()),
            Value::Int(-5),
            Value::Int(1 << 40),
            Value::Bit(true),
            Value::DateTime(when),
            Value::Guid(Uuid::from_u128(0x1234)),
            Value::Null,
        ];
        let cells = cells_from_row(&columns(), &row).unwrap();
        let bytes = serialize_row(&cells);
        assert_eq!(bytes.len(), row_size(&cells));
        let parsed = parse_row(&columns(), &bytes).unwrap();
        let mut no_lobs = |_: u32, _: u32| -> Result<Vec<u8>> { bail!("no LOBs here") };
        let values: Vec<Value> = columns()
            .iter()
            .zip(&parsed)
            .map(|((_, t), c)| cell_value(*t, c, &mut no_lobs).unwrap())
            .collect();
        assert_eq!(values, row);
    }

    #[test]
    fn wrong_types_and_widths_are_refused() {
        let cols = columns();
        assert!(cells_from_row(&cols, &[Value::Null]).is_err());
        let mut row = vec![Value::Null; cols.len()];
        row[1] = Value::Int(1 << 40);
        assert!(cells_from_row(&cols, &row).is_err(), "int out of range");
        row[1] = Value::Text("x".into());
        assert!(
            cells_from_row(&cols, &row).is_err(),
            "text in an int column"
        );
    }

    #[test]
    fn oversized_rows_spill_largest_value_first() {
        let cols = columns();
        let mut row = vec![Value::Null; cols.len()];
        row[0] = Value::Text("small".into());
        row[6] = Value::Binary(vec![7; 20_000]);
        let mut cells = cells_from_row(&cols, &row).unwrap();
        let mut stored = Vec::new();
        spill_to_fit(&mut cells, &mut |bytes| {
            stored.push(bytes.len());
            Ok(77)
        })
        .unwrap();
        assert_eq!(stored, vec![20_000]);
        assert_eq!(
            cells[6],
            Cell::Lob {
                first_page: 77,
                len: 20_000
            }
        );
        assert!(matches!(cells[0], Cell::Inline(_)));
        assert!(row_size(&cells) <= MAX_ROW_SIZE);
    }

    #[test]
    fn records_join_and_split() {
        let records = vec![vec![1, 2, 3], vec![], vec![9; 300]];
        let joined = join_records(&records);
        assert_eq!(split_records(&joined, 3).unwrap(), records);
        assert!(split_records(&joined, 4).is_err());
    }
}
