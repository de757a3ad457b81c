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

/// Limits glibc's arenas (see the module). Call before any thread is started. Does nothing on
/// other platforms and C libraries.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        let arenas = cores.clamp(2, 8) as libc::c_int;
        // SAFETY: mallopt only sets a parameter of the allocator; it is called before the
        // process starts threads, and an unknown parameter is refused, not misread.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
}
