//! A damaged repository (a lost pack file, a torn snapshot file, a damaged index, no key files):
//! every command says what is wrong in one line, with the fix, never with a panic or a backtrace,
//! ends with the documented exit code, and the sets the damage does not hit stay usable.

use crate::common::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Two sets of the lab's instance, the second after some churn: (lab, older set, newer set).
async fn lab_with_two_sets() -> (TestLab, serde_json::Value, serde_json::Value) {
    let mut t = TestLab::start().await;
    t.init().await;
    t.ok(&["backup"]).await;
    t.lab.churn(1).await.unwrap();
    t.ok(&["backup"]).await;
    let mut sets = t.sets().await;
    assert_eq!(sets.len(), 2, "{sets:#?}");
    sets.sort_by_key(|s| s["time"].as_str().unwrap().to_string());
    let newer = sets.pop().unwrap();
    let older = sets.pop().unwrap();
    (t, older, newer)
}

fn set_id(set: &serde_json::Value) -> String {
    set["set_id"].as_str().unwrap().to_string()
}

fn files_under(dir: &Path) -> BTreeSet<PathBuf> {
    walk_files(dir).into_iter().collect()
}

/// A failure as a user should see it: the one-line message on stderr, no panic, no backtrace.
fn assert_clean_failure(out: &std::process::Output, code: i32, wanted: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "{}{err}", stdout(out));
    for w in wanted {
        assert!(err.contains(w), "`{w}` not in: {err}");
    }
    for noise in ["panicked", "Backtrace", "RUST_BACKTRACE", "rustic_core"] {
        assert!(!err.contains(noise), "`{noise}` in: {err}");
    }
}

/// The older set still restores: a drill passes on it and its folders restore.
async fn assert_set_usable(t: &TestLab, set: &str) {
    t.ok(&["--json", "drill", set]).await;
    let to = t.dir.path().join(format!("restored-{set}"));
    t.ok(&[
        "restore",
        set,
        "--folders",
        "--folders-to",
        to.to_str().unwrap(),
    ])
    .await;
    assert!(!walk_files(&to).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_pack_file_names_the_set_and_the_way_back() {
    let mut t = TestLab::start().await;
    t.init().await;
    t.ok(&["backup"]).await;
    let packs_before = files_under(&t.repo_dir().join("data"));
    t.lab.churn(1).await.unwrap();
    t.ok(&["backup"]).await;
    let mut sets = t.sets().await;
    sets.sort_by_key(|s| s["time"].as_str().unwrap().to_string());
    let (older, newer) = (set_id(&sets[0]), set_id(&sets[1]));
    // The largest pack the second backup wrote holds its data, which the older set does not use.
    let mut new_packs: Vec<PathBuf> = files_under(&t.repo_dir().join("data"))
        .difference(&packs_before)
        .cloned()
        .collect();
    new_packs.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
    let pack = new_packs.pop().expect("the second backup wrote a pack");
    std::fs::remove_file(&pack).unwrap();

    let out = t.run(&["drill", &newer]).await;
    assert_clean_failure(&out, 8, &[&newer, "check", "forget --set"]);
    let out = t
        .run(&[
            "restore",
            &newer,
            "--database",
            "--database-name",
            "OctopusRestored",
        ])
        .await;
    assert_clean_failure(&out, 5, &[&newer, "check", "forget --set"]);
    assert!(
        !t.lab
            .sql()
            .databases()
            .iter()
            .any(|d| d == "OctopusRestored"),
        "a database was left from a set that cannot restore"
    );
    // Every pack of the second backup lost (its folder data and trees too): the folders
    // restore, where rustic's restorer runs, fails as cleanly.
    for pack in &new_packs {
        std::fs::remove_file(pack).unwrap();
    }
    let to = t.dir.path().join("folders-of-a-lost-set");
    let out = t
        .run(&[
            "restore",
            &newer,
            "--folders",
            "--folders-to",
            to.to_str().unwrap(),
        ])
        .await;
    assert_clean_failure(&out, 5, &[&newer, "check", "forget --set"]);
    assert_set_usable(&t, &older).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_snapshot_file_hides_only_its_own_set() {
    let (t, older, newer) = lab_with_two_sets().await;
    let snapshot_id = newer["snapshot_id"].as_str().unwrap().to_string();
    let file = t.repo_dir().join("snapshots").join(&snapshot_id);
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let short = &snapshot_id[..8];

    // Listing goes on without it, naming the file it skipped.
    let out = t.ok(&["--json", "snapshots"]).await;
    let sets: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        sets.iter().map(set_id).collect::<Vec<_>>(),
        [set_id(&older)]
    );
    let err = stderr(&out);
    assert!(err.contains(short) && err.contains("check"), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("Backtrace"),
        "{err}"
    );

    assert_set_usable(&t, &set_id(&older)).await;

    // `check` reports the damaged file and fails.
    let out = t.run(&["check"]).await;
    assert_clean_failure(&out, 8, &[short]);
    assert!(stdout(&out).contains(short), "{}", stdout(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_index_says_how_to_rebuild_it() {
    let (t, _older, newer) = lab_with_two_sets().await;
    let mut index = walk_files(&t.repo_dir().join("index"));
    index.sort();
    for file in &index {
        let bytes = std::fs::read(file).unwrap();
        std::fs::write(file, &bytes[..bytes.len() / 2]).unwrap();
    }

    let out = t.run(&["check"]).await;
    assert_clean_failure(&out, 8, &["index", "restic repair index"]);
    let out = t
        .run(&[
            "restore",
            &set_id(&newer),
            "--database",
            "--database-name",
            "OctopusRestored",
        ])
        .await;
    assert_clean_failure(&out, 5, &["index", "restic repair index"]);

    // The way back the message gives works.
    // (restic before 0.15 calls it `rebuild-index`, as the message says.)
    let mut repaired = t.restic(&["repair", "index"]);
    if !repaired.status.success() && stderr(&repaired).contains("unknown command") {
        repaired = t.restic(&["rebuild-index"]);
    }
    assert!(repaired.status.success(), "{}", stderr(&repaired));
    t.ok(&["check"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_without_key_files_is_not_a_wrong_password() {
    let t = TestLab::start().await;
    t.init().await;
    t.ok(&["backup"]).await;
    std::fs::remove_dir_all(t.repo_dir().join("keys")).unwrap();
    let out = t.run(&["snapshots"]).await;
    assert_clean_failure(&out, 5, &["no key files"]);
    assert!(!stderr(&out).contains("wrong password"), "{}", stderr(&out));
}
