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

/// Bytes as people read them (binary units, one decimal).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

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

/// The one-line error for `what` (e.g. "the staging folder") at `path` being full.
pub fn full(exit: Exit, what: &str, path: &Path, needed: Option<u64>, fix: &str) -> Failure {
    let free = crate::cli::doctor::free_space(path)
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
        assert_eq!(f.exit, Exit::Sql);
        assert!(!f.message.contains('\n'));
        assert!(f.message.contains(&dir.path().display().to_string()));
        assert!(f.message.contains("about 2.0 KiB is needed there and "));
        assert!(f.message.contains(" is free. Free space."));
    }
}
