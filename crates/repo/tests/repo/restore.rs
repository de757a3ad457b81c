//! Restores streamed to disk: existing files are checked chunk by chunk, replaced only when they
//! differ, other files in the destination are left alone, and a large file comes back whole.

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::*;
use octobackup_repo::{NoProgress, SetOptions, SourceItem};

#[test]
fn files_in_the_way_are_replaced_only_when_their_content_differs() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    write(&src.join("same.log"), b"the same bytes");
    write(&src.join("changed.log"), b"the stored bytes");
    write(&src.join("locked.log"), b"read-only, other content");
    write(
        &src.join("nested/deeper/big.bin"),
        &noise(20 * 1024 * 1024, 7),
    );
    let (repo, set) = repo_with_set(dir.path(), &src, "/folders/TaskLogs");

    let out = dir.path().join("out");
    write(&out.join("same.log"), b"the same bytes");
    // Same size, other content: only the chunk hashes can tell.
    write(&out.join("changed.log"), b"the other bytes!");
    write(&out.join("locked.log"), b"something else entirely, longer");
    #[cfg(unix)]
    chmod(&out.join("locked.log"), 0o444);
    write(
        &out.join("nested/deeper/big.bin"),
        b"a short file in the way",
    );
    write(&out.join("not-in-the-set.txt"), b"kept");

    let summary = repo
        .restore(&set.snapshot_id, "/folders/TaskLogs", &out, &NoProgress)
        .unwrap();
    assert_eq!(summary.files_unchanged, 1, "{summary:?}");
    assert_eq!(summary.files_restored, 3, "{summary:?}");
    assert_eq!(
        fs::read(out.join("changed.log")).unwrap(),
        b"the stored bytes"
    );
    assert_eq!(
        fs::read(out.join("nested/deeper/big.bin")).unwrap(),
        noise(20 * 1024 * 1024, 7)
    );
    assert_eq!(fs::read(out.join("not-in-the-set.txt")).unwrap(), b"kept");
    fs::remove_file(out.join("not-in-the-set.txt")).unwrap();
    assert_same_tree(&src, &out);
}

#[test]
fn a_file_restores_to_a_new_name_or_into_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let bak = dir.path().join("OctopusDeploy.bak");
    write(&bak, &noise(3 * 1024 * 1024, 3));
    let (repo, set) = repo_with_set(dir.path(), &bak, "/database/OctopusDeploy.bak");
    let renamed = dir.path().join("a/b/Other.bak");
    repo.restore(
        &set.snapshot_id,
        "/database/OctopusDeploy.bak",
        &renamed,
        &NoProgress,
    )
    .unwrap();
    assert_eq!(fs::read(&renamed).unwrap(), fs::read(&bak).unwrap());
    let folder = dir.path().join("folder");
    fs::create_dir(&folder).unwrap();
    repo.restore(
        &set.snapshot_id,
        "/database/OctopusDeploy.bak",
        &folder,
        &NoProgress,
    )
    .unwrap();
    assert_eq!(
        fs::read(folder.join("OctopusDeploy.bak")).unwrap(),
        fs::read(&bak).unwrap()
    );
}

/// A gate that says stop ends a restore at its next write: an error that says so, and no file
/// begun after the stop.
#[test]
fn a_gate_that_says_stop_ends_the_restore_at_its_next_write() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    write(&src.join("database.bak"), &noise(8 * 1024 * 1024, 3));
    write(&src.join("later.bak"), &noise(1024 * 1024, 4));
    let (repo, set) = repo_with_set(dir.path(), &src, "/database");
    // Stop once the first write went through.
    let written = AtomicU64::new(0);
    let gate = |bytes: u64| written.fetch_add(bytes, Ordering::SeqCst) == 0;
    let out = dir.path().join("out");
    let err = repo
        .restore_gated(&set.snapshot_id, "/database", &out, &NoProgress, &gate)
        .unwrap_err();
    assert!(err.to_string().contains("stopped on request"), "{err}");
    let copied: u64 = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(
        copied < 9 * 1024 * 1024,
        "{copied} bytes written after the stop"
    );
    // Without a stop, the same restore is whole.
    repo.restore_gated(&set.snapshot_id, "/database", &out, &NoProgress, &|_| true)
        .unwrap();
    assert_same_tree(&src, &out);
}

/// A fresh restore of many small files, large files of many blobs, an empty file, a read-only
/// file, odd modes and a link gives back the source exactly: bytes, modes, times, links. The
/// restore writes on several threads at once and reads large files ahead: nothing may land in
/// the wrong file or out of order.
#[test]
fn a_fresh_restore_equals_the_source_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    for i in 0..400u64 {
        let text = format!("task {i} log line\n").repeat((i as usize * 13) % 900 + 1);
        write(
            &src.join(format!("TaskLogs/{:02}/ServerTasks-{i}.log.txt", i % 7)),
            text.as_bytes(),
        );
    }
    for i in 0..3u64 {
        write(
            &src.join(format!("Packages/Acme.{i}.nupkg")),
            &noise(6 * 1024 * 1024 + i as usize * 4099, 10 + i),
        );
    }
    write(&src.join("Packages/empty.txt"), b"");
    write(&src.join("Packages/read-only.txt"), b"kept read-only");
    #[cfg(unix)]
    {
        chmod(&src.join("Packages/read-only.txt"), 0o444);
        chmod(&src.join("Packages/Acme.1.nupkg"), 0o600);
        chmod(&src.join("TaskLogs/03"), 0o700);
        std::os::unix::fs::symlink("Acme.2.nupkg", src.join("Packages/latest")).unwrap();
    }
    let (repo, set) = repo_with_set(dir.path(), &src, "/folders/All");
    let out = dir.path().join("out");
    let summary = repo
        .restore(&set.snapshot_id, "/folders/All", &out, &NoProgress)
        .unwrap();
    assert_eq!(summary.files_restored, 405, "{summary:?}");
    assert_eq!(summary.files_unchanged, 0, "{summary:?}");
    assert!(summary.warnings.is_empty(), "{summary:?}");
    assert_same_tree(&src, &out);

    // Again over itself: every file is found whole and left alone, and the tree is unchanged.
    let again = repo
        .restore(&set.snapshot_id, "/folders/All", &out, &NoProgress)
        .unwrap();
    assert_eq!(again.files_unchanged, 405, "{again:?}");
    assert_eq!(again.files_restored, 0, "{again:?}");
    assert_same_tree(&src, &out);
}

/// A stop asked between files begins no further file, with many writers running at once.
#[test]
fn a_stop_between_small_files_begins_no_further_file() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    for i in 0..300 {
        write(
            &src.join(format!("ServerTasks-{i}.log.txt")),
            format!("log {i}\n").as_bytes(),
        );
    }
    let (repo, set) = repo_with_set(dir.path(), &src, "/folders/TaskLogs");
    // Each file is begun with a question of 0 bytes: say stop after the twentieth.
    let begun = AtomicU64::new(0);
    let gate = |bytes: u64| bytes > 0 || begun.fetch_add(1, Ordering::SeqCst) < 20;
    let out = dir.path().join("out");
    let err = repo
        .restore_gated(
            &set.snapshot_id,
            "/folders/TaskLogs",
            &out,
            &NoProgress,
            &gate,
        )
        .unwrap_err();
    assert!(err.to_string().contains("stopped on request"), "{err}");
    let files = fs::read_dir(&out).unwrap().count();
    assert!(files <= 20, "{files} files begun after the stop");
}

/// A large file restores in memory bounded by a few blobs, not by its size: a child process
/// (this test binary, running only `restore_child`) restores a 256 MiB file and reports its
/// peak resident set (`VmHWM`: its own, unlike `wait4`'s, which keeps the parent's peak from
/// before `exec`), which must stay under 112 MiB.
#[cfg(target_os = "linux")]
#[test]
fn a_large_file_restores_in_bounded_memory() {
    use std::io::Write as _;
    const SIZE_MIB: u64 = 256;
    let dir = tempfile::tempdir().unwrap();
    let bak = dir.path().join("OctopusDeploy.bak");
    // Written a MiB at a time: the test's own memory stays small too.
    let mut f = fs::File::create(&bak).unwrap();
    for i in 0..SIZE_MIB {
        f.write_all(&noise(1024 * 1024, 100 + i)).unwrap();
    }
    drop(f);
    let (repo, set) = repo_with_set(dir.path(), &bak, "/database/OctopusDeploy.bak");
    drop(repo);
    let out = dir.path().join("restored.bak");
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "restore::restore_child",
            "--ignored",
            "--test-threads=1",
            "--nocapture",
        ])
        .env("RESTORE_CHILD_REPO", dir.path().join("repo"))
        .env("RESTORE_CHILD_SNAPSHOT", &set.snapshot_id)
        .env("RESTORE_CHILD_OUT", &out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&child.stdout);
    assert!(
        child.status.success(),
        "the child restore failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&child.stderr)
    );
    let peak_kib: u64 = stdout
        .split("peak_kib=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no peak reported:\n{stdout}"));
    println!("restoring {SIZE_MIB} MiB peaked at {} MiB", peak_kib / 1024);
    // Measured 73-97 MiB across runs on the 2-core machine (the readers' timing decides how
    // many packs are in flight); rustic's own restorer held about half the file (128 MiB here)
    // on top of the process's own ~50 MiB, so the bound still tells the two apart.
    assert!(
        peak_kib < 112 * 1024,
        "restoring {SIZE_MIB} MiB peaked at {} MiB",
        peak_kib / 1024
    );
    let restored = fs::File::open(&out).unwrap();
    assert_eq!(restored.metadata().unwrap().len(), SIZE_MIB * 1024 * 1024);
    // Byte for byte, a MiB at a time.
    let mut restored = std::io::BufReader::new(restored);
    for i in 0..SIZE_MIB {
        let mut buf = vec![0; 1024 * 1024];
        std::io::Read::read_exact(&mut restored, &mut buf).unwrap();
        assert!(buf == noise(1024 * 1024, 100 + i), "MiB {i} differs");
    }
}

/// The restore `a_large_file_restores_in_bounded_memory` measures, alone in a process of its
/// own; prints its peak resident set.
#[cfg(target_os = "linux")]
#[test]
#[ignore = "run by a_large_file_restores_in_bounded_memory"]
fn restore_child() {
    let var = |k| std::env::var_os(k).expect("run by a_large_file_restores_in_bounded_memory");
    let repo =
        octobackup_repo::Repo::open(&config(std::path::Path::new(&var("RESTORE_CHILD_REPO"))))
            .unwrap();
    let snapshot = var("RESTORE_CHILD_SNAPSHOT").into_string().unwrap();
    // Opening derives the key from the password (scrypt: over 100 MiB for a moment), which is
    // not the restore's: start the peak afresh ("5" resets VmHWM, proc(5)).
    fs::write("/proc/self/clear_refs", "5").unwrap();
    repo.restore(
        &snapshot,
        "/database/OctopusDeploy.bak",
        std::path::Path::new(&var("RESTORE_CHILD_OUT")),
        &NoProgress,
    )
    .unwrap();
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let peak = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .to_string();
    println!("peak_kib={peak}");
}

/// Several parts of a set in one restore (`restore_parts`, as `restore-set` and the folders of
/// a restore use it): each part lands in its own place with its own summary, and blobs shared
/// between files and parts (equal task logs, a block repeated inside a file and in the .bak) are
/// written everywhere they belong.
#[test]
fn several_parts_restore_in_one_pass_with_shared_and_repeated_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let folders = dir.path().join("folders");
    for i in 0..60u64 {
        // Every third log is the same text: one blob for twenty files.
        let text = if i % 3 == 0 {
            "the same log line\n".repeat(40)
        } else {
            format!("log {i}\n").repeat(i as usize + 1)
        };
        write(
            &folders.join(format!("TaskLogs/{:02}/ServerTasks-{i}.log.txt", i % 4)),
            text.as_bytes(),
        );
    }
    let block = noise(3 * 1024 * 1024, 21);
    write(&folders.join("Packages/repeated.nupkg"), &block.repeat(4));
    let bak = dir.path().join("OctopusDeploy.bak");
    let mut bak_bytes = noise(1024 * 1024 + 17, 22);
    bak_bytes.extend_from_slice(&block.repeat(3));
    write(&bak, &bak_bytes);
    let repo = new_repo(dir.path());
    let set = repo
        .backup(
            vec![
                SourceItem::Path {
                    source: folders.clone(),
                    target: "/folders".into(),
                },
                SourceItem::Path {
                    source: bak.clone(),
                    target: "/database/OctopusDeploy.bak".into(),
                },
            ],
            &SetOptions::default(),
            &NoProgress,
        )
        .unwrap();

    let out = dir.path().join("out");
    let (out_folders, out_bak) = (out.join("folders"), out.join("db/Restored.bak"));
    let parts = [
        ("/folders", out_folders.as_path()),
        ("/database/OctopusDeploy.bak", out_bak.as_path()),
    ];
    let summaries = repo
        .restore_parts(&set.snapshot_id, &parts, &NoProgress, &|_| true)
        .unwrap();
    assert_eq!(summaries.len(), 2);
    assert_eq!(summaries[0].files_restored, 61, "{summaries:?}");
    assert_eq!(summaries[1].files_restored, 1, "{summaries:?}");
    assert_eq!(summaries[1].bytes_restored, bak_bytes.len() as u64);
    assert_same_tree(&folders, &out_folders);
    assert!(fs::read(&out_bak).unwrap() == bak_bytes, "the .bak differs");

    // Again over itself: everything is found whole and left alone.
    let again = repo
        .restore_parts(&set.snapshot_id, &parts, &NoProgress, &|_| true)
        .unwrap();
    assert_eq!(again[0].files_unchanged, 61, "{again:?}");
    assert_eq!(again[1].files_unchanged, 1, "{again:?}");
    assert_eq!(again[0].files_restored + again[1].files_restored, 0);
    assert_same_tree(&folders, &out_folders);
}

/// A restore plans a batch of files at a time (bounded memory for millions of task logs): with
/// batches of 7 files, a tree of folders, files sharing blobs across batches (equal logs), a
/// file of many blobs and a link all come back as one restore of them all would give them,
/// and a second restore finds every file whole.
#[test]
fn a_restore_in_small_batches_equals_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    for i in 0..100u64 {
        let text = if i % 5 == 0 {
            "the same log line\n".repeat(30)
        } else {
            format!("log {i}\n").repeat(i as usize + 1)
        };
        write(
            &src.join(format!("TaskLogs/{:02}/ServerTasks-{i}.log.txt", i % 6)),
            text.as_bytes(),
        );
    }
    write(
        &src.join("Packages/Acme.nupkg"),
        &noise(5 * 1024 * 1024, 31),
    );
    write(&src.join("Packages/empty.txt"), b"");
    #[cfg(unix)]
    std::os::unix::fs::symlink("Acme.nupkg", src.join("Packages/latest")).unwrap();
    let repo = new_repo(dir.path());
    let set = repo
        .backup(
            vec![SourceItem::Path {
                source: src.clone(),
                target: "/folders".into(),
            }],
            &SetOptions::default(),
            &NoProgress,
        )
        .unwrap();
    repo.set_restore_batch(7);
    let out = dir.path().join("out");
    let summary = repo
        .restore(&set.snapshot_id, "/folders", &out, &NoProgress)
        .unwrap();
    assert_eq!(summary.files_restored, 102, "{summary:?}");
    assert_eq!(summary.bytes_restored, tree_bytes(&src), "{summary:?}");
    assert!(summary.warnings.is_empty(), "{summary:?}");
    assert_same_tree(&src, &out);
    // Again over itself, watched: the bar is given the whole set's bytes up front (the listing
    // walked once more for them) and advances by as much.
    let progress = RecordedProgress::default();
    let again = repo
        .restore(&set.snapshot_id, "/folders", &out, &progress)
        .unwrap();
    assert_eq!(again.files_unchanged, 102, "{again:?}");
    assert_eq!(again.files_restored, 0, "{again:?}");
    assert_same_tree(&src, &out);
    let events = progress.take();
    assert_eq!(
        events.first(),
        Some(&Event::Start("restore".into(), Some(tree_bytes(&src)))),
        "{events:?}"
    );
    let advanced: u64 = events
        .iter()
        .map(|e| match e {
            Event::Advance(n) => *n,
            _ => 0,
        })
        .sum();
    assert_eq!(advanced, tree_bytes(&src));
}

fn tree_bytes(root: &std::path::Path) -> u64 {
    let mut total = 0;
    for entry in fs::read_dir(root).unwrap() {
        let entry = entry.unwrap();
        let meta = fs::symlink_metadata(entry.path()).unwrap();
        if meta.is_dir() {
            total += tree_bytes(&entry.path());
        } else if meta.is_file() {
            total += meta.len();
        }
    }
    total
}

/// The index a restore reads is kept for the next read of the same repository, but a set
/// stored since (by another handle: another process) is found: the kept index is only used
/// while the repository's index files are the same ones.
#[test]
fn a_kept_index_sees_sets_stored_since() {
    let dir = tempfile::tempdir().unwrap();
    let reader = new_repo(dir.path());
    let writer = octobackup_repo::Repo::open(&config(&dir.path().join("repo"))).unwrap();
    let store = |text: &[u8]| {
        writer
            .backup(
                vec![SourceItem::Memory {
                    target: "/octobackup/manifest.json".into(),
                    bytes: text.to_vec().into(),
                    mode: 0o600,
                }],
                &SetOptions::default(),
                &NoProgress,
            )
            .unwrap()
    };
    let first = store(b"{\"night\": 1}");
    assert_eq!(
        *reader
            .read_file(&first.snapshot_id, "/octobackup/manifest.json")
            .unwrap(),
        b"{\"night\": 1}"
    );
    let second = store(b"{\"night\": 2, \"new\": \"blob\"}");
    assert_eq!(
        *reader
            .read_file(&second.snapshot_id, "/octobackup/manifest.json")
            .unwrap(),
        b"{\"night\": 2, \"new\": \"blob\"}"
    );
    // And the kept one still reads the first.
    assert_eq!(
        *reader
            .read_file(&first.snapshot_id, "/octobackup/manifest.json")
            .unwrap(),
        b"{\"night\": 1}"
    );
}

/// Each blob is checked (its MAC) where it was read before a byte of it is written: a damaged
/// data pack fails the restore with the repository named as the cause, and the damaged chunk's
/// bytes are not written in place of the file's.
#[test]
fn a_damaged_data_pack_fails_the_restore_and_writes_none_of_its_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let original = noise(3 * 1024 * 1024, 21);
    write(&src.join("Database/OctopusDeploy.bak"), &original);
    let (repo, set) = repo_with_set(dir.path(), &src, "/folders/All");
    let pack = largest_data_pack(&dir.path().join("repo"));
    let mut bytes = fs::read(&pack).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    fs::write(&pack, &bytes).unwrap();

    let out = dir.path().join("out");
    let e = repo
        .restore(&set.snapshot_id, "/folders/All", &out, &NoProgress)
        .unwrap_err();
    assert!(
        e.to_string().contains("cannot read from the repository"),
        "{e}"
    );
    // What was written before the failure is the file's own data, never decrypted garbage.
    let restored = fs::read(out.join("Database/OctopusDeploy.bak")).unwrap_or_default();
    assert!(restored.len() <= original.len());
    let wrong = restored
        .iter()
        .zip(&original)
        .filter(|(r, o)| r != o && **r != 0)
        .count();
    assert_eq!(wrong, 0, "bytes that are neither the file's nor unwritten");
}

#[test]
fn a_data_pack_cut_short_fails_the_restore() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    write(
        &src.join("Database/OctopusDeploy.bak"),
        &noise(3 * 1024 * 1024, 22),
    );
    let (repo, set) = repo_with_set(dir.path(), &src, "/folders/All");
    // Half of the file's data is lost (a copy cut short).
    let pack = largest_data_pack(&dir.path().join("repo"));
    let len = fs::metadata(&pack).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&pack)
        .unwrap()
        .set_len(len / 2)
        .unwrap();

    let e = repo
        .restore(
            &set.snapshot_id,
            "/folders/All",
            &dir.path().join("out"),
            &NoProgress,
        )
        .unwrap_err();
    assert!(
        e.to_string().contains("cannot read from the repository"),
        "{e}"
    );
}

/// The largest pack under `repo/data`: in a set of one large file, the one that holds its data
/// (the others hold its trees).
fn largest_data_pack(repo: &Path) -> PathBuf {
    let mut packs = Vec::new();
    let mut stack = vec![repo.join("data")];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                packs.push(e.path());
            }
        }
    }
    packs.sort_by_key(|p| fs::metadata(p).unwrap().len());
    packs.pop().unwrap()
}
