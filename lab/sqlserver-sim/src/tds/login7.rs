//! LOGIN7 (MS-TDS 2.2.6.4): a fixed header, then (offset, length) pairs that
//! point at UTF-16 strings. The password is "obfuscated": every byte had its
//! nibbles swapped and was XORed with 0xA5.

/// The parts of a LOGIN7 record the server acts on. `Debug` leaves the password out.
#[derive(Clone, PartialEq, Eq)]
pub struct Login7 {
    pub tds_version: u32,
    pub packet_size: u32,
    pub client_pid: u32,
    pub hostname: String,
    pub username: String,
    pub password: String,
    pub app_name: String,
    pub server_name: String,
    pub language: String,
    pub database: String,
    /// Windows integrated authentication was requested (fIntSecurity).
    pub integrated_security: bool,
    /// The client sent a FeatureExt block (fExtension) and expects FEATUREEXTACK.
    pub feature_ext: bool,
}

impl std::fmt::Debug for Login7 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login7")
            .field("tds_version", &format_args!("{:#010x}", self.tds_version))
            .field("packet_size", &self.packet_size)
            .field("hostname", &self.hostname)
            .field("username", &self.username)
            .field("app_name", &self.app_name)
            .field("database", &self.database)
            .field("integrated_security", &self.integrated_security)
            .finish_non_exhaustive()
    }
}

const FIXED_LEN: usize = 36;
const OPTION_FLAGS2_INT_SECURITY: u8 = 0x80;
const OPTION_FLAGS3_EXTENSION: u8 = 0x10;

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// Reverses the LOGIN7 password obfuscation.
pub fn deobfuscate_password(bytes: &[u8]) -> Vec<u8> {
    bytes
        .iter()
        .map(|b| {
            let x = b ^ 0xA5;
            x.rotate_left(4)
        })
        .collect()
}

/// Applies the LOGIN7 password obfuscation (what clients do).
pub fn obfuscate_password(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().map(|b| b.rotate_left(4) ^ 0xA5).collect()
}

fn utf16(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

/// Parses a LOGIN7 payload.
pub fn parse(payload: &[u8]) -> Result<Login7, String> {
    if payload.len() < FIXED_LEN + 12 * 4 + 6 {
        return Err("LOGIN7 record is too short".into());
    }
    let length = u32_at(payload, 0) as usize;
    if length > payload.len() {
        return Err("LOGIN7 length field exceeds the message".into());
    }
    let field = |index: usize| -> Result<&[u8], String> {
        let at = FIXED_LEN + index * 4;
        let offset = u16_at(payload, at) as usize;
        let chars = u16_at(payload, at + 2) as usize;
        if chars == 0 {
            return Ok(&[]);
        }
        payload
            .get(offset..offset + chars * 2)
            .ok_or_else(|| format!("LOGIN7 field {index} points outside the record"))
    };
    let option_flags2 = payload[25];
    let option_flags3 = payload[27];
    Ok(Login7 {
        tds_version: u32_at(payload, 4),
        packet_size: u32_at(payload, 8),
        client_pid: u32_at(payload, 16),
        hostname: utf16(field(0)?),
        username: utf16(field(1)?),
        password: utf16(&deobfuscate_password(field(2)?)),
        app_name: utf16(field(3)?),
        server_name: utf16(field(4)?),
        language: utf16(field(7)?),
        database: utf16(field(8)?),
        integrated_security: option_flags2 & OPTION_FLAGS2_INT_SECURITY != 0,
        feature_ext: option_flags3 & OPTION_FLAGS3_EXTENSION != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a LOGIN7 record the way clients lay it out.
    fn build(user: &str, password: &str, database: &str) -> Vec<u8> {
        let strings: [Vec<u8>; 9] = [
            enc("host"),
            enc(user),
            obfuscate_password(&enc(password)),
            enc("app"),
            enc("srv"),
            vec![],
            enc("lib"),
            vec![],
            enc(database),
        ];
        let mut fixed = vec![0u8; FIXED_LEN];
        fixed[4..8].copy_from_slice(&0x7400_0004u32.to_le_bytes());
        fixed[8..12].copy_from_slice(&4096u32.to_le_bytes());
        let mut table = Vec::new();
        let mut data = Vec::new();
        let data_start = FIXED_LEN + 12 * 4 + 6 + 4;
        for (i, s) in strings.iter().enumerate() {
            table.extend_from_slice(&((data_start + data.len()) as u16).to_le_bytes());
            let chars = if i == 5 { 0 } else { s.len() / 2 };
            table.extend_from_slice(&(chars as u16).to_le_bytes());
            data.extend_from_slice(s);
        }
        table.extend_from_slice(&[0; 6]); // ClientID
        for _ in 0..3 {
            table.extend_from_slice(&(data_start as u16).to_le_bytes());
            table.extend_from_slice(&0u16.to_le_bytes());
        }
        table.extend_from_slice(&0u32.to_le_bytes()); // cbSSPILong
        let mut out = fixed;
        out.extend(table);
        assert_eq!(out.len(), data_start);
        out.extend(data);
        let len = out.len() as u32;
        out[0..4].copy_from_slice(&len.to_le_bytes());
        out
    }

    fn enc(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
    }

    #[test]
    fn obfuscation_round_trips() {
        let plain = enc("pässwörd'");
        assert_ne!(obfuscate_password(&plain), plain);
        assert_eq!(deobfuscate_password(&obfuscate_password(&plain)), plain);
        // MS-TDS example: 'a' (0x61) obfuscates to 0xB3
        assert_eq!(obfuscate_password(&[0x61]), vec![0xB3]);
    }

    #[test]
    fn parses_fields() {
        let login = parse(&build("octo", "s3cret!", "OctopusDeploy")).unwrap();
        assert_eq!(login.username, "octo");
        assert_eq!(login.password, "s3cret!");
        assert_eq!(login.database, "OctopusDeploy");
        assert_eq!(login.hostname, "host");
        assert_eq!(login.tds_version, 0x7400_0004);
        assert_eq!(login.packet_size, 4096);
        assert!(!login.integrated_security);
    }

    #[test]
    fn debug_never_shows_the_password() {
        let login = parse(&build("octo", "hunter2-secret", "")).unwrap();
        assert!(!format!("{login:?}").contains("hunter2"));
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse(&[0; 20]).is_err());
        let mut bad = build("a", "b", "c");
        bad[FIXED_LEN + 4] = 0xFF; // username offset far outside
        bad[FIXED_LEN + 5] = 0x7F;
        assert!(parse(&bad).is_err());
    }
}
