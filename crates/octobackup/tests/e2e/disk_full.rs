//! A full disk, for real: the staging share and a local repository on a small tmpfs, so writes
//! end in ENOSPC as they would on a full volume. The lab's staging folder is written by the SQL
//! Server stand-in (BACKUP TO DISK), which then answers as SQL Server does: Msg 3202 with
//! operating system error 112. After each: a one-line error naming the folder and the space,
//! maintenance mode as found, no set complete, the staging folder cleaned, the repository checks.
//!
//! Mounting needs root (or password-less sudo), as CI has. Without it these tests fail and say
//! so: they never skip.

#![cfg(target_os = "linux")]

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted over a folder for the test's life.
struct Tmpfs(PathBuf);

/// `mount`/`umount` as root, or through `sudo -n` (no password prompt) for another user.
fn as_root(program: &str) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if root {
        Command::new(program)
    } else {
        let mut c = Command::new("sudo");
        c.args(["-n", program]);
        c
    }
}

impl Tmpfs {
    fn mount(at: &Path, size: u64) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = as_root("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output();
        match out {
            Ok(o) if o.status.success() => Tmpfs(at.to_path_buf()),
            other => panic!(
                "this test needs a really full disk: mounting a {size}-byte tmpfs at {} failed ({other:?}). Run it as root, or as a user with password-less sudo (CI runs as root); it does not skip.",
                at.display()
            ),
        }
    }

    fn resize(&self, size: u64) {
        let ok = as_root("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap()
            .success();
        assert!(ok, "cannot resize the tmpfs at {}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = as_root("umount").arg("-l").arg(&self.0).status();
    }
}

fn used_bytes(dir: &Path) -> u64 {
    walk_files(dir)
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len().div_ceil(4096) * 4096)
        .sum()
}

fn assert_nothing_claimed(t: &TestLab, name: &str, out: &std::process::Output) {
    let e = stderr(out);
    assert!(!e.contains("panicked"), "{name}: {e}");
    assert!(
        !t.lab.octopus().maintenance(),
        "{name}: maintenance mode left on: {:?}",
        maintenance_changes(&t.events())
    );
    assert!(!t.journal_path().exists(), "{name}: journal left");
    let staged: Vec<_> = t
        .staging_files()
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("octobackup-")
        })
        .collect();
    assert!(staged.is_empty(), "{name}: staging left: {staged:?}");
}

/// The error line: one line, naming `path`, with the space needed and free.
fn the_error_line(out: &std::process::Output, path: &Path) -> String {
    let e = stderr(out);
    let line = e
        .lines()
        .find(|l| l.contains("is full (disk full)"))
        .unwrap_or_else(|| panic!("no disk-full line: {e}"))
        .to_string();
    assert!(
        line.contains(&path.display().to_string()),
        "the line does not name {}: {line}",
        path.display()
    );
    assert!(line.contains("is needed there and "), "{line}");
    assert!(line.contains(" is free."), "{line}");
    line
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_staging_share_fails_the_backup_cleanly() {
    let t = TestLab::start().await;
    t.init().await;
    let staging = t.lab.info().staging_dir.clone();
    // Room for the run's folder, marker and folder listing, not for the database backup.
    let fs = Tmpfs::mount(&staging, 1024 * 1024);
    let out = t.run(&["backup"]).await;
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let line = the_error_line(&out, &staging);
    // SQL Server's own words for it, as the stand-in gives them.
    assert!(line.contains("Msg 3202"), "{line}");
    assert!(
        line.contains("112(There is not enough space on the disk.)"),
        "{line}"
    );
    assert_nothing_claimed(&t, "staging full", &out);
    assert!(t.sets().await.iter().all(|s| s["complete"] == false));
    let check = t.restic(&["check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    // With room again, the next backup is complete.
    fs.resize(512 * 1024 * 1024);
    t.ok(&["backup"]).await;
    assert_eq!(
        t.sets()
            .await
            .iter()
            .filter(|s| s["complete"] == true)
            .count(),
        1
    );
}

/// A staging share too small even for the folder listing octobackup keeps there before the
/// window: the same one line, before maintenance mode is touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staging_share_too_full_for_the_folder_listing_fails_before_the_window() {
    let t = TestLab::start().await;
    t.init().await;
    let staging = t.lab.info().staging_dir.clone();
    // Two pages: the run's marker takes one, the listing (about 60 bytes an entry) needs more.
    let _fs = Tmpfs::mount(&staging, 8 * 1024);
    let out = t.run(&["backup"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let line = the_error_line(&out, &staging);
    assert!(line.contains("folder listing"), "{line}");
    assert_nothing_claimed(&t, "staging full before the window", &out);
    // Before the window: maintenance mode was never touched.
    assert!(
        maintenance_changes(&t.events()).is_empty(),
        "{:?}",
        maintenance_changes(&t.events())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_local_repository_fails_the_backup_cleanly() {
    let t = TestLab::start().await;
    let repo = t.repo_dir();
    let fs = Tmpfs::mount(&repo, 64 * 1024 * 1024);
    t.init().await;
    // Room for what init wrote and a little more, not for a set.
    fs.resize(used_bytes(&repo) + 64 * 1024);
    let out = t.run(&["backup"]).await;
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    the_error_line(&out, &repo);
    assert_nothing_claimed(&t, "repository full", &out);
    recovers_with_room_again(&t, &fs).await;
}

/// With room again after a run the full repository stopped: the repository checks, holds
/// nothing complete, and takes a set that checks.
async fn recovers_with_room_again(t: &TestLab, fs: &Tmpfs) {
    fs.resize(512 * 1024 * 1024);
    let check = t.restic(&["check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(t.sets().await.iter().all(|s| s["complete"] == false));
    t.ok(&["backup"]).await;
    let check = t.restic(&["check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_that_fills_while_packs_wait_to_be_written_still_says_disk_full() {
    // More data than one pack holds (32 MiB): the first pack's write fails and the packs after
    // it find the writer stopped. The error must still be the full disk, not the closed
    // channel the packs were handed over by (found when the bench's disk filled).
    let t = TestLab::start().await;
    let extra = t.lab.info().folders.artifacts.join("large");
    std::fs::create_dir_all(&extra).unwrap();
    for i in 0..3 {
        let data = crate::sets::noise(30 * 1024 * 1024, 0x2545_f491_4f6c_dd1d + i);
        std::fs::write(extra.join(format!("video-{i}.bin")), data).unwrap();
    }
    let repo = t.repo_dir();
    let fs = Tmpfs::mount(&repo, 64 * 1024 * 1024);
    t.init().await;
    // Room for a few MiB, not for a pack.
    fs.resize(used_bytes(&repo) + 4 * 1024 * 1024);
    let out = t.run(&["backup"]).await;
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    the_error_line(&out, &repo);
    assert!(
        !stderr(&out).contains("disconnected channel"),
        "{}",
        stderr(&out)
    );
    assert_nothing_claimed(&t, "repository full while packs wait", &out);
    recovers_with_room_again(&t, &fs).await;
}
