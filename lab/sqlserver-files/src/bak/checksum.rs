//! The backup checksum: one cheap checksum of a stripe's backup stream, as BACKUP WITH CHECKSUM
//! writes it. SQL Server's backup checksum is a plain checksum over the stream, not a
//! cryptographic hash ("BACKUP computes a backup checksum on the backup stream": Microsoft Learn,
//! "Possible media errors during backup and restore"), so a real BACKUP WITH CHECKSUM is bound by
//! the disks, not the CPU. A SHA-256 here made the stand-in's BACKUP several times slower than the
//! same statement without CHECKSUM, which skewed every comparison of maintenance windows.
//!
//! The stream is cut into 512-byte sectors (the last one zero-padded); each sector is folded by
//! XOR of its 8-byte words (vectorised by the compiler), then mixed into the state with one
//! multiply, so a changed word, a changed length or two sectors swapped all change the result.
//! The result does not depend on how the stream is split into `update` calls.

const SECTOR: usize = 512;

#[derive(Debug, Clone)]
pub(crate) struct StreamChecksum {
    state: u64,
    length: u64,
    pending: [u8; SECTOR],
    pending_len: usize,
}

impl Default for StreamChecksum {
    fn default() -> Self {
        Self {
            state: 0x6A09_E667_F3BC_C908,
            length: 0,
            pending: [0; SECTOR],
            pending_len: 0,
        }
    }
}

fn fold(sector: &[u8]) -> u64 {
    let mut lanes = [0u64; 8];
    for group in sector.chunks_exact(64) {
        for (lane, word) in lanes.iter_mut().zip(group.chunks_exact(8)) {
            *lane ^= u64::from_le_bytes(word.try_into().expect("8 bytes"));
        }
    }
    lanes
        .iter()
        .enumerate()
        .fold(0, |acc, (i, l)| acc ^ l.rotate_left(i as u32 * 8))
}

impl StreamChecksum {
    fn mix(&mut self, sector: &[u8]) {
        self.state = (self.state ^ fold(sector))
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29);
    }

    pub fn update(&mut self, mut bytes: &[u8]) {
        self.length += bytes.len() as u64;
        if self.pending_len > 0 {
            let take = (SECTOR - self.pending_len).min(bytes.len());
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&bytes[..take]);
            self.pending_len += take;
            bytes = &bytes[take..];
            if self.pending_len < SECTOR {
                return;
            }
            let sector = self.pending;
            self.mix(&sector);
            self.pending_len = 0;
        }
        let mut sectors = bytes.chunks_exact(SECTOR);
        for sector in &mut sectors {
            self.mix(sector);
        }
        let rest = sectors.remainder();
        self.pending[..rest.len()].copy_from_slice(rest);
        self.pending_len = rest.len();
    }

    pub fn finish(mut self) -> u64 {
        if self.pending_len > 0 {
            let mut sector = [0u8; SECTOR];
            sector[..self.pending_len].copy_from_slice(&self.pending[..self.pending_len]);
            self.mix(&sector);
        }
        let length = self.length.to_le_bytes();
        let mut last = [0u8; SECTOR];
        last[..8].copy_from_slice(&length);
        self.mix(&last);
        self.state ^ (self.state >> 32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(parts: &[&[u8]]) -> u64 {
        let mut c = StreamChecksum::default();
        for p in parts {
            c.update(p);
        }
        c.finish()
    }

    #[test]
    fn any_split_gives_the_same_checksum() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 31 % 251) as u8).collect();
        let whole = sum(&[&data]);
        for cut in [0, 1, 8, 511, 512, 513, 4999] {
            assert_eq!(sum(&[&data[..cut], &data[cut..]]), whole, "cut at {cut}");
        }
        assert_eq!(sum(&[&data[..7], &data[7..600], &data[600..]]), whole);
    }

    #[test]
    fn flips_swaps_and_lengths_change_it() {
        let data: Vec<u8> = (0..4096u32).map(|i| (i * 17 % 253) as u8).collect();
        let whole = sum(&[&data]);
        for at in [0, 9, 511, 512, 4095] {
            let mut d = data.clone();
            d[at] ^= 0x10;
            assert_ne!(sum(&[&d]), whole, "flip at {at}");
        }
        let mut swapped = data[512..1024].to_vec();
        swapped.extend_from_slice(&data[..512]);
        swapped.extend_from_slice(&data[1024..]);
        assert_ne!(sum(&[&swapped]), whole);
        let mut longer = data.clone();
        longer.push(0);
        assert_ne!(sum(&[&longer]), whole);
    }
}
