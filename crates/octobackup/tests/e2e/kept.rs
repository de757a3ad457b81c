//! Sets kept on staging after a storage failure (`run/backup/kept.rs`), as `doctor` reports them:
//! each with its age, database and size, and whether the next backup stores or removes it, and
//! why. The records are written here as a failed run writes them (the product's own types).

use crate::common::*;
use octobackup::backupset::Manifest;
use octobackup::run::backup::window_capture::Capture;

/// A kept staging folder for `set_id` of `database`, started and kept `hours_ago`, with a
/// `.bak` of `bak_bytes`.
fn keep_set(t: &TestLab, set_id: &str, database: &str, hours_ago: i64, bak_bytes: usize) {
    let dir = t.plant_staging_folder(
        set_id,
        &serde_json::json!({"instance": "OctopusServer"}),
        &format!("{database}.bak"),
        &vec![7u8; bak_bytes],
    );
    let at = chrono::Utc::now() - chrono::TimeDelta::hours(hours_ago);
    let mut manifest = Manifest {
        set_id: set_id.into(),
        instance: "OctopusServer".into(),
        started: Some(at),
        ..Default::default()
    };
    manifest.database.name = database.into();
    let record = serde_json::json!({
        "format": 1,
        "kept_at": at,
        "manifest": manifest,
        "capture": Capture::default(),
        "pre_pass": null,
        "bak_names": [format!("{database}.bak")],
    });
    std::fs::write(
        dir.join("octobackup-kept.json"),
        serde_json::to_vec_pretty(&record).unwrap(),
    )
    .unwrap();
}

fn checks<'a>(r: &'a serde_json::Value, name: &str) -> Vec<&'a serde_json::Value> {
    r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_lists_each_kept_set_and_what_the_next_backup_does_with_it() {
    let t = TestLab::start().await;
    t.init().await;
    let database = t.lab.info().database.clone();

    // None kept: one passing line.
    let out = t.run(&["--json", "doctor"]).await;
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let none = checks(&r, "kept-sets");
    assert_eq!(none.len(), 1, "{r:#}");
    assert_eq!(none[0]["status"], "pass", "{r:#}");
    assert!(checks(&r, "kept-set").is_empty(), "{r:#}");

    keep_set(&t, "20260101T000000Z-0000aa", &database, 2, 300_000);
    keep_set(&t, "20260101T000000Z-0000bb", &database, 25, 1000);
    keep_set(&t, "20260101T000000Z-0000cc", "SomeOtherDatabase", 1, 1000);
    let out = t.run(&["--json", "doctor"]).await;
    let r: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}", stderr(&out)));
    let kept = checks(&r, "kept-set");
    assert_eq!(kept.len(), 3, "{r:#}");
    let find = |id: &str| {
        *kept
            .iter()
            .find(|c| c["detail"].as_str().unwrap().contains(id))
            .unwrap_or_else(|| panic!("no line for {id}: {r:#}"))
    };
    // Fresh, same database: stored by the next backup.
    let fresh = find("0000aa");
    let detail = fresh["detail"].as_str().unwrap();
    assert_eq!(fresh["status"], "pass", "{fresh:#}");
    assert!(
        detail.contains(&format!("[{database}]"))
            && detail.contains("kept 2 h")
            && detail.contains("the next backup stores it"),
        "{detail}"
    );
    // Its size: the .bak and the record.
    assert!(detail.contains("KiB"), "{detail}");
    // Older than a day: removed by the next backup, and why.
    let old = find("0000bb");
    assert_eq!(old["status"], "warn", "{old:#}");
    let detail = old["detail"].as_str().unwrap();
    assert!(
        detail.contains("the next backup removes it") && detail.contains("more than 24 h ago"),
        "{detail}"
    );
    // Another database than the instance's now.
    let other = find("0000cc");
    assert_eq!(other["status"], "warn", "{other:#}");
    assert!(
        other["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("this instance now backs up {database}")),
        "{other:#}"
    );
    // Kept sets are not leftovers, and warnings do not fail the doctor.
    assert_eq!(
        checks(&r, "staging leftovers")[0]["status"],
        "pass",
        "{r:#}"
    );
    assert_eq!(out.status.code(), Some(0), "{r:#}");
    // doctor changed nothing: each folder is still there, whole.
    for id in ["0000aa", "0000bb", "0000cc"] {
        let dir = t
            .lab
            .info()
            .staging_dir
            .join(format!("octobackup-20260101T000000Z-{id}"));
        assert!(dir.join("octobackup-kept.json").is_file(), "{id}");
    }
}
