//! A running lab: both stand-ins serve the instance, lab.json says how to reach them, events are logged.

use octobackup_lab::{Lab, LabInfo, LabOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lab_starts_writes_lab_json_and_restarts_on_the_same_instance() {
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::start(LabOptions::new(dir.path())).await.unwrap();
    let info = LabInfo::read(dir.path()).unwrap();
    assert_eq!(info.octopus_url, lab.info().octopus_url);
    let sql_ip: std::net::SocketAddr = info.sql_address.parse().unwrap();
    assert!(sql_ip.ip().is_loopback(), "{}", info.sql_address);
    if cfg!(target_os = "linux") {
        // a named instance on a loopback address of its own, with SQL Browser on its port 1434
        assert_eq!(info.sql_instance.as_deref(), Some("OCTOPUS"));
        let browser: std::net::SocketAddr = info
            .sql_browser_address
            .as_deref()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!((browser.ip(), browser.port()), (sql_ip.ip(), 1434));
    }
    assert!(info.staging_dir.is_dir() && info.folders.packages.is_dir());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("lab.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "lab.json holds the lab's keys: owner-only");
    }

    // The API answers with the admin key and maintenance changes are logged.
    let client = reqwest_get(&info.octopus_url, &info.admin_api_key).await;
    assert_eq!(client["Version"], info.octopus_version);
    lab.octopus().set_maintenance(true, "test");
    lab.octopus().set_maintenance(false, "test");
    let kinds: Vec<String> = lab.events().iter().map(|e| e.kind.clone()).collect();
    assert_eq!(
        kinds.iter().filter(|k| *k == "maintenance_changed").count(),
        2
    );
    let fp = lab.fingerprint().await.unwrap();
    let seq_before = lab.events().last().unwrap().seq;
    lab.shutdown().await;

    // Restarting reuses the instance (same content, new ports) and continues the event log.
    let lab = Lab::start(LabOptions::new(dir.path())).await.unwrap();
    assert_eq!(lab.fingerprint().await.unwrap(), fp);
    lab.octopus().set_maintenance(true, "test");
    assert!(lab.events().last().unwrap().seq > seq_before);
    let from_file = octobackup_lab::EventLog::read_file(&dir.path().join("events.jsonl")).unwrap();
    assert_eq!(from_file.len() as u64, lab.events().last().unwrap().seq);
    lab.shutdown().await;
}

async fn reqwest_get(url: &str, key: &str) -> serde_json::Value {
    let resp = reqwest::Client::new()
        .get(format!("{url}/api"))
        .header("X-Octopus-ApiKey", key)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    resp.json().await.unwrap()
}
