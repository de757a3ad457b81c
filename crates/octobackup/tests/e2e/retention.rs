//! Retention and repository health against the lab: `forget`/`prune` on real sets, `check` on a
//! damaged repository, `key` add/list/remove, and escrow recovery without the password.

use crate::common::*;
use chrono::{Local, TimeZone};
use octobackup::backupset::{TAG, TAG_PART, escrow, tag_instance, tag_set};
use octobackup::run::journal::StateDir;
use octobackup::secret::Secret;
use octobackup_repo::{Password, Repo, RepoConfig, SetOptions, SourceItem, Zeroizing};
use std::collections::BTreeSet;
use std::path::Path;

fn open_repo(t: &TestLab) -> Repo {
    let password = std::fs::read_to_string(t.repo_password_file()).unwrap();
    Repo::open(&RepoConfig {
        repository: t.repo_dir().display().to_string(),
        options: Default::default(),
        password: Password::new(password.trim_end()),
    })
    .unwrap()
}

fn opts(tags: Vec<String>, time: chrono::DateTime<Local>) -> SetOptions {
    SetOptions {
        tags,
        hostname: "test".into(),
        parent_tags: vec![],
        time: Some(time),
        compression: None,
    }
}

/// A part snapshot of `set_id` (what a run leaves before it seals its set).
fn add_part(repo: &Repo, set_id: &str, time: chrono::DateTime<Local>, bytes: &[u8]) -> String {
    let tags = vec![
        TAG.to_string(),
        tag_set(set_id),
        tag_instance("OctopusServer"),
        TAG_PART.to_string(),
    ];
    let item = SourceItem::Memory {
        target: "/database/OctopusDeploy.bak".into(),
        bytes: Zeroizing::new(bytes.to_vec()),
        mode: 0o644,
    };
    repo.backup(vec![item], &opts(tags, time), &octobackup_repo::NoProgress)
        .unwrap()
        .snapshot_id
}

fn noon(y: i32, m: u32, d: u32) -> chrono::DateTime<Local> {
    Local.with_ymd_and_hms(y, m, d, 12, 0, 0).unwrap()
}

fn dir_bytes(dir: &Path) -> u64 {
    walk_files(dir)
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum()
}

/// Pseudo-random bytes that do not compress or deduplicate.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn set_ids_of(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s["set_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_keeps_whole_sets_by_month_drops_incomplete_ones_and_prune_frees_the_space() {
    let mut t = TestLab::start().await;
    t.init().await;
    for day in 0..4 {
        if day > 0 {
            t.lab.churn(1).await.unwrap();
        }
        let out = t.run(&["backup"]).await;
        assert!(out.status.success(), "backup {day}: {}", stderr(&out));
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
        .run(&["--json", "forget", "--keep-monthly", "2", "--dry-run"])
        .await;
    assert!(dry.status.success(), "{}", stderr(&dry));
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
    let out = t
        .run(&[
            "--json",
            "forget",
            "--keep-monthly",
            "2",
            "--prune",
            "--instant",
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
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
    let out = t.run(&["backup"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    // A run in progress: its folders part is stored, it holds the instance's lock.
    let part = add_part(
        &open_repo(&t),
        "29990101T000000Z-runnin",
        Local::now(),
        b"db",
    );
    let state = StateDir::new(&t.lab.info().dir.join("state"));
    let lock = state.lock("OctopusServer").unwrap();

    let out = t.run(&["forget", "--keep-last", "1"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
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
    let out = t.run(&["--json", "forget", "--keep-last", "1"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        set_ids_of(&r["instances"][0]["left_alone"]),
        BTreeSet::from(["29990101T000000Z-runnin".to_string()])
    );
    assert!(r["instances"][0]["dropped"].as_array().unwrap().is_empty());
    assert_eq!(t.sets().await.len(), 2);

    // Once the run is known to be gone, its part is an interrupted run's leftover and goes first.
    let out = t
        .run(&[
            "--json",
            "forget",
            "--keep-last",
            "1",
            "--incomplete-grace",
            "0s",
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
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
    let out = t.run(&["forget"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no retention policy for instance 'OctopusServer'"),
        "{}",
        stderr(&out)
    );
    // The config's policy is used when present.
    t.edit_config(|c| {
        let mut r = toml::Table::new();
        r.insert("keep_last".into(), 3.into());
        c.insert("retention".into(), r.into());
    });
    let out = t.run(&["forget", "--dry-run"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("policy keep-last 3"),
        "{}",
        stdout(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_the_sets_a_damaged_pack_hits() {
    let t = TestLab::start().await;
    t.init().await;
    let out = t.run(&["backup"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let set = t.sets().await[0]["set_id"].as_str().unwrap().to_string();
    let ok = t.run(&["check", "--read-data"]).await;
    assert!(ok.status.success(), "{}{}", stdout(&ok), stderr(&ok));
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
    let none = t.run(&["check", "--read-data-subset", "0%"]).await;
    assert!(none.status.success(), "{}{}", stdout(&none), stderr(&none));
    let bad = t.run(&["check", "--read-data-subset", "lots"]).await;
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("is not a subset to read"),
        "{}",
        stderr(&bad)
    );

    // Recovery as the report says: the damaged pack out, the index rebuilt, a new backup
    // (which stores that data again), the damaged set forgotten and pruned.
    let out = t.run(&["forget", "--set", &set]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("newest complete set"),
        "{}",
        stderr(&out)
    );
    let aside = t.dir.path().join("damaged-pack");
    std::fs::rename(&pack, &aside).unwrap();
    let rebuilt = t.restic(&["rebuild-index"]);
    assert!(rebuilt.status.success(), "{}", stderr(&rebuilt));
    let out = t.run(&["backup"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
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
    let ok = t.run(&["check", "--read-data"]).await;
    assert!(ok.status.success(), "{}{}", stdout(&ok), stderr(&ok));
    let restic_ok = t.restic(&["check", "--read-data"]);
    assert!(restic_ok.status.success(), "{}", stderr(&restic_ok));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_add_list_remove_round_trip() {
    let t = TestLab::start().await;
    t.init().await;
    let new_pw = t.dir.path().join("second-password");
    std::fs::write(&new_pw, "correct horse battery staple\n").unwrap();
    let out = t
        .run(&[
            "key",
            "add",
            "--new-password-file",
            new_pw.to_str().unwrap(),
            "--host",
            "dr-site",
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));

    let with_new = |args: &[&str]| {
        let mut c = t.command(args);
        c.env("OCTOBACKUP_PASSWORD", "correct horse battery staple");
        c.output().unwrap()
    };
    let list = t.run(&["--json", "key", "list"]).await;
    let keys: Vec<serde_json::Value> = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(keys.len(), 2);
    let old = keys.iter().find(|k| k["current"] == true).unwrap();
    let old_id = old["id"].as_str().unwrap().to_string();
    assert!(keys.iter().any(|k| k["hostname"] == "dr-site"));
    // Both passwords open it, for stock restic too.
    let restic_new = std::process::Command::new("restic")
        .arg("-r")
        .arg(t.repo_dir())
        .args(["cat", "config"])
        .env("RESTIC_PASSWORD_FILE", &new_pw)
        .env("RESTIC_CACHE_DIR", t.dir.path().join("restic-cache"))
        .output()
        .expect("stock restic is needed: apt-get install restic");
    assert!(restic_new.status.success(), "{}", stderr(&restic_new));
    assert!(t.run(&["snapshots"]).await.status.success());
    assert!(with_new(&["snapshots"]).status.success());
    // The key in use cannot remove itself.
    let out = t.run(&["key", "remove", &old_id[..8]]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("use another key's password"),
        "{}",
        stderr(&out)
    );
    // With the new password the old key goes, and the old password stops working.
    let out = with_new(&["key", "remove", &old_id[..8]]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = t.run(&["snapshots"]).await;
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(stderr(&out).contains("wrong password"), "{}", stderr(&out));
    assert!(with_new(&["snapshots"]).status.success());
    // The last key stays.
    let list = with_new(&["--json", "key", "list"]);
    let keys: Vec<serde_json::Value> = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(keys.len(), 1);
    let out = with_new(&["key", "remove", keys[0]["id"].as_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("last key"), "{}", stderr(&out));
    // No password on the command line or in the output.
    assert!(!stdout(&out).contains("battery") && !stderr(&out).contains("battery"));
    // Without a source for the new password, a clear error.
    let out = t.run(&["key", "add"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("OCTOBACKUP_NEW_PASSWORD"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escrowed_master_key_is_recovered_with_the_identity_and_without_the_password() {
    use age::secrecy::ExposeSecret;
    let t = TestLab::start().await;
    t.init().await;
    let officer = age::x25519::Identity::generate();
    let id_file = t.dir.path().join("officer.age-identity");
    std::fs::write(
        &id_file,
        format!(
            "# public key: {}\n{}\n",
            officer.to_public(),
            officer.to_string().expose_secret()
        ),
    )
    .unwrap();
    let master_key = Secret::new("6c7mB2VbGJ1hUXt2ZkDqAw==");
    let license = Secret::new("<License Signature=\"x\">lab</License>");
    // What `backup` stores for a set when [escrow] age_recipients is set.
    let items = escrow::sealed_items(
        &[officer.to_public().to_string()],
        &master_key,
        Some(&license),
    )
    .unwrap();
    let set_id = "20260301T020000Z-abcdef";
    escrow::publish(t.repo_dir().to_str().unwrap(), set_id, &items).unwrap();
    // restic ignores the escrow folder.
    let check = t.restic(&["check"]);
    assert!(check.status.success(), "{}", stderr(&check));

    // No repository password anywhere.
    std::fs::remove_file(t.repo_password_file()).unwrap();
    let out = t
        .run(&[
            "key",
            "recover",
            "--identity",
            id_file.to_str().unwrap(),
            "--show-secrets",
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{}\n", master_key.expose()));
    // Without --show-secrets nothing secret is printed.
    let out = t
        .run(&[
            "key",
            "recover",
            "--identity",
            id_file.to_str().unwrap(),
            set_id,
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stdout(&out).contains(master_key.expose()),
        "{}",
        stdout(&out)
    );
    // --output writes an owner-only file; --license gives the license.
    let dest = t.dir.path().join("license.xml");
    let out = t
        .run(&[
            "key",
            "recover",
            "--identity",
            id_file.to_str().unwrap(),
            "--license",
            "--output",
            dest.to_str().unwrap(),
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(&dest).unwrap(),
        format!("{}\n", license.expose())
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    // Someone else's identity: a clear error, no secret.
    let stranger = age::x25519::Identity::generate();
    let other = t.dir.path().join("stranger.age-identity");
    std::fs::write(
        &other,
        format!("{}\n", stranger.to_string().expose_secret()),
    )
    .unwrap();
    let out = t
        .run(&[
            "key",
            "recover",
            "--identity",
            other.to_str().unwrap(),
            "--show-secrets",
        ])
        .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot open this set's escrow"),
        "{}",
        stderr(&out)
    );
    assert!(!stdout(&out).contains(master_key.expose()));
    let out = t
        .run(&[
            "key",
            "recover",
            "--identity",
            id_file.to_str().unwrap(),
            "nosuchset",
        ])
        .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no escrow copy for set 'nosuchset'"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_during_a_real_backup_leaves_the_running_set_alone_and_the_backup_completes() {
    use octobackup_lab::octopus_sim::{TaskSpec, TaskState};
    let mut t = TestLab::start().await;
    t.init().await;
    let out = t.run(&["backup"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
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

    let out = t
        .run(&[
            "--json",
            "forget",
            "--keep-last",
            "1",
            "--incomplete-grace",
            "0s",
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
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
        let out = t.run(&["backup"]).await;
        assert!(out.status.success(), "{}", stderr(&out));
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
