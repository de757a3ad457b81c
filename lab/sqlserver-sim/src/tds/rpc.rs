//! RPC requests (MS-TDS 2.2.6.6): a procedure named or given by a well-known id
//! (sp_executesql = 10, ...), option flags, then parameters, each a name, status flags,
//! TYPE_INFO and a value. The parameter types clients send for text, integers, bits,
//! floats, decimals, binaries and GUIDs are read; others are reported by their type byte.

use uuid::Uuid;

use super::types::{SqlType, Value};

/// One RPC call.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcCall {
    /// The procedure's name, or the name of its well-known id (ProcIDs, MS-TDS 2.2.6.6).
    pub procedure: String,
    pub params: Vec<RpcParam>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RpcParam {
    /// With its '@', or empty for a positional parameter.
    pub name: String,
    pub output: bool,
    pub value: Value,
    pub ty: SqlType,
}

/// The name SQL Server gives a well-known procedure id (MS-TDS 2.2.6.6, ProcID).
pub fn procedure_id_name(id: u16) -> String {
    match id {
        1 => "sp_cursor".into(),
        2 => "sp_cursoropen".into(),
        3 => "sp_cursorprepare".into(),
        4 => "sp_cursorexecute".into(),
        5 => "sp_cursorprepexec".into(),
        6 => "sp_cursorunprepare".into(),
        7 => "sp_cursorfetch".into(),
        8 => "sp_cursoroption".into(),
        9 => "sp_cursorclose".into(),
        10 => "sp_executesql".into(),
        11 => "sp_prepare".into(),
        12 => "sp_execute".into(),
        13 => "sp_prepexec".into(),
        14 => "sp_prepexecrpc".into(),
        15 => "sp_unprepare".into(),
        other => format!("procedure id {other}"),
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or("the RPC request ends early")?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes(b.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().unwrap()))
    }
    fn utf16(&mut self, chars: usize) -> Result<String, String> {
        let b = self.take(chars * 2)?;
        let units: Vec<u16> = b
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        Ok(String::from_utf16_lossy(&units))
    }
    fn done(&self) -> bool {
        self.pos >= self.b.len()
    }
}

/// Parses the body of an RPC request (after ALL_HEADERS). Only the first call of a batched
/// request is read.
pub fn parse(body: &[u8]) -> Result<RpcCall, String> {
    let mut r = Reader { b: body, pos: 0 };
    let len = r.u16()?;
    let procedure = if len == 0xFFFF {
        procedure_id_name(r.u16()?)
    } else {
        r.utf16(len as usize)?
    };
    let _option_flags = r.u16()?;
    let mut params = Vec::new();
    // 0x80 / 0xFF end one call of a batched RPC request (MS-TDS 2.2.6.6, BatchFlag).
    while !r.done() && !matches!(r.b[r.pos], 0x80 | 0xFF) {
        let name_len = r.u8()? as usize;
        let name = r.utf16(name_len)?;
        let status = r.u8()?;
        let (value, ty) = typed_value(&mut r)?;
        params.push(RpcParam {
            name,
            output: status & 0x01 != 0,
            value,
            ty,
        });
    }
    Ok(RpcCall { procedure, params })
}

/// Text in the default collation's code page (1252): its first 256 code points match Latin-1
/// closely enough for the lab.
fn single_byte_text(bytes: &[u8]) -> String {
    bytes.iter().map(|b| *b as char).collect()
}

/// Reads a PLP value (MS-TDS 2.2.5.2.3): total length (or PLP_NULL), chunks, a zero terminator.
fn plp(r: &mut Reader<'_>) -> Result<Option<Vec<u8>>, String> {
    let total = r.u64()?;
    if total == u64::MAX {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    loop {
        let chunk = r.u32()? as usize;
        if chunk == 0 {
            break;
        }
        bytes.extend_from_slice(r.take(chunk)?);
    }
    Ok(Some(bytes))
}

fn int_value(bytes: &[u8]) -> Result<(Value, SqlType), String> {
    Ok(match bytes.len() {
        1 => (Value::TinyInt(bytes[0]), SqlType::TinyInt),
        2 => (
            Value::SmallInt(i16::from_le_bytes([bytes[0], bytes[1]])),
            SqlType::SmallInt,
        ),
        4 => (
            Value::Int(i32::from_le_bytes(bytes.try_into().unwrap())),
            SqlType::Int,
        ),
        8 => (
            Value::BigInt(i64::from_le_bytes(bytes.try_into().unwrap())),
            SqlType::BigInt,
        ),
        n => return Err(format!("an integer parameter of {n} bytes")),
    })
}

/// TYPE_INFO then the value (MS-TDS 2.2.5.4 and 2.2.5.5).
fn typed_value(r: &mut Reader<'_>) -> Result<(Value, SqlType), String> {
    let type_byte = r.u8()?;
    match type_byte {
        // fixed-length INT1, BIT, INT2, INT4, INT8
        0x30 => Ok((Value::TinyInt(r.u8()?), SqlType::TinyInt)),
        0x32 => Ok((Value::Bit(r.u8()? != 0), SqlType::Bit)),
        0x34 => int_value(r.take(2)?),
        0x38 => int_value(r.take(4)?),
        0x7F => int_value(r.take(8)?),
        // INTN, BITN, FLTN, GUID: a max length, then a length-prefixed value
        0x26 | 0x68 | 0x6D | 0x24 => {
            let max = r.u8()?;
            let len = r.u8()? as usize;
            let null_type = match (type_byte, max) {
                (0x26, 1) => SqlType::TinyInt,
                (0x26, 2) => SqlType::SmallInt,
                (0x26, 8) => SqlType::BigInt,
                (0x26, _) => SqlType::Int,
                (0x68, _) => SqlType::Bit,
                (0x6D, 4) => SqlType::Real,
                (0x6D, _) => SqlType::Float,
                _ => SqlType::UniqueIdentifier,
            };
            if len == 0 {
                return Ok((Value::Null, null_type));
            }
            let bytes = r.take(len)?;
            match type_byte {
                0x26 => int_value(bytes),
                0x68 => Ok((Value::Bit(bytes[0] != 0), SqlType::Bit)),
                0x6D if len == 4 => Ok((
                    Value::Real(f32::from_le_bytes(bytes.try_into().unwrap())),
                    SqlType::Real,
                )),
                0x6D if len == 8 => Ok((
                    Value::Float(f64::from_le_bytes(bytes.try_into().unwrap())),
                    SqlType::Float,
                )),
                0x24 if len == 16 => {
                    let mut b: [u8; 16] = bytes.try_into().unwrap();
                    // the wire order is the mixed-endian one of Windows GUIDs
                    b[..4].reverse();
                    b[4..6].reverse();
                    b[6..8].reverse();
                    Ok((Value::Guid(Uuid::from_bytes(b)), SqlType::UniqueIdentifier))
                }
                _ => Err(format!(
                    "a parameter of type 0x{type_byte:02X} and {len} bytes"
                )),
            }
        }
        // DECIMALN, NUMERICN: length, precision, scale; value: length, sign, magnitude
        0x6A | 0x6C => {
            let _max = r.u8()?;
            let precision = r.u8()?;
            let scale = r.u8()?;
            let ty = SqlType::Numeric { precision, scale };
            let len = r.u8()? as usize;
            if len == 0 {
                return Ok((Value::Null, ty));
            }
            let bytes = r.take(len)?;
            let positive = bytes[0] == 1;
            let mut magnitude = [0u8; 16];
            let digits = &bytes[1..];
            if digits.len() > 16 {
                return Err("a decimal parameter too long".into());
            }
            magnitude[..digits.len()].copy_from_slice(digits);
            let m = u128::from_le_bytes(magnitude) as i128;
            Ok((Value::Numeric(if positive { m } else { -m }), ty))
        }
        // NVARCHAR, NCHAR, BIGVARCHAR, BIGCHAR, BIGVARBINARY, BIGBINARY
        0xE7 | 0xEF | 0xA7 | 0xAF | 0xA5 | 0xAD => {
            let max = r.u16()?;
            let text = !matches!(type_byte, 0xA5 | 0xAD);
            if text {
                r.take(5)?; // collation
            }
            let bytes = if max == 0xFFFF {
                plp(r)?
            } else {
                match r.u16()? {
                    0xFFFF => None,
                    n => Some(r.take(n as usize)?.to_vec()),
                }
            };
            let chars = (max != 0xFFFF).then_some(max);
            let (ty, value) = match type_byte {
                0xE7 | 0xEF => {
                    let ty = SqlType::NVarChar(chars.map(|m| (m / 2).max(1)));
                    let value = bytes.map(|b| {
                        let units: Vec<u16> = b
                            .chunks_exact(2)
                            .map(|c| u16::from_le_bytes([c[0], c[1]]))
                            .collect();
                        Value::Str(String::from_utf16_lossy(&units))
                    });
                    (ty, value)
                }
                0xA7 | 0xAF => (
                    SqlType::VarChar(chars.map(|m| m.max(1))),
                    bytes.map(|b| Value::Str(single_byte_text(&b))),
                ),
                _ => (
                    SqlType::VarBinary(chars.map(|m| m.max(1))),
                    bytes.map(Value::Bytes),
                ),
            };
            Ok((value.unwrap_or(Value::Null), ty))
        }
        other => Err(format!(
            "parameters of TDS type 0x{other:02X} (MS-TDS 2.2.5.4)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
    }

    /// sp_executesql N'SELECT @a, @b', N'@a int, @b bit', @a = 7, @b = 1 as tedious sends it.
    #[test]
    fn reads_sp_executesql_with_parameters() {
        let mut body = vec![0xFF, 0xFF, 10, 0, 0, 0];
        for (name, text) in [("", "SELECT @a, @b"), ("", "@a int, @b bit")] {
            body.push(name.len() as u8);
            body.push(0);
            body.push(0xE7);
            body.extend_from_slice(&8000u16.to_le_bytes());
            body.extend_from_slice(&[9, 4, 0xD0, 0, 0x34]);
            let t = utf16(text);
            body.extend_from_slice(&(t.len() as u16).to_le_bytes());
            body.extend_from_slice(&t);
        }
        body.push(2);
        body.extend_from_slice(&utf16("@a"));
        body.extend_from_slice(&[0, 0x26, 4, 4, 7, 0, 0, 0]);
        body.push(2);
        body.extend_from_slice(&utf16("@b"));
        body.extend_from_slice(&[0, 0x68, 1, 1, 1]);
        let call = parse(&body).unwrap();
        assert_eq!(call.procedure, "sp_executesql");
        assert_eq!(call.params.len(), 4);
        assert_eq!(call.params[0].value, Value::Str("SELECT @a, @b".into()));
        assert_eq!(call.params[0].ty, SqlType::NVarChar(Some(4000)));
        assert_eq!(call.params[2].name, "@a");
        assert_eq!(call.params[2].value, Value::Int(7));
        assert_eq!(call.params[3].value, Value::Bit(true));
    }

    #[test]
    fn reads_plp_nvarchar_max_and_nulls() {
        let mut body = utf16("p").len().to_le_bytes()[..2].to_vec();
        body[0] = 1;
        body.extend_from_slice(&utf16("p"));
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(&[2]);
        body.extend_from_slice(&utf16("@s"));
        body.extend_from_slice(&[0, 0xE7, 0xFF, 0xFF, 9, 4, 0xD0, 0, 0x34]);
        let text = utf16(&"x".repeat(5000));
        body.extend_from_slice(&(text.len() as u64).to_le_bytes());
        body.extend_from_slice(&(text.len() as u32).to_le_bytes());
        body.extend_from_slice(&text);
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(&[2]);
        body.extend_from_slice(&utf16("@n"));
        body.extend_from_slice(&[1, 0x26, 4, 0]);
        let call = parse(&body).unwrap();
        assert_eq!(call.procedure, "p");
        assert_eq!(call.params[0].ty, SqlType::NVarChar(None));
        assert_eq!(call.params[0].value, Value::Str("x".repeat(5000)));
        assert_eq!(call.params[1].value, Value::Null);
        assert!(call.params[1].output);
        assert!(parse(&body[..body.len() - 1]).is_err());
    }
}
