use crate::{Polynom, Polynom64};

pub mod constants {
    use crate::Polynom64;

    /// Default irreducible modulo polynom.
    pub const MOD_POLYNOM: Polynom64 = 0x003D_A335_8B4D_C173;
}

/// A rolling hash implementation for 64 bit polynoms.
pub trait RollingHash64 {
    /// Resets the rolling hash.
    fn reset(&mut self);

    /// Attempt to prefill the window
    ///
    /// # Arguments
    ///
    /// * `iter` - The iterator to read from.
    fn prefill_window<I>(&mut self, iter: &mut I) -> usize
    where
        I: Iterator<Item = u8>;

    /// Combines a reset with a prefill in an optimized way.
    ///
    /// # Arguments
    ///
    /// * `iter` - The iterator to read from.
    fn reset_and_prefill_window<I>(&mut self, iter: &mut I) -> usize
    where
        I: Iterator<Item = u8>;

    /// Slides the window by byte.
    ///
    /// # Arguments
    ///
    /// * `byte` - The byte to slide in.
    fn slide(&mut self, byte: u8);

    /// Returns the current hash as a `Polynom64`.
    fn get_hash(&self) -> &Polynom64;
}

/// The out and mod tables of one (window size, polynom) pair.
type Tables = (usize, Polynom64, [Polynom64; 256], [Polynom64; 256]);

std::thread_local! {
    /// The tables last computed on this thread (4 KiB).
    static LAST_TABLES: std::cell::RefCell<Option<Box<Tables>>> = const { std::cell::RefCell::new(None) };
}

/// The out and mod tables for this window size and polynom: from this thread's cache when they
/// match, else computed and cached.
fn cached_tables(
    window_size: usize,
    mod_polynom: Polynom64,
) -> ([Polynom64; 256], [Polynom64; 256]) {
    LAST_TABLES.with(|cell| {
        let mut last = cell.borrow_mut();
        match last.as_deref() {
            Some((size, poly, out, modt)) if *size == window_size && *poly == mod_polynom => {
                (*out, *modt)
            }
            _ => {
                let out = Rabin64::calculate_out_table(window_size, &mod_polynom);
                let modt = Rabin64::calculate_mod_table(&mod_polynom);
                *last = Some(Box::new((window_size, mod_polynom, out, modt)));
                (out, modt)
            }
        }
    })
}

/// How many runs of a buffer [`Rabin64::slide_until_match`] hashes side by side.
const LANES: usize = 4;
/// The window size and polynom shift (degree less 8) of the hashes done side by side.
const SIDE_BY_SIDE_WINDOW: usize = 64;
const SIDE_BY_SIDE_SHIFT: i32 = 53 - 8;

/// A rolling hash implementation for 64 bit polynoms from Rabin.
#[derive(Debug, Clone)]
pub struct Rabin64 {
    // Configuration
    /// Window size.
    window_size: usize, // The size of the data window used in the hash calculation.
    /// Window size mask.
    window_size_mask: usize, // = window_size - 1, supposing that it is an exponent of 2.

    // Precalculations
    /// The number of bits to shift the polynom to the left.
    polynom_shift: i32,

    /// Precalculated out table.
    out_table: [Polynom64; 256],
    /// Precalculated mod table.
    mod_table: [Polynom64; 256],

    // Current state
    /// The data window.
    window_data: Vec<u8>,
    /// The current window index.
    window_index: usize,
    /// The current hash.
    pub hash: Polynom64,
}

impl Rabin64 {
    /// Calculates the out table. The out table is used to remove the byte that is sliding out of the window.
    #[must_use]
    pub fn calculate_out_table(window_size: usize, mod_polynom: &Polynom64) -> [Polynom64; 256] {
        let mut out_table = [0; 256];
        for (b, elem) in out_table.iter_mut().enumerate() {
            let mut hash = (b as Polynom64).modulo(mod_polynom);
            for _ in 0..window_size - 1 {
                hash <<= 8;
                hash = hash.modulo(mod_polynom);
            }
            *elem = hash;
        }

        out_table
    }

    /// Calculates the mod table. The mod table is used to add the byte that is sliding into the window.
    #[must_use]
    pub fn calculate_mod_table(mod_polynom: &Polynom64) -> [Polynom64; 256] {
        let mut mod_table = [0; 256];
        let k = mod_polynom.degree();
        for (b, elem) in mod_table.iter_mut().enumerate() {
            let p: Polynom64 = (b as Polynom64) << k;
            *elem = p.modulo(mod_polynom) | p;
        }

        mod_table
    }

    /// Creates a new `Rabin64` rolling hash.
    #[must_use]
    pub fn new(window_size_nb_bits: u32) -> Self {
        Self::new_with_polynom(window_size_nb_bits, &constants::MOD_POLYNOM)
    }

    /// Creates a new `Rabin64` rolling hash with a specific modulo polynom.
    ///
    /// # Arguments
    ///
    /// * `window_size_nb_bits` - The number of bits of the window size.
    /// * `mod_polynom` - The modulo polynom.
    ///
    /// The two lookup tables depend only on the window size and the polynom, and computing the out
    /// table costs `256 * window_size` polynom reductions. Callers such as rustic_core build a new
    /// `Rabin64` for every file, so the tables of the last (window size, polynom) pair are kept per
    /// thread and copied instead of recomputed: a repository has one polynom, so every file after
    /// the first on a thread reuses them (octobackup's patch, see PATCHED.md).
    #[must_use]
    pub fn new_with_polynom(window_size_nb_bits: u32, mod_polynom: &Polynom64) -> Self {
        let window_size = 1 << window_size_nb_bits;

        let window_data = vec![0; window_size];
        let (out_table, mod_table) = cached_tables(window_size, *mod_polynom);

        Self {
            window_size,
            window_size_mask: window_size - 1,
            polynom_shift: mod_polynom.degree() - 8,
            out_table,
            mod_table,
            window_data,
            window_index: 0,
            hash: 0,
        }
    }

    /// Slides the bytes of `bytes` in one after the other, stopping after the first byte after
    /// which the hash has no bit of `mask` set: returns that byte's index, or `None` once every
    /// byte is in. The hashes, the answer and the state afterwards are those of calling
    /// [`RollingHash64::slide`] for each byte; they are only found faster (octobackup's patch,
    /// see PATCHED.md). The first window's bytes go through `slide` (their hashes still depend
    /// on what came before); every later hash depends only on the window's bytes, so those
    /// positions are split into [`LANES`] runs hashed side by side. One rolling hash waits on a
    /// table lookup of its last value at every byte; independent ones keep the core busy.
    pub fn slide_until_match(&mut self, bytes: &[u8], mask: Polynom64) -> Option<usize> {
        let ws = self.window_size;
        let head = bytes.len().min(ws);
        for (i, &byte) in bytes[..head].iter().enumerate() {
            self.slide(byte);
            if self.hash & mask == 0 {
                return Some(i);
            }
        }
        if bytes.len() == head {
            return None;
        }
        let found = self.first_window_match(bytes, ws, mask);
        // The state as sliding up to the last byte taken would leave it: the window holds that
        // byte and the ones before it, and so does the hash.
        let last = found.unwrap_or(bytes.len() - 1);
        self.window_data
            .copy_from_slice(&bytes[last + 1 - ws..=last]);
        self.window_index = 0;
        self.hash = self.window_hash(&bytes[last + 1 - ws..=last]);
        found
    }

    /// The hash of a window holding `window` (`window_size` bytes), whatever came before.
    fn window_hash(&self, window: &[u8]) -> Polynom64 {
        window
            .iter()
            .fold(0, |hash, &byte| self.hash_in(hash, byte))
    }

    /// `hash` with `byte` appended (no byte leaving the window).
    #[inline(always)]
    fn hash_in(&self, hash: Polynom64, byte: u8) -> Polynom64 {
        let mod_index = (hash >> self.polynom_shift) & 255;
        ((hash << 8) | Polynom64::from(byte)) ^ self.mod_table[mod_index as usize]
    }

    /// The first index `i` in `from..bytes.len()` (`from` at least the window size) for which
    /// the window ending with `bytes[i]` hashes with no bit of `mask` set.
    fn first_window_match(&self, bytes: &[u8], from: usize, mask: Polynom64) -> Option<usize> {
        let n = bytes.len() - from;
        // Below a few windows per run, warming up each run costs more than it saves. The runs
        // side by side are written for the window and polynom degree restic and rustic use (64
        // bytes, degree 53), so that both are constants there.
        if n < LANES * 16 * self.window_size
            || self.window_size != SIDE_BY_SIDE_WINDOW
            || self.polynom_shift != SIDE_BY_SIDE_SHIFT
        {
            return self.first_match_in_run(bytes, from, bytes.len(), mask);
        }
        const WS: usize = SIDE_BY_SIDE_WINDOW;
        const SHIFT: i32 = SIDE_BY_SIDE_SHIFT;
        let run = n / LANES;
        // The runs' bytes, each with the window before it.
        let all = &bytes[from - WS..from + LANES * run];
        let mut hashes: [Polynom64; LANES] =
            core::array::from_fn(|k| self.window_hash(&all[k * run..k * run + WS]));
        let mut found: [Option<usize>; LANES] = [None; LANES];
        let step = |hash: Polynom64, leaving: u8, entering: u8| {
            let hash = hash ^ self.out_table[leaving as usize];
            let mod_index = (hash >> SHIFT) & 255;
            ((hash << 8) | Polynom64::from(entering)) ^ self.mod_table[mod_index as usize]
        };
        let mut i = 0;
        while i < run {
            // Every run one byte on until any of them matches (rarely: about once a chunk).
            let mut hit = false;
            while i < run && !hit {
                for k in 0..LANES {
                    let at = k * run + i;
                    // SAFETY: `at + WS` is below `LANES * run + WS`, the length of `all` (`i`
                    // is below `run` and `k` below `LANES`). Indexing with checks here made
                    // the loop spill its pointers and run at half the speed.
                    let (leaving, entering) =
                        unsafe { (*all.get_unchecked(at), *all.get_unchecked(at + WS)) };
                    hashes[k] = step(hashes[k], leaving, entering);
                }
                hit = hashes
                    .iter()
                    .fold(false, |any, hash| any | (hash & mask == 0));
                i += 1;
            }
            if hit {
                // The first run's match comes before any other run's.
                if hashes[0] & mask == 0 {
                    return Some(from + i - 1);
                }
                for k in 1..LANES {
                    if hashes[k] & mask == 0 && found[k].is_none() {
                        found[k] = Some(from + k * run + i - 1);
                    }
                }
            }
        }
        if let Some(first) = found.iter().flatten().next() {
            return Some(*first);
        }
        // What the even split left over goes to the last run.
        self.first_match_in_run(bytes, from + LANES * run, bytes.len(), mask)
    }

    /// The first index in `start..end` whose window hashes with no bit of `mask` set, one byte
    /// after the other (`start` at least the window size).
    fn first_match_in_run(
        &self,
        bytes: &[u8],
        start: usize,
        end: usize,
        mask: Polynom64,
    ) -> Option<usize> {
        let ws = self.window_size;
        let mut hash = self.window_hash(&bytes[start - ws..start]);
        for i in start..end {
            hash = self.hash_in(hash ^ self.out_table[bytes[i - ws] as usize], bytes[i]);
            if hash & mask == 0 {
                return Some(i);
            }
        }
        None
    }

    #[cfg(test)]
    pub(crate) fn hash_block(&mut self, bytes: &[u8], mod_polynom: Polynom64) {
        for v in bytes {
            self.hash <<= 8;
            self.hash |= Polynom64::from(*v);
            self.hash = self.hash.modulo(&mod_polynom);
        }
    }
}

impl RollingHash64 for Rabin64 {
    fn reset(&mut self) {
        self.window_data.clear();
        self.window_data.resize(self.window_size, 0);
        self.window_index = 0;
        self.hash = 0;

        // Not needed.
        // self.slide(1);
    }

    // Attempt to fills the window - 1 byte.
    fn prefill_window<I>(&mut self, iter: &mut I) -> usize
    where
        I: Iterator<Item = u8>,
    {
        let mut nb_bytes_read = 0;
        for _ in 0..self.window_size - 1 {
            match iter.next() {
                Some(b) => {
                    self.slide(b);
                    nb_bytes_read += 1;
                }
                None => break,
            }
        }

        nb_bytes_read
    }

    // Combines a reset with a prefill in an optimized way.
    fn reset_and_prefill_window<I>(&mut self, iter: &mut I) -> usize
    where
        I: Iterator<Item = u8>,
    {
        self.hash = 0;
        let mut nb_bytes_read = 0;
        for _ in 0..self.window_size - 1 {
            match iter.next() {
                Some(b) => {
                    // Take the old value out of the window and the hash.
                    // ... let's suppose that the buffer contains zeroes, do nothing.

                    // Put the new value in the window and in the hash.
                    self.window_data[self.window_index] = b;
                    let mod_index = (self.hash >> self.polynom_shift) & 255;
                    self.hash <<= 8;
                    self.hash |= Polynom64::from(b);
                    self.hash ^= self.mod_table[mod_index as usize];

                    // Move the windowIndex to the next position.
                    self.window_index = (self.window_index + 1) & self.window_size_mask;

                    nb_bytes_read += 1;
                }
                None => break,
            }
        }

        // Because we didn't overwrite that element in the loop above.
        self.window_data[self.window_index] = 0;

        nb_bytes_read
    }

    #[inline]
    fn slide(&mut self, byte: u8) {
        // Take the old value out of the window and the hash.
        let out_value = self.window_data[self.window_index];
        self.hash ^= self.out_table[out_value as usize];

        // Put the new value in the window and in the hash.
        self.window_data[self.window_index] = byte;
        let mod_index = (self.hash >> self.polynom_shift) & 255;
        self.hash <<= 8;
        self.hash |= Polynom64::from(byte);
        self.hash ^= self.mod_table[mod_index as usize];

        // Move the windowIndex to the next position.
        self.window_index = (self.window_index + 1) & self.window_size_mask;
    }

    #[inline]
    fn get_hash(&self) -> &Polynom64 {
        &self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::polynom::Polynom64;

    fn to_hex_string(polynoms: &[Polynom64], prefix: &str) -> String {
        let strs: Vec<String> = polynoms
            .iter()
            .map(|p| format!("{}{:016x} {}", prefix, p, 0))
            .collect();
        strs.join("\n")
    }

    #[test]
    fn cached_tables_equal_fresh_ones_for_every_polynom() {
        let other: Polynom64 = 0x0031_2C3A_7A87_6C53;
        for (bits, poly) in [
            (6, constants::MOD_POLYNOM),
            (6, other),
            (5, other),
            (6, constants::MOD_POLYNOM),
        ] {
            for _ in 0..2 {
                let r = Rabin64::new_with_polynom(bits, &poly);
                assert_eq!(r.out_table, Rabin64::calculate_out_table(1 << bits, &poly));
                assert_eq!(r.mod_table, Rabin64::calculate_mod_table(&poly));
            }
        }
    }

    /// Bytes from a fixed xorshift generator (the crate has no dev-dependencies).
    fn bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    /// What `slide_until_match` must equal: one `slide` per byte.
    fn slide_one_by_one(rabin: &mut Rabin64, bytes: &[u8], mask: Polynom64) -> Option<usize> {
        for (i, &byte) in bytes.iter().enumerate() {
            rabin.slide(byte);
            if rabin.hash & mask == 0 {
                return Some(i);
            }
        }
        None
    }

    #[test]
    fn sliding_until_a_match_finds_what_sliding_byte_by_byte_finds_and_leaves_the_same_state() {
        let mut seed = 7;
        let mut matches = 0;
        // Lengths around the first window, the side-by-side threshold and uneven splits; masks
        // that match every few hundred bytes, every few thousand, and almost never.
        for len in [
            0, 1, 63, 64, 65, 100, 4095, 4096, 4097, 4099, 10_000, 65_536, 70_001,
        ] {
            for mask in [0xff, 0xfff, 0x3fff, (1 << 20) - 1, (1 << 40) - 1] {
                for before in [0, 5, 64, 300] {
                    seed += 1;
                    let history = bytes(seed, before);
                    // Runs of a repeated byte too (the hash of a long run of one byte repeats).
                    let mut data = bytes(seed * 31, len);
                    if len > 5_000 {
                        data[1_000..3_000].fill(0xaa);
                    }
                    // The window of restic and rustic (64 bytes) and another one (32 bytes),
                    // which takes the path of one run.
                    let bits = if seed % 5 == 0 { 5 } else { 6 };
                    let mut fast = Rabin64::new(bits);
                    let mut slow = Rabin64::new(bits);
                    if seed % 3 == 0 {
                        let mut prefill = history.iter().copied();
                        fast.reset_and_prefill_window(&mut prefill.clone());
                        slow.reset_and_prefill_window(&mut prefill);
                    } else {
                        for &byte in &history {
                            fast.slide(byte);
                            slow.slide(byte);
                        }
                    }
                    let mut offset = 0;
                    // Slide to every match in turn, as a chunker slides from cut to cut.
                    loop {
                        let want = slide_one_by_one(&mut slow, &data[offset..], mask);
                        let got = fast.slide_until_match(&data[offset..], mask);
                        assert_eq!(
                            got, want,
                            "len {len} mask {mask:x} before {before} at {offset}"
                        );
                        assert_eq!(fast.hash, slow.hash);
                        match got {
                            Some(i) => {
                                matches += 1;
                                offset += i + 1;
                            }
                            None => break,
                        }
                    }
                    // The states are the same: the next bytes hash the same.
                    for byte in bytes(seed * 7, 200) {
                        fast.slide(byte);
                        slow.slide(byte);
                        assert_eq!(fast.hash, slow.hash);
                    }
                }
            }
        }
        assert!(
            matches > 1_000,
            "the masks must make matches to compare: {matches}"
        );
    }

    #[test]
    fn print_tables() {
        let out_table = Rabin64::calculate_out_table(32, &constants::MOD_POLYNOM);
        let mod_table = Rabin64::calculate_mod_table(&constants::MOD_POLYNOM);
        println!("{}", to_hex_string(&out_table[..], "outTable "));
        println!("{}", to_hex_string(&mod_table[..], "modTable "));
    }

    #[test]
    fn rabin_hash() {
        use std::cmp::max;

        // Random meaningless data.
        let data = [
            17u8, 28, 53, 64, 175, 216, 27, 208, 109, 130, 143, 35, 93, 244, 45, 18, 64, 193, 204,
            59, 169, 139, 53, 59, 55, 65, 242, 73, 60, 198, 45, 22, 56, 90, 81, 181,
        ];

        let mut rabin1 = Rabin64::new(5);
        let mut rabin2 = Rabin64::new(5);

        // Block by block, no optimization, used raw modulo formula.
        for i in 0..data.len() {
            let block = &data[(max(31, i) - 31)..=i];
            rabin1.reset();
            rabin1.hash_block(block, constants::MOD_POLYNOM);

            rabin2.slide(data[i]);

            //println!("{:02} {:02} {:016x} {:016x} {:?}", i, block.len(), rabin1.hash, rabin2.hash, block);
            assert_eq!(rabin1.hash, rabin2.hash);
        }
    }
}
