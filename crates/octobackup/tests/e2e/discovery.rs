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

    // Output polluted by log lines, a JSON log line and exception text: the same settings.
    let polluted = discovery::show_configuration(&discover(stand_in(&t, &["--pollute"]), None))
        .await
        .unwrap();
    assert_eq!(polluted.connection_string.as_deref(), Some(cs.as_str()));
    assert_eq!(polluted.folders, d.folders);
    assert_eq!(polluted.url, d.url);

    // The master key through the same command: the text form (asked for by default), the old
    // banner form, and text among log lines.
    let command = discovery::master_key_command(&discover(stand_in(&t, &[]), None));
    assert!(
        !command.iter().any(|a| a.contains("--format")),
        "{command:?}"
    );
    for extra in [&[][..], &["--old"][..], &["--pollute"][..]] {
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
    // JSON output is still read, as is the lab's own show-master-key in both forms.
    let dir = t.dir.path().display().to_string();
    let lab_show = |extra: &[&str]| {
        let mut c = vec![
            lab_exe().display().to_string(),
            "show-master-key".to_string(),
            "--dir".to_string(),
            dir.clone(),
        ];
        c.extend(extra.iter().map(|s| s.to_string()));
        c
    };
    let mut json = discovery::master_key_command(&discover(stand_in(&t, &["--pollute"]), None));
    json.push("--format=json".into());
    for command in [
        json,
        lab_show(&[]),
        lab_show(&["--pollute"]),
        lab_show(&["--format", "json", "--pollute"]),
    ] {
        let source = octobackup::config::MasterKeySource {
            command: Some(command.clone()),
            ..Default::default()
        };
        let key = octobackup::octopus::master_key::read(&source)
            .await
            .unwrap_or_else(|e| panic!("{command:?}: {e}"));
        assert_eq!(key.key.expose(), t.lab.state().unwrap().master_key);
    }
    // The text form is the key alone on its line.
    let out = std::process::Command::new(lab_exe())
        .args(["show-master-key", "--dir", &dir])
        .output()
        .unwrap();
    assert_eq!(
        stdout(&out).trim(),
        t.lab.state().unwrap().master_key,
        "{}",
        stderr(&out)
    );

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
    let out = t.ok(&["--json", "backup"]).await;
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
    t.fails(&["backup"], 3, "'Elsewhere'").await;
    assert_eq!(maintenance_changes(&t.events()).len(), before);
}

/// The Linux container without `/Octopus/Octopus.Server` (some images ship only the dll): the
/// command runs as `dotnet .../Octopus.Server.dll`, as Octopus's own Kubernetes manifests do. Here
/// `dotnet` is a script on PATH that runs the lab's stand-in, and the output is polluted too.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_octopus_server_runs_its_dll_through_dotnet() {
    use std::os::unix::fs::PermissionsExt;
    let t = TestLab::start().await;
    t.init().await;
    let install = t.dir.path().join("Octopus");
    std::fs::create_dir_all(&install).unwrap();
    let program = install.join("Octopus.Server");
    let dll = install.join("Octopus.Server.dll");
    let bin = t.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let used = t.dir.path().join("dotnet-was-used");
    let dotnet = bin.join("dotnet");
    std::fs::write(
        &dotnet,
        format!(
            "#!/bin/sh\n[ \"$1\" = \"{dll}\" ] || {{ echo \"dotnet: no such application $1\" >&2; exit 1; }}\nshift\ntouch \"{used}\"\nexec \"{lab}\" octopus-server --dir \"{dir}\" --pollute \"$@\"\n",
            dll = dll.display(),
            used = used.display(),
            lab = lab_exe().display(),
            dir = t.dir.path().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&dotnet, std::fs::Permissions::from_mode(0o755)).unwrap();
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
            toml::Value::Array(vec![toml::Value::String(program.display().to_string())]),
        );
        i.insert("discover".into(), toml::Value::Table(d));
    });
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |args: &'static [&'static str]| {
        let mut c = t.command(args);
        c.env("PATH", &path);
        tokio::task::spawn_blocking(move || c.output().unwrap())
    };

    // Neither the program nor the dll: the run stops before maintenance mode, naming the setting.
    let out = run(&["backup"]).await.unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("discover.command"),
        "{}",
        stderr(&out)
    );
    assert!(maintenance_changes(&t.events()).is_empty());
    assert!(!used.exists());

    // Only the dll: discovery and the master key go through dotnet.
    std::fs::write(&dll, b"MZ").unwrap();
    let out = run(&["--json", "backup"]).await.unwrap();
    assert!(out.status.success(), "backup failed: {}", stderr(&out));
    assert!(used.exists());
    assert_backups_inside_window(&t.events());
    let show = t.run(&["--json", "show", "latest"]).await;
    let m: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(m["complete"], true);
    assert_eq!(m["secrets"]["master_key"], true);
    let key = t.lab.state().unwrap().master_key;
    assert!(!stdout(&out).contains(&key) && !stderr(&out).contains(&key));

    // Behind a prefix (here `env`, standing in for `docker exec NAME`), the file cannot be looked
    // at from the host: the container's shell chooses, and picks dotnet.
    std::fs::remove_file(&used).unwrap();
    t.edit_config(|c| {
        let d = TestLab::instance_table(c)["discover"]
            .as_table_mut()
            .unwrap();
        d.insert(
            "command".into(),
            toml::Value::Array(vec![
                toml::Value::String("env".into()),
                toml::Value::String(program.display().to_string()),
            ]),
        );
    });
    let out = run(&["backup"]).await.unwrap();
    assert!(out.status.success(), "backup failed: {}", stderr(&out));
    assert!(used.exists());
    assert_backups_inside_window(&t.events());
}
