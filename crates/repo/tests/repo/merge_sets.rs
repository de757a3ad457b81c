//! A set stored in parts (folders before the maintenance window, database after) becomes one
//! snapshot that restic restores whole.

use std::fs;
use std::path::Path;

use crate::common::*;
use octobackup_repo::{NoProgress, RepoError, SetOptions, SourceItem};

/// Stock restic reads the whole repository without an error and restores the set's folders
/// as they are in the instance.
fn restic_checks_and_restores_the_folders(repo_path: &Path, snapshot_id: &str, inst: &Instance) {
    let out = restic(repo_path, &["check", "--read-data"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("no errors were found"));
    let target = repo_path.with_file_name("restored");
    restic(
        repo_path,
        &["restore", snapshot_id, "--target", target.to_str().unwrap()],
    );
    assert_same_tree(&inst.packages, &target.join("folders/Packages"));
    assert_same_tree(&inst.task_logs, &target.join("folders/TaskLogs"));
}

#[test]
fn parts_merge_into_one_snapshot_that_restic_restores_whole() {
    let dir = tempfile::tempdir().unwrap();
    let inst = instance(dir.path(), 1024 * 1024);
    let repo = new_repo(dir.path());
    let mut all = items(&inst, MANIFEST);
    let rest = all.split_off(2);
    let part = |tags: &[&str]| SetOptions {
        tags: tags.iter().map(ToString::to_string).collect(),
        hostname: "octo-host".into(),
        ..SetOptions::default()
    };
    let folders = repo
        .backup(all, &part(&["set:9", "part"]), &NoProgress)
        .unwrap();
    let database = repo
        .backup(rest, &part(&["set:9", "part"]), &NoProgress)
        .unwrap();

    let started = chrono::Local::now() - chrono::Duration::minutes(30);
    let sealed = SetOptions {
        time: Some(started),
        ..part(&["set:9", "complete"])
    };
    let parts = vec![folders.snapshot_id.clone(), database.snapshot_id.clone()];
    let merged = repo.merge_snapshots(&parts, &sealed).unwrap();
    assert_eq!(merged.tags, ["complete", "set:9"]);
    assert_eq!(merged.time, started);
    assert_eq!(merged.hostname, "octo-host");
    assert_eq!(merged.paths.len(), 5);
    let figures = merged.summary.as_ref().unwrap();
    assert_eq!(
        figures.total_files,
        folders.total_files + database.total_files
    );
    assert_eq!(figures.files_new, folders.files_new + database.files_new);
    assert_eq!(figures.data_added, folders.data_added + database.data_added);

    repo.delete_snapshots(&parts).unwrap();
    let left = repo.snapshots().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, merged.id);

    let repo_path = dir.path().join("repo");
    let out = restic(&repo_path, &["check", "--read-data"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("no errors were found"));
    let target = dir.path().join("restored");
    restic(
        &repo_path,
        &["restore", &merged.id, "--target", target.to_str().unwrap()],
    );
    assert_same_tree(&inst.packages, &target.join("folders/Packages"));
    assert_same_tree(&inst.task_logs, &target.join("folders/TaskLogs"));
    assert_eq!(
        fs::read(target.join("database/OctopusDeploy.bak")).unwrap(),
        fs::read(&inst.bak).unwrap()
    );
    assert_eq!(
        fs::read(target.join("octobackup/manifest.json")).unwrap(),
        MANIFEST
    );
    assert_eq!(
        fs::read(target.join("octobackup/secrets/master-key")).unwrap(),
        MASTER_KEY
    );
}

#[test]
fn overlapping_parts_are_not_merged() {
    let dir = tempfile::tempdir().unwrap();
    let inst = instance(dir.path(), 1024);
    let repo = new_repo(dir.path());
    let a = repo
        .backup(items(&inst, MANIFEST), &SetOptions::default(), &NoProgress)
        .unwrap();
    let b = repo
        .backup(items(&inst, MANIFEST), &SetOptions::default(), &NoProgress)
        .unwrap();
    let err = repo
        .merge_snapshots(&[a.snapshot_id, b.snapshot_id], &SetOptions::default())
        .unwrap_err();
    assert!(matches!(err, RepoError::InvalidInput(_)), "{err:?}");
    assert_eq!(repo.snapshots().unwrap().len(), 2);
}

/// The folders as a maintenance window had them: the pass before it, less what the window did
/// not keep, plus what it copied. Kept files are not read again, and restic restores the result
/// as the live folders are.
#[test]
fn an_overlay_is_the_base_with_the_windows_changes_and_restic_restores_it() {
    use std::collections::HashSet;
    use std::path::Path;

    let dir = tempfile::tempdir().unwrap();
    let inst = instance(dir.path(), 1024);
    let repo = new_repo(dir.path());
    let folders = |inst: &Instance| {
        vec![
            SourceItem::Path {
                source: inst.packages.clone(),
                target: "/folders/Packages".into(),
            },
            SourceItem::Path {
                source: inst.task_logs.clone(),
                target: "/folders/TaskLogs".into(),
            },
        ]
    };
    let opts = SetOptions {
        tags: vec!["set:1".into(), "part".into()],
        ..SetOptions::default()
    };
    let base = repo.backup(folders(&inst), &opts, &NoProgress).unwrap();

    // Inside the window: a log appended, a package added, a package folder and a log removed.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let appended = inst.task_logs.join("ServerTasks-3.log.txt");
    let mut text = fs::read(&appended).unwrap();
    text.extend_from_slice(b"appended inside the window\n");
    fs::write(&appended, &text).unwrap();
    let added = inst
        .packages
        .join("feeds-builtin/Acme.Web/Acme.Web.1.0.2.nupkg");
    write(&added, &noise(70_000, 9));
    fs::remove_dir_all(inst.packages.join("feeds-builtin/Acme.Api")).unwrap();
    fs::remove_file(inst.task_logs.join("ServerTasks-5.log.txt")).unwrap();

    // What the window copied (with the live files' times and modes), and the folders it changed.
    let copies = dir.path().join("window");
    let copy = |live: &Path, rel: &str| {
        let to = copies.join(rel);
        write(&to, &fs::read(live).unwrap());
        let meta = fs::metadata(live).unwrap();
        fs::File::options()
            .write(true)
            .open(&to)
            .unwrap()
            .set_modified(meta.modified().unwrap())
            .unwrap();
        fs::set_permissions(&to, meta.permissions()).unwrap();
    };
    copy(&appended, "TaskLogs/ServerTasks-3.log.txt");
    copy(
        &added,
        "Packages/feeds-builtin/Acme.Web/Acme.Web.1.0.2.nupkg",
    );
    for rel in ["Packages", "Packages/feeds-builtin", "TaskLogs"] {
        let live = fs::metadata(dir.path().join("src").join(rel)).unwrap();
        fs::set_permissions(copies.join(rel), live.permissions()).unwrap();
    }
    let changed: HashSet<&str> = [
        "/folders/TaskLogs",
        "/folders/TaskLogs/ServerTasks-3.log.txt",
        "/folders/Packages/feeds-builtin",
        "/folders/Packages/feeds-builtin/Acme.Web",
        "/folders/Packages/feeds-builtin/Acme.Web/Acme.Web.1.0.2.nupkg",
    ]
    .into();
    let mut keep: HashSet<String> = ["/folders".to_string()].into();
    for (name, root) in [("Packages", &inst.packages), ("TaskLogs", &inst.task_logs)] {
        keep.insert(format!("/folders/{name}"));
        for rel in tree(root).keys() {
            let p = format!(
                "/folders/{name}/{}",
                rel.to_string_lossy().replace('\\', "/")
            );
            keep.insert(p);
        }
    }
    keep.retain(|p| !changed.contains(p.as_str()));

    let changes = vec![
        SourceItem::Path {
            source: copies.join("Packages"),
            target: "/folders/Packages".into(),
        },
        SourceItem::Path {
            source: copies.join("TaskLogs"),
            target: "/folders/TaskLogs".into(),
        },
    ];
    let o = repo
        .overlay(
            &base.snapshot_id,
            &keep,
            changes.clone(),
            &opts,
            &NoProgress,
        )
        .unwrap();
    assert!(o.unreadable.is_empty(), "{:?}", o.unreadable);
    // Only the two copies were read.
    assert_eq!(o.files_new + o.files_changed, 2, "{o:?}");

    let repo_path = dir.path().join("repo");
    restic_checks_and_restores_the_folders(&repo_path, &o.snapshot_id, &inst);

    // A path to keep that the base lacks is refused before anything is written.
    let before = repo.snapshots().unwrap().len();
    keep.insert("/folders/Packages/never-stored.nupkg".into());
    let err = repo
        .overlay(&base.snapshot_id, &keep, changes, &opts, &NoProgress)
        .unwrap_err();
    assert!(err.to_string().contains("never-stored.nupkg"), "{err}");
    assert_eq!(repo.snapshots().unwrap().len(), before);
}

/// The subtree id of `path` (names below the root) in snapshot `id`, read with stock restic.
fn subtree_with_restic(repo: &std::path::Path, id: &str, path: &[&str]) -> String {
    let snap: serde_json::Value =
        serde_json::from_slice(&restic(repo, &["cat", "snapshot", id]).stdout).unwrap();
    let mut tree = snap["tree"].as_str().unwrap().to_string();
    for name in path {
        let t: serde_json::Value =
            serde_json::from_slice(&restic(repo, &["cat", "blob", &tree]).stdout).unwrap();
        let node = t["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == *name)
            .unwrap_or_else(|| panic!("no {name} in {t}"));
        tree = node["subtree"].as_str().unwrap().to_string();
    }
    tree
}

/// After a night where one log changed, the overlay shares every unchanged folder's tree with
/// the pass before the window (same tree ids: nothing below them was rewritten), gives the
/// folders along the changed path new trees, and restic restores the result byte for byte.
#[test]
fn an_overlay_after_a_one_file_change_shares_the_unchanged_subtrees() {
    use std::collections::HashSet;

    let dir = tempfile::tempdir().unwrap();
    let inst = instance(dir.path(), 1024);
    let repo = new_repo(dir.path());
    let folders = vec![
        SourceItem::Path {
            source: inst.packages.clone(),
            target: "/folders/Packages".into(),
        },
        SourceItem::Path {
            source: inst.task_logs.clone(),
            target: "/folders/TaskLogs".into(),
        },
    ];
    let opts = SetOptions {
        tags: vec!["set:2".into(), "part".into()],
        ..SetOptions::default()
    };
    let base = repo.backup(folders, &opts, &NoProgress).unwrap();

    // Inside the window one log grew; its copy keeps the live file's time and mode.
    let log = inst.task_logs.join("ServerTasks-7.log.txt");
    let mut text = fs::read(&log).unwrap();
    text.extend_from_slice(b"one more line inside the window\n");
    fs::write(&log, &text).unwrap();
    let copies = dir.path().join("window");
    let copy = copies.join("TaskLogs/ServerTasks-7.log.txt");
    write(&copy, &text);
    fs::File::options()
        .write(true)
        .open(&copy)
        .unwrap()
        .set_modified(fs::metadata(&log).unwrap().modified().unwrap())
        .unwrap();
    fs::set_permissions(&copy, fs::metadata(&log).unwrap().permissions()).unwrap();
    fs::create_dir_all(copies.join("Packages")).unwrap();

    // Everything else is kept, the folders above the log too (appending leaves them as they were).
    let mut keep: HashSet<String> = ["/folders".to_string()].into();
    for (name, root) in [("Packages", &inst.packages), ("TaskLogs", &inst.task_logs)] {
        keep.insert(format!("/folders/{name}"));
        for rel in tree(root).keys() {
            keep.insert(format!(
                "/folders/{name}/{}",
                rel.to_string_lossy().replace('\\', "/")
            ));
        }
    }
    keep.remove("/folders/TaskLogs/ServerTasks-7.log.txt");
    let changes = vec![
        SourceItem::Path {
            source: copies.join("Packages"),
            target: "/folders/Packages".into(),
        },
        SourceItem::Path {
            source: copies.join("TaskLogs"),
            target: "/folders/TaskLogs".into(),
        },
    ];
    let o = repo
        .overlay(&base.snapshot_id, &keep, changes, &opts, &NoProgress)
        .unwrap();
    assert!(o.unreadable.is_empty(), "{:?}", o.unreadable);
    assert_eq!((o.files_new, o.files_changed), (0, 1), "{o:?}");
    assert_eq!(o.total_files, base.total_files, "{o:?}");
    assert_eq!(o.files_unmodified, base.total_files - 1, "{o:?}");
    assert_eq!(
        o.total_bytes,
        base.total_bytes + b"one more line inside the window\n".len() as u64
    );

    let repo_path = dir.path().join("repo");
    let sub = |id: &str, path: &[&str]| subtree_with_restic(&repo_path, id, path);
    for unchanged in [
        &["folders", "Packages"][..],
        &["folders", "Packages", "feeds-builtin"],
        &["folders", "Packages", "feeds-builtin", "Acme.Web"],
        &["folders", "Packages", "empty-folder"],
    ] {
        assert_eq!(
            sub(&base.snapshot_id, unchanged),
            sub(&o.snapshot_id, unchanged),
            "{unchanged:?} should be the base's own tree"
        );
    }
    for changed in [&["folders"][..], &["folders", "TaskLogs"]] {
        assert_ne!(
            sub(&base.snapshot_id, changed),
            sub(&o.snapshot_id, changed),
            "{changed:?} holds the changed log"
        );
    }

    restic_checks_and_restores_the_folders(&repo_path, &o.snapshot_id, &inst);
    // The copies' own snapshot was only a step: the base and the overlay are left.
    assert_eq!(repo.snapshots().unwrap().len(), 2);
}
