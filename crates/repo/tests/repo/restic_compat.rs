//! The promise: stock restic lists, checks and restores what we write, byte for byte.

use std::fs;

use crate::common::*;
use octobackup_repo::{EntryKind, NoProgress, SetOptions};

#[test]
fn stock_restic_lists_checks_and_restores_a_set_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let inst = instance(dir.path(), 24 * 1024 * 1024 + 123);
    let repo = new_repo(dir.path());
    let repo_path = dir.path().join("repo");
    let tags = vec![
        "octobackup".to_string(),
        "set:20240601-0200".to_string(),
        "instance:OctopusServer".to_string(),
        "complete".to_string(),
    ];
    let opts = SetOptions {
        tags: tags.clone(),
        hostname: "octo-host".into(),
        ..SetOptions::default()
    };
    let summary = repo
        .backup(items(&inst, MANIFEST), &opts, &NoProgress)
        .unwrap();
    assert!(summary.unreadable.is_empty(), "{:?}", summary.unreadable);
    assert_eq!(summary.total_files, 40 + 6 + 1 + 2);

    // restic snapshots --json lists it with our tags, host and paths.
    let out = restic(&repo_path, &["snapshots", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1);
    let snap = &listed[0];
    assert_eq!(snap["id"], summary.snapshot_id);
    assert_eq!(snap["hostname"], "octo-host");
    let mut restic_tags: Vec<String> = snap["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    restic_tags.sort();
    let mut want_tags = tags.clone();
    want_tags.sort();
    assert_eq!(restic_tags, want_tags);
    let paths: Vec<&str> = snap["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "/database/OctopusDeploy.bak",
            "/folders/Packages",
            "/folders/TaskLogs",
            "/octobackup/manifest.json",
            "/octobackup/secrets/master-key"
        ]
    );

    // restic check --read-data finds nothing wrong.
    assert_restic_reads_every_pack(&repo_path);

    // restic restore gives everything back: folders with modes, mtimes and links, the big
    // file, and the memory items with their bytes and modes.
    let target = dir.path().join("restic-restore");
    restic_restore(&repo_path, &summary.snapshot_id, &target);
    assert_same_tree(&inst.packages, &target.join("folders/Packages"));
    assert_same_tree(&inst.task_logs, &target.join("folders/TaskLogs"));
    assert_eq!(
        fs::read(target.join("database/OctopusDeploy.bak")).unwrap(),
        fs::read(&inst.bak).unwrap()
    );
    let manifest = target.join("octobackup/manifest.json");
    let master_key = target.join("octobackup/secrets/master-key");
    assert_eq!(fs::read(&manifest).unwrap(), MANIFEST);
    assert_eq!(fs::read(&master_key).unwrap(), MASTER_KEY);
    #[cfg(unix)]
    {
        assert_eq!(mode(&fs::metadata(&manifest).unwrap()), 0o644);
        assert_eq!(mode(&fs::metadata(&master_key).unwrap()), 0o600);
        // The mapped folder keeps its own mode instead of a made-up 0755.
        assert_eq!(
            mode(&fs::metadata(target.join("folders/Packages")).unwrap()),
            0o750
        );
    }

    // Our own check agrees.
    let report = repo.check(true).unwrap();
    assert!(report.is_ok(), "{report:?}");
}

#[test]
fn files_folders_and_memory_items_read_back_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let inst = instance(dir.path(), 3 * 1024 * 1024);
    let repo = new_repo(dir.path());
    let summary = repo
        .backup(items(&inst, MANIFEST), &SetOptions::default(), &NoProgress)
        .unwrap();
    let id = &summary.snapshot_id;

    // read_file, by full id and by prefix.
    assert_eq!(
        *repo.read_file(id, "/octobackup/manifest.json").unwrap(),
        MANIFEST
    );
    assert_eq!(
        *repo
            .read_file(&id[..8], "/octobackup/secrets/master-key")
            .unwrap(),
        MASTER_KEY
    );

    // list_files of a subtree: every entry with its full snapshot path.
    let listed = repo.list_files(id, "/folders/Packages").unwrap();
    let paths: Vec<&str> = listed.iter().map(|e| e.path.as_str()).collect();
    assert!(
        paths.contains(&"/folders/Packages/feeds-builtin/Acme.Web/Acme.Web.1.0.1.nupkg"),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"/folders/Packages/empty-folder"),
        "{paths:?}"
    );
    let zip = listed
        .iter()
        .find(|e| e.path.ends_with("Acme.Api.2.0.0.zip"))
        .unwrap();
    assert_eq!(zip.kind, EntryKind::File);
    assert_eq!(zip.size, 40_000);
    #[cfg(unix)]
    {
        assert_eq!(zip.mode, Some(0o640));
        let link = listed
            .iter()
            .find(|e| e.path.ends_with("latest-web"))
            .unwrap();
        assert_eq!(link.kind, EntryKind::Symlink);
    }
    assert_eq!(listed.len(), crate::common::tree(&inst.packages).len());
    let one = repo.list_files(id, "/octobackup/manifest.json").unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].size, MANIFEST.len() as u64);
    let top: Vec<String> = repo
        .list_files(id, "/")
        .unwrap()
        .into_iter()
        .filter(|e| e.path.matches('/').count() == 1)
        .map(|e| e.path)
        .collect();
    assert_eq!(top, ["/database", "/folders", "/octobackup"]);

    // restore of a subtree into a new folder, and of one file to a chosen file name.
    let out = dir.path().join("restored-logs");
    let restored = repo
        .restore(id, "/folders/TaskLogs", &out, &NoProgress)
        .unwrap();
    assert_eq!(restored.files_restored, 40);
    assert_same_tree(&inst.task_logs, &out);
    let bak = dir.path().join("restore-here/Renamed.bak");
    repo.restore(id, "/database/OctopusDeploy.bak", &bak, &NoProgress)
        .unwrap();
    assert_eq!(fs::read(&bak).unwrap(), fs::read(&inst.bak).unwrap());

    // Restoring again over identical content rewrites nothing.
    let again = repo
        .restore(id, "/folders/TaskLogs", &out, &NoProgress)
        .unwrap();
    assert_eq!(again.files_restored, 0);
    assert_eq!(again.files_unchanged, 40);

    // Paths that are not there say so.
    let err = repo.read_file(id, "/octobackup/nope.json").unwrap_err();
    assert!(
        matches!(err, octobackup_repo::RepoError::PathNotFound { .. }),
        "{err:?}"
    );
    let err = repo.read_file(id, "/folders").unwrap_err();
    assert!(err.to_string().contains("not a file"), "{err}");
}

#[test]
fn tags_survive_restic_tag_and_the_rewritten_snapshot_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let inst = instance(dir.path(), 4096);
    let repo = new_repo(dir.path());
    let opts = SetOptions {
        tags: vec!["set:7".into(), "incomplete".into()],
        ..SetOptions::default()
    };
    let summary = repo
        .backup(items(&inst, MANIFEST), &opts, &NoProgress)
        .unwrap();
    restic(
        &dir.path().join("repo"),
        &[
            "tag",
            "--add",
            "verified",
            "--remove",
            "incomplete",
            &summary.snapshot_id,
        ],
    );
    let all = repo.snapshots().unwrap();
    assert_eq!(all.len(), 1);
    let rewritten = &all[0];
    assert_ne!(
        rewritten.id, summary.snapshot_id,
        "restic writes a new snapshot"
    );
    assert_eq!(rewritten.tags, ["set:7", "verified"]);
    assert_eq!(
        *repo
            .read_file(&rewritten.id, "/octobackup/manifest.json")
            .unwrap(),
        MANIFEST
    );
}
