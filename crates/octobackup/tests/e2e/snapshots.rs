//! `octobackup snapshots` and `show`: what a repository holds, read without changing it; a set
//! named by too short a prefix is refused, by `restore` above all.

use crate::common::*;
use crate::sets::{add_part, noon, open_repo};

fn common_prefix(a: &str, b: &str) -> String {
    a.chars()
        .zip(b.chars())
        .take_while(|(x, y)| x == y)
        .map(|(x, _)| x)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_lists_each_set_and_show_reads_its_manifest() {
    let mut t = TestLab::start().await;
    t.init().await;
    let out = t.ok(&["snapshots"]).await;
    assert!(stdout(&out).contains("0 set(s)"), "{}", stdout(&out));

    t.ok(&["backup"]).await;
    t.lab.churn(1).await.unwrap();
    t.ok(&["backup"]).await;
    // A run that never finished leaves a part: listed, as incomplete.
    add_part(
        &open_repo(&t),
        "20200101T000000Z-dead00",
        noon(2020, 1, 1),
        b"part",
    );

    let sets = t.sets().await;
    assert_eq!(sets.len(), 3, "{sets:?}");
    let ids: Vec<&str> = sets.iter().map(|s| s["set_id"].as_str().unwrap()).collect();
    let complete: Vec<bool> = sets
        .iter()
        .map(|s| s["complete"].as_bool().unwrap())
        .collect();
    assert_eq!(complete, [false, true, true], "oldest first: {sets:?}");
    for s in &sets[1..] {
        assert_eq!(s["instance"], "OctopusServer");
        assert_eq!(s["database"], t.lab.info().database.as_str());
        assert!(s["database_bytes"].as_u64().unwrap() > 0);
    }
    let out = t.ok(&["snapshots"]).await;
    let text = stdout(&out);
    assert!(text.contains("3 set(s)"), "{text}");
    assert!(text.contains("INCOMPLETE"), "{text}");
    assert!(text.contains(ids[1]) && text.contains(ids[2]), "{text}");
    let out = t.ok(&["snapshots", "--instance", "SomeOtherServer"]).await;
    assert!(stdout(&out).contains("0 set(s)"), "{}", stdout(&out));

    // show: by id, by "latest", by the snapshot id's start.
    let out = t.ok(&["show", ids[1]]).await;
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(manifest["set_id"], ids[1], "{manifest}");
    let manifest = t.json(&["show", "latest"]).await;
    assert_eq!(manifest["set_id"], ids[2], "{manifest}");
    let snapshot = sets[2]["snapshot_id"].as_str().unwrap();
    let out = t.ok(&["show", &snapshot[..8]]).await;
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(manifest["set_id"], ids[2], "{manifest}");

    // What cannot be shown says why.
    t.fails(&["show", "19990101"], 2, "no backup set matches")
        .await;
    let out = t.run(&["show", ids[0]]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("is incomplete"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_of_two_sets_is_refused_by_show_and_restore_and_nothing_changes() {
    let t = TestLab::start().await;
    t.init().await;
    t.ok(&["backup"]).await;
    t.ok(&["backup"]).await;
    let sets = t.sets().await;
    let (a, b) = (
        sets[0]["set_id"].as_str().unwrap(),
        sets[1]["set_id"].as_str().unwrap(),
    );
    // Set ids begin with the date and time: two of the same night share a prefix.
    let prefix = common_prefix(a, b);
    assert!(prefix.len() >= 8, "{a} {b}");

    let out = t.run(&["show", &prefix]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    for said in ["matches 2 sets", a, b] {
        assert!(stderr(&out).contains(said), "{said}: {}", stderr(&out));
    }
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));

    let events = t.events().len();
    let restore = [
        "restore",
        &prefix,
        "--database",
        "--database-name",
        "OctopusCopy",
    ];
    let out = t.run(&restore).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("matches 2 sets"), "{}", stderr(&out));
    assert!(
        maintenance_changes(&t.events()[events..]).is_empty(),
        "maintenance mode was touched"
    );
    assert_eq!(t.lab.sql().databases(), [t.lab.info().database.clone()]);
    let out = t.run(&[&["--json"][..], &restore].concat()).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["kind"], "usage", "{j}");

    // Enough of the id names one.
    let manifest = t.json(&["show", b]).await;
    assert_eq!(manifest["set_id"], b);
}
