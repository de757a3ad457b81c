//! `sql.chain = "owned"`: a full base before the window, a differential inside it. Over three
//! nights the base is taken once and reused, the differentials stay small, and a drill and a
//! restore of base + differential give the database back; a full backup by someone else between
//! two runs is detected (the night falls back to a copy-only full and says why); stock restic
//! restores both files; doctor refuses `owned` while others take full backups.

use crate::common::*;

async fn owned_lab() -> TestLab {
    let t = TestLab::start().await;
    t.edit_config(|c| {
        let sql = TestLab::instance_table(c)["sql"].as_table_mut().unwrap();
        sql.insert("chain".into(), "owned".into());
    });
    t.init().await;
    t
}

/// A DBA's nightly full backup (not COPY_ONLY): it moves the differential base.
async fn dba_full_backup(t: &TestLab) -> String {
    let path = t.dir.path().join("dba-full.bak");
    t.as_dba(&format!(
            "BACKUP DATABASE [{}] TO DISK = N'{}' WITH INIT, DESCRIPTION = N'Nightly full backup (maintenance plan)'",
            t.lab.info().database,
            path.display()
        ),
    )
    .await;
    path.display().to_string()
}

async fn manifest(t: &TestLab) -> serde_json::Value {
    let show = t.ok(&["--json", "show", "latest"]).await;
    serde_json::from_slice(&show.stdout).unwrap()
}

async fn backup(t: &TestLab) -> (String, serde_json::Value) {
    let out = t.ok(&["backup"]).await;
    (stderr(&out), manifest(t).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nights_reuse_one_base_and_base_plus_differential_drills_and_restores() {
    let mut t = owned_lab().await;

    // Night 1: no base yet, so one is taken before the window; the differential inside it.
    let (said, m1) = backup(&t).await;
    let c1 = &m1["database"]["chain"];
    assert_eq!(c1["new_base"], true, "{m1:#}");
    assert_eq!(c1["base_reason"], "no base yet");
    assert!(said.contains("took a new differential base"), "{said}");
    let base_guid = c1["base_backup_set_guid"].as_str().unwrap().to_string();
    assert_eq!(
        c1["differential_base_guid"]
            .as_str()
            .unwrap()
            .to_lowercase(),
        base_guid.to_lowercase(),
        "the set is complete only with the differential on its base"
    );
    assert!(c1["differential_backup_set_guid"].is_string());
    assert_eq!(m1["complete"], true);
    assert!(m1["database"]["backupset"]["backup_type"] == "I", "{m1:#}");
    // The BACKUP inside the window was the differential; the base's came before the window.
    let window: Vec<String> = m1["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    let base_at = window
        .iter()
        .position(|s| s == "database base (before the window)")
        .expect("a base step");
    let on_at = window
        .iter()
        .position(|s| s == "maintenance mode on")
        .unwrap();
    assert!(base_at < on_at, "{window:?}");
    assert!(window.contains(&"database backup (differential)".to_string()));

    // Nights 2 and 3: about 1% of the database changes a day; the base is reused and each
    // differential is a small share of it.
    for _ in 0..2 {
        t.lab.churn(1).await.unwrap();
        let (said, m) = backup(&t).await;
        let c = &m["database"]["chain"];
        assert_eq!(c["new_base"], false, "{m:#}");
        assert!(!said.contains("took a new differential base"), "{said}");
        assert_eq!(c["base_backup_set_guid"].as_str().unwrap(), base_guid);
        let diff = m["database"]["bytes"].as_u64().unwrap();
        let base = c["base_bytes"].as_u64().unwrap();
        assert!(
            diff * 5 < base,
            "differential {diff} bytes vs base {base} bytes"
        );
        assert_eq!(
            c["base_files"],
            serde_json::json!(["/database/base/OctopusDeploy.bak"])
        );
    }
    let fp = t.lab.fingerprint().await.unwrap();

    // The drill restores base WITH NORECOVERY then the differential, and checks the copy.
    let out = t.run(&["--json", "drill"]).await;
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
    assert!(out.status.success(), "{report:#}");
    let restore = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "RESTORE DATABASE (scratch)")
        .unwrap();
    assert_eq!(restore["status"], "pass", "{report:#}");
    assert!(
        restore["detail"]
            .as_str()
            .unwrap()
            .contains("base WITH NORECOVERY, then the differential"),
        "{restore:#}"
    );
    let events = t.events();
    let restores: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e.kind == "restore_started")
        .map(|e| &e.detail)
        .collect();
    assert_eq!(restores.len(), 2, "base then differential: {restores:?}");
    assert_eq!(restores[1]["differential"], true);

    // A restore under a new name is the database as the last night left it.
    let data_dir = t.dir.path().join("restored-data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let folders = t.dir.path().join("restored-folders");
    t.ok(&[
        "restore",
        "--database-name",
        "OctoChain",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--folders-to",
        folders.to_str().unwrap(),
    ])
    .await;
    assert_eq!(t.database_digest("OctoChain"), fp.database);
    let dbs = t.lab.sql().databases();
    assert!(!dbs.iter().any(|d| d.contains("_octobackup_")), "{dbs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_backup_by_someone_else_moves_the_base_and_that_night_is_a_full() {
    let mut t = owned_lab().await;
    let (_, m1) = backup(&t).await;
    let first_base = m1["database"]["chain"]["base_backup_set_guid"]
        .as_str()
        .unwrap()
        .to_string();

    // A DBA's full backup between two runs: the differential base is now theirs.
    let device = dba_full_backup(&t).await;
    t.lab.churn(1).await.unwrap();
    let (said, m2) = backup(&t).await;
    let c2 = &m2["database"]["chain"];
    let why = c2["fallback"].as_str().expect("the manifest says why");
    assert!(why.contains("someone else took a full backup"), "{why}");
    assert!(why.contains(&device), "names the device: {why}");
    assert!(said.contains("someone else took a full backup"), "{said}");
    assert_eq!(m2["complete"], true, "a full is a complete set");
    assert_eq!(c2["base_files"], serde_json::json!([]));
    assert_eq!(m2["database"]["backupset"]["backup_type"], "D");
    assert_eq!(m2["database"]["backupset"]["is_copy_only"], true);
    // That night's set restores on its own.
    t.ok(&["--json", "drill"]).await;

    // The next night takes a new base of its own and is a differential again.
    t.lab.churn(1).await.unwrap();
    let (_, m3) = backup(&t).await;
    let c3 = &m3["database"]["chain"];
    assert_eq!(c3["new_base"], true, "{m3:#}");
    assert_ne!(c3["base_backup_set_guid"].as_str().unwrap(), first_base);
    assert!(c3["fallback"].is_null());
    assert_eq!(m3["database"]["backupset"]["backup_type"], "I");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_restic_restores_the_base_and_the_differential() {
    let t = owned_lab().await;
    let (_, m) = backup(&t).await;
    assert_eq!(m["complete"], true);
    let snapshot = "latest";
    let target = t.dir.path().join("restic-restore");
    let out = t.restic(&[
        "restore",
        snapshot,
        "--target",
        target.to_str().unwrap(),
        "--include",
        "/database",
    ]);
    assert!(
        out.status.success(),
        "restic restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let diff = target.join("database").join("OctopusDeploy.bak");
    let base = target
        .join("database")
        .join("base")
        .join("OctopusDeploy.bak");
    assert!(
        diff.is_file() && base.is_file(),
        "{:?}",
        walk_files(&target)
    );
    // What restic gave back is what SQL Server restores: base, then the differential.
    let copy = t.dir.path().join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    let (data, log) = (copy.join("R.mdf"), copy.join("R_log.ldf"));
    t.as_dba(
        &format!(
            "RESTORE DATABASE [FromRestic] FROM DISK = N'{}' WITH MOVE N'OctopusDeploy' TO N'{}', MOVE N'OctopusDeploy_log' TO N'{}', NORECOVERY",
            base.display(),
            data.display(),
            log.display()
        ),
    )
    .await;
    t.as_dba(&format!(
        "RESTORE DATABASE [FromRestic] FROM DISK = N'{}' WITH RECOVERY",
        diff.display()
    ))
    .await;
    assert_eq!(
        t.database_digest("FromRestic"),
        t.lab.fingerprint().await.unwrap().database
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_refuses_owned_while_someone_else_takes_full_backups() {
    let t = owned_lab().await;
    let doctor = |t: &TestLab| {
        let c = t.command(&["--json", "doctor"]);
        async move {
            let mut c = c;
            let out = tokio::task::spawn_blocking(move || c.output().unwrap())
                .await
                .unwrap();
            let report: serde_json::Value = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
            let check = report["checks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == "sql-chain")
                .cloned()
                .unwrap_or_else(|| panic!("no sql-chain check: {report:#}"));
            (out.status.code(), check)
        }
    };
    // octobackup's own bases are its chain.
    backup(&t).await;
    let (code, check) = doctor(&t).await;
    assert_eq!(check["status"], "pass", "{check:#}");
    assert_eq!(code, Some(0));

    let device = dba_full_backup(&t).await;
    let (code, check) = doctor(&t).await;
    assert_eq!(check["status"], "fail", "{check:#}");
    assert_ne!(code, Some(0));
    let detail = check["detail"].as_str().unwrap();
    assert!(detail.contains(&device), "names the device: {detail}");
    assert!(
        detail.contains(&t.lab.info().admin_sql_login),
        "names the user: {detail}"
    );
    assert!(
        check["fix"].as_str().unwrap().contains("copy_only"),
        "{check:#}"
    );

    // The default never looks.
    t.edit_config(|c| {
        let sql = TestLab::instance_table(c)["sql"].as_table_mut().unwrap();
        sql.remove("chain");
    });
    let out = t.run(&["--json", "doctor"]).await;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        !report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "sql-chain"),
        "{report:#}"
    );
}

/// The base moves where msdb cannot show it (the history query is denied once): the
/// differential's own header (DifferentialBaseGUID) catches it. The run fails, nothing is marked
/// complete, maintenance mode is as found, and the next run takes a new base and succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_moved_unseen_is_caught_by_the_differentials_header() {
    use octobackup_lab::sqlserver_sim::SqlFault;
    let t = owned_lab().await;
    backup(&t).await;
    let complete_before = t
        .sets()
        .await
        .iter()
        .filter(|s| s["complete"] == true)
        .count();
    dba_full_backup(&t).await;
    t.lab.sql().inject(SqlFault::DenyNextHistoryQuery);
    let out = t.run(&["backup"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(
        said.contains("msdb's backup history cannot be read"),
        "{said}"
    );
    assert!(said.contains("the differential's base is"), "{said}");
    assert!(said.contains("Nothing was marked complete"), "{said}");
    assert!(!t.lab.octopus().maintenance(), "maintenance mode left on");
    let complete_after = t
        .sets()
        .await
        .iter()
        .filter(|s| s["complete"] == true)
        .count();
    assert_eq!(complete_after, complete_before, "no set falsely complete");

    let (_, m) = backup(&t).await;
    assert_eq!(m["database"]["chain"]["new_base"], true, "{m:#}");
    assert_eq!(m["complete"], true);
}
