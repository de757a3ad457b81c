//! SQL Server 2022 on Linux in its container, as the lab poses it (`--sql-platform linux`): its
//! paths are the container's (`/var/opt/mssql/data`, the staging share mounted at
//! `/var/opt/mssql/backup/octobackup`), a missing folder is OS error 2. octobackup backs up,
//! drills and restores through `staging.sql_path` (forward slashes) and `staging.local_path`.

use crate::common::*;

async fn linux_lab() -> TestLab {
    let t = TestLab::start_with(|o| o.sql_linux = true).await;
    t.init().await;
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_server_on_linux_backs_up_drills_and_restores() {
    let t = linux_lab().await;
    let config = std::fs::read_to_string(&t.config).unwrap();
    assert!(
        config.contains("sql_path = \"/var/opt/mssql/backup/octobackup\""),
        "{config}"
    );
    let fp = t.lab.fingerprint().await.unwrap();

    t.ok(&["backup"]).await;
    let show = t.ok(&["--json", "show", "latest"]).await;
    let m: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(m["complete"], true, "{m:#}");
    // what SQL Server recorded is its own view of the share
    let text = m.to_string();
    assert!(
        text.contains("/var/opt/mssql/backup/octobackup/octobackup-"),
        "{m:#}"
    );
    assert!(!t.lab.octopus().maintenance());

    let out = t.run(&["--json", "drill"]).await;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert!(
        out.status.success() && report["ok"] == true,
        "{report:#} {}",
        stderr(&out)
    );

    t.ok(&["restore", "--database", "--database-name", "OctoLinux"])
        .await;
    // beside the original, in the container's data folder
    let (original, _) = t.lab.sql().database_files("OctopusDeploy").unwrap();
    let (data, _) = t.lab.sql().database_files("OctoLinux").unwrap();
    assert_eq!(data.parent(), original.parent(), "{data:?}");
    assert_eq!(t.database_digest("OctoLinux"), fp.database);
    assert!(t.staging_files().is_empty(), "{:?}", t.staging_files());
    assert!(!t.lab.octopus().maintenance());
}

/// A staging.sql_path the container does not have: SQL Server on Linux answers OS error 2, and
/// octobackup names the mismatch of the two paths, with maintenance mode as found and no set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_sql_server_on_linux_cannot_see_is_named() {
    let t = linux_lab().await;
    t.edit_config(|c| {
        TestLab::instance_table(c)["staging"]
            .as_table_mut()
            .unwrap()
            .insert("sql_path".into(), "/var/opt/mssql/backup/elsewhere".into());
    });
    let out = t
        .fails(&["backup"], 4, "SQL Server cannot find the staging folder")
        .await;
    assert!(
        stderr(&out).contains("error 2(The system cannot find the file specified.)"),
        "{}",
        stderr(&out)
    );
    t.assert_off_and_no_set_complete().await;
}

/// A set taken on another host (the lab's own paths) restores into the container's default data
/// folder: the original folder does not exist there, SQL Server refuses with Msg 5133, and the
/// files go to SERVERPROPERTY('InstanceDefaultDataPath'), /var/opt/mssql/data/.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_from_another_host_restores_into_the_linux_default_folder() {
    let a = TestLab::start().await;
    a.init().await;
    let fp = a.lab.fingerprint().await.unwrap();
    a.ok(&["backup"]).await;

    let b = linux_lab().await;
    let repo = a.repo_dir();
    let password = a.repo_password_file();
    b.use_repository(&repo, &password);
    let out = b
        .ok(&["restore", "--database", "--database-name", "OctoMoved"])
        .await;
    assert!(
        stderr(&out).contains("original folders do not exist")
            && stderr(&out).contains("/var/opt/mssql/data/"),
        "{}",
        stderr(&out)
    );
    let (home, _) = b.lab.sql().database_files("OctopusDeploy").unwrap();
    let (data, log) = b.lab.sql().database_files("OctoMoved").unwrap();
    assert_eq!(data, home.parent().unwrap().join("OctoMoved.mdf"));
    assert_eq!(log, home.parent().unwrap().join("OctoMoved_log.ldf"));
    assert_eq!(b.database_digest("OctoMoved"), fp.database);
}
