//! Repository health: which snapshots damaged data hits, what dropping snapshots frees, keys.

use crate::common::*;
use octobackup_repo::{
    NoProgress, Password, ReadData, Repo, RepoError, SetOptions, SourceItem, Zeroizing,
};

fn mem(target: &str, bytes: Vec<u8>) -> SourceItem {
    SourceItem::Memory {
        target: target.into(),
        bytes: Zeroizing::new(bytes),
        mode: 0o644,
    }
}

fn tagged(tag: &str) -> SetOptions {
    SetOptions {
        tags: vec![tag.to_string()],
        ..SetOptions::default()
    }
}

#[test]
fn dropping_snapshots_frees_only_what_no_other_snapshot_uses() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path());
    let shared = noise(1_500_000, 1);
    let a = repo
        .backup(
            vec![
                mem("/database/a.bak", shared.clone()),
                mem("/database/only-a.bak", noise(800_000, 2)),
            ],
            &tagged("set:a"),
            &NoProgress,
        )
        .unwrap();
    let b = repo
        .backup(
            vec![mem("/database/a.bak", shared)],
            &tagged("set:b"),
            &NoProgress,
        )
        .unwrap();
    let est = repo
        .estimate_drop(std::slice::from_ref(&a.snapshot_id))
        .unwrap();
    // About 800 kB of incompressible data (plus its tree) is a's alone.
    assert!(
        (790_000..900_000).contains(&est.unique_bytes),
        "{}",
        est.unique_bytes
    );
    let est = repo
        .estimate_drop(std::slice::from_ref(&b.snapshot_id))
        .unwrap();
    assert!(est.unique_bytes < 10_000, "{}", est.unique_bytes);
    let both = repo
        .estimate_drop(&[a.snapshot_id.clone(), b.snapshot_id.clone()])
        .unwrap();
    assert!(both.unique_bytes > 2_300_000, "{}", both.unique_bytes);
}

#[test]
fn check_names_the_snapshots_and_files_a_damaged_pack_hits() {
    let dir = tempfile::tempdir().unwrap();
    let repo_dir = dir.path().join("repo");
    let repo = new_repo(dir.path());
    let a = repo
        .backup(
            vec![mem("/database/big.bak", noise(3_000_000, 7))],
            &tagged("set:a"),
            &NoProgress,
        )
        .unwrap();
    let b = repo
        .backup(
            vec![mem("/octobackup/small.json", b"{}".to_vec())],
            &tagged("set:b"),
            &NoProgress,
        )
        .unwrap();
    let report = repo.check_with(&ReadData::All).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert!(report.affected.is_empty());

    let mut packs: Vec<_> = walk(&repo_dir.join("data"));
    packs.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
    let pack = packs.last().unwrap();
    let mut bytes = std::fs::read(pack).unwrap();
    let mid = bytes.len() / 3;
    bytes[mid] ^= 0x55;
    std::fs::write(pack, &bytes).unwrap();

    // The structure is intact: only reading the data finds it.
    assert!(repo.check_with(&ReadData::None).unwrap().is_ok());
    let report = repo.check_with(&ReadData::All).unwrap();
    assert!(!report.is_ok());
    assert_eq!(
        report.damaged_packs,
        [pack.file_name().unwrap().to_str().unwrap()]
    );
    assert_eq!(report.affected.len(), 1, "{report:#?}");
    assert_eq!(report.affected[0].snapshot.id, a.snapshot_id);
    assert_eq!(report.affected[0].files, ["/database/big.bak"]);
    assert_ne!(report.affected[0].snapshot.id, b.snapshot_id);
    let e = repo
        .check_with(&ReadData::Subset("many".into()))
        .unwrap_err();
    assert!(matches!(e, RepoError::InvalidInput(_)), "{e}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn keys_can_be_added_listed_and_removed_but_never_the_last_or_current_one() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path());
    let keys = repo.keys().unwrap();
    assert_eq!(keys.len(), 1);
    assert!(keys[0].current);
    let e = repo.remove_key(&keys[0].id).unwrap_err();
    assert!(e.to_string().contains("last key"), "{e}");

    let second = Password::new("second password");
    let id = repo
        .add_key(&second, Some("dr".into()), Some("ops".into()))
        .unwrap();
    let keys = repo.keys().unwrap();
    assert_eq!(keys.len(), 2);
    let e = repo
        .remove_key(&keys.iter().find(|k| k.current).unwrap().id)
        .unwrap_err();
    assert!(e.to_string().contains("another key's password"), "{e}");

    let mut cfg = config(&dir.path().join("repo"));
    cfg.password = second;
    let other = Repo::open(&cfg).unwrap();
    let first_id = keys.iter().find(|k| k.id != id).unwrap().id.clone();
    other.remove_key(&first_id[..6]).unwrap();
    assert!(matches!(
        Repo::open(&config(&dir.path().join("repo"))),
        Err(RepoError::WrongPassword { .. })
    ));
    let left = other.keys().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].hostname.as_deref(), Some("dr"));
    assert!(left[0].current);
    assert!(repo.add_key(&Password::new(""), None, None).is_err());
}

#[test]
fn a_missing_pack_is_found_without_reading_data_and_mapped_to_its_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let repo_dir = dir.path().join("repo");
    let repo = new_repo(dir.path());
    let a = repo
        .backup(
            vec![mem("/database/big.bak", noise(2_000_000, 9))],
            &tagged("set:a"),
            &NoProgress,
        )
        .unwrap();
    let mut packs: Vec<_> = walk(&repo_dir.join("data"));
    packs.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
    std::fs::remove_file(packs.last().unwrap()).unwrap();
    let report = repo.check_with(&ReadData::None).unwrap();
    assert!(!report.is_ok());
    assert_eq!(report.affected.len(), 1, "{report:#?}");
    assert_eq!(report.affected[0].snapshot.id, a.snapshot_id);
    assert_eq!(report.affected[0].files, ["/database/big.bak"]);
}

#[test]
fn a_damaged_tree_is_reported_as_an_unreadable_folder_of_its_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let repo_dir = dir.path().join("repo");
    let repo = new_repo(dir.path());
    let a = repo
        .backup(
            vec![mem("/database/big.bak", noise(1_000_000, 3))],
            &tagged("set:a"),
            &NoProgress,
        )
        .unwrap();
    // Tree packs are the small ones: damage them all.
    for pack in walk(&repo_dir.join("data")) {
        let mut bytes = std::fs::read(&pack).unwrap();
        if bytes.len() > 100_000 {
            continue;
        }
        bytes[10] ^= 0x55;
        std::fs::write(&pack, &bytes).unwrap();
    }
    let report = repo.check_with(&ReadData::None).unwrap();
    assert!(!report.is_ok(), "{report:#?}");
    assert_eq!(report.affected.len(), 1, "{report:#?}");
    assert_eq!(report.affected[0].snapshot.id, a.snapshot_id);
    let folders = &report.affected[0].unreadable_folders;
    assert!(
        folders == &["/"] || folders == &["/database"],
        "{report:#?}"
    );
    assert!(!report.damaged_packs.is_empty(), "{report:#?}");
    assert!(
        report
            .errors
            .iter()
            .all(|e| !e.contains('\n') && !e.contains("Backtrace")),
        "{:?}",
        report.errors
    );
}
