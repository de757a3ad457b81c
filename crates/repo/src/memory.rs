//! How the process's allocator keeps memory, set once at start.
//!
//! glibc's malloc gives a thread that finds the arenas busy an arena of its own, up to eight per
//! core, and keeps what is freed in each arena for later use by that arena. A backup's threads
//! (rustic's readers, chunkers, packers, tokio's workers) each build and free large buffers (a
//! folder's tree, packs, chunks), so the freed memory of up to 16 arenas on two cores stayed
//! resident: a first night over 95,000 files peaked at 412 MiB resident for 181 MiB of live
//! allocations (issue 13). With one arena per core, at most eight, the same night peaks at 229
//! MiB and takes as long. `octobackup-lab bench --scale 100k:0.25g` (with the streamed listing and
//! trees of the same round): 409 MiB before, 205 and 236 MiB after, restic 297 to 352 MiB.
//!
//! glibc also hands every allocation over 128 KiB (the threshold rises to at most 32 MiB as such
//! blocks are freed) to the kernel as a mapping of its own, and trims an arena's free top above
//! 128 KiB: a backup's packs, chunks, trees and zstd buffers come and go, and each time the
//! kernel zeroes fresh pages for them. Under a virtual machine whose idle memory the host has
//! taken back, a fresh page is slow to come (a nightly's key and pass 0.3-0.5 s slower in the
//! bench after the manual procedure's 2 GB copy, README, session 15). Allocations up to 256 MiB
//! now come from the arenas, and up to 256 MiB freed stays there to be used again: a medium
//! lab's nightly touches 48,000-53,000 fresh pages instead of 70,000-80,000 (scrypt's 128 MiB
//! are 32,000 of them), a first night 76,000 instead of 142,000, with peak memory 169-188 MiB
//! against 174-183 MiB, and 254-259 MiB against 243 MiB (`/usr/bin/time -f %R`).

/// The largest allocation taken from an arena, and the free memory an arena keeps (see the
/// module).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const KEPT_BYTES: libc::c_int = 256 << 20;

/// Limits glibc's arenas and keeps freed memory in them (see the module). Call before any
/// thread is started. Does nothing on other platforms and C libraries.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        let arenas = cores.clamp(2, 8) as libc::c_int;
        // SAFETY: mallopt only sets a parameter of the allocator; it is called before the
        // process starts threads, and an unknown parameter is refused, not misread.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
            libc::mallopt(libc::M_MMAP_THRESHOLD, KEPT_BYTES);
            libc::mallopt(libc::M_TRIM_THRESHOLD, KEPT_BYTES);
        }
    }
}
