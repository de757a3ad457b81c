//! File metadata as restic stores it: modes in Go's `io/fs` encoding (type and special bits in
//! the high bits, permissions in the low nine), times as nanosecond timestamps.

use std::fs;
use std::sync::{Mutex, PoisonError};

use rustic_core::jiff::Timestamp;
use rustic_core::repofile::Metadata;

const GO_MODE_DIR: u32 = 1 << 31;
const GO_MODE_SYMLINK: u32 = 1 << 27;
const GO_MODE_SETUID: u32 = 1 << 23;
const GO_MODE_SETGID: u32 = 1 << 22;
const GO_MODE_STICKY: u32 = 1 << 20;

/// Go's mode for a regular file with these Unix permission bits (only `0o777` is kept).
pub(crate) fn go_file_mode(unix_mode: u32) -> u32 {
    unix_mode & 0o777
}

/// Go's mode for a folder with this Unix `st_mode`.
#[cfg_attr(windows, allow(dead_code))]
fn go_dir_mode(st_mode: u32) -> u32 {
    let mut go = GO_MODE_DIR | (st_mode & 0o777);
    if st_mode & 0o4000 != 0 {
        go |= GO_MODE_SETUID;
    }
    if st_mode & 0o2000 != 0 {
        go |= GO_MODE_SETGID;
    }
    if st_mode & 0o1000 != 0 {
        go |= GO_MODE_STICKY;
    }
    go
}

/// The Unix permission bits (with setuid/setgid/sticky) of a Go mode, as a user reads them.
pub(crate) fn unix_permissions(go_mode: u32) -> u32 {
    let mut mode = go_mode & 0o777;
    if go_mode & GO_MODE_SETUID != 0 {
        mode |= 0o4000;
    }
    if go_mode & GO_MODE_SETGID != 0 {
        mode |= 0o2000;
    }
    if go_mode & GO_MODE_STICKY != 0 {
        mode |= 0o1000;
    }
    mode
}

/// Whether a Go mode says symlink (for listings).
pub(crate) fn is_symlink(go_mode: u32) -> bool {
    go_mode & GO_MODE_SYMLINK != 0
}

/// Metadata for a source folder's own node: rustic skips a walk's root, which would leave the
/// folder with made-up 0755 and no time.
pub(crate) fn folder_metadata(meta: &fs::Metadata) -> Metadata {
    let mut out = Metadata::default();
    out.mtime = meta
        .modified()
        .ok()
        .and_then(|t| Timestamp::try_from(t).ok());
    out.atime = out.mtime;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        out.mode = Some(go_dir_mode(meta.mode()));
        out.uid = Some(meta.uid());
        out.gid = Some(meta.gid());
        out.ctime =
            Timestamp::new(meta.ctime(), i32::try_from(meta.ctime_nsec()).unwrap_or(0)).ok();
    }
    out
}

/// The current time, strictly later than the previous call's in this process.
pub(crate) fn unique_now() -> Timestamp {
    static LAST: Mutex<i128> = Mutex::new(0);
    let mut last = LAST.lock().unwrap_or_else(PoisonError::into_inner);
    let now = Timestamp::now().as_nanosecond().max(*last + 1);
    *last = now;
    Timestamp::from_nanosecond(now).unwrap_or_else(|_| Timestamp::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip_through_go_encoding() {
        assert_eq!(go_file_mode(0o100600), 0o600);
        assert_eq!(go_dir_mode(0o40755), GO_MODE_DIR | 0o755);
        assert_eq!(unix_permissions(go_dir_mode(0o41777)), 0o1777);
        assert_eq!(unix_permissions(go_dir_mode(0o42750)), 0o2750);
        assert!(!is_symlink(go_dir_mode(0o40755)));
    }

    #[test]
    fn unique_now_never_repeats() {
        let a = unique_now();
        let b = unique_now();
        assert!(b > a);
    }
}
