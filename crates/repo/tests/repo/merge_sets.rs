//! A set stored in parts (folders before the maintenance window, database after) becomes one
//! snapshot that restic restores whole.

use std::fs;

use crate::common::*;
use octobackup_repo::{NoProgress, RepoError, SetOptions};

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
