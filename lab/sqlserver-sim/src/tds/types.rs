//! Column types and values, and how each goes on the wire (MS-TDS 2.2.5.4:
//! TYPE_INFO in COLMETADATA, then the value in each ROW).

use chrono::{NaiveDate, NaiveDateTime, Timelike};
use uuid::Uuid;

/// SQL_Latin1_General_CP1_CI_AS, the default server collation: LCID 0x0409,
/// ignore case/kana/width flags, sort id 52.
pub const DEFAULT_COLLATION: [u8; 5] = [0x09, 0x04, 0xD0, 0x00, 0x34];

/// A column's SQL type, as a client sees it in COLMETADATA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlType {
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    Bit,
    Real,
    Float,
    /// numeric(p, s)
    Numeric {
        precision: u8,
        scale: u8,
    },
    /// nvarchar(n) with n in characters, or nvarchar(max) for `None`.
    NVarChar(Option<u16>),
    /// varchar(n) in the default collation's code page, or varchar(max).
    VarChar(Option<u16>),
    /// char(n)
    Char(u16),
    /// varbinary(n) or varbinary(max).
    VarBinary(Option<u16>),
    UniqueIdentifier,
    /// datetime (1/300 s ticks), as msdb's date columns are.
    DateTime,
    /// datetime2(scale)
    DateTime2(u8),
    /// sql_variant, as SERVERPROPERTY returns.
    Variant,
}

/// A value in a result set. `Numeric` holds the unscaled integer.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    TinyInt(u8),
    SmallInt(i16),
    Int(i32),
    BigInt(i64),
    Bit(bool),
    Real(f32),
    Float(f64),
    Numeric(i128),
    Str(String),
    Bytes(Vec<u8>),
    Guid(Uuid),
    DateTime(NaiveDateTime),
    /// A sql_variant: the inner value with its base type.
    Variant(Box<Value>, SqlType),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

/// Token bytes of the type in a TYPE_INFO.
mod type_byte {
    pub const INT4: u8 = 0x38;
    pub const INTN: u8 = 0x26;
    pub const BITN: u8 = 0x68;
    pub const FLTN: u8 = 0x6D;
    pub const NUMERICN: u8 = 0x6C;
    pub const GUID: u8 = 0x24;
    pub const DATETIMN: u8 = 0x6F;
    pub const DATETIME2N: u8 = 0x2A;
    pub const NVARCHAR: u8 = 0xE7;
    pub const BIGVARCHAR: u8 = 0xA7;
    pub const BIGCHAR: u8 = 0xAF;
    pub const BIGVARBINARY: u8 = 0xA5;
    pub const SSVARIANT: u8 = 0x62;
}

/// Bytes a numeric of this precision takes, sign byte included.
pub fn numeric_len(precision: u8) -> u8 {
    match precision {
        0..=9 => 5,
        10..=19 => 9,
        20..=28 => 13,
        _ => 17,
    }
}

fn datetime2_time_len(scale: u8) -> usize {
    match scale {
        0..=2 => 3,
        3..=4 => 4,
        _ => 5,
    }
}

fn max_bytes(len: Option<u16>, per_char: u16) -> u16 {
    match len {
        Some(n) => n.saturating_mul(per_char),
        None => 0xFFFF,
    }
}

/// Writes the TYPE_INFO of a column.
pub fn write_type_info(out: &mut Vec<u8>, ty: &SqlType) {
    use type_byte::*;
    match ty {
        SqlType::TinyInt => out.extend_from_slice(&[INTN, 1]),
        SqlType::SmallInt => out.extend_from_slice(&[INTN, 2]),
        SqlType::Int => out.extend_from_slice(&[INTN, 4]),
        SqlType::BigInt => out.extend_from_slice(&[INTN, 8]),
        SqlType::Bit => out.extend_from_slice(&[BITN, 1]),
        SqlType::Real => out.extend_from_slice(&[FLTN, 4]),
        SqlType::Float => out.extend_from_slice(&[FLTN, 8]),
        SqlType::Numeric { precision, scale } => {
            out.extend_from_slice(&[NUMERICN, numeric_len(*precision), *precision, *scale])
        }
        SqlType::UniqueIdentifier => out.extend_from_slice(&[GUID, 16]),
        SqlType::DateTime => out.extend_from_slice(&[DATETIMN, 8]),
        SqlType::DateTime2(scale) => out.extend_from_slice(&[DATETIME2N, *scale]),
        SqlType::NVarChar(len) => {
            out.push(NVARCHAR);
            out.extend_from_slice(&max_bytes(*len, 2).to_le_bytes());
            out.extend_from_slice(&DEFAULT_COLLATION);
        }
        SqlType::VarChar(len) => {
            out.push(BIGVARCHAR);
            out.extend_from_slice(&max_bytes(*len, 1).to_le_bytes());
            out.extend_from_slice(&DEFAULT_COLLATION);
        }
        SqlType::Char(len) => {
            out.push(BIGCHAR);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&DEFAULT_COLLATION);
        }
        SqlType::VarBinary(len) => {
            out.push(BIGVARBINARY);
            out.extend_from_slice(&max_bytes(*len, 1).to_le_bytes());
        }
        SqlType::Variant => {
            out.push(SSVARIANT);
            out.extend_from_slice(&8009u32.to_le_bytes());
        }
    }
}

/// Encodes text in the default collation's code page (1252). Characters it
/// cannot hold become '?', as SQL Server does on conversion.
pub fn encode_cp1252(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| {
            let code = c as u32;
            if code < 0x80 || (0xA0..=0xFF).contains(&code) {
                code as u8
            } else {
                b'?'
            }
        })
        .collect()
}

fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

/// datetime: days since 1900-01-01 and 1/300-second ticks since midnight.
fn datetime_bytes(dt: &NaiveDateTime) -> [u8; 8] {
    let base = NaiveDate::from_ymd_opt(1900, 1, 1).expect("valid date");
    let days = (dt.date() - base).num_days() as i32;
    let time = dt.time();
    let nanos_of_day =
        time.num_seconds_from_midnight() as u64 * 1_000_000_000 + time.nanosecond() as u64;
    let ticks = ((nanos_of_day * 300 + 500_000_000) / 1_000_000_000) as u32;
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&days.to_le_bytes());
    b[4..].copy_from_slice(&ticks.to_le_bytes());
    b
}

/// datetime2(scale): time in 10^-scale seconds since midnight, then days since 0001-01-01 (3 bytes).
fn datetime2_bytes(dt: &NaiveDateTime, scale: u8) -> Vec<u8> {
    let time = dt.time();
    let nanos = time.num_seconds_from_midnight() as u64 * 1_000_000_000
        + time.nanosecond().min(999_999_999) as u64;
    let units = nanos / 10u64.pow(9 - scale.min(7) as u32);
    let time_len = datetime2_time_len(scale);
    let mut out = units.to_le_bytes()[..time_len].to_vec();
    let base = NaiveDate::from_ymd_opt(1, 1, 1).expect("valid date");
    let days = (dt.date() - base).num_days() as u32;
    out.extend_from_slice(&days.to_le_bytes()[..3]);
    out
}

fn numeric_magnitude(value: i128, precision: u8) -> Vec<u8> {
    let len = numeric_len(precision) as usize - 1;
    let magnitude = value.unsigned_abs();
    magnitude.to_le_bytes()[..len].to_vec()
}

fn write_plp(out: &mut Vec<u8>, data: Option<&[u8]>) {
    match data {
        None => out.extend_from_slice(&u64::MAX.to_le_bytes()),
        Some(bytes) => {
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            for chunk in bytes.chunks(8000) {
                out.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
                out.extend_from_slice(chunk);
            }
            out.extend_from_slice(&0u32.to_le_bytes());
        }
    }
}

/// Writes a short (u16-length) variable value, or NULL (0xFFFF).
fn write_short_var(out: &mut Vec<u8>, data: Option<&[u8]>) {
    match data {
        None => out.extend_from_slice(&0xFFFFu16.to_le_bytes()),
        Some(bytes) => {
            out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
            out.extend_from_slice(bytes);
        }
    }
}

/// Why a value cannot be sent as the column's type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a {value} value cannot be sent in a {ty:?} column")]
pub struct TypeMismatch {
    pub value: &'static str,
    pub ty: SqlType,
}

fn value_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "NULL",
        Value::TinyInt(_) => "tinyint",
        Value::SmallInt(_) => "smallint",
        Value::Int(_) => "int",
        Value::BigInt(_) => "bigint",
        Value::Bit(_) => "bit",
        Value::Real(_) => "real",
        Value::Float(_) => "float",
        Value::Numeric(_) => "numeric",
        Value::Str(_) => "string",
        Value::Bytes(_) => "binary",
        Value::Guid(_) => "uniqueidentifier",
        Value::DateTime(_) => "datetime",
        Value::Variant(..) => "sql_variant",
    }
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::TinyInt(x) => Some(*x as i64),
        Value::SmallInt(x) => Some(*x as i64),
        Value::Int(x) => Some(*x as i64),
        Value::BigInt(x) => Some(*x),
        Value::Bit(b) => Some(*b as i64),
        Value::Numeric(x) => i64::try_from(*x).ok(),
        _ => None,
    }
}

/// Writes one value of a ROW in the column's wire format.
pub fn write_value(out: &mut Vec<u8>, ty: &SqlType, value: &Value) -> Result<(), TypeMismatch> {
    let mismatch = || TypeMismatch {
        value: value_kind(value),
        ty: ty.clone(),
    };
    if value.is_null() {
        match ty {
            SqlType::NVarChar(None) | SqlType::VarChar(None) | SqlType::VarBinary(None) => {
                write_plp(out, None)
            }
            SqlType::NVarChar(_)
            | SqlType::VarChar(_)
            | SqlType::Char(_)
            | SqlType::VarBinary(_) => write_short_var(out, None),
            SqlType::Variant => out.extend_from_slice(&0u32.to_le_bytes()),
            _ => out.push(0),
        }
        return Ok(());
    }
    match ty {
        SqlType::TinyInt | SqlType::SmallInt | SqlType::Int | SqlType::BigInt => {
            let n = as_i64(value).ok_or_else(mismatch)?;
            match ty {
                SqlType::TinyInt => {
                    out.push(1);
                    out.push(u8::try_from(n).map_err(|_| mismatch())?);
                }
                SqlType::SmallInt => {
                    out.push(2);
                    out.extend_from_slice(&i16::try_from(n).map_err(|_| mismatch())?.to_le_bytes());
                }
                SqlType::Int => {
                    out.push(4);
                    out.extend_from_slice(&i32::try_from(n).map_err(|_| mismatch())?.to_le_bytes());
                }
                _ => {
                    out.push(8);
                    out.extend_from_slice(&n.to_le_bytes());
                }
            }
        }
        SqlType::Bit => {
            let b = match value {
                Value::Bit(b) => *b,
                other => as_i64(other).ok_or_else(mismatch)? != 0,
            };
            out.extend_from_slice(&[1, b as u8]);
        }
        SqlType::Real | SqlType::Float => {
            let f = match value {
                Value::Real(f) => *f as f64,
                Value::Float(f) => *f,
                other => as_i64(other).ok_or_else(mismatch)? as f64,
            };
            if *ty == SqlType::Real {
                out.push(4);
                out.extend_from_slice(&(f as f32).to_le_bytes());
            } else {
                out.push(8);
                out.extend_from_slice(&f.to_le_bytes());
            }
        }
        SqlType::Numeric { precision, .. } => {
            let n = match value {
                Value::Numeric(n) => *n,
                other => as_i64(other).ok_or_else(mismatch)? as i128,
            };
            out.push(numeric_len(*precision));
            out.push(if n < 0 { 0 } else { 1 });
            out.extend_from_slice(&numeric_magnitude(n, *precision));
        }
        SqlType::UniqueIdentifier => {
            let Value::Guid(g) = value else {
                return Err(mismatch());
            };
            out.push(16);
            out.extend_from_slice(&g.to_bytes_le());
        }
        SqlType::DateTime => {
            let Value::DateTime(dt) = value else {
                return Err(mismatch());
            };
            out.push(8);
            out.extend_from_slice(&datetime_bytes(dt));
        }
        SqlType::DateTime2(scale) => {
            let Value::DateTime(dt) = value else {
                return Err(mismatch());
            };
            let bytes = datetime2_bytes(dt, *scale);
            out.push(bytes.len() as u8);
            out.extend_from_slice(&bytes);
        }
        SqlType::NVarChar(len) => {
            let text = text_of(value).ok_or_else(mismatch)?;
            let bytes = utf16le(&text);
            match len {
                None => write_plp(out, Some(&bytes)),
                Some(n) => {
                    if bytes.len() > *n as usize * 2 {
                        return Err(mismatch());
                    }
                    write_short_var(out, Some(&bytes));
                }
            }
        }
        SqlType::VarChar(_) | SqlType::Char(_) => {
            let text = text_of(value).ok_or_else(mismatch)?;
            let mut bytes = encode_cp1252(&text);
            let limit = match ty {
                SqlType::Char(n) => Some(*n),
                SqlType::VarChar(len) => *len,
                _ => unreachable!("matched above"),
            };
            if let SqlType::Char(n) = ty {
                bytes.resize(*n as usize, b' ');
            }
            match limit {
                None => write_plp(out, Some(&bytes)),
                Some(n) => {
                    if bytes.len() > n as usize {
                        return Err(mismatch());
                    }
                    write_short_var(out, Some(&bytes));
                }
            }
        }
        SqlType::VarBinary(len) => {
            let Value::Bytes(bytes) = value else {
                return Err(mismatch());
            };
            match len {
                None => write_plp(out, Some(bytes)),
                Some(n) => {
                    if bytes.len() > *n as usize {
                        return Err(mismatch());
                    }
                    write_short_var(out, Some(bytes));
                }
            }
        }
        SqlType::Variant => write_variant(out, value).ok_or_else(mismatch)?,
    }
    Ok(())
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::Str(s) => Some(s.clone()),
        other => as_i64(other).map(|n| n.to_string()),
    }
}

/// sql_variant value: total length, base type, property bytes, data.
fn write_variant(out: &mut Vec<u8>, value: &Value) -> Option<()> {
    use type_byte::*;
    let (inner, base) = match value {
        Value::Variant(inner, base) => (inner.as_ref(), base.clone()),
        Value::Int(_) => (value, SqlType::Int),
        Value::Str(s) => (
            value,
            SqlType::NVarChar(Some(s.chars().count().max(1) as u16)),
        ),
        _ => return None,
    };
    if inner.is_null() {
        out.extend_from_slice(&0u32.to_le_bytes());
        return Some(());
    }
    let mut body = Vec::new();
    match (&base, inner) {
        (SqlType::Int, v) => {
            body.extend_from_slice(&[INT4, 0]);
            body.extend_from_slice(&(as_i64(v)? as i32).to_le_bytes());
        }
        (SqlType::NVarChar(len), Value::Str(s)) => {
            let bytes = utf16le(s);
            body.extend_from_slice(&[NVARCHAR, 7]);
            body.extend_from_slice(&DEFAULT_COLLATION);
            let max = len.map(|n| n * 2).unwrap_or(8000);
            body.extend_from_slice(&max.to_le_bytes());
            body.extend_from_slice(&bytes);
        }
        _ => return None,
    }
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(ty: SqlType, v: Value) -> Vec<u8> {
        let mut out = Vec::new();
        write_value(&mut out, &ty, &v).unwrap();
        out
    }

    #[test]
    fn ints_carry_their_length() {
        assert_eq!(
            encoded(SqlType::Int, Value::Int(-2)),
            vec![4, 0xFE, 0xFF, 0xFF, 0xFF]
        );
        assert_eq!(encoded(SqlType::SmallInt, Value::Int(53)), vec![2, 53, 0]);
        assert_eq!(encoded(SqlType::Int, Value::Null), vec![0]);
        assert!(write_value(&mut Vec::new(), &SqlType::TinyInt, &Value::Int(300)).is_err());
    }

    #[test]
    fn numeric_25_0_is_13_bytes() {
        let lsn = 37_000_000_042_500_001i128;
        let bytes = encoded(
            SqlType::Numeric {
                precision: 25,
                scale: 0,
            },
            Value::Numeric(lsn),
        );
        assert_eq!(bytes[0], 13);
        assert_eq!(bytes[1], 1);
        let mut mag = [0u8; 16];
        mag[..12].copy_from_slice(&bytes[2..]);
        assert_eq!(i128::from_le_bytes(mag), lsn);
    }

    #[test]
    fn guid_uses_mixed_endian() {
        let g = Uuid::parse_str("00112233-4455-6677-8899-aabbccddeeff").unwrap();
        let bytes = encoded(SqlType::UniqueIdentifier, Value::Guid(g));
        assert_eq!(
            bytes,
            vec![
                16, 0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc,
                0xdd, 0xee, 0xff
            ]
        );
    }

    #[test]
    fn datetime_counts_days_from_1900_and_ticks() {
        let dt = NaiveDate::from_ymd_opt(1900, 1, 2)
            .unwrap()
            .and_hms_opt(0, 0, 1)
            .unwrap();
        assert_eq!(
            encoded(SqlType::DateTime, Value::DateTime(dt)),
            vec![8, 1, 0, 0, 0, 44, 1, 0, 0]
        );
    }

    #[test]
    fn datetime2_scale7_is_8_bytes() {
        let dt = NaiveDate::from_ymd_opt(1, 1, 2)
            .unwrap()
            .and_hms_opt(0, 0, 1)
            .unwrap();
        let bytes = encoded(SqlType::DateTime2(7), Value::DateTime(dt));
        assert_eq!(bytes, vec![8, 0x80, 0x96, 0x98, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn strings_and_max_types() {
        assert_eq!(
            encoded(SqlType::NVarChar(Some(10)), Value::Str("ab".into())),
            vec![4, 0, b'a', 0, b'b', 0]
        );
        assert_eq!(
            encoded(SqlType::NVarChar(Some(10)), Value::Null),
            vec![0xFF, 0xFF]
        );
        let plp = encoded(SqlType::NVarChar(None), Value::Str("a".into()));
        assert_eq!(
            plp,
            vec![2, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, b'a', 0, 0, 0, 0, 0]
        );
        assert_eq!(
            encoded(SqlType::Char(1), Value::Str("D".into())),
            vec![1, 0, b'D']
        );
        assert!(
            write_value(
                &mut Vec::new(),
                &SqlType::NVarChar(Some(1)),
                &Value::Str("ab".into())
            )
            .is_err()
        );
    }

    #[test]
    fn variant_holds_base_type() {
        let bytes = encoded(
            SqlType::Variant,
            Value::Variant(Box::new(Value::Int(3)), SqlType::Int),
        );
        assert_eq!(bytes, vec![6, 0, 0, 0, 0x38, 0, 3, 0, 0, 0]);
        let null = encoded(
            SqlType::Variant,
            Value::Variant(Box::new(Value::Null), SqlType::Int),
        );
        assert_eq!(null, vec![0, 0, 0, 0]);
    }
}
