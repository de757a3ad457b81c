//! Filler pages: data that looks like a real table's pages.
//!
//! Each page holds records laid out like SQL Server rows (status bytes, fixed columns, a variable
//! UTF-16 text column) plus a slot array at the end of the page. Ids and dates follow the page id,
//! GUIDs are random and the text comes from a small vocabulary, so a page compresses about 3x: like
//! real data, neither random nor zeros. Generation is a few arithmetic operations per field, so a
//! 2 GB database is written in seconds.

use super::page::{PAGE_BODY_SIZE, PAGE_HEADER_SIZE, PAGE_SIZE, PageType, read_u64, seal};
use crate::rng::SplitMix64;

/// The object id filler pages carry (they belong to no table of the catalog).
pub(crate) const FILLER_OBJECT_ID: u32 = 99;

const WORDS: [&str; 32] = [
    "Deploy",
    "Release",
    "Octopus",
    "Production",
    "Staging",
    "Tentacle",
    "Package",
    "Succeeded",
    "Failed",
    "Project",
    "Runbook",
    "Variables",
    "Step",
    "Worker",
    "Environment",
    "Tenant",
    "Channel",
    "Lifecycle",
    "Artifact",
    "Task",
    "Queued",
    "Executing",
    "Server",
    "Machine",
    "Certificate",
    "Account",
    "Feed",
    "Team",
    "Space",
    "Library",
    "Script",
    "Health",
];

/// Fixed part of a record: status (2), fixed-data end (2), id (4), ticks (8), guid (16), state (4),
/// column count (2), null bitmap (1), variable column count (2), variable end offset (2).
const FIXED_LEN: usize = 43;
const TICKS_AT: usize = 8;
const GUID_AT: usize = 16;
const STATE_AT: usize = 32;
/// 2024-01-01 in .NET ticks (100 ns since 0001-01-01), the scale SQL Server datetime2 uses.
const BASE_TICKS: u64 = 638_396_640_000_000_000;
const TICKS_PER_PAGE: u64 = 3_600 * 10_000_000;

fn utf16_words() -> &'static [Vec<u8>; 32] {
    static WORDS16: std::sync::OnceLock<[Vec<u8>; 32]> = std::sync::OnceLock::new();
    WORDS16.get_or_init(|| {
        WORDS.map(|w| {
            w.encode_utf16()
                .chain([u16::from(b' ')])
                .flat_map(u16::to_le_bytes)
                .collect()
        })
    })
}

/// Writes a complete, sealed filler page into `page` (exactly [`PAGE_SIZE`] bytes).
/// `page_type` is [`PageType::Filler`] for the data file, [`PageType::Log`] for the log file.
pub(crate) fn fill_page(
    page: &mut [u8],
    page_type: PageType,
    page_id: u32,
    lsn: u64,
    rng: &mut SplitMix64,
) {
    debug_assert_eq!(page.len(), PAGE_SIZE);
    page.fill(0);
    page[0] = page_type as u8;
    page[1] = 1;
    page[4..8].copy_from_slice(&page_id.to_le_bytes());
    page[8..16].copy_from_slice(&lsn.to_le_bytes());
    page[16..20].copy_from_slice(&FILLER_OBJECT_ID.to_le_bytes());

    let words = utf16_words();
    let (header, body) = page.split_at_mut(PAGE_HEADER_SIZE);
    let mut used = 0usize;
    let mut slots: u16 = 0;
    let mut text = Vec::with_capacity(128);
    loop {
        text.clear();
        let mut bits = rng.next_u64();
        let word_count = 3 + (bits & 3) as usize;
        bits >>= 2;
        for _ in 0..word_count {
            text.extend_from_slice(&words[(bits & 31) as usize]);
            bits >>= 5;
        }
        let record_len = FIXED_LEN + text.len();
        let slot_array_after = 2 * (slots as usize + 1);
        if used + record_len + slot_array_after > PAGE_BODY_SIZE {
            break;
        }
        let record = &mut body[used..used + record_len];
        record[0] = 0x30;
        record[2..4].copy_from_slice(&36u16.to_le_bytes());
        let row_id = page_id.wrapping_mul(64).wrapping_add(slots as u32);
        record[4..8].copy_from_slice(&row_id.to_le_bytes());
        let ticks = BASE_TICKS + page_id as u64 * TICKS_PER_PAGE + (bits & 0xFFFF_FFFF);
        record[TICKS_AT..TICKS_AT + 8].copy_from_slice(&ticks.to_le_bytes());
        rng.fill(&mut record[GUID_AT..GUID_AT + 16]);
        record[GUID_AT + 6] = (record[GUID_AT + 6] & 0x0F) | 0x40;
        record[STATE_AT] = (rng.next_u64() & 7) as u8;
        record[36] = 6;
        record[39] = 1;
        record[41..43].copy_from_slice(&(record_len as u16).to_le_bytes());
        record[FIXED_LEN..].copy_from_slice(&text);
        let slot_at = PAGE_BODY_SIZE - 2 * (slots as usize + 1);
        body[slot_at..slot_at + 2].copy_from_slice(&(used as u16).to_le_bytes());
        used += record_len;
        slots += 1;
    }
    header[2..4].copy_from_slice(&slots.to_le_bytes());
    header[24..26].copy_from_slice(&(used as u16).to_le_bytes());
    seal(page);
}

/// Updates a few records of a filler page in place, as a day's row updates do: new dates, states
/// and sometimes a new GUID; record sizes and positions stay. Returns whether the page changed.
pub(crate) fn edit_page(page: &mut [u8], lsn: u64, rng: &mut SplitMix64) -> bool {
    let slots = u16::from_le_bytes([page[2], page[3]]) as usize;
    if slots == 0 {
        return false;
    }
    let edits = 1 + rng.below(4) as usize;
    for _ in 0..edits {
        let slot = rng.below(slots as u64) as usize;
        let slot_at = PAGE_HEADER_SIZE + PAGE_BODY_SIZE - 2 * (slot + 1);
        let record_at =
            PAGE_HEADER_SIZE + u16::from_le_bytes([page[slot_at], page[slot_at + 1]]) as usize;
        if record_at + FIXED_LEN > PAGE_SIZE {
            continue;
        }
        let record = &mut page[record_at..record_at + FIXED_LEN];
        let ticks = read_u64(record, TICKS_AT).wrapping_add(1 + rng.below(86_400 * 10_000_000));
        record[TICKS_AT..TICKS_AT + 8].copy_from_slice(&ticks.to_le_bytes());
        record[STATE_AT] = record[STATE_AT].wrapping_add(1 + rng.below(6) as u8) & 7;
        if rng.below(4) == 0 {
            rng.fill(&mut record[GUID_AT..GUID_AT + 16]);
        }
    }
    page[8..16].copy_from_slice(&lsn.to_le_bytes());
    seal(page);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::page::validate;

    #[test]
    fn filler_pages_are_valid_deterministic_and_structured() {
        let mut a = vec![0u8; PAGE_SIZE];
        let mut b = vec![0u8; PAGE_SIZE];
        fill_page(&mut a, PageType::Filler, 12, 5, &mut SplitMix64::new(1));
        fill_page(&mut b, PageType::Filler, 12, 5, &mut SplitMix64::new(1));
        assert_eq!(a, b);
        assert_eq!(validate(&a, 12), None);
        let slots = u16::from_le_bytes([a[2], a[3]]);
        assert!(slots > 40, "a page holds many records, got {slots}");
        // Neither zeros nor noise: few distinct byte values dominate (UTF-16 text, small ints).
        let zeros = a.iter().filter(|b| **b == 0).count();
        assert!(
            zeros > PAGE_SIZE / 5 && zeros < PAGE_SIZE * 3 / 4,
            "zeros: {zeros}"
        );
        fill_page(&mut b, PageType::Filler, 12, 5, &mut SplitMix64::new(2));
        assert_ne!(a, b);
    }

    #[test]
    fn edits_change_few_bytes_and_keep_the_page_valid() {
        let mut page = vec![0u8; PAGE_SIZE];
        fill_page(&mut page, PageType::Filler, 3, 5, &mut SplitMix64::new(9));
        let before = page.clone();
        assert!(edit_page(&mut page, 6, &mut SplitMix64::new(10)));
        assert_eq!(validate(&page, 3), None);
        let changed = before.iter().zip(&page).filter(|(x, y)| x != y).count();
        assert!(changed > 0 && changed < 200, "changed bytes: {changed}");
    }
}
