//! Discovery from the instance itself, through the lab's stand-in for `Octopus.Server`
//! (`octobackup-lab octopus-server`): current and old outputs, missing rights, an unknown
//! instance, and a backup configured by discovery alone.

use crate::common::*;
use octobackup::config::DiscoverConfig;
use octobackup::octopus::discovery::{self, DiscoveryError};

fn stand_in(t: &TestLab, extra: &[&str]) -> Vec<String> {
    let mut c = vec![
        lab_exe().display().to_string(),
        "octopus-server".into(),
        "--dir".into(),
        t.dir.path().display().to_string(),
    ];
    c.extend(extra.iter().map(|s| s.to_string()));
    c
}

fn discover(command: Vec<String>, instance: Option<&str>) -> DiscoverConfig {
    DiscoverConfig {
        command: Some(command),
        instance: instance.map(String::from),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_reads_the_instance_in_current_and_old_output_and_names_failures() {
    let t = TestLab::start().await;
    let info = t.lab.info().clone();

    // Current output: json-hierarchical.
    let d = discovery::show_configuration(&discover(stand_in(&t, &[]), None))
        .await
        .unwrap();
    let cs = d.connection_string.clone().unwrap();
    assert!(cs.contains(&format!("Database={}", info.database)), "{d:?}");
    assert!(
        !format!("{d:?}").contains(&info.sql_password),
        "Debug shows no password"
    );
    assert_eq!(d.folders["Packages"], info.folders.packages);
    assert_eq!(d.folders["TaskLogs"], info.folders.task_logs);
    assert_eq!(d.folders.len(), 4);
    assert_eq!(
        d.url.as_deref(),
        Some(info.octopus_url.trim_end_matches('/'))
    );
    assert!(d.node_name.is_some() && d.home.is_some(), "{d:?}");
    // The connection string parses and carries the password as Octopus stores it.
    let parsed = octobackup::sqlserver::connstr::ConnectionString::parse(&cs).unwrap();
    assert_eq!(parsed.database, info.database);
    assert_eq!(parsed.password.unwrap().expose(), info.sql_password);

    // Older versions: banner lines around flat JSON.
    let old = discovery::show_configuration(&discover(stand_in(&t, &["--old"]), None))
        .await
        .unwrap();
    assert_eq!(old.connection_string.as_deref(), Some(cs.as_str()));
    assert_eq!(old.folders, d.folders);

    // The master key through the same command, current and old form.
    for extra in [&[][..], &["--old"][..]] {
        let source = octobackup::config::MasterKeySource {
            command: Some(discovery::master_key_command(&discover(
                stand_in(&t, extra),
                None,
            ))),
            ..Default::default()
        };
        let key = octobackup::octopus::master_key::read(&source)
            .await
            .unwrap();
        assert_eq!(key.key.expose(), t.lab.state().unwrap().master_key);
    }

    // Not elevated.
    let e = discovery::show_configuration(&discover(stand_in(&t, &["--not-admin"]), None))
        .await
        .unwrap_err();
    assert!(matches!(e, DiscoveryError::NeedsAdmin { .. }), "{e}");
    assert!(e.to_string().contains("administrator"), "{e}");

    // An instance that is not there.
    let e = discovery::show_configuration(&discover(stand_in(&t, &[]), Some("Nope")))
        .await
        .unwrap_err();
    assert!(matches!(e, DiscoveryError::UnknownInstance { .. }), "{e}");
    assert!(
        e.to_string().contains("'Nope'") && e.to_string().contains("list-instances"),
        "{e}"
    );

    // No such program.
    let e =
        discovery::show_configuration(&discover(vec!["/nonexistent/Octopus.Server".into()], None))
            .await
            .unwrap_err();
    assert!(matches!(e, DiscoveryError::Spawn { .. }), "{e}");
    assert!(e.to_string().contains("discover.command"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_configured_by_discovery_alone() {
    let t = TestLab::start().await;
    t.init().await;
    let cmd = stand_in(&t, &[]);
    t.edit_config(|c| {
        let i = TestLab::instance_table(c);
        i.remove("url");
        i.remove("master_key");
        let sql = i["sql"].as_table_mut().unwrap();
        sql.remove("connection_string");
        sql.remove("password_file");
        let mut d = toml::Table::new();
        d.insert(
            "command".into(),
            toml::Value::Array(cmd.iter().map(|s| toml::Value::String(s.clone())).collect()),
        );
        i.insert("discover".into(), toml::Value::Table(d));
    });
    let out = t.run(&["--json", "backup"]).await;
    assert!(out.status.success(), "backup failed: {}", stderr(&out));
    let events = t.events();
    assert_backups_inside_window(&events);
    let show = t.run(&["--json", "show", "latest"]).await;
    let m: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(m["complete"], true);
    assert_eq!(m["secrets"]["master_key"], true);
    let password = &t.lab.info().sql_password;
    assert!(!stdout(&out).contains(password.as_str()) && !stderr(&out).contains(password.as_str()));

    // Discovery that fails stops the backup before anything changes, naming the fix.
    t.edit_config(|c| {
        let d = TestLab::instance_table(c)["discover"]
            .as_table_mut()
            .unwrap();
        d.insert("instance".into(), toml::Value::String("Elsewhere".into()));
    });
    let before = maintenance_changes(&t.events()).len();
    let out = t.run(&["backup"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("'Elsewhere'"), "{}", stderr(&out));
    assert_eq!(maintenance_changes(&t.events()).len(), before);
}
