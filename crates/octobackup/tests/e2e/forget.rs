//! `forget` and `prune` against the lab: whole sets by a retention policy, incomplete sets first,
//! never a running backup's set, and the space freed.

use crate::common::*;
use crate::sets::*;
use chrono::Local;
use octobackup::backupset::escrow;
use octobackup::run::journal::StateDir;
use octobackup::secret::Secret;
use std::collections::BTreeSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_keeps_whole_sets_by_month_drops_incomplete_ones_and_prune_frees_the_space() {
    let mut t = TestLab::start().await;
    t.init().await;
    for day in 0..4 {
        if day > 0 {
            t.lab.churn(1).await.unwrap();
        }
        t.ok(&["backup"]).await;
    }
    let sets = t.sets().await;
    assert_eq!(sets.len(), 4, "{sets:#?}");
    let ids: Vec<String> = sets
        .iter()
        .map(|s| s["set_id"].as_str().unwrap().to_string())
        .collect();

    // Move the sets to simulated dates through the repository crate: Jan 5, Jan 20, Feb 10,
    // Feb 11. Then a leftover part beside the Feb 10 set, and an unfinished run on Feb 12.
    let dates = [
        noon(2026, 1, 5),
        noon(2026, 1, 20),
        noon(2026, 2, 10),
        noon(2026, 2, 11),
    ];
    {
        let repo = open_repo(&t);
        for (set, date) in sets.iter().zip(dates) {
            let snap = set["snapshot_id"].as_str().unwrap().to_string();
            let info = repo.find_snapshot(&snap).unwrap();
            repo.merge_snapshots(std::slice::from_ref(&snap), &opts(info.tags.clone(), date))
                .unwrap();
            repo.delete_snapshots(&[snap]).unwrap();
        }
        add_part(&repo, &ids[2], noon(2026, 2, 10), &noise(300_000, 1));
        add_part(
            &repo,
            "20260212T020000Z-unfini",
            noon(2026, 2, 12),
            &noise(2_000_000, 2),
        );
    }
    // Escrow copies: a kept set's, a dropped set's, and one of a set that never completed.
    let officer = age::x25519::Identity::generate();
    let sealed = || {
        escrow::sealed_items(
            &[officer.to_public().to_string()],
            &Secret::new("a2V5a2V5a2V5a2V5a2V5aw=="),
            None,
        )
        .unwrap()
    };
    let repo_loc = t.repo_dir().display().to_string();
    for set in [ids[3].as_str(), ids[0].as_str(), "20260201T020000Z-orphan"] {
        escrow::publish(&repo_loc, set, &sealed()).unwrap();
    }
    let snapshots_before = t.restic(&["snapshots", "--json"]);
    let before: Vec<serde_json::Value> = serde_json::from_slice(&snapshots_before.stdout).unwrap();
    assert_eq!(before.len(), 6);

    // Dry run: says what would go and how much it frees, changes nothing.
    let dry = t
        .ok(&["--json", "forget", "--keep-monthly", "2", "--dry-run"])
        .await;
    let dry: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    let r = &dry["instances"][0];
    assert_eq!(r["dry_run"], true);
    assert_eq!(
        set_ids_of(&r["kept"]),
        BTreeSet::from([ids[1].clone(), ids[3].clone()])
    );
    assert_eq!(
        set_ids_of(&r["dropped"]),
        BTreeSet::from([
            ids[0].clone(),
            ids[2].clone(),
            "20260212T020000Z-unfini".to_string()
        ])
    );
    // The Feb 10 set goes whole: its complete snapshot and its leftover part.
    let feb10 = r["dropped"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["set_id"] == ids[2].as_str())
        .unwrap();
    assert_eq!(feb10["snapshots"].as_array().unwrap().len(), 2);
    let unfinished = r["dropped"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["set_id"] == "20260212T020000Z-unfini")
        .unwrap();
    assert_eq!(
        unfinished["reasons"][0],
        "incomplete: its run did not finish"
    );
    // At least the unfinished run's 2 MB of noise is data only the dropped sets use.
    let unique = r["unique_bytes"].as_u64().unwrap();
    assert!(unique > 2_000_000, "estimate {unique}");
    let human = t.run(&["forget", "--keep-monthly", "2", "--dry-run"]).await;
    let text = stdout(&human);
    assert!(
        text.contains("would drop 3 set(s) (4 snapshot(s))"),
        "{text}"
    );
    assert!(text.contains("dry run: nothing was removed"), "{text}");
    let still: Vec<serde_json::Value> =
        serde_json::from_slice(&t.restic(&["snapshots", "--json"]).stdout).unwrap();
    assert_eq!(still.len(), 6);

    // For real, with an instant prune: the space comes back and restic still reads everything.
    let data_before = dir_bytes(&t.repo_dir().join("data"));
    let done = t
        .json(&[
            "--json",
            "forget",
            "--keep-monthly",
            "2",
            "--prune",
            "--instant",
        ])
        .await;
    assert!(
        done["prune"]["bytes_freed"].as_u64().unwrap() > 2_000_000,
        "{done:#}"
    );
    let data_after = dir_bytes(&t.repo_dir().join("data"));
    assert!(
        data_after + 2_000_000 < data_before,
        "prune freed too little: {data_before} -> {data_after}"
    );
    let left = t.sets().await;
    assert_eq!(
        left.iter()
            .map(|s| (
                s["set_id"].as_str().unwrap().to_string(),
                s["complete"].as_bool().unwrap()
            ))
            .collect::<Vec<_>>(),
        vec![(ids[1].clone(), true), (ids[3].clone(), true)]
    );
    let check = t.restic(&["check", "--read-data"]);
    assert!(
        check.status.success(),
        "restic check: {}{}",
        stdout(&check),
        stderr(&check)
    );
    // Dropped and orphaned sets lose their escrow copies; kept ones keep them.
    assert_eq!(escrow::escrowed_sets(&repo_loc).unwrap(), [ids[3].clone()]);
    // A kept set still restores: its manifest reads.
    let show = t.run(&["show", &ids[1]]).await;
    assert!(show.status.success(), "{}", stderr(&show));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_beside_a_running_backup_loses_nothing() {
    let t = TestLab::start().await;
    t.init().await;
    t.ok(&["backup"]).await;
    // A run in progress: its folders part is stored, it holds the instance's lock.
    let part = add_part(
        &open_repo(&t),
        "29990101T000000Z-runnin",
        Local::now(),
        b"db",
    );
    let state = StateDir::new(&t.lab.info().dir.join("state"));
    let lock = state.lock("OctopusServer").unwrap();

    let out = t.ok(&["forget", "--keep-last", "1"]).await;
    assert!(
        stdout(&out).contains("a backup of 'OctopusServer' is running"),
        "{}",
        stdout(&out)
    );
    let snaps: Vec<serde_json::Value> =
        serde_json::from_slice(&t.restic(&["snapshots", "--json"]).stdout).unwrap();
    assert_eq!(
        snaps.len(),
        2,
        "the running set's part was touched: {snaps:#?}"
    );
    assert!(snaps.iter().any(|s| s["id"] == part.as_str()));
    // An instant prune needs the repository to itself.
    let out = t.run(&["prune", "--instant"]).await;
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));

    // Without the lock (a run on another machine), a fresh part is still left alone.
    drop(lock);
    let r = t.json(&["--json", "forget", "--keep-last", "1"]).await;
    assert_eq!(
        set_ids_of(&r["instances"][0]["left_alone"]),
        BTreeSet::from(["29990101T000000Z-runnin".to_string()])
    );
    assert!(r["instances"][0]["dropped"].as_array().unwrap().is_empty());
    assert_eq!(t.sets().await.len(), 2);

    // Once the run is known to be gone, its part is an interrupted run's leftover and goes first.
    let r = t
        .json(&[
            "--json",
            "forget",
            "--keep-last",
            "1",
            "--incomplete-grace",
            "0s",
        ])
        .await;
    assert_eq!(
        set_ids_of(&r["instances"][0]["dropped"]),
        BTreeSet::from(["29990101T000000Z-runnin".to_string()])
    );
    let sets = t.sets().await;
    assert_eq!(sets.len(), 1);
    assert_eq!(sets[0]["complete"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_without_a_policy_says_how_to_set_one() {
    let t = TestLab::start().await;
    t.init().await;
    t.fails(
        &["forget"],
        2,
        "no retention policy for instance 'OctopusServer'",
    )
    .await;
    // The config's policy is used when present.
    t.edit_config(|c| {
        let mut r = toml::Table::new();
        r.insert("keep_last".into(), 3.into());
        c.insert("retention".into(), r.into());
    });
    let out = t.ok(&["forget", "--dry-run"]).await;
    assert!(
        stdout(&out).contains("policy keep-last 3"),
        "{}",
        stdout(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_during_a_real_backup_leaves_the_running_set_alone_and_the_backup_completes() {
    use octobackup_lab::octopus_sim::{TaskSpec, TaskState};
    let mut t = TestLab::start().await;
    t.init().await;
    t.ok(&["backup"]).await;
    t.lab.churn(1).await.unwrap();
    // A deployment that runs until the test ends it: the backup waits inside its window,
    // holding the instance's lock, with its folders part already stored.
    let task = t.lab.octopus().add_task(TaskSpec {
        description: "Deploy Acme.Web 9.9.9".into(),
        state: TaskState::Executing,
        finishes_after: None,
        ..Default::default()
    });
    let backup = {
        let mut c = t.command(&["--json", "backup"]);
        tokio::task::spawn_blocking(move || c.output().unwrap())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let running_set = loop {
        let snaps: Vec<serde_json::Value> =
            serde_json::from_slice(&t.restic(&["snapshots", "--json"]).stdout).unwrap_or_default();
        let part = snaps.iter().find_map(|s| {
            let tags: Vec<&str> = s["tags"]
                .as_array()?
                .iter()
                .filter_map(|t| t.as_str())
                .collect();
            tags.contains(&"part")
                .then(|| tags.iter().find_map(|t| t.strip_prefix("set:")))?
                .map(String::from)
        });
        if let Some(set) = part
            && maintenance_changes(&t.events()).iter().any(|c| c.1)
        {
            break set;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the backup never reached its window"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };

    let r = t
        .json(&[
            "--json",
            "forget",
            "--keep-last",
            "1",
            "--incomplete-grace",
            "0s",
        ])
        .await;
    let r = &r["instances"][0];
    assert_eq!(
        set_ids_of(&r["left_alone"]),
        BTreeSet::from([running_set.clone()]),
        "{r:#}"
    );
    assert!(r["dropped"].as_array().unwrap().is_empty(), "{r:#}");

    t.lab.octopus().finish_task(&task, TaskState::Success);
    let out = backup.await.unwrap();
    assert!(out.status.success(), "backup: {}", stderr(&out));
    let sets = t.sets().await;
    assert_eq!(sets.len(), 2, "{sets:#?}");
    assert!(sets.iter().all(|s| s["complete"] == true));
    assert!(sets.iter().any(|s| s["set_id"] == running_set.as_str()));
    let check = t.restic(&["check", "--read-data"]);
    assert!(check.status.success(), "{}", stderr(&check));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_after_backup_uses_the_instances_own_policy() {
    use octobackup::config::Config;
    use octobackup::run::retention::apply_after_backup;
    let t = TestLab::start().await;
    t.init().await;
    for _ in 0..3 {
        t.ok(&["backup"]).await;
    }
    // The top-level default keeps 3; the instance's own policy (keep 2) wins.
    t.edit_config(|c| {
        let mut top = toml::Table::new();
        top.insert("keep_last".into(), 3.into());
        c.insert("retention".into(), top.into());
        let mut own = toml::Table::new();
        own.insert("keep_last".into(), 2.into());
        TestLab::instance_table(c).insert("retention".into(), own.into());
    });
    let config = Config::load(&t.config).unwrap();
    let state = StateDir::new(&config.state_dir(&t.config));
    let repo = open_repo(&t);
    let report = tokio::task::spawn_blocking(move || {
        apply_after_backup(&repo, &config, "OctopusServer", &state)
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(report.policy, "keep-last 2");
    assert_eq!(report.kept.len(), 2);
    assert_eq!(report.dropped.len(), 1);
    assert_eq!(t.sets().await.len(), 2);
}
