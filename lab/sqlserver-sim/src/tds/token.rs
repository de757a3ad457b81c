//! Server-to-client tokens (MS-TDS 2.2.7), written into a byte buffer that
//! becomes the payload of a tabular-result message.

use super::types::{SqlType, TypeMismatch, Value, write_type_info, write_value};

pub const TOKEN_COLMETADATA: u8 = 0x81;
pub const TOKEN_ERROR: u8 = 0xAA;
pub const TOKEN_INFO: u8 = 0xAB;
pub const TOKEN_LOGINACK: u8 = 0xAD;
pub const TOKEN_FEATUREEXTACK: u8 = 0xAE;
pub const TOKEN_ROW: u8 = 0xD1;
pub const TOKEN_ENVCHANGE: u8 = 0xE3;
pub const TOKEN_DONE: u8 = 0xFD;
pub const TOKEN_DONEPROC: u8 = 0xFE;
pub const TOKEN_DONEINPROC: u8 = 0xFF;

/// DONE status bits.
pub mod done_status {
    pub const FINAL: u16 = 0x00;
    pub const MORE: u16 = 0x01;
    pub const ERROR: u16 = 0x02;
    pub const IN_XACT: u16 = 0x04;
    pub const COUNT: u16 = 0x10;
    pub const ATTN: u16 = 0x20;
    pub const SRVERROR: u16 = 0x100;
}

/// CurCmd values of DONE tokens (the statement kind that finished). Clients
/// do not act on it; only the well-known SELECT/UPDATE codes are sent, 0 otherwise.
pub mod cur_cmd {
    pub const NONE: u16 = 0;
    pub const SELECT: u16 = 0xC1;
    pub const UPDATE: u16 = 0xC5;
}

/// ENVCHANGE types.
mod env_type {
    pub const DATABASE: u8 = 1;
    pub const LANGUAGE: u8 = 2;
    pub const PACKET_SIZE: u8 = 4;
    pub const SQL_COLLATION: u8 = 7;
    pub const BEGIN_TRAN: u8 = 8;
    pub const COMMIT_TRAN: u8 = 9;
    pub const ROLLBACK_TRAN: u8 = 10;
}

/// A column of a result set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub ty: SqlType,
    pub nullable: bool,
}

impl Column {
    pub fn new(name: impl Into<String>, ty: SqlType) -> Self {
        Self {
            name: name.into(),
            ty,
            nullable: true,
        }
    }

    pub fn not_null(name: impl Into<String>, ty: SqlType) -> Self {
        Self {
            name: name.into(),
            ty,
            nullable: false,
        }
    }
}

/// A server message (INFO or ERROR token contents).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerMessage {
    pub number: i32,
    pub state: u8,
    /// Severity: 0-10 are informational (INFO token), 11+ are errors.
    pub class: u8,
    pub text: String,
    pub server: String,
    pub procedure: String,
    pub line: i32,
}

fn b_varchar(out: &mut Vec<u8>, s: &str) {
    let units: Vec<u16> = s.encode_utf16().take(255).collect();
    out.push(units.len() as u8);
    for u in units {
        out.extend_from_slice(&u.to_le_bytes());
    }
}

fn us_varchar(out: &mut Vec<u8>, s: &str) {
    let units: Vec<u16> = s.encode_utf16().take(u16::MAX as usize).collect();
    out.extend_from_slice(&(units.len() as u16).to_le_bytes());
    for u in units {
        out.extend_from_slice(&u.to_le_bytes());
    }
}

/// Appends a token with a u16 length prefix around the body `f` writes.
fn with_length(out: &mut Vec<u8>, token: u8, f: impl FnOnce(&mut Vec<u8>)) {
    let mut body = Vec::new();
    f(&mut body);
    out.push(token);
    out.extend_from_slice(&(body.len() as u16).to_le_bytes());
    out.extend_from_slice(&body);
}

/// INFO (class <= 10) or ERROR token.
pub fn message(out: &mut Vec<u8>, msg: &ServerMessage) {
    let token = if msg.class > 10 {
        TOKEN_ERROR
    } else {
        TOKEN_INFO
    };
    with_length(out, token, |b| {
        b.extend_from_slice(&msg.number.to_le_bytes());
        b.push(msg.state);
        b.push(msg.class);
        us_varchar(b, &msg.text);
        b_varchar(b, &msg.server);
        b_varchar(b, &msg.procedure);
        b.extend_from_slice(&msg.line.to_le_bytes());
    });
}

/// LOGINACK: interface 1 (T-SQL), the TDS version, program name, product version.
pub fn login_ack(out: &mut Vec<u8>, tds_version: u32, prog_name: &str, version: [u8; 4]) {
    with_length(out, TOKEN_LOGINACK, |b| {
        b.push(1);
        b.extend_from_slice(&tds_version.to_be_bytes());
        b_varchar(b, prog_name);
        b.extend_from_slice(&version);
    });
}

/// FEATUREEXTACK acknowledging no feature.
pub fn feature_ext_ack_none(out: &mut Vec<u8>) {
    out.push(TOKEN_FEATUREEXTACK);
    out.push(0xFF);
}

pub fn env_database(out: &mut Vec<u8>, new: &str, old: &str) {
    with_length(out, TOKEN_ENVCHANGE, |b| {
        b.push(env_type::DATABASE);
        b_varchar(b, new);
        b_varchar(b, old);
    });
}

pub fn env_language(out: &mut Vec<u8>, new: &str, old: &str) {
    with_length(out, TOKEN_ENVCHANGE, |b| {
        b.push(env_type::LANGUAGE);
        b_varchar(b, new);
        b_varchar(b, old);
    });
}

pub fn env_packet_size(out: &mut Vec<u8>, new: usize, old: usize) {
    with_length(out, TOKEN_ENVCHANGE, |b| {
        b.push(env_type::PACKET_SIZE);
        b_varchar(b, &new.to_string());
        b_varchar(b, &old.to_string());
    });
}

pub fn env_collation(out: &mut Vec<u8>, collation: &[u8; 5]) {
    with_length(out, TOKEN_ENVCHANGE, |b| {
        b.push(env_type::SQL_COLLATION);
        b.push(5);
        b.extend_from_slice(collation);
        b.push(0);
    });
}

pub fn env_begin_tran(out: &mut Vec<u8>, descriptor: u64) {
    with_length(out, TOKEN_ENVCHANGE, |b| {
        b.push(env_type::BEGIN_TRAN);
        b.push(8);
        b.extend_from_slice(&descriptor.to_le_bytes());
        b.push(0);
    });
}

/// Commit (`committed`) or rollback of the transaction `descriptor`.
pub fn env_end_tran(out: &mut Vec<u8>, descriptor: u64, committed: bool) {
    with_length(out, TOKEN_ENVCHANGE, |b| {
        b.push(if committed {
            env_type::COMMIT_TRAN
        } else {
            env_type::ROLLBACK_TRAN
        });
        b.push(0);
        b.push(8);
        b.extend_from_slice(&descriptor.to_le_bytes());
    });
}

/// RETURNSTATUS (0x79): a procedure's return value (MS-TDS 2.2.7.18).
pub fn return_status(out: &mut Vec<u8>, value: i32) {
    out.push(0x79);
    out.extend_from_slice(&value.to_le_bytes());
}

/// RETURNVALUE (0xAC) of an int OUTPUT parameter (MS-TDS 2.2.7.19), e.g. sp_prepexec's handle.
pub fn return_value_int(out: &mut Vec<u8>, ordinal: u16, name: &str, value: i32) {
    out.push(0xAC);
    out.extend_from_slice(&ordinal.to_le_bytes());
    let units: Vec<u16> = name.encode_utf16().collect();
    out.push(units.len() as u8);
    for u in units {
        out.extend_from_slice(&u.to_le_bytes());
    }
    out.push(0x01); // an output parameter
    // UserType: a ULONG from TDS 7.2, a USHORT before
    if tds_version() >= TDS_7_2 {
        out.extend_from_slice(&0u32.to_le_bytes());
    } else {
        out.extend_from_slice(&0u16.to_le_bytes());
    }
    out.extend_from_slice(&0u16.to_le_bytes()); // Flags
    out.extend_from_slice(&[0x26, 4, 4]); // INTN(4), then the value's length
    out.extend_from_slice(&value.to_le_bytes());
}

/// DONE, DONEPROC or DONEINPROC.
pub fn done(out: &mut Vec<u8>, token: u8, status: u16, cur_cmd: u16, row_count: u64) {
    out.push(token);
    out.extend_from_slice(&status.to_le_bytes());
    out.extend_from_slice(&cur_cmd.to_le_bytes());
    // DoneRowCount is a ULONGLONG from TDS 7.2, a LONG before (MS-TDS 2.2.7.6)
    if tds_version() >= TDS_7_2 {
        out.extend_from_slice(&row_count.to_le_bytes());
    } else {
        out.extend_from_slice(&(row_count.min(u32::MAX as u64) as u32).to_le_bytes());
    }
}

/// TDS versions (LOGIN7 TDSVersion, MS-TDS 2.2.6.4).
pub const TDS_7_1: u32 = 0x7100_0001;
pub const TDS_7_2: u32 = 0x7209_0002;
pub const TDS_7_3: u32 = 0x730A_0003;
pub const TDS_7_4: u32 = 0x7400_0004;

tokio::task_local! {
    /// The TDS version the session's client logged in with: what it can read.
    pub static TDS_VERSION: u32;
}

/// The session's TDS version (7.4 outside a session).
pub fn tds_version() -> u32 {
    TDS_VERSION.try_with(|v| *v).unwrap_or(TDS_7_4)
}

/// How a column goes to the session's client. Down-level clients get what SQL Server sends them:
/// before TDS 7.3 date/time types as nvarchar (Microsoft Learn, "Enhanced Date/Time Type Behavior
/// with Previous SQL Server Versions"), before TDS 7.2 the (max) types as ntext, text and image
/// (MS-TDS 2.2.5.4.3: PLP types need 7.2).
enum Wire {
    As(SqlType),
    /// datetime2(scale) as its text, 'YYYY-MM-DD hh:mm:ss[.fffffff]'
    DateTimeText(u8),
    /// NTEXT (0x63), TEXT (0x23) or IMAGE (0x22)
    Lob(u8),
}

fn wire(ty: &SqlType) -> Wire {
    let v = tds_version();
    match ty {
        SqlType::DateTime2(scale) if v < TDS_7_3 => Wire::DateTimeText(*scale),
        SqlType::NVarChar(None) if v < TDS_7_2 => Wire::Lob(0x63),
        SqlType::VarChar(None) if v < TDS_7_2 => Wire::Lob(0x23),
        SqlType::VarBinary(None) if v < TDS_7_2 => Wire::Lob(0x22),
        other => Wire::As(other.clone()),
    }
}

fn datetime_text_len(scale: u8) -> u16 {
    19 + if scale > 0 { scale as u16 + 1 } else { 0 }
}

/// COLMETADATA for `columns`.
pub fn col_metadata(out: &mut Vec<u8>, columns: &[Column]) {
    out.push(TOKEN_COLMETADATA);
    out.extend_from_slice(&(columns.len() as u16).to_le_bytes());
    for column in columns {
        // UserType: a ULONG from TDS 7.2, a USHORT before (MS-TDS 2.2.7.4)
        if tds_version() >= TDS_7_2 {
            out.extend_from_slice(&0u32.to_le_bytes());
        } else {
            out.extend_from_slice(&0u16.to_le_bytes());
        }
        let flags: u16 = if column.nullable { 0x0001 } else { 0 };
        out.extend_from_slice(&flags.to_le_bytes());
        match wire(&column.ty) {
            Wire::As(ty) => write_type_info(out, &ty),
            Wire::DateTimeText(scale) => {
                write_type_info(out, &SqlType::NVarChar(Some(datetime_text_len(scale))))
            }
            Wire::Lob(kind) => {
                out.push(kind);
                out.extend_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
                if kind != 0x22 {
                    out.extend_from_slice(&super::types::DEFAULT_COLLATION);
                }
                // TableName: US_VARCHAR, empty (a computed column)
                out.extend_from_slice(&0u16.to_le_bytes());
            }
        }
        b_varchar(out, &column.name);
    }
}

/// ROW with one value per column.
pub fn row(out: &mut Vec<u8>, columns: &[Column], values: &[Value]) -> Result<(), TypeMismatch> {
    debug_assert_eq!(columns.len(), values.len());
    let start = out.len();
    out.push(TOKEN_ROW);
    for (column, value) in columns.iter().zip(values) {
        let written = match wire(&column.ty) {
            Wire::As(ty) => write_value(out, &ty, value),
            Wire::DateTimeText(scale) => {
                let text = match value {
                    Value::DateTime(dt) => {
                        let mut s = dt.format("%Y-%m-%d %H:%M:%S").to_string();
                        if scale > 0 {
                            let nanos = format!("{:09}", dt.and_utc().timestamp_subsec_nanos());
                            s.push('.');
                            s.push_str(&nanos[..scale.min(7) as usize]);
                        }
                        Value::Str(s)
                    }
                    other => other.clone(),
                };
                write_value(
                    out,
                    &SqlType::NVarChar(Some(datetime_text_len(scale))),
                    &text,
                )
            }
            Wire::Lob(kind) => write_lob(out, kind, value),
        };
        if let Err(e) = written {
            out.truncate(start);
            return Err(e);
        }
    }
    Ok(())
}

/// A text, ntext or image value: TEXTPTR, TIMESTAMP, then the length and the bytes; NULL is
/// an empty TEXTPTR (MS-TDS 2.2.4.2.1.3).
fn write_lob(out: &mut Vec<u8>, kind: u8, value: &Value) -> Result<(), TypeMismatch> {
    let bytes = match (kind, value) {
        (_, Value::Null) => {
            out.push(0);
            return Ok(());
        }
        (0x22, Value::Bytes(b)) => b.clone(),
        (0x63, Value::Str(s)) => s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect(),
        (0x23, Value::Str(s)) => super::types::encode_cp1252(s),
        _ => {
            return Err(TypeMismatch {
                value: "non-text",
                ty: if kind == 0x22 {
                    SqlType::VarBinary(None)
                } else {
                    SqlType::NVarChar(None)
                },
            });
        }
    };
    out.push(16);
    out.extend_from_slice(&[0xAB; 16]);
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(&bytes);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_token_layout() {
        let mut out = Vec::new();
        message(
            &mut out,
            &ServerMessage {
                number: 18456,
                state: 1,
                class: 14,
                text: "Login failed for user 'x'.".into(),
                server: "LAB".into(),
                procedure: String::new(),
                line: 1,
            },
        );
        assert_eq!(out[0], TOKEN_ERROR);
        let len = u16::from_le_bytes([out[1], out[2]]) as usize;
        assert_eq!(out.len(), 3 + len);
        assert_eq!(i32::from_le_bytes(out[3..7].try_into().unwrap()), 18456);
        assert_eq!(out[7], 1);
        assert_eq!(out[8], 14);
        let chars = u16::from_le_bytes([out[9], out[10]]) as usize;
        assert_eq!(chars, "Login failed for user 'x'.".len());
        // server name follows the text
        assert_eq!(out[11 + chars * 2], 3);
    }

    #[test]
    fn info_for_low_severity() {
        let mut out = Vec::new();
        message(
            &mut out,
            &ServerMessage {
                number: 3211,
                state: 1,
                class: 10,
                text: "10 percent processed.".into(),
                server: String::new(),
                procedure: String::new(),
                line: 1,
            },
        );
        assert_eq!(out[0], TOKEN_INFO);
    }

    #[test]
    fn done_is_13_bytes() {
        let mut out = Vec::new();
        done(
            &mut out,
            TOKEN_DONE,
            done_status::COUNT | done_status::MORE,
            cur_cmd::SELECT,
            3,
        );
        assert_eq!(out, vec![0xFD, 0x11, 0, 0xC1, 0, 3, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn login_ack_carries_version_big_endian_tds() {
        let mut out = Vec::new();
        login_ack(
            &mut out,
            0x7400_0004,
            "Microsoft SQL Server",
            [16, 0, 0x10, 0x27],
        );
        assert_eq!(out[0], TOKEN_LOGINACK);
        assert_eq!(out[3], 1);
        assert_eq!(&out[4..8], &[0x74, 0, 0, 4]);
        assert_eq!(&out[out.len() - 4..], &[16, 0, 0x10, 0x27]);
    }

    #[test]
    fn colmetadata_and_row() {
        let columns = vec![
            Column::new("a", SqlType::Int),
            Column::not_null("b", SqlType::Bit),
        ];
        let mut out = Vec::new();
        col_metadata(&mut out, &columns);
        assert_eq!(
            out,
            vec![
                0x81, 2, 0, 0, 0, 0, 0, 1, 0, 0x26, 4, 1, b'a', 0, 0, 0, 0, 0, 0, 0, 0x68, 1, 1,
                b'b', 0
            ]
        );
        let mut row_bytes = Vec::new();
        row(&mut row_bytes, &columns, &[Value::Int(7), Value::Bit(true)]).unwrap();
        assert_eq!(row_bytes, vec![0xD1, 4, 7, 0, 0, 0, 1, 1]);
        let mut bad = vec![9];
        assert!(
            row(
                &mut bad,
                &columns,
                &[Value::Str("x".into()), Value::Bit(true)]
            )
            .is_err()
        );
        assert_eq!(bad, vec![9], "a failed row leaves the buffer as it was");
    }

    #[test]
    fn envchange_packet_size_as_text() {
        let mut out = Vec::new();
        env_packet_size(&mut out, 8192, 4096);
        assert_eq!(out[0], TOKEN_ENVCHANGE);
        assert_eq!(out[3], 4);
        assert_eq!(out[4], 4);
        assert_eq!(&out[5..13], &[b'8', 0, b'1', 0, b'9', 0, b'2', 0]);
    }
}
