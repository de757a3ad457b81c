//! Proving a master key opens a database: Octopus encrypts sensitive values with AES-CBC (PKCS7,
//! key = the master key's bytes, a random 16-byte IV per value) and stores `base64(cipher)|base64(iv)`.
//!
//! A padding check alone accepts about 0.3% of wrong keys (Octopus's own issue #3563), so a value
//! counts as opened only when its padding is valid AND the plaintext parses: UTF-8 text, and when
//! it is base64, a DER structure whose length matches (certificates, PKCS#12).

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

/// Tries to open one stored value with the key.
pub fn open(master_key: &[u8], stored: &str) -> Opened {
    let Some((c, iv)) = stored.split_once('|') else {
        return Opened::No("not base64|base64");
    };
    let (Ok(cipher), Ok(iv)) = (STANDARD.decode(c), STANDARD.decode(iv)) else {
        return Opened::No("not base64");
    };
    if iv.len() != 16 || cipher.is_empty() || cipher.len() % 16 != 0 {
        return Opened::No("wrong lengths");
    }
    let plain = match master_key.len() {
        16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(master_key, &iv)
            .map(|d| d.decrypt_padded_vec::<Pkcs7>(&cipher)),
        32 => cbc::Decryptor::<aes::Aes256>::new_from_slices(master_key, &iv)
            .map(|d| d.decrypt_padded_vec::<Pkcs7>(&cipher)),
        _ => return Opened::No("a master key is 16 or 32 bytes"),
    };
    let Ok(Ok(plain)) = plain else {
        return Opened::No("bad padding");
    };
    let plain = zeroize::Zeroizing::new(plain);
    let Ok(text) = std::str::from_utf8(&plain) else {
        return Opened::No("plaintext is not UTF-8");
    };
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Opened::No("plaintext has control characters");
    }
    // Base64 payloads (certificates) must decode to a well-formed DER structure.
    let looks_b64 = text.len() >= 64
        && text.len() % 4 == 0
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c));
    if looks_b64 {
        let Ok(der) = STANDARD.decode(text) else {
            return Opened::No("payload is not base64");
        };
        if !der_length_matches(&der) {
            return Opened::No("payload is not a DER structure");
        }
    }
    Opened::Yes
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
            // Many wrong keys: none may pass, although some give valid padding by chance.
            let mut passed = 0;
            for n in 0..2000u32 {
                let mut wrong = key.clone();
                wrong[..4].copy_from_slice(&n.to_le_bytes());
                wrong[5] ^= 0xff;
                if open(&wrong, &stored) == Opened::Yes {
                    passed += 1;
                }
            }
            assert_eq!(passed, 0);
        }
    }

    #[test]
    fn a_base64_payload_that_is_not_der_is_refused() {
        let key = [4u8; 16];
        let not_der = STANDARD.encode([0x41u8; 96]);
        assert_eq!(
            open(&key, &encrypt(&key, not_der.as_bytes(), [1; 16])),
            Opened::No("payload is not a DER structure")
        );
        assert!(matches!(open(&key, "abc"), Opened::No(_)));
        assert!(matches!(
            open(&[0u8; 24], &encrypt(&key, b"x", [1; 16])),
            Opened::No(_)
        ));
    }
}
