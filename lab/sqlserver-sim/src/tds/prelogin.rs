//! PRELOGIN (MS-TDS 2.2.6.5): an option table of (token, offset, length)
//! entries followed by the option data. The client proposes an encryption
//! mode; the server answers with the mode the connection will use.

const OPT_VERSION: u8 = 0x00;
const OPT_ENCRYPTION: u8 = 0x01;
const OPT_INSTOPT: u8 = 0x02;
const OPT_THREADID: u8 = 0x03;
const OPT_MARS: u8 = 0x04;
const OPT_FEDAUTHREQUIRED: u8 = 0x06;
const OPT_TERMINATOR: u8 = 0xFF;

/// Encryption values of the ENCRYPTION option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encryption {
    /// Encrypt the login packet only.
    Off,
    /// Encrypt everything.
    On,
    /// No TLS at all.
    NotSupported,
    /// Client requires encryption.
    Required,
}

impl Encryption {
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Off),
            1 => Some(Self::On),
            2 => Some(Self::NotSupported),
            3 => Some(Self::Required),
            _ => None,
        }
    }

    pub fn to_byte(self) -> u8 {
        match self {
            Self::Off => 0,
            Self::On => 1,
            Self::NotSupported => 2,
            Self::Required => 3,
        }
    }
}

/// What the server needs from a client PRELOGIN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPrelogin {
    pub encryption: Encryption,
    pub instance: Option<String>,
    pub mars: bool,
    pub fed_auth_required: bool,
}

/// Parses a client PRELOGIN payload.
pub fn parse_client(payload: &[u8]) -> Result<ClientPrelogin, String> {
    let mut result = ClientPrelogin {
        encryption: Encryption::Off,
        instance: None,
        mars: false,
        fed_auth_required: false,
    };
    let mut pos = 0;
    loop {
        let token = *payload
            .get(pos)
            .ok_or("PRELOGIN option table is not terminated")?;
        if token == OPT_TERMINATOR {
            break;
        }
        let entry = payload
            .get(pos + 1..pos + 5)
            .ok_or("PRELOGIN option entry is truncated")?;
        let offset = u16::from_be_bytes([entry[0], entry[1]]) as usize;
        let length = u16::from_be_bytes([entry[2], entry[3]]) as usize;
        let data = payload
            .get(offset..offset + length)
            .ok_or("PRELOGIN option points outside the packet")?;
        match token {
            OPT_ENCRYPTION => {
                let b = *data.first().ok_or("PRELOGIN ENCRYPTION option is empty")?;
                result.encryption = Encryption::from_byte(b)
                    .ok_or_else(|| format!("PRELOGIN ENCRYPTION value {b} is unknown"))?;
            }
            OPT_INSTOPT => {
                let name: Vec<u8> = data.iter().copied().take_while(|b| *b != 0).collect();
                if !name.is_empty() {
                    result.instance = Some(String::from_utf8_lossy(&name).into_owned());
                }
            }
            OPT_MARS => result.mars = data.first().copied().unwrap_or(0) != 0,
            OPT_FEDAUTHREQUIRED => {
                result.fed_auth_required = data.first().copied().unwrap_or(0) != 0
            }
            _ => {}
        }
        pos += 5;
    }
    Ok(result)
}

/// Builds the server's PRELOGIN answer. `version` is the product version
/// (major, minor, build); THREADID is sent empty and MARS off, as SQL Server does
/// when it does not grant MARS.
pub fn build_server(version: (u8, u8, u16), encryption: Encryption) -> Vec<u8> {
    let mut version_data = vec![version.0, version.1];
    version_data.extend_from_slice(&version.2.to_be_bytes());
    version_data.extend_from_slice(&0u16.to_be_bytes());
    let options: Vec<(u8, Vec<u8>)> = vec![
        (OPT_VERSION, version_data),
        (OPT_ENCRYPTION, vec![encryption.to_byte()]),
        (OPT_INSTOPT, vec![0]),
        (OPT_THREADID, vec![]),
        (OPT_MARS, vec![0]),
    ];
    let table_len = options.len() * 5 + 1;
    let mut table = Vec::with_capacity(table_len);
    let mut data = Vec::new();
    for (token, value) in &options {
        table.push(*token);
        table.extend_from_slice(&((table_len + data.len()) as u16).to_be_bytes());
        table.extend_from_slice(&(value.len() as u16).to_be_bytes());
        data.extend_from_slice(value);
    }
    table.push(OPT_TERMINATOR);
    table.extend_from_slice(&data);
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_answer_parses_back() {
        let bytes = build_server((16, 0, 4135), Encryption::On);
        let parsed = parse_client(&bytes).unwrap();
        assert_eq!(parsed.encryption, Encryption::On);
        assert_eq!(parsed.instance, None);
        assert!(!parsed.mars);
        // VERSION option data: 16, 0, 0x1027 big-endian, subbuild 0
        let offset = u16::from_be_bytes([bytes[1], bytes[2]]) as usize;
        assert_eq!(&bytes[offset..offset + 6], &[16, 0, 0x10, 0x27, 0, 0]);
    }

    #[test]
    fn rejects_truncated_tables() {
        assert!(parse_client(&[OPT_ENCRYPTION, 0, 6]).is_err());
        assert!(parse_client(&[OPT_ENCRYPTION, 0, 200, 0, 1, OPT_TERMINATOR]).is_err());
        assert!(parse_client(&[]).is_err());
    }

    #[test]
    fn reads_instance_and_encryption() {
        // ENCRYPTION at 11 (1 byte) and INSTOPT at 12 ("SQL\0")
        let mut bytes = vec![
            OPT_ENCRYPTION,
            0,
            11,
            0,
            1,
            OPT_INSTOPT,
            0,
            12,
            0,
            4,
            OPT_TERMINATOR,
        ];
        bytes.push(3);
        bytes.extend_from_slice(b"SQL\0");
        let parsed = parse_client(&bytes).unwrap();
        assert_eq!(parsed.encryption, Encryption::Required);
        assert_eq!(parsed.instance.as_deref(), Some("SQL"));
    }
}
