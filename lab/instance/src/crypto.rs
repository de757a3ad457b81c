//! Sensitive values encrypted the way Octopus encrypts them with the instance's master key:
//! AES-CBC, PKCS7 padding, key = the raw master key bytes (16 or 32), a fresh random 16-byte IV per
//! value, stored as `base64(ciphertext)|base64(iv)`. The lab writes such values into its database so
//! that octobackup's drill can prove a stored master key opens a restored database.

use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit, block_padding::Pkcs7};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("a master key must be 16 or 32 bytes, not {0}")]
    KeyLength(usize),
    #[error("not an Octopus encrypted value (expected base64|base64)")]
    Format,
    #[error("the value does not decrypt with this key (bad padding)")]
    Padding,
}

pub fn encrypt(master_key: &[u8], plaintext: &[u8], iv: [u8; 16]) -> Result<String, CryptoError> {
    let cipher = match master_key.len() {
        16 => cbc::Encryptor::<aes::Aes128>::new_from_slices(master_key, &iv)
            .map_err(|_| CryptoError::KeyLength(16))?
            .encrypt_padded_vec::<Pkcs7>(plaintext),
        32 => cbc::Encryptor::<aes::Aes256>::new_from_slices(master_key, &iv)
            .map_err(|_| CryptoError::KeyLength(32))?
            .encrypt_padded_vec::<Pkcs7>(plaintext),
        n => return Err(CryptoError::KeyLength(n)),
    };
    Ok(format!(
        "{}|{}",
        STANDARD.encode(cipher),
        STANDARD.encode(iv)
    ))
}

pub fn decrypt(master_key: &[u8], stored: &str) -> Result<Vec<u8>, CryptoError> {
    let (c, iv) = stored.split_once('|').ok_or(CryptoError::Format)?;
    let cipher = STANDARD.decode(c).map_err(|_| CryptoError::Format)?;
    let iv = STANDARD.decode(iv).map_err(|_| CryptoError::Format)?;
    if iv.len() != 16 {
        return Err(CryptoError::Format);
    }
    let plain = match master_key.len() {
        16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(master_key, &iv)
            .map_err(|_| CryptoError::Format)?
            .decrypt_padded_vec::<Pkcs7>(&cipher),
        32 => cbc::Decryptor::<aes::Aes256>::new_from_slices(master_key, &iv)
            .map_err(|_| CryptoError::Format)?
            .decrypt_padded_vec::<Pkcs7>(&cipher),
        n => return Err(CryptoError::KeyLength(n)),
    };
    plain.map_err(|_| CryptoError::Padding)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_both_key_sizes() {
        for len in [16, 32] {
            let key: Vec<u8> = (0..len as u8).collect();
            let stored = encrypt(&key, b"Password01!", [7; 16]).unwrap();
            let (c, iv) = stored.split_once('|').unwrap();
            assert_eq!(iv, "BwcHBwcHBwcHBwcHBwcHBw==");
            assert_eq!(STANDARD.decode(c).unwrap().len(), 16);
            assert_eq!(decrypt(&key, &stored).unwrap(), b"Password01!");
        }
    }

    #[test]
    fn matches_a_known_aes128_cbc_vector() {
        // NIST SP 800-38A F.2.1 first block, then a full PKCS7 padding block.
        let key = hex::decode("2b7e151628aed2a6abf7158809cf4f3c").unwrap();
        let iv: [u8; 16] = hex::decode("000102030405060708090a0b0c0d0e0f")
            .unwrap()
            .try_into()
            .unwrap();
        let plain = hex::decode("6bc1bee22e409f96e93d7e117393172a").unwrap();
        let stored = encrypt(&key, &plain, iv).unwrap();
        let cipher = STANDARD.decode(stored.split_once('|').unwrap().0).unwrap();
        assert_eq!(
            hex::encode(&cipher[..16]),
            "7649abac8119b246cee98e9b12e9197d"
        );
    }

    #[test]
    fn wrong_key_or_shape_is_refused() {
        let stored = encrypt(&[1; 16], b"secret value", [3; 16]).unwrap();
        assert!(
            decrypt(&[2; 16], &stored).is_err()
                || decrypt(&[2; 16], &stored).unwrap() != b"secret value"
        );
        assert!(matches!(
            decrypt(&[1; 16], "nobar"),
            Err(CryptoError::Format)
        ));
        assert!(matches!(
            encrypt(&[1; 24], b"x", [0; 16]),
            Err(CryptoError::KeyLength(24))
        ));
    }
}
