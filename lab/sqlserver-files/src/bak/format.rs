//! The blocks of a backup device (one stripe file).
//!
//! ```text
//! media header   8 KiB   magic, media set id, family number and count, header hash
//! backup set 1   set header 64 KiB (JSON: BackupSetHeader + layout, hash)
//!                data: this family's blocks of pages (raw pages, or zstd frames when compressed)
//!                trailer 8 KiB (position, set id, data length, SHA-256 of the data when CHECKSUM)
//! backup set 2   ...
//! ```
//! Every block is a multiple of 8 KiB, so uncompressed page data stays 8 KiB-aligned and
//! byte-identical to the database pages: unchanged pages give identical chunks to a deduplicating
//! repository night after night.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::BackupSetHeader;

pub(crate) const MEDIA_HEADER_SIZE: usize = 8192;
pub(crate) const SET_HEADER_SIZE: usize = 64 * 1024;
pub(crate) const TRAILER_SIZE: usize = 8192;
/// Frame header of a compressed block: raw length, compressed length.
pub(crate) const FRAME_HEADER_SIZE: usize = 8;

const MEDIA_MAGIC: &[u8; 8] = b"OBKMEDIA";
const SET_MAGIC: &[u8; 8] = b"OBKSSET1";
const TRAILER_MAGIC: &[u8; 8] = b"OBKTRAIL";
const MEDIA_VERSION: u32 = 1;

/// First 8 bytes of SHA-256: self-checks of the small blocks.
fn short_hash(bytes: &[u8]) -> [u8; 8] {
    let full: [u8; 32] = Sha256::digest(bytes).into();
    full[..8].try_into().expect("8 bytes")
}

/// Identifies the media set and which family (stripe) this file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MediaHeader {
    pub media_set_id: Uuid,
    /// 1-based.
    pub family_number: u32,
    pub family_count: u32,
    pub media_date: i64,
}

impl MediaHeader {
    pub fn encode(&self) -> Vec<u8> {
        let mut block = vec![0u8; MEDIA_HEADER_SIZE];
        block[..8].copy_from_slice(MEDIA_MAGIC);
        block[8..12].copy_from_slice(&MEDIA_VERSION.to_le_bytes());
        block[12..28].copy_from_slice(self.media_set_id.as_bytes());
        block[28..32].copy_from_slice(&self.family_number.to_le_bytes());
        block[32..36].copy_from_slice(&self.family_count.to_le_bytes());
        block[36..44].copy_from_slice(&self.media_date.to_le_bytes());
        let hash = short_hash(&block[..44]);
        block[44..52].copy_from_slice(&hash);
        block
    }

    /// `Err(true)` = not a backup at all, `Err(false)` = a damaged media header; with the reason.
    pub fn decode(block: &[u8]) -> Result<Self, (bool, String)> {
        if block.len() < MEDIA_HEADER_SIZE || &block[..8] != MEDIA_MAGIC {
            return Err((true, "no media header".to_string()));
        }
        if block[44..52] != short_hash(&block[..44]) {
            return Err((false, "media header checksum mismatch".to_string()));
        }
        let version = u32::from_le_bytes(block[8..12].try_into().expect("4 bytes"));
        if version != MEDIA_VERSION {
            return Err((
                true,
                format!("media format version {version} is not supported"),
            ));
        }
        let header = Self {
            media_set_id: Uuid::from_slice(&block[12..28]).expect("16 bytes"),
            family_number: u32::from_le_bytes(block[28..32].try_into().expect("4 bytes")),
            family_count: u32::from_le_bytes(block[32..36].try_into().expect("4 bytes")),
            media_date: i64::from_le_bytes(block[36..44].try_into().expect("8 bytes")),
        };
        if header.family_count == 0
            || header.family_number == 0
            || header.family_number > header.family_count
        {
            return Err((
                false,
                format!(
                    "family {} of {} is impossible",
                    header.family_number, header.family_count
                ),
            ));
        }
        Ok(header)
    }
}

/// How a backup set's pages are laid out over the stripes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SetLayout {
    pub data_pages: u32,
    pub log_pages: u32,
    /// Pages per block (MAXTRANSFERSIZE / 8 KiB); block b goes to family (b mod count) + 1.
    pub block_pages: u32,
    /// Bytes of data each family holds (index = family number - 1).
    pub stripe_data_bytes: Vec<u64>,
    /// False while the backup runs; an interrupted backup leaves it false.
    pub complete: bool,
    /// A differential set: the data pages it holds as (first page, count) runs; `data_pages` is
    /// then their sum. None: every data page from 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_runs: Option<Vec<(u32, u32)>>,
}

impl SetLayout {
    pub fn total_pages(&self) -> u64 {
        self.data_pages as u64 + self.log_pages as u64
    }
    /// Which file (1 data, 2 log) and page the `global`-th page of the set is.
    pub fn locate(&self, global: u64) -> (u32, u32) {
        if global >= self.data_pages as u64 {
            return (2, (global - self.data_pages as u64) as u32);
        }
        let Some(runs) = &self.data_runs else {
            return (1, global as u32);
        };
        let mut index = global;
        for (start, count) in runs {
            if index < *count as u64 {
                return (1, start + index as u32);
            }
            index -= *count as u64;
        }
        (1, u32::MAX)
    }

    pub fn block_count(&self) -> u64 {
        self.total_pages().div_ceil(self.block_pages as u64)
    }
    /// Pages in block `block`.
    pub fn pages_in_block(&self, block: u64) -> u64 {
        let start = block * self.block_pages as u64;
        (self.total_pages() - start).min(self.block_pages as u64)
    }
}

/// What a set header block holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SetRecord {
    pub header: BackupSetHeader,
    pub layout: SetLayout,
}

impl SetRecord {
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let json = serde_json::to_vec(self).map_err(|e| e.to_string())?;
        if json.len() + 44 > SET_HEADER_SIZE {
            return Err(format!(
                "backup set header of {} bytes does not fit its block",
                json.len()
            ));
        }
        let mut block = vec![0u8; SET_HEADER_SIZE];
        block[..8].copy_from_slice(SET_MAGIC);
        block[8..12].copy_from_slice(&(json.len() as u32).to_le_bytes());
        let hash: [u8; 32] = Sha256::digest(&json).into();
        block[12..44].copy_from_slice(&hash);
        block[44..44 + json.len()].copy_from_slice(&json);
        Ok(block)
    }

    pub fn decode(block: &[u8]) -> Result<Self, String> {
        if block.len() < SET_HEADER_SIZE {
            return Err("the backup set header is truncated".to_string());
        }
        if &block[..8] != SET_MAGIC {
            return Err("no backup set header where one should start".to_string());
        }
        let len = u32::from_le_bytes(block[8..12].try_into().expect("4 bytes")) as usize;
        if len + 44 > SET_HEADER_SIZE {
            return Err("backup set header length is impossible".to_string());
        }
        let json = &block[44..44 + len];
        let hash: [u8; 32] = Sha256::digest(json).into();
        if block[12..44] != hash {
            return Err("backup set header checksum mismatch".to_string());
        }
        serde_json::from_slice(json).map_err(|e| format!("backup set header is unreadable: {e}"))
    }
}

/// Ends a backup set on one stripe: proves the set is complete and carries the backup checksum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Trailer {
    pub position: u32,
    pub family_number: u32,
    pub backup_set_uuid: Uuid,
    pub data_bytes: u64,
    pub pages: u64,
    /// The backup checksum of this stripe's data bytes (`checksum.rs`), when the backup was
    /// taken WITH CHECKSUM.
    pub data_checksum: Option<u64>,
}

impl Trailer {
    pub fn encode(&self) -> Vec<u8> {
        let mut block = vec![0u8; TRAILER_SIZE];
        block[..8].copy_from_slice(TRAILER_MAGIC);
        block[8..12].copy_from_slice(&self.position.to_le_bytes());
        block[12..16].copy_from_slice(&self.family_number.to_le_bytes());
        block[16..32].copy_from_slice(self.backup_set_uuid.as_bytes());
        block[32..40].copy_from_slice(&self.data_bytes.to_le_bytes());
        block[40..48].copy_from_slice(&self.pages.to_le_bytes());
        if let Some(sum) = self.data_checksum {
            block[48] = 1;
            block[49..57].copy_from_slice(&sum.to_le_bytes());
        }
        let hash = short_hash(&block[..81]);
        block[81..89].copy_from_slice(&hash);
        block
    }

    pub fn decode(block: &[u8]) -> Result<Self, String> {
        if block.len() < TRAILER_SIZE || &block[..8] != TRAILER_MAGIC {
            return Err(
                "the backup set has no end marker: it is truncated or was interrupted".to_string(),
            );
        }
        if block[81..89] != short_hash(&block[..81]) {
            return Err("backup set end marker checksum mismatch".to_string());
        }
        Ok(Self {
            position: u32::from_le_bytes(block[8..12].try_into().expect("4 bytes")),
            family_number: u32::from_le_bytes(block[12..16].try_into().expect("4 bytes")),
            backup_set_uuid: Uuid::from_slice(&block[16..32]).expect("16 bytes"),
            data_bytes: u64::from_le_bytes(block[32..40].try_into().expect("8 bytes")),
            pages: u64::from_le_bytes(block[40..48].try_into().expect("8 bytes")),
            data_checksum: (block[48] == 1)
                .then(|| u64::from_le_bytes(block[49..57].try_into().expect("8 bytes"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_header_round_trips_and_detects_damage() {
        let header = MediaHeader {
            media_set_id: Uuid::from_u128(5),
            family_number: 2,
            family_count: 3,
            media_date: 77,
        };
        let mut block = header.encode();
        assert_eq!(MediaHeader::decode(&block), Ok(header));
        block[30] ^= 1;
        assert!(!MediaHeader::decode(&block).unwrap_err().0);
        assert!(
            MediaHeader::decode(&[0u8; MEDIA_HEADER_SIZE])
                .unwrap_err()
                .0
        );
    }

    #[test]
    fn trailer_round_trips_and_detects_damage() {
        let trailer = Trailer {
            position: 3,
            family_number: 1,
            backup_set_uuid: Uuid::from_u128(9),
            data_bytes: 1 << 20,
            pages: 128,
            data_checksum: Some(0x0707_0707_0707_0707),
        };
        let mut block = trailer.encode();
        assert_eq!(Trailer::decode(&block), Ok(trailer));
        block[50] ^= 1;
        assert!(Trailer::decode(&block).is_err());
    }

    #[test]
    fn layout_splits_pages_into_blocks() {
        let layout = SetLayout {
            data_pages: 300,
            log_pages: 5,
            block_pages: 128,
            stripe_data_bytes: vec![],
            complete: true,
            data_runs: None,
        };
        assert_eq!(layout.block_count(), 3);
        assert_eq!(layout.pages_in_block(0), 128);
        assert_eq!(layout.pages_in_block(2), 305 - 256);
    }
}
