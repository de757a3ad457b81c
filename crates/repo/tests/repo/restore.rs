//! Restores streamed to disk: existing files are checked chunk by chunk, replaced only when they
//! differ, other files in the destination are left alone, and a large file comes back whole.

use std::fs;

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
    let repo = new_repo(dir.path());
    let set = repo
        .backup(
            vec![SourceItem::Path {
                source: src.clone(),
                target: "/folders/TaskLogs".into(),
            }],
            &SetOptions::default(),
            &NoProgress,
        )
        .unwrap();

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
    let repo = new_repo(dir.path());
    let set = repo
        .backup(
            vec![SourceItem::Path {
                source: bak.clone(),
                target: "/database/OctopusDeploy.bak".into(),
            }],
            &SetOptions::default(),
            &NoProgress,
        )
        .unwrap();
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
    let repo = new_repo(dir.path());
    let set = repo
        .backup(
            vec![SourceItem::Path {
                source: src.clone(),
                target: "/database".into(),
            }],
            &SetOptions::default(),
            &NoProgress,
        )
        .unwrap();
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
