//! Bad sets for tests: a good set read back from the repository, changed the way a bad disk, a
//! bad copy or a wrong key source would change it, and stored as a new complete set.

use crate::common::TestLab;
use octobackup_repo::{SetOptions, SourceItem};
use std::path::Path;

/// Reads the newest complete set back, lets `tamper` change its files, and stores the result as
/// a new complete set of the same instance (the newest, so `drill` picks it).
pub fn rewrite_latest_set(t: &TestLab, tamper: impl FnOnce(&Path)) {
    let repo = crate::sets::open_repo(t);
    let latest = repo
        .snapshots()
        .unwrap()
        .into_iter()
        .filter(|s| s.tags.iter().any(|t| t == "complete"))
        .max_by_key(|s| s.time)
        .expect("a complete set");
    let dir = t.dir.path().join("tamper");
    repo.restore(&latest.id, "/", &dir, &octobackup_repo::NoProgress)
        .unwrap();
    tamper(&dir);
    let mut items = Vec::new();
    for sub in ["octobackup", "database"] {
        for e in std::fs::read_dir(dir.join(sub)).unwrap() {
            let e = e.unwrap();
            items.push(SourceItem::Path {
                source: e.path(),
                target: format!("/{sub}/{}", e.file_name().to_string_lossy()),
            });
        }
    }
    for e in std::fs::read_dir(dir.join("folders")).unwrap() {
        let e = e.unwrap();
        items.push(SourceItem::Path {
            source: e.path(),
            target: format!("/folders/{}", e.file_name().to_string_lossy()),
        });
    }
    let instance = latest
        .tags
        .iter()
        .find(|t| t.starts_with("instance:"))
        .unwrap()
        .clone();
    repo.backup(
        items,
        &SetOptions {
            tags: vec![
                "octobackup".into(),
                "complete".into(),
                "set:20991231T000000Z-tamper".into(),
                instance,
            ],
            ..Default::default()
        },
        &octobackup_repo::NoProgress,
    )
    .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
