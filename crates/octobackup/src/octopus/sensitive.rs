//! Proving a master key opens a database: Octopus encrypts sensitive values with AES-CBC (PKCS7,
//! key = the master key's bytes, a random 16-byte IV per value) and stores `base64(cipher)|base64(iv)`.
//!
//! A value counts as opened when its PKCS7 padding is valid AND the plaintext is valid UTF-8 (Octopus
//! encrypts text). The plaintext's shape is not judged further: real sensitive values are
//! passwords, JSON, PEM blocks, and base64 secrets that are not DER (an Azure storage key is base64
//! of 64 random bytes). A padding check alone accepts about 0.3% of wrong keys (Octopus's own issue
//! #3563); valid UTF-8 as well makes a false accept rare but not impossible for short values, so a
//! key is judged on many values ([`Tally`]), never on one. The server certificate gets the strict
//! test: its plaintext is base64 of a DER structure ([`open_certificate`]).

use aes::cipher::{BlockModeDecrypt, KeyIvInit, block_padding::Pkcs7};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Finds every `base64|base64(16 bytes)` token in a text (JSON columns hold them as strings).
pub fn find_encrypted_values(text: &str) -> Vec<String> {
    let is_b64 = |c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '=';
    let mut out = Vec::new();
    for (i, _) in text.match_indices('|') {
        let left: String = text[..i]
            .chars()
            .rev()
            .take_while(|c| is_b64(*c))
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let right: String = text[i + 1..].chars().take_while(|c| is_b64(*c)).collect();
        if left.len() >= 24
            && left.len().is_multiple_of(4)
            && right.len() == 24
            && right.ends_with("==")
        {
            out.push(format!("{left}|{right}"));
        }
    }
    out
}

#[derive(Debug, PartialEq)]
pub enum Opened {
    /// Valid padding and a plaintext that parses.
    Yes,
    /// Padding failed or the plaintext is not what Octopus stores: the key does not match.
    No(&'static str),
}

/// Decrypts one stored value: the plaintext when the padding is valid.
fn decrypt(master_key: &[u8], stored: &str) -> Result<zeroize::Zeroizing<Vec<u8>>, &'static str> {
    let (c, iv) = stored.split_once('|').ok_or("not base64|base64")?;
    let (Ok(cipher), Ok(iv)) = (STANDARD.decode(c), STANDARD.decode(iv)) else {
        return Err("not base64");
    };
    if iv.len() != 16 || cipher.is_empty() || cipher.len() % 16 != 0 {
        return Err("wrong lengths");
    }
    let plain = match master_key.len() {
        16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(master_key, &iv)
            .map(|d| d.decrypt_padded_vec::<Pkcs7>(&cipher)),
        32 => cbc::Decryptor::<aes::Aes256>::new_from_slices(master_key, &iv)
            .map(|d| d.decrypt_padded_vec::<Pkcs7>(&cipher)),
        _ => return Err("a master key is 16 or 32 bytes"),
    };
    match plain {
        Ok(Ok(plain)) => Ok(zeroize::Zeroizing::new(plain)),
        _ => Err("bad padding"),
    }
}

/// Tries to open one stored value with the key: valid padding and UTF-8 text.
pub fn open(master_key: &[u8], stored: &str) -> Opened {
    match decrypt(master_key, stored) {
        Err(why) => Opened::No(why),
        Ok(plain) if std::str::from_utf8(&plain).is_err() => Opened::No("plaintext is not UTF-8"),
        Ok(_) => Opened::Yes,
    }
}

/// Opens the server certificate: valid padding, and a plaintext that is base64 of a DER structure
/// whose length matches (an X.509 certificate or a PKCS#12 file). A wrong key's garbage passes
/// this with a negligible chance, so it is the strongest single proof.
pub fn open_certificate(master_key: &[u8], stored: &str) -> Opened {
    let plain = match decrypt(master_key, stored) {
        Ok(plain) => plain,
        Err(why) => return Opened::No(why),
    };
    let Ok(text) = std::str::from_utf8(&plain) else {
        return Opened::No("plaintext is not UTF-8");
    };
    let text: zeroize::Zeroizing<String> =
        zeroize::Zeroizing::new(text.chars().filter(|c| !c.is_whitespace()).collect());
    match STANDARD
        .decode(text.as_bytes())
        .map(zeroize::Zeroizing::new)
    {
        Ok(der) if der_length_matches(&der) => Opened::Yes,
        Ok(_) => Opened::No("the certificate is not a DER structure"),
        Err(_) => Opened::No("the certificate is not base64"),
    }
}

/// How many values a key opened, of how many tried, with the first refusal for the message.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub tried: u64,
    pub opened: u64,
    pub first_refused: Option<String>,
}

impl Tally {
    pub fn add(&mut self, row: &str, result: Opened) {
        self.tried += 1;
        match result {
            Opened::Yes => self.opened += 1,
            Opened::No(why) => {
                if self.first_refused.is_none() {
                    self.first_refused = Some(format!("{row} ({why})"));
                }
            }
        }
    }

    /// The key is judged to open the database when at least two thirds of the values open. With
    /// the right key every value Octopus encrypted opens (a value that merely looks encrypted may
    /// not); with a wrong key almost none do (each passes padding and UTF-8 by chance far less
    /// than 1% of the time), so the two cases lie far apart.
    pub fn key_opens(&self) -> bool {
        self.tried > 0 && self.opened * 3 >= self.tried * 2
    }
}

/// A DER SEQUENCE whose encoded length is the whole buffer (X.509, PKCS#12 start this way).
fn der_length_matches(der: &[u8]) -> bool {
    if der.len() < 2 || der[0] != 0x30 {
        return false;
    }
    let (len, header) = match der[1] {
        n if n < 0x80 => (n as usize, 2),
        0x81 if der.len() > 2 => (der[2] as usize, 3),
        0x82 if der.len() > 3 => (((der[2] as usize) << 8) | der[3] as usize, 4),
        0x83 if der.len() > 4 => (
            ((der[2] as usize) << 16) | ((der[3] as usize) << 8) | der[4] as usize,
            5,
        ),
        _ => return false,
    };
    header + len == der.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes::cipher::BlockModeEncrypt;

    fn encrypt(key: &[u8], plain: &[u8], iv: [u8; 16]) -> String {
        let c = match key.len() {
            16 => cbc::Encryptor::<aes::Aes128>::new_from_slices(key, &iv)
                .unwrap()
                .encrypt_padded_vec::<Pkcs7>(plain),
            _ => cbc::Encryptor::<aes::Aes256>::new_from_slices(key, &iv)
                .unwrap()
                .encrypt_padded_vec::<Pkcs7>(plain),
        };
        format!("{}|{}", STANDARD.encode(c), STANDARD.encode(iv))
    }

    fn fake_der(len: usize) -> Vec<u8> {
        let mut v = vec![0x30, 0x82, (len >> 8) as u8, len as u8];
        v.extend(std::iter::repeat_n(0x5a, len));
        v
    }

    #[test]
    fn finds_values_inside_json() {
        let a = encrypt(&[1; 16], b"secret", [2; 16]);
        let json = format!(r#"{{"Variables":[{{"Value":"{a}"}},{{"Value":"plain|text"}}]}}"#);
        assert_eq!(find_encrypted_values(&json), vec![a]);
    }

    #[test]
    fn the_right_key_opens_and_wrong_keys_do_not() {
        for len in [16usize, 32] {
            let key: Vec<u8> = (0..len as u8).collect();
            let cert = STANDARD.encode(fake_der(300));
            let stored = encrypt(&key, cert.as_bytes(), [9; 16]);
            assert_eq!(open(&key, &stored), Opened::Yes);
            assert_eq!(
                open(&key, &encrypt(&key, b"Password01!", [3; 16])),
                Opened::Yes
            );
            // Many wrong keys: the certificate never opens, although some give valid padding
            // by chance.
            let mut passed = 0;
            for n in 0..2000u32 {
                let mut wrong = key.clone();
                wrong[..4].copy_from_slice(&n.to_le_bytes());
                wrong[5] ^= 0xff;
                if open_certificate(&wrong, &stored) == Opened::Yes {
                    passed += 1;
                }
            }
            assert_eq!(passed, 0);
        }
    }

    /// The documented false accepts: about 0.3% of wrong keys give valid padding on a value.
    /// UTF-8 on top makes a single-value accept rarer still, and the two-thirds rule over many
    /// values never judges a wrong key to open the database.
    #[test]
    fn wrong_keys_are_refused_by_the_tally() {
        let key = [7u8; 16];
        let values: Vec<String> = (0..40u8)
            .map(|i| encrypt(&key, format!("secret-{i}").as_bytes(), [i; 16]))
            .collect();
        let mut right = Tally::default();
        for v in &values {
            right.add("row", open(&key, v));
        }
        assert!(right.key_opens(), "{right:?}");
        let (mut padding_ok, mut single_accepts, mut trials) = (0u32, 0u32, 0u32);
        for n in 0..500u32 {
            let mut wrong = key;
            wrong[..4].copy_from_slice(&n.to_le_bytes());
            let mut tally = Tally::default();
            for v in &values {
                trials += 1;
                let result = open(&wrong, v);
                if result != Opened::No("bad padding") {
                    padding_ok += 1;
                }
                if result == Opened::Yes {
                    single_accepts += 1;
                }
                tally.add("row", result);
            }
            assert!(!tally.key_opens(), "wrong key {n}: {tally:?}");
        }
        // Padding alone lets through a fraction near 1/256; UTF-8 on top, far fewer.
        assert!(
            padding_ok > 0 && padding_ok < trials / 50,
            "{padding_ok} of {trials}"
        );
        assert!(
            single_accepts < padding_ok,
            "{single_accepts} of {padding_ok}"
        );
        assert!(!Tally::default().key_opens());
    }

    /// Values as real instances hold them open with the right key: the old DER rule refused an
    /// Azure storage key (base64 of 64 random bytes), which made drills fail on good sets.
    #[test]
    fn real_kinds_of_values_open_with_the_right_key() {
        let key = [4u8; 16];
        let azure = STANDARD.encode((0..64u8).map(|b| b.wrapping_mul(37)).collect::<Vec<_>>());
        assert_eq!(azure.len(), 88);
        let pem = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n";
        for plain in [
            azure.as_str(),
            r#"{"clientId":"a","clientSecret":"b~c"}"#,
            "Pässwörd-€1!",
            pem,
        ] {
            assert_eq!(
                open(&key, &encrypt(&key, plain.as_bytes(), [1; 16])),
                Opened::Yes,
                "{plain}"
            );
        }
        // The server certificate must also be DER; base64 that is not is refused.
        let not_der = STANDARD.encode([0x41u8; 96]);
        assert_eq!(
            open_certificate(&key, &encrypt(&key, not_der.as_bytes(), [1; 16])),
            Opened::No("the certificate is not a DER structure")
        );
        let cert = STANDARD.encode(fake_der(300));
        assert_eq!(
            open_certificate(&key, &encrypt(&key, cert.as_bytes(), [1; 16])),
            Opened::Yes
        );
        assert!(matches!(open(&key, "abc"), Opened::No(_)));
        assert!(matches!(
            open(&[0u8; 24], &encrypt(&key, b"x", [1; 16])),
            Opened::No(_)
        ));
    }
}
