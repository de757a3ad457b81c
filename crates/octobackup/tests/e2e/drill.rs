//! `octobackup drill` against the lab: a good set passes; a set whose database backup is damaged,
//! which lost a folder file, or whose master key is not the database's fails with the reason and
//! exit code 8. The bad sets are real sets in the repository: a good set read back, changed the way
//! a bad disk, a bad copy or a wrong key source would change it, and written as a new set.

use crate::common::*;
use crate::tamper::rewrite_latest_set;
use std::path::PathBuf;

async fn lab_with_a_set() -> TestLab {
    let t = TestLab::start().await;
    t.init().await;
    t.ok(&["backup"]).await;
    t
}

fn checks(report: &serde_json::Value) -> Vec<(String, String)> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Nothing of the drill is left: no scratch database, nothing on the staging share.
fn assert_cleaned_up(t: &TestLab, report: &serde_json::Value) {
    let scratch = report["scratch_database"].as_str().unwrap();
    assert!(scratch.starts_with("OctopusDeploy_octobackup_drill_"));
    assert!(
        !t.lab.sql().databases().iter().any(|d| d == scratch),
        "scratch database left: {:?}",
        t.lab.sql().databases()
    );
    assert!(
        t.staging_files().is_empty(),
        "staging left: {:?}",
        t.staging_files()
    );
    assert!(!PathBuf::from(report["scratch_folder"].as_str().unwrap()).exists());
}

fn assert_no_secret(t: &TestLab, out: &std::process::Output) {
    let key = t.lab.state().unwrap().master_key;
    assert!(!stdout(out).contains(&key) && !stderr(out).contains(&key));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_passes_on_a_good_set_and_leaves_nothing_behind() {
    let t = lab_with_a_set().await;
    let before = t.lab.fingerprint().await.unwrap();
    let out = t.ok(&["--json", "drill"]).await;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true, "{report:#}");
    let got = checks(&report);
    for name in [
        "stage the database backup",
        "RESTORE VERIFYONLY",
        "RESTORE DATABASE (scratch)",
        "DBCC CHECKDB",
        "master key opens the database",
        "restore the folders (scratch)",
        "folder files match the set",
        "remove the scratch database and folders",
    ] {
        assert!(
            got.contains(&(name.to_string(), "pass".to_string())),
            "{name} did not pass: {got:?}"
        );
    }
    let key_detail = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "master key opens the database")
        .unwrap()["detail"]
        .as_str()
        .unwrap()
        .to_string();
    // Every value opens, the realistic ones too (Azure keys, JSON, PEM, PFX); VariableSet is
    // read in several batches; the server certificate opens.
    let (opened, tried) = key_detail
        .split_once(" encrypted values opened")
        .and_then(|(counts, _)| counts.split_once(" of "))
        .map(|(a, b)| (a.parse::<u64>().unwrap(), b.parse::<u64>().unwrap()))
        .unwrap_or_else(|| panic!("{key_detail}"));
    assert_eq!(opened, tried, "{key_detail}");
    assert!(tried > 1000, "{key_detail}");
    let rows: u64 = key_detail
        .split_once("(")
        .and_then(|(_, r)| r.split_once(" rows read in batches of 200"))
        .map(|(n, _)| n.parse().unwrap())
        .unwrap_or_else(|| panic!("{key_detail}"));
    assert!(rows > 2 * 200, "{key_detail}");
    assert!(
        key_detail.contains("the server certificate opened"),
        "{key_detail}"
    );
    let events = t.events();
    assert!(!seqs(&events, "restore_finished").is_empty());
    assert_cleaned_up(&t, &report);
    assert_no_secret(&t, &out);
    // The live instance was not touched.
    assert_eq!(t.lab.fingerprint().await.unwrap(), before);

    // The human table, same set again (the scratch name is reused and dropped again).
    let out = t.ok(&["drill", "latest"]).await;
    assert!(stdout(&out).contains("PASSED"), "{}", stdout(&out));
    assert!(stdout(&out).contains("DBCC CHECKDB"), "{}", stdout(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_fails_when_the_stored_database_backup_is_damaged() {
    // BACKUP runs WITH CHECKSUM and VERIFYONLY, so a damaged page in the live database never makes
    // a set (Msg 3043). What can go bad is the stored copy: one byte flipped in the set's .bak.
    let t = lab_with_a_set().await;
    rewrite_latest_set(&t, |dir| {
        let bak = dir.join("database").join("OctopusDeploy.bak");
        octobackup_lab::sqlserver_files::bak::corrupt_one_page(&bak).unwrap();
    });
    let out = t.run(&["--json", "drill"]).await;
    assert_eq!(
        out.status.code(),
        Some(8),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["exit_code"], 8);
    assert_eq!(report["set_id"], "20991231T000000Z-tamper");
    let got = checks(&report);
    assert!(
        got.contains(&("RESTORE VERIFYONLY".into(), "fail".into())),
        "{got:?}"
    );
    assert!(
        got.contains(&("DBCC CHECKDB".into(), "skipped".into())),
        "{got:?}"
    );
    // The folders are still checked, and pass.
    assert!(
        got.contains(&("folder files match the set".into(), "pass".into())),
        "{got:?}"
    );
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("RESTORE VERIFYONLY"), "{error}");
    assert!(stderr(&out).contains("the drill of set 20991231T000000Z-tamper failed"));
    assert_cleaned_up(&t, &report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_fails_when_a_folder_file_is_missing_from_the_set() {
    let t = lab_with_a_set().await;
    let mut removed = String::new();
    rewrite_latest_set(&t, |dir| {
        let victim = walk_files(&dir.join("folders").join("Packages"))
            .into_iter()
            .next()
            .expect("a package");
        removed = victim.file_name().unwrap().to_string_lossy().into_owned();
        std::fs::remove_file(victim).unwrap();
    });
    let out = t.run(&["drill"]).await;
    assert_eq!(
        out.status.code(),
        Some(8),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(text.contains("FAILED"), "{text}");
    assert!(
        text.contains("Packages: the manifest records"),
        "the reason is named: {text}"
    );
    // The database checks still ran and passed.
    assert!(text.contains("ok    DBCC CHECKDB"), "{text}");
    assert!(
        stderr(&out).contains("folder files match the set"),
        "{}",
        stderr(&out)
    );
    assert!(!removed.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_fails_when_the_sets_master_key_is_not_the_databases() {
    let t = lab_with_a_set().await;
    rewrite_latest_set(&t, |dir| {
        // A well-formed key of the right length, but another instance's.
        std::fs::write(
            dir.join("octobackup").join("master-key"),
            "AAECAwQFBgcICQoLDA0ODw==",
        )
        .unwrap();
    });
    let out = t.run(&["--json", "drill"]).await;
    assert_eq!(
        out.status.code(),
        Some(8),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let got = checks(&report);
    assert!(
        got.contains(&("master key opens the database".into(), "fail".into())),
        "{got:?}"
    );
    assert!(
        got.contains(&("DBCC CHECKDB".into(), "pass".into())),
        "{got:?}"
    );
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("does not open the server certificate")
            && error.contains("does not belong to this database"),
        "{error}"
    );
    assert!(!error.contains("AAECAwQFBgcICQoLDA0ODw=="), "{error}");
    assert_cleaned_up(&t, &report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_without_a_set_says_so() {
    let t = TestLab::start().await;
    t.init().await;
    t.fails(&["drill"], 2, "no complete backup set").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_removes_what_a_killed_drill_left() {
    let t = lab_with_a_set().await;
    // What a drill killed part-way leaves: a scratch database and scratch folders.
    let leftover = "OctopusDeploy_octobackup_drill_0ld000";
    t.ok(&["restore", "--database", "--database-name", leftover])
        .await;
    assert!(t.lab.sql().databases().iter().any(|d| d == leftover));
    let old_folder = t.lab.info().staging_dir.join("octobackup-drill-0ld000");
    std::fs::create_dir_all(old_folder.join("Packages")).unwrap();
    std::fs::write(old_folder.join("Packages").join("x.nupkg"), b"x").unwrap();

    let report = t.json(&["--json", "drill"]).await;
    assert!(!t.lab.sql().databases().iter().any(|d| d == leftover));
    assert!(!old_folder.exists());
    assert_cleaned_up(&t, &report);
    // The live database is still there.
    assert!(t.lab.sql().databases().iter().any(|d| d == "OctopusDeploy"));
}

/// A drill stopped (SIGTERM) while CHECKDB runs silent on the scratch copy: the server's CHECKDB
/// is stopped with ATTENTION (it would go on otherwise), the scratch copy is dropped on a fresh
/// connection, and the message says so; exit 130.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_stopped_during_checkdb_cancels_it_and_drops_the_scratch_copy() {
    let t = lab_with_a_set().await;
    t.lab
        .sql()
        .inject(octobackup_lab::sqlserver_sim::SqlFault::SilenceBeforeNext {
            command: "DBCC TABLE CHECK".into(),
            silence: std::time::Duration::from_secs(600),
        });
    let child = t
        .command(&["drill"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    t.wait_for_event("silence_started").await;
    assert_eq!(
        t.lab.sql().databases().len(),
        2,
        "the scratch copy is there while CHECKDB runs"
    );
    let out = sigterm(child).await;
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(
        stderr(&out)
            .contains("the drill was interrupted by SIGTERM; its scratch copies were removed"),
        "{}",
        stderr(&out)
    );
    // the server's CHECKDB was stopped by ATTENTION, not left to run out its silence
    assert_eq!(seqs(&t.events(), "attention_acknowledged").len(), 1);
    assert_eq!(t.lab.sql().databases(), [t.lab.info().database.clone()]);
    assert!(
        t.staging_files().is_empty(),
        "staging left: {:?}",
        t.staging_files()
    );
}
