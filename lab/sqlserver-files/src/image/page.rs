//! The 8 KiB page: a 96-byte header (like SQL Server's) and a body.
//!
//! Header layout (little endian):
//! `0` page type, `1` header version, `2..4` record count, `4..8` page id, `8..16` LSN,
//! `16..20` object id, `20..24` next page in the chain (0 = none), `24..26` body bytes used,
//! `26..32` reserved (zero), `32..40` checksum, `40..96` reserved (zero).
//! The checksum covers the whole page with its own field read as zero, so a flipped bit anywhere is
//! caught, as SQL Server's PAGE_VERIFY CHECKSUM does.

pub const PAGE_SIZE: usize = 8192;
pub const PAGE_HEADER_SIZE: usize = 96;
pub const PAGE_BODY_SIZE: usize = PAGE_SIZE - PAGE_HEADER_SIZE;
const HEADER_VERSION: u8 = 1;
const CHECKSUM_WORD: usize = 4;

/// What a page holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PageType {
    /// Page 0 of the data file: database name, GUIDs, logical file names.
    FileHeader = 1,
    /// The table directory (a chain of pages holding JSON).
    Catalog = 2,
    /// Table rows.
    Data = 3,
    /// Large values stored out of row.
    Lob = 4,
    /// Pages that make the database realistically big; churned day by day.
    Filler = 5,
    /// Deallocated pages.
    Free = 6,
    /// Page 0 of the log file.
    LogHeader = 7,
    /// Log records.
    Log = 8,
}

impl PageType {
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            1 => Self::FileHeader,
            2 => Self::Catalog,
            3 => Self::Data,
            4 => Self::Lob,
            5 => Self::Filler,
            6 => Self::Free,
            7 => Self::LogHeader,
            8 => Self::Log,
            _ => return None,
        })
    }
}

/// One page in memory.
#[derive(Clone)]
pub(crate) struct Page {
    pub bytes: Box<[u8; PAGE_SIZE]>,
}

impl Page {
    pub fn new(page_type: PageType, page_id: u32, object_id: u32, lsn: u64) -> Self {
        let mut page = Self {
            bytes: Box::new([0; PAGE_SIZE]),
        };
        page.bytes[0] = page_type as u8;
        page.bytes[1] = HEADER_VERSION;
        page.set_page_id(page_id);
        page.set_object_id(object_id);
        page.set_lsn(lsn);
        page
    }

    pub fn from_bytes(bytes: &[u8]) -> Self {
        let mut page = Self {
            bytes: Box::new([0; PAGE_SIZE]),
        };
        page.bytes.copy_from_slice(bytes);
        page
    }

    pub fn page_type(&self) -> Option<PageType> {
        PageType::from_u8(self.bytes[0])
    }
    pub fn record_count(&self) -> u16 {
        u16::from_le_bytes([self.bytes[2], self.bytes[3]])
    }
    pub fn set_record_count(&mut self, count: u16) {
        self.bytes[2..4].copy_from_slice(&count.to_le_bytes());
    }
    pub fn page_id(&self) -> u32 {
        read_u32(&self.bytes[..], 4)
    }
    pub fn set_page_id(&mut self, id: u32) {
        self.bytes[4..8].copy_from_slice(&id.to_le_bytes());
    }
    pub fn set_lsn(&mut self, lsn: u64) {
        self.bytes[8..16].copy_from_slice(&lsn.to_le_bytes());
    }
    pub fn object_id(&self) -> u32 {
        read_u32(&self.bytes[..], 16)
    }
    pub fn set_object_id(&mut self, id: u32) {
        self.bytes[16..20].copy_from_slice(&id.to_le_bytes());
    }
    pub fn next_page(&self) -> u32 {
        read_u32(&self.bytes[..], 20)
    }
    pub fn set_next_page(&mut self, id: u32) {
        self.bytes[20..24].copy_from_slice(&id.to_le_bytes());
    }
    pub fn used(&self) -> usize {
        u16::from_le_bytes([self.bytes[24], self.bytes[25]]) as usize
    }
    pub fn set_used(&mut self, used: usize) {
        debug_assert!(used <= PAGE_BODY_SIZE);
        self.bytes[24..26].copy_from_slice(&(used as u16).to_le_bytes());
    }
    pub fn body(&self) -> &[u8] {
        &self.bytes[PAGE_HEADER_SIZE..]
    }
    pub fn body_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[PAGE_HEADER_SIZE..]
    }
    /// The used part of the body.
    pub fn content(&self) -> &[u8] {
        &self.body()[..self.used().min(PAGE_BODY_SIZE)]
    }
    /// Replaces the body with `content` (zero-padded) and records its length.
    pub fn set_content(&mut self, content: &[u8]) {
        assert!(content.len() <= PAGE_BODY_SIZE, "page content too large");
        let body = self.body_mut();
        body[..content.len()].copy_from_slice(content);
        body[content.len()..].fill(0);
        self.set_used(content.len());
    }
    /// Computes and stores the checksum; call last, after every other change.
    pub fn seal(&mut self) {
        seal(&mut self.bytes[..]);
    }
}

/// Stores the checksum of a page held in any buffer.
pub(crate) fn seal(page: &mut [u8]) {
    let sum = page_checksum(page);
    page[32..40].copy_from_slice(&sum.to_le_bytes());
}

/// The checksum a page should carry (its own checksum field read as zero).
///
/// Shaped like SQL Server's PAGE_VERIFY CHECKSUM (not documented by Microsoft; described from its
/// observed behaviour in public write-ups): the 8 KiB page is 16 sectors of 512 bytes, each folded
/// by XOR of its words and rotated by its position, so it costs a few cycles per KiB and BACKUP
/// WITH CHECKSUM stays bound by the disks, as on a real server. Here the words are 8 bytes (the
/// field is 8 bytes wide). A change confined to one word always changes the result: the fold is an
/// XOR and each rotation a bijection.
pub fn page_checksum(page: &[u8]) -> u64 {
    debug_assert_eq!(page.len(), PAGE_SIZE);
    let mut sum: u64 = 0;
    for (sector_index, sector) in page.chunks_exact(512).enumerate() {
        let mut lanes = [0u64; 8];
        for (group_index, group) in sector.chunks_exact(64).enumerate() {
            for (lane, word) in lanes.iter_mut().zip(group.chunks_exact(8)) {
                *lane ^= u64::from_le_bytes(word.try_into().expect("8 bytes"));
            }
            if sector_index == 0 && group_index == 0 {
                // The checksum's own field (word 4) reads as zero: undo its XOR.
                lanes[CHECKSUM_WORD] ^= u64::from_le_bytes(
                    group[CHECKSUM_WORD * 8..CHECKSUM_WORD * 8 + 8]
                        .try_into()
                        .expect("8 bytes"),
                );
            }
        }
        let folded = lanes.iter().fold(0, |acc, l| acc ^ l);
        sum ^= folded.rotate_left(15 - sector_index as u32);
    }
    sum
}

pub fn stored_checksum(page: &[u8]) -> u64 {
    read_u64(page, 32)
}

/// What is wrong with a page read from position `expected_id`, if anything.
pub fn validate(page: &[u8], expected_id: u32) -> Option<String> {
    if page.len() != PAGE_SIZE {
        return Some(format!(
            "page is truncated ({} of {PAGE_SIZE} bytes)",
            page.len()
        ));
    }
    let stored = stored_checksum(page);
    let computed = page_checksum(page);
    if stored != computed {
        return Some(format!(
            "incorrect checksum (expected: 0x{computed:016x}; actual: 0x{stored:016x})"
        ));
    }
    if PageType::from_u8(page[0]).is_none() {
        return Some(format!("unknown page type {}", page[0]));
    }
    if page[1] != HEADER_VERSION {
        return Some(format!("unknown page header version {}", page[1]));
    }
    let id = read_u32(page, 4);
    if id != expected_id {
        return Some(format!(
            "page header says page {id}, found at position {expected_id}"
        ));
    }
    let used = u16::from_le_bytes([page[24], page[25]]) as usize;
    if used > PAGE_BODY_SIZE {
        return Some(format!("body length {used} exceeds the page"));
    }
    if page[26..32]
        .iter()
        .chain(&page[40..PAGE_HEADER_SIZE])
        .any(|b| *b != 0)
    {
        return Some("reserved page header bytes are not zero".to_string());
    }
    None
}

pub(crate) fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

pub(crate) fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_page_validates_and_any_flipped_byte_is_caught() {
        let mut page = Page::new(PageType::Data, 42, 7, 99);
        page.set_content(b"some row bytes");
        page.seal();
        assert_eq!(validate(&page.bytes[..], 42), None);
        assert!(validate(&page.bytes[..], 43).is_some());
        for at in [0usize, 5, 33, 100, 4000, PAGE_SIZE - 1] {
            let mut bad = page.clone();
            bad.bytes[at] ^= 0x10;
            assert!(
                validate(&bad.bytes[..], 42).is_some(),
                "flip at {at} not caught"
            );
        }
    }

    #[test]
    fn header_fields_round_trip() {
        let mut page = Page::new(PageType::Lob, 3, 11, 12345);
        page.set_next_page(9);
        page.set_record_count(4);
        page.set_content(&[1, 2, 3]);
        assert_eq!(page.page_type(), Some(PageType::Lob));
        assert_eq!(
            (
                page.page_id(),
                page.object_id(),
                read_u64(&page.bytes[..], 8)
            ),
            (3, 11, 12345)
        );
        assert_eq!(
            (page.next_page(), page.record_count(), page.content()),
            (9, 4, &[1u8, 2, 3][..])
        );
    }
}
