//! Creating and opening repositories, and the errors a user meets there.

use crate::common::*;
use octobackup_repo::{Password, Repo, RepoConfig, RepoError};

#[test]
fn init_creates_a_repository_restic_can_open_and_refuses_to_overwrite_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    let repo = Repo::init(&config(&path)).unwrap();
    assert!(repo.snapshots().unwrap().is_empty());
    // Stock restic opens it with the same password.
    let out = restic(&path, &["cat", "config"]);
    let cfg: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cfg["version"], 2);
    // Its key costs N=2^16, r=8, p=2 (`KEY_COST`: two lanes, derived on two cores), and so
    // does a key added later; restic derives the same key from them (it opened the first).
    assert_eq!(key_costs(&path), vec![(1 << 16, 8, 2)]);
    repo.add_key(&Password::new("second password"), None, None)
        .unwrap();
    assert_eq!(key_costs(&path), vec![(1 << 16, 8, 2); 2]);
    let second = RepoConfig {
        password: Password::new("second password"),
        ..config(&path)
    };
    Repo::open(&second).unwrap();

    let err = Repo::init(&config(&path)).unwrap_err();
    assert!(matches!(err, RepoError::AlreadyExists { .. }), "{err:?}");
    Repo::open(&config(&path)).unwrap();
}

/// The scrypt cost (N, r, p) of each key file of the repository at `repo`.
fn key_costs(repo: &std::path::Path) -> Vec<(u64, u64, u64)> {
    std::fs::read_dir(repo.join("keys"))
        .unwrap()
        .map(|e| {
            let key: serde_json::Value =
                serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap();
            let n = |f: &str| key[f].as_u64().unwrap_or_else(|| panic!("{f} in {key}"));
            (n("N"), n("r"), n("p"))
        })
        .collect()
}

#[test]
fn a_test_repositorys_cheap_key_opens_for_the_repository_and_stock_restic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    Repo::init_for_tests(&config(&path)).unwrap();
    assert_eq!(key_costs(&path), vec![(1 << 10, 8, 1)]);
    assert!(
        Repo::open(&config(&path))
            .unwrap()
            .snapshots()
            .unwrap()
            .is_empty()
    );
    let out = restic(&path, &["cat", "config"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_missing_repository_is_not_found_and_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nothing-here");
    let err = Repo::open(&config(&path)).unwrap_err();
    assert!(matches!(err, RepoError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("nothing-here"), "{err}");
    assert!(!path.exists());
}

#[test]
fn a_wrong_password_is_named_without_showing_either_password() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    Repo::init(&config(&path)).unwrap();
    let wrong = RepoConfig {
        password: Password::new("Tr0ub4dor&3"),
        ..config(&path)
    };
    let err = Repo::open(&wrong).unwrap_err();
    assert!(matches!(err, RepoError::WrongPassword { .. }), "{err:?}");
    let text = format!("{err} {err:?} {wrong:?}");
    assert!(text.contains("wrong password"), "{text}");
    assert!(!text.contains("Tr0ub4dor&3"), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");
}

#[test]
fn a_repository_made_by_restic_can_be_used() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("restic-made");
    restic(&path, &["init", "--repository-version", "2"]);
    let inst = instance(dir.path(), 4096);
    let repo = Repo::open(&config(&path)).unwrap();
    let summary = repo
        .backup(
            items(&inst, MANIFEST),
            &Default::default(),
            &octobackup_repo::NoProgress,
        )
        .unwrap();
    assert_eq!(
        *repo
            .read_file(&summary.snapshot_id, "/octobackup/manifest.json")
            .unwrap(),
        MANIFEST
    );
    let out = restic(&path, &["check", "--read-data"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("no errors were found"));
}

/// Opened in the background: the caller gets the `Repo` at once, the first use waits for the
/// key, and a wrong password or a missing repository is the same typed error `open` gives,
/// from `ready` and from every later call, none storing anything.
#[test]
fn a_repository_opened_in_the_background_says_at_first_use_what_open_says() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    Repo::init_for_tests(&config(&path)).unwrap();
    let inst = instance(dir.path(), 4096);

    let repo = Repo::open_deferred(&config(&path)).unwrap();
    repo.backup(
        items(&inst, MANIFEST),
        &Default::default(),
        &octobackup_repo::NoProgress,
    )
    .unwrap();
    repo.ready().unwrap();
    assert_eq!(repo.snapshots().unwrap().len(), 1);
    assert_eq!(
        repo.keys().unwrap().iter().filter(|k| k.current).count(),
        1,
        "the key the password opened is known once the search is over"
    );
    // A twin made before the key is found shares the search.
    let twin = Repo::open_deferred(&config(&path)).unwrap().twin();
    assert_eq!(twin.snapshots().unwrap().len(), 1);

    let wrong = RepoConfig {
        password: Password::new("Tr0ub4dor&3"),
        ..config(&path)
    };
    let repo = Repo::open_deferred(&wrong).unwrap();
    let err = repo.ready().unwrap_err();
    assert!(matches!(err, RepoError::WrongPassword { .. }), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(!text.contains("Tr0ub4dor&3"), "{text}");
    let again = repo.snapshots().unwrap_err().to_string();
    assert!(again.contains("wrong password"), "{again}");
    assert!(
        repo.backup(
            items(&inst, MANIFEST),
            &Default::default(),
            &octobackup_repo::NoProgress
        )
        .is_err()
    );
    assert_eq!(
        Repo::open(&config(&path))
            .unwrap()
            .snapshots()
            .unwrap()
            .len(),
        1
    );

    let missing = Repo::open_deferred(&config(&dir.path().join("nothing-here"))).unwrap();
    let err = missing.ready().unwrap_err();
    assert!(matches!(err, RepoError::NotFound { .. }), "{err:?}");
    assert!(!dir.path().join("nothing-here").exists());
}
