//! `check` against a damaged repository: the sets a damaged pack hits are named.

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_the_sets_a_damaged_pack_hits() {
    let t = TestLab::start().await;
    t.init().await;
    t.ok(&["backup"]).await;
    let set = t.sets().await[0]["set_id"].as_str().unwrap().to_string();
    let ok = t.ok(&["check", "--read-data"]).await;
    assert!(stdout(&ok).contains("repository OK"), "{}", stdout(&ok));

    // Flip bytes in the middle of the largest pack (file data, not trees).
    let mut packs = walk_files(&t.repo_dir().join("data"));
    packs.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
    let pack = packs.last().unwrap().clone();
    let mut bytes = std::fs::read(&pack).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 16] {
        *b ^= 0xff;
    }
    std::fs::write(&pack, &bytes).unwrap();

    let out = t.run(&["--json", "check", "--read-data"]).await;
    assert_eq!(out.status.code(), Some(8), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["ok"], false);
    let pack_name = pack.file_name().unwrap().to_str().unwrap();
    assert_eq!(r["damaged_packs"], serde_json::json!([pack_name]));
    let affected = r["affected_sets"].as_array().unwrap();
    assert_eq!(affected.len(), 1, "{r:#}");
    assert_eq!(affected[0]["set_id"], set.as_str());
    assert!(affected[0]["files_damaged"].as_u64().unwrap() >= 1);
    assert!(stderr(&out).contains(&set), "{}", stderr(&out));
    // One line per finding: no rustic backtraces on either stream.
    assert!(!stderr(&out).contains("Backtrace"), "{}", stderr(&out));
    assert!(
        r["errors"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| !e.as_str().unwrap().contains('\n'))
    );
    let human = t.run(&["check", "--read-data"]).await;
    assert_eq!(human.status.code(), Some(8));
    assert!(
        stdout(&human).contains(&format!("set {set}")),
        "{}",
        stdout(&human)
    );
    // Reading a subset: 0% reads nothing; the structure is intact.
    t.ok(&["check", "--read-data-subset", "0%"]).await;
    let bad = t.run(&["check", "--read-data-subset", "lots"]).await;
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("is not a subset to read"),
        "{}",
        stderr(&bad)
    );

    // Recovery as the report says: the damaged pack out, the index rebuilt, a new backup
    // (which stores that data again), the damaged set forgotten and pruned.
    t.fails(&["forget", "--set", &set], 2, "newest complete set")
        .await;
    let aside = t.dir.path().join("damaged-pack");
    std::fs::rename(&pack, &aside).unwrap();
    let rebuilt = t.restic(&["rebuild-index"]);
    assert!(rebuilt.status.success(), "{}", stderr(&rebuilt));
    t.ok(&["backup"]).await;
    let out = t
        .run(&[
            "forget",
            "--set",
            &set[..set.len() - 1],
            "--prune",
            "--instant",
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let sets = t.sets().await;
    assert_eq!(sets.len(), 1);
    assert_ne!(sets[0]["set_id"], set.as_str());
    t.ok(&["check", "--read-data"]).await;
    let restic_ok = t.restic(&["check", "--read-data"]);
    assert!(restic_ok.status.success(), "{}", stderr(&restic_ok));
}

/// A failure that no report carries: stdout is one JSON document naming its kind and exit code
/// (the README's table), stderr the same message, and nothing is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_repository_is_exit_5_and_json_names_the_kind() {
    let t = TestLab::start().await;
    let out = t.run(&["--json", "check"]).await;
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["ok"], false, "{r:#}");
    assert_eq!(r["kind"], "repository", "{r:#}");
    assert_eq!(r["exit_code"], 5, "{r:#}");
    let message = r["error"].as_str().unwrap();
    assert!(stderr(&out).contains(message), "{}", stderr(&out));
    assert!(!t.repo_dir().join("config").exists());
}
