//! Backup runs: incremental parents, unreadable files, progress, refused inputs, deletion.

use std::fs;

use crate::common::*;
use octobackup_repo::{NoProgress, RepoError, SetOptions, SourceItem, Zeroizing};

fn tagged(tags: &[&str], parent_tags: &[&str]) -> SetOptions {
    SetOptions {
        tags: tags.iter().map(ToString::to_string).collect(),
        parent_tags: parent_tags.iter().map(ToString::to_string).collect(),
        ..SetOptions::default()
    }
}

#[test]
fn a_second_run_with_parent_tags_reads_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let inst = instance(dir.path(), 2 * 1024 * 1024);
    let repo = new_repo(dir.path());
    let first = repo
        .backup(
            items(&inst, MANIFEST),
            &tagged(&["instance:A", "set:1"], &[]),
            &NoProgress,
        )
        .unwrap();
    assert_eq!(first.files_unmodified, 0);

    // Another instance's set must not be taken as the parent.
    let other = dir.path().join("other");
    write(&other.join("x.txt"), b"other instance");
    repo.backup(
        vec![SourceItem::Path {
            source: other,
            target: "/folders/Packages".into(),
        }],
        &tagged(&["instance:B", "set:2"], &[]),
        &NoProgress,
    )
    .unwrap();

    // One log grows; the manifest changes but keeps its size (and cannot be taken from the
    // parent by size and time).
    let log = inst.task_logs.join("ServerTasks-3.log.txt");
    let mut grown = fs::read(&log).unwrap();
    grown.extend_from_slice(b"one more line\n");
    write(&log, &grown);
    let manifest2: Vec<u8> = MANIFEST
        .iter()
        .map(|b| if *b == b'1' { b'2' } else { *b })
        .collect();
    assert_eq!(manifest2.len(), MANIFEST.len());
    assert_ne!(manifest2, MANIFEST);

    let second = repo
        .backup(
            items(&inst, &manifest2),
            &tagged(&["instance:A", "set:3"], &["instance:A"]),
            &NoProgress,
        )
        .unwrap();
    let real_files = first.total_files - 2;
    assert_eq!(second.total_files, first.total_files);
    assert_eq!(second.files_unmodified, real_files - 1, "{second:?}");
    assert_eq!(
        second.files_changed,
        1 + 2,
        "the log and both memory items: {second:?}"
    );
    assert_eq!(second.files_new, 0, "{second:?}");
    assert!(second.data_added < 100_000, "{second:?}");

    let parent = repo.find_snapshot(&second.snapshot_id).unwrap().parent;
    assert_eq!(parent.as_deref(), Some(first.snapshot_id.as_str()));
    assert_eq!(
        *repo
            .read_file(&second.snapshot_id, "/octobackup/manifest.json")
            .unwrap(),
        manifest2[..]
    );
    assert_eq!(
        *repo
            .read_file(&first.snapshot_id, "/octobackup/manifest.json")
            .unwrap(),
        MANIFEST
    );
    let out = dir.path().join("logs-again");
    repo.restore(&second.snapshot_id, "/folders/TaskLogs", &out, &NoProgress)
        .unwrap();
    assert_same_tree(&inst.task_logs, &out);
}

/// A file the kernel refuses to read even to root: write-only sysfs attributes.
#[cfg(target_os = "linux")]
fn unreadable_for_root() -> std::path::PathBuf {
    let known = std::path::PathBuf::from("/sys/bus/pci/rescan");
    assert!(
        known.exists(),
        "this test needs a file root cannot read; {} is missing here",
        known.display()
    );
    assert!(
        fs::read(&known).is_err(),
        "{} is readable here",
        known.display()
    );
    known
}

#[cfg(target_os = "linux")]
#[test]
fn an_unreadable_file_is_reported_and_the_set_stays_valid() {
    let dir = tempfile::tempdir().unwrap();
    let inst = instance(dir.path(), 64 * 1024);
    let repo = new_repo(dir.path());
    let mut sources = items(&inst, MANIFEST);
    sources.push(SourceItem::Path {
        source: unreadable_for_root(),
        target: "/folders/Broken/rescan".into(),
    });
    let summary = repo
        .backup(sources, &SetOptions::default(), &NoProgress)
        .unwrap();
    assert_eq!(summary.unreadable.len(), 1, "{:?}", summary.unreadable);
    let (path, reason) = &summary.unreadable[0];
    assert_eq!(path, "/folders/Broken/rescan");
    assert!(reason.contains("/sys/bus/pci/rescan"), "{reason}");
    assert!(reason.contains("ermission denied"), "{reason}");

    // The rest is there and restic is happy with the repository.
    let listed = repo.list_files(&summary.snapshot_id, "/").unwrap();
    assert!(
        !listed.iter().any(|e| e.path == "/folders/Broken/rescan"),
        "{listed:?}"
    );
    assert!(listed.iter().any(|e| e.path == "/octobackup/manifest.json"));
    let out = restic(&dir.path().join("repo"), &["check", "--read-data"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("no errors were found"));
}

#[test]
fn backup_progress_runs_from_zero_to_the_announced_total() {
    let dir = tempfile::tempdir().unwrap();
    let inst = instance(dir.path(), 5 * 1024 * 1024);
    let repo = new_repo(dir.path());
    let progress = RecordedProgress::default();
    let summary = repo
        .backup(items(&inst, MANIFEST), &SetOptions::default(), &progress)
        .unwrap();
    let events = progress.take();
    let Some(Event::Start(what, Some(total))) = events.first().cloned() else {
        panic!("no start with a total: {events:?}");
    };
    assert_eq!(what, "backup");
    assert_eq!(total, summary.total_bytes);
    let advanced: u64 = events
        .iter()
        .map(|e| if let Event::Advance(n) = e { *n } else { 0 })
        .sum();
    assert_eq!(advanced, total);
    assert_eq!(events.last(), Some(&Event::Finish));
    assert_eq!(events.iter().filter(|e| **e == Event::Finish).count(), 1);

    let out = dir.path().join("bak");
    repo.restore(&summary.snapshot_id, "/database", &out, &progress)
        .unwrap();
    let events = progress.take();
    assert_eq!(
        events.first(),
        Some(&Event::Start("restore".into(), Some(5 * 1024 * 1024)))
    );
    let advanced: u64 = events
        .iter()
        .map(|e| if let Event::Advance(n) = e { *n } else { 0 })
        .sum();
    assert_eq!(advanced, 5 * 1024 * 1024);
    assert_eq!(events.last(), Some(&Event::Finish));
}

#[test]
fn bad_sets_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let inst = instance(dir.path(), 1024);
    let repo = new_repo(dir.path());
    let nested = vec![
        SourceItem::Path {
            source: inst.packages.clone(),
            target: "/folders".into(),
        },
        SourceItem::Memory {
            target: "/folders/manifest.json".into(),
            bytes: Zeroizing::new(b"{}".to_vec()),
            mode: 0o644,
        },
    ];
    let err = repo
        .backup(nested, &SetOptions::default(), &NoProgress)
        .unwrap_err();
    assert!(matches!(err, RepoError::InvalidInput(_)), "{err:?}");
    assert!(err.to_string().contains("overlap"), "{err}");

    let missing = vec![SourceItem::Path {
        source: dir.path().join("no-such-folder"),
        target: "/folders/Packages".into(),
    }];
    let err = repo
        .backup(missing, &SetOptions::default(), &NoProgress)
        .unwrap_err();
    assert!(matches!(err, RepoError::Unreadable { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such-folder"), "{err}");

    let err = repo
        .backup(items(&inst, MANIFEST), &tagged(&["a,b"], &[]), &NoProgress)
        .unwrap_err();
    assert!(matches!(err, RepoError::InvalidInput(_)), "{err:?}");

    let relative = vec![SourceItem::Memory {
        target: "octobackup/manifest.json".into(),
        bytes: Zeroizing::new(b"{}".to_vec()),
        mode: 0o644,
    }];
    assert!(
        repo.backup(relative, &SetOptions::default(), &NoProgress)
            .is_err()
    );

    assert!(repo.snapshots().unwrap().is_empty());
}

#[test]
fn snapshots_can_be_found_deleted_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let inst = instance(dir.path(), 1024);
    let repo = new_repo(dir.path());
    let time = chrono::Local::now() - chrono::Duration::days(3);
    let first = repo
        .backup(
            items(&inst, MANIFEST),
            &SetOptions {
                tags: vec!["set:1".into()],
                hostname: "node-a".into(),
                time: Some(time),
                ..SetOptions::default()
            },
            &NoProgress,
        )
        .unwrap();
    let second = repo
        .backup(
            items(&inst, MANIFEST),
            &tagged(&["set:2"], &[]),
            &NoProgress,
        )
        .unwrap();

    let all = repo.snapshots().unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].id, first.snapshot_id, "oldest first");
    assert_eq!(all[0].time, time);
    assert_eq!(all[0].hostname, "node-a");
    assert_eq!(all[0].tags, ["set:1"]);
    assert_eq!(
        all[0].summary.as_ref().unwrap().total_files,
        first.total_files
    );
    assert_eq!(repo.find_snapshot("latest").unwrap().id, second.snapshot_id);
    assert_eq!(
        repo.find_snapshot(&first.snapshot_id[..6]).unwrap().id,
        first.snapshot_id
    );
    assert!(matches!(
        repo.find_snapshot("zz"),
        Err(RepoError::InvalidInput(_))
    ));

    // An unknown id deletes nothing.
    let err = repo
        .delete_snapshots(&[first.snapshot_id.clone(), "0000000".into()])
        .unwrap_err();
    assert!(matches!(err, RepoError::SnapshotNotFound { .. }), "{err:?}");
    assert_eq!(repo.snapshots().unwrap().len(), 2);

    repo.delete_snapshots(std::slice::from_ref(&first.snapshot_id))
        .unwrap();
    let left = repo.snapshots().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, second.snapshot_id);
    let err = repo.find_snapshot(&first.snapshot_id).unwrap_err();
    assert!(matches!(err, RepoError::SnapshotNotFound { .. }), "{err:?}");
    let out = restic(&dir.path().join("repo"), &["snapshots", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);

    let report = repo.check(false).unwrap();
    assert!(report.is_ok(), "{report:?}");
}

#[test]
fn compression_can_be_chosen_per_set_and_restic_still_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let inst = instance(dir.path(), 1024);
    // Highly compressible: with compression off, the packed size is at least the data size.
    let text = dir.path().join("text");
    write(
        &text.join("a.log"),
        "the same line again\n".repeat(50_000).as_bytes(),
    );
    let repo = new_repo(dir.path());
    let source = || {
        vec![SourceItem::Path {
            source: text.clone(),
            target: "/folders/TaskLogs".into(),
        }]
    };
    let zstd = repo
        .backup(source(), &SetOptions::default(), &NoProgress)
        .unwrap();
    assert!(zstd.data_added_packed * 10 < zstd.data_added, "{zstd:?}");

    let repo2 = octobackup_repo::Repo::init(&config(&dir.path().join("repo2"))).unwrap();
    let off = SetOptions {
        compression: Some(0),
        ..SetOptions::default()
    };
    let plain = repo2.backup(source(), &off, &NoProgress).unwrap();
    assert!(plain.data_added_packed >= plain.data_added, "{plain:?}");
    let err = repo2
        .backup(
            items(&inst, MANIFEST),
            &SetOptions {
                compression: Some(99),
                ..SetOptions::default()
            },
            &NoProgress,
        )
        .unwrap_err();
    assert!(matches!(err, RepoError::InvalidInput(_)), "{err:?}");
    let out = restic(&dir.path().join("repo2"), &["check", "--read-data"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("no errors were found"));
}

/// Bytes of all pack files in a local repository.
fn pack_bytes(repo: &std::path::Path) -> u64 {
    fn walk(dir: &std::path::Path) -> u64 {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| {
                if p.is_dir() {
                    walk(&p)
                } else {
                    fs::metadata(&p).unwrap().len()
                }
            })
            .sum()
    }
    walk(&repo.join("data"))
}

#[test]
fn prune_frees_what_deleted_snapshots_alone_used() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path());
    let repo_path = dir.path().join("repo");
    let old = dir.path().join("old");
    let kept = dir.path().join("kept");
    write(&old.join("old.bin"), &noise(3_000_000, 11));
    write(&kept.join("kept.bin"), &noise(1_000_000, 12));
    let backup = |source: &std::path::Path| backup_path(&repo, source, "/folders/Packages");
    let first = backup(&old);
    let second = backup(&kept);
    let before = pack_bytes(&repo_path);
    repo.delete_snapshots(&[first.snapshot_id]).unwrap();

    let summary = repo.prune(true, &NoProgress).unwrap();
    assert!(summary.bytes_freed >= 3_000_000, "{summary:?}");
    assert!(summary.packs_removed >= 1, "{summary:?}");
    let after = pack_bytes(&repo_path);
    assert!(after + 2_900_000 < before, "{before} -> {after}");

    let out = restic(&repo_path, &["check", "--read-data"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("no errors were found"));
    let listed = repo
        .list_files(&second.snapshot_id, "/folders/Packages/kept.bin")
        .unwrap();
    assert_eq!(listed[0].size, 1_000_000);
    let restored = dir.path().join("restored");
    repo.restore(
        &second.snapshot_id,
        "/folders/Packages",
        &restored,
        &NoProgress,
    )
    .unwrap();
    assert_same_tree(&kept, &restored);
}

/// With an Object Lock's retention, packs younger than it plus a day are left whole, and the
/// summary says so: none counted removed, the young unused ones counted kept. Without it the
/// same packs go.
#[test]
fn prune_keeping_young_packs_counts_what_it_really_removes() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path());
    let repo_path = dir.path().join("repo");
    let old = dir.path().join("old");
    let kept = dir.path().join("kept");
    write(&old.join("old.bin"), &noise(3_000_000, 21));
    write(&kept.join("kept.bin"), &noise(1_000_000, 22));
    let backup = |source: &std::path::Path| backup_path(&repo, source, "/folders/Packages");
    let first = backup(&old);
    backup(&kept);
    repo.delete_snapshots(&[first.snapshot_id]).unwrap();
    let before = pack_bytes(&repo_path);

    let locked = repo.prune_keeping(true, Some(3), &NoProgress).unwrap();
    assert_eq!(locked.packs_removed, 0, "{locked:?}");
    assert_eq!(locked.packs_repacked, 0, "{locked:?}");
    assert!(locked.packs_kept_locked >= 1, "{locked:?}");
    assert_eq!(pack_bytes(&repo_path), before, "a young pack was removed");

    let unlocked = repo.prune(true, &NoProgress).unwrap();
    assert_eq!(unlocked.packs_kept_locked, 0, "{unlocked:?}");
    assert!(
        unlocked.packs_removed >= locked.packs_kept_locked,
        "{locked:?} then {unlocked:?}"
    );
    assert!(pack_bytes(&repo_path) + 2_900_000 < before);
}

/// A handle keeps the index between its calls and reads only the index files added since
/// (rustic_core change 12). What another call wrote, a twin's included, is known to the next
/// one; an index rewritten by another process (a prune) is read again whole, so a blob the
/// prune removed is stored again, not taken as present.
#[test]
fn the_index_kept_between_calls_follows_what_others_write_and_remove() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path());
    let repo_path = dir.path().join("repo");
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    write(&a.join("a.bin"), &noise(2_000_000, 21));
    write(&b.join("b.bin"), &noise(2_000_000, 22));
    let first = backup_path(&repo, &a, "/folders/Packages");
    assert!(first.data_added >= 2_000_000, "{first:?}");
    // The twin's call reads the index files the first call wrote, plus nothing else.
    let twin = repo.twin();
    let second = backup_path(&twin, &b, "/folders/Artifacts");
    assert!(second.data_added >= 2_000_000, "{second:?}");

    // Both read again without a parent: everything is found in the index, nothing stored.
    let both = repo
        .backup(
            vec![
                SourceItem::Path {
                    source: a.clone(),
                    target: "/folders/Packages".into(),
                },
                SourceItem::Path {
                    source: b.clone(),
                    target: "/folders/Artifacts".into(),
                },
            ],
            &SetOptions::default(),
            &NoProgress,
        )
        .unwrap();
    assert_eq!(both.files_new, 2, "{both:?}");
    assert!(
        both.data_added < 10_000,
        "the twin's blobs were stored again: {both:?}"
    );

    // Another process deletes every snapshot holding a.bin and prunes: its blobs and the
    // index files that listed them are gone.
    let other = octobackup_repo::Repo::open(&config(&repo_path)).unwrap();
    other
        .delete_snapshots(&[first.snapshot_id, both.snapshot_id])
        .unwrap();
    other.prune(true, &NoProgress).unwrap();

    // This handle's kept index still lists a.bin's blobs; it must read the index again and
    // store them.
    let again = backup_path(&repo, &a, "/folders/Packages");
    assert!(
        again.data_added >= 2_000_000,
        "a.bin's pruned blobs taken as present: {again:?}"
    );
    assert_restic_reads_every_pack(&repo_path);
    let restored = dir.path().join("restored");
    restic_restore(&repo_path, &again.snapshot_id, &restored);
    assert_eq!(
        fs::read(restored.join("folders/Packages/a.bin")).unwrap(),
        noise(2_000_000, 21)
    );
}

/// Bytes of `files` the page cache holds (util-linux `fincore`, on every Linux).
#[cfg(target_os = "linux")]
fn cached_bytes(files: &[std::path::PathBuf]) -> u64 {
    let out = std::process::Command::new("fincore")
        .args(["--bytes", "--noheadings", "--raw", "--output", "RES"])
        .args(files)
        .output()
        .expect("fincore (util-linux) is needed: apt-get install util-linux");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse::<u64>().unwrap())
        .sum()
}

/// A backup writes data packs it does not read again: written to a local folder, they leave
/// the page cache once on disk (a nightly's packs must not push the server's files out), while
/// the tree packs the same run reads back stay.
#[cfg(target_os = "linux")]
#[test]
fn data_packs_written_to_a_local_folder_do_not_stay_in_the_page_cache() {
    // Under the build's own folder, on disk: on a tmpfs (some machines' /tmp) the page cache
    // is where the files live, and nothing can drop them.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let repo = new_repo(dir.path());
    let source = dir.path().join("Packages/Octo.Web.1.0.0.zip");
    write(&source, &noise(24 << 20, 7));
    let summary = backup_path(&repo, &source, "/folders/Packages/Octo.Web.1.0.0.zip");
    assert!(summary.data_added_packed > 20 << 20);

    let packs: Vec<_> = fs::read_dir(dir.path().join("repo/data"))
        .unwrap()
        .flat_map(|sub| fs::read_dir(sub.unwrap().path()).unwrap())
        .map(|pack| pack.unwrap().path())
        .collect();
    let on_disk: u64 = packs.iter().map(|p| fs::metadata(p).unwrap().len()).sum();
    assert!(on_disk > 20 << 20, "{on_disk}");
    let cached = cached_bytes(&packs);
    // The small tree pack stays; 24 MiB of data packs do not.
    assert!(
        cached < 4 << 20,
        "{cached} of {on_disk} bytes of packs still in the page cache"
    );
}

/// The pass before the window walks the folders while the repository's key is derived: what a
/// walk started ahead found is stored as a backup that walked then would store it (the next
/// night finds every file unchanged), stock restic restores it, and the refusals come before
/// anything is written.
#[test]
fn sources_walked_ahead_are_stored_as_the_walk_found_them() {
    let dir = tempfile::tempdir().unwrap();
    let inst = instance(dir.path(), 1024 * 1024);
    let repo = new_repo(dir.path());

    let walked = octobackup_repo::WalkedAhead::start(items(&inst, MANIFEST)).unwrap();
    let first = repo
        .backup_walked(walked, &tagged(&["instance:A", "set:1"], &[]), &NoProgress)
        .unwrap();
    assert!(first.unreadable.is_empty(), "{:?}", first.unreadable);
    assert_eq!(first.files_unmodified, 0);
    assert!(first.total_files > 40, "{}", first.total_files);

    let second = repo
        .backup(
            items(&inst, MANIFEST),
            &tagged(&["instance:A", "set:2"], &["instance:A"]),
            &NoProgress,
        )
        .unwrap();
    assert_eq!(second.total_files, first.total_files);
    assert_eq!(
        second.files_new + second.files_changed,
        2,
        "only the two in-memory files"
    );
    // Only the trees above the in-memory files (stamped with the time of each run).
    assert!(second.data_added < 4096, "{}", second.data_added);

    let restored = dir.path().join("restored");
    restic_restore(&dir.path().join("repo"), &first.snapshot_id, &restored);
    assert_same_tree(&inst.packages, &restored.join("folders/Packages"));
    assert_same_tree(&inst.task_logs, &restored.join("folders/TaskLogs"));
    assert_eq!(
        fs::read(restored.join("database/OctopusDeploy.bak")).unwrap(),
        fs::read(&inst.bak).unwrap()
    );

    // Refused: a chunk memory (the walk already chose how each file is opened); a source
    // that is not there, at the start of the walk.
    let before = repo.snapshots().unwrap().len();
    let walked = octobackup_repo::WalkedAhead::start(items(&inst, MANIFEST)).unwrap();
    let with_memory = SetOptions {
        chunk_memory: Some(dir.path().join("chunks")),
        ..tagged(&["instance:A", "set:3"], &[])
    };
    let err = repo
        .backup_walked(walked, &with_memory, &NoProgress)
        .unwrap_err();
    assert!(matches!(err, RepoError::InvalidInput(_)), "{err:?}");
    let missing = octobackup_repo::WalkedAhead::start(vec![SourceItem::Path {
        source: dir.path().join("no such folder"),
        target: "/folders/Artifacts".into(),
    }]);
    assert!(
        matches!(missing, Err(RepoError::Unreadable { .. })),
        "{:?}",
        missing.err()
    );
    assert_eq!(repo.snapshots().unwrap().len(), before);
    assert!(!dir.path().join("chunks").exists());
}

/// Every blob of an index of thousands is found by its id (rustic_core change 20 searches an
/// id's prefix, not the whole index): the same files stored again under another name add no
/// data, and the set restores byte for byte, each blob looked up in the index.
#[test]
fn every_blob_of_a_large_index_is_found_by_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("TaskLogs");
    for i in 0..3000u64 {
        write(
            &logs.join(format!("ServerTasks-{i}.log.txt")),
            &noise(300 + (i as usize % 700), i + 1),
        );
    }
    let (repo, first) = repo_with_set(dir.path(), &logs, "/folders/TaskLogs");
    assert_eq!(first.files_new, 3000);
    let again = backup_path(&repo, &logs, "/folders/TaskLogs-again");
    assert_eq!(again.files_new, 3000);
    // Only the trees above the folder are new (its own tree is the first set's).
    assert!(
        again.data_added < 1000,
        "{} bytes added: a blob in the index was not found",
        again.data_added
    );

    let out = dir.path().join("restored");
    repo.restore(
        &again.snapshot_id,
        "/folders/TaskLogs-again",
        &out,
        &NoProgress,
    )
    .unwrap();
    assert_same_tree(&logs, &out);
    assert_restic_reads_every_pack(&dir.path().join("repo"));
}
