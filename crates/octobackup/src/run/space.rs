//! A full disk, said in one line: which folder, how much the step needs, how much is free, and
//! what to do. The cause is the operating system's own "disk full": ENOSPC (28) on Unix,
//! ERROR_DISK_FULL (112, "There is not enough space on the disk.", Microsoft Learn "System Error
//! Codes (0-499)") on Windows, which SQL Server reports inside Msg 3202 ("Write on ... failed").

use crate::error::{Exit, Failure};
use std::path::Path;

/// True when an error's text carries the operating system's "disk full".
pub fn is_disk_full(text: &str) -> bool {
    text.contains("No space left on device")
        || text.contains("StorageFull")
        || text.contains("not enough space on the disk")
        || text.contains("(os error 28)") && cfg!(unix)
        || text.contains("(os error 112)")
}

pub use crate::format::bytes;

/// The size of the files under `dir` (symbolic links not followed).
pub fn tree_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map_or(0, |m| m.len()),
                _ => {}
            }
        }
    }
    total
}

/// Free bytes for an unprivileged user on the volume holding `path`.
#[cfg(unix)]
pub fn free_space(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid NUL-terminated path and s a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    Some(s.f_bavail as u64 * s.f_frsize as u64)
}

/// Free bytes for the current user on the volume holding `path`.
#[cfg(windows)]
pub fn free_space(path: &Path) -> Option<u64> {
    use std::os::windows::ffi::OsStrExt;
    let wide: Vec<u16> = path.as_os_str().encode_wide().chain(Some(0)).collect();
    let mut free: u64 = 0;
    // SAFETY: wide is NUL-terminated; the out pointer is valid, the others may be null.
    let ok = unsafe {
        windows_sys::Win32::Storage::FileSystem::GetDiskFreeSpaceExW(
            wide.as_ptr(),
            &mut free,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    (ok != 0).then_some(free)
}

#[cfg(not(any(unix, windows)))]
pub fn free_space(_path: &Path) -> Option<u64> {
    None
}

/// The one-line error for `what` (e.g. "the staging folder") at `path` being full.
pub fn full(exit: Exit, what: &str, path: &Path, needed: Option<u64>, fix: &str) -> Failure {
    let free = free_space(path)
        .map(bytes)
        .unwrap_or_else(|| "an unknown amount".into());
    let needed = needed
        .map(|n| format!("about {} is needed there and ", bytes(n)))
        .unwrap_or_default();
    Failure::new(
        exit,
        format!(
            "{what} {} is full (disk full): {needed}{free} is free. {fix}",
            path.display()
        ),
    )
}

/// A repository failure that is a full disk, said so with the local repository's folder; any
/// other failure as it is.
pub fn repository_full(f: Failure, location: &str, needed: Option<u64>) -> Failure {
    if !is_disk_full(&f.message) {
        return f;
    }
    let Some(folder) = octobackup_repo::local_folder(location) else {
        return f;
    };
    full(
        Exit::Repository,
        "the repository",
        &folder,
        needed,
        "Free space there (`octobackup forget` drops old sets) or move the repository to a bigger disk; nothing was marked complete.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_of_a_real_folder() {
        let d = tempfile::tempdir().unwrap();
        assert!(free_space(d.path()).unwrap() > 0);
        assert_eq!(free_space(&d.path().join("missing")), None);
    }

    #[test]
    fn disk_full_is_read_from_either_systems_words() {
        assert!(is_disk_full(
            "cannot write pack: No space left on device (os error 28)"
        ));
        assert!(is_disk_full(
            r#"Write on "D:\b\x.bak" failed: 112(There is not enough space on the disk.)"#
        ));
        assert!(!is_disk_full("Access is denied. (os error 5)"));
    }

    #[test]
    fn sizes_read_as_people_say_them() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }

    #[test]
    fn the_message_names_the_folder_and_the_space() {
        let dir = tempfile::tempdir().unwrap();
        let f = full(
            Exit::Sql,
            "the staging folder",
            dir.path(),
            Some(2048),
            "Free space.",
        );
        assert_eq!(f.plain_exit(), Some(Exit::Sql));
        assert!(!f.message.contains('\n'));
        assert!(f.message.contains(&dir.path().display().to_string()));
        assert!(f.message.contains("about 2.0 KiB is needed there and "));
        assert!(f.message.contains(" is free. Free space."));
    }
}
