//! `octobackup restore` against the lab: the restored database and folders equal the instance as it
//! was at backup time, an existing database is never replaced without --replace, files in the way
//! are moved aside, a clone gets its own InstallationId, and secrets appear only where asked.

use crate::common::*;
use octobackup_lab::fingerprint::hash_tree;
use octobackup_lab::sqlserver_files::image;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

async fn lab_with_a_set() -> (TestLab, octobackup_lab::Fingerprint) {
    let t = TestLab::start().await;
    t.init().await;
    let fp = t.lab.fingerprint().await.unwrap();
    t.ok(&["backup"]).await;
    (t, fp)
}

fn installation_id(data_file: &Path) -> String {
    let table = image::read_table(data_file, "dbo", "Configuration").unwrap();
    let row = table
        .rows
        .iter()
        .find(|r| r[0] == image::Value::Text("installation".into()))
        .expect("installation row");
    let image::Value::Text(json) = &row[1] else {
        panic!("JSON column")
    };
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v["InstallationId"].as_str().unwrap().to_string()
}

/// Secrets of the lab that must never show up in output unless asked for.
fn assert_no_secrets(t: &TestLab, out: &std::process::Output) {
    let state = t.lab.state().unwrap();
    let text = format!("{}{}", stdout(out), stderr(out));
    assert!(!text.contains(&state.master_key), "master key in output");
    assert!(
        !text.contains(&state.sql_password),
        "SQL password in output"
    );
    assert!(
        !text.contains("<License Signature"),
        "license XML in output"
    );
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&state.license_xml);
    assert!(!text.contains(&b64[..40]), "license in output");
}

fn no_temporary_databases(t: &TestLab) {
    let dbs = t.lab.sql().databases();
    assert!(
        !dbs.iter().any(|d| d.contains("_octobackup_")),
        "a temporary database was left: {dbs:?}"
    );
    assert!(
        t.staging_files().is_empty(),
        "staging left: {:?}",
        t.staging_files()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_to_a_new_name_and_fresh_paths_equals_the_instance_at_backup_time() {
    let (mut t, fp) = lab_with_a_set().await;
    t.lab.churn(2).await.unwrap();
    let after_churn = t.lab.fingerprint().await.unwrap();
    assert_ne!(after_churn, fp, "the churn changed nothing");

    let data_dir = t.dir.path().join("restored-data");
    let folders = t.dir.path().join("restored-folders");
    let secrets = t.dir.path().join("restore-secrets.txt");
    std::fs::create_dir_all(&data_dir).unwrap();
    let out = t
        .ok(&[
            "--json",
            "restore",
            "--database-name",
            "OctoRestored",
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--folders-to",
            folders.to_str().unwrap(),
            "--secrets-file",
            secrets.to_str().unwrap(),
        ])
        .await;
    assert_no_secrets(&t, &out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["database"]["name"], "OctoRestored");
    assert_eq!(report["database"]["replaced_existing"], false);

    // The database: the content it had at backup time, in the chosen folder.
    assert_eq!(t.database_digest("OctoRestored"), fp.database);
    let (data, log) = t.lab.sql().database_files("OctoRestored").unwrap();
    assert_eq!(data, data_dir.join("OctoRestored.mdf"));
    assert_eq!(log, data_dir.join("OctoRestored_log.ldf"));
    // The folders: every file as it was at backup time.
    for (name, files) in &fp.folders {
        assert_eq!(
            &hash_tree(&folders.join(name)).unwrap(),
            files,
            "folder {name}"
        );
    }
    // The original is untouched.
    assert_eq!(t.lab.fingerprint().await.unwrap(), after_churn);
    no_temporary_databases(&t);

    // The secrets file: owner-only, the real values and the commands with them.
    let state = t.lab.state().unwrap();
    let text = std::fs::read_to_string(&secrets).unwrap();
    assert!(text.contains(&format!("MASTER_KEY={}", state.master_key)));
    assert!(text.contains(&format!("--masterKey \"{}\"", state.master_key)));
    assert!(text.contains("OCTOPUS_SERVER_BASE64_LICENSE="));
    assert!(!text.contains(&state.sql_password));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secrets).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "secrets file mode {mode:o}");
    }

    // The next steps: placeholders on screen, the restored paths, a connection string without password.
    let windows: Vec<&str> = report["next_steps"]["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(windows[0].starts_with(
        "Octopus.Server.exe database --instance \"OctopusServer\" --connectionString \""
    ));
    assert!(windows[0].contains("Database=OctoRestored;"));
    assert!(windows[0].contains("Password=<SQL password>"));
    assert!(windows[0].ends_with("--masterKey \"<master key: see the secrets file>\""));
    // The users come back orphaned on another server: the login Octopus connects as is granted.
    assert_eq!(
        windows[1],
        format!(
            "Octopus.Server.exe database --instance \"OctopusServer\" --grant \"{}\"",
            t.lab.info().sql_login
        )
    );
    assert_eq!(
        windows[2],
        format!(
            "Octopus.Server.exe path --instance \"OctopusServer\" --nugetRepository \"{p}/Packages\" --artifacts \"{p}/Artifacts\" --taskLogs \"{p}/TaskLogs\" --eventExports \"{p}/EventExports\"",
            p = folders.display()
        )
    );
    assert!(windows[3].starts_with(
        "Octopus.Server.exe license --instance \"OctopusServer\" --licenseBase64 \"<license"
    ));
    let linux = report["next_steps"]["linux_container"].to_string();
    assert!(linux.contains("MASTER_KEY=\\\"<master key"), "{linux}");
    assert!(linux.contains(":/repository"), "{linux}");

    // A secrets file is never overwritten.
    let again = t
        .run(&[
            "restore",
            "--secrets",
            "--secrets-file",
            secrets.to_str().unwrap(),
        ])
        .await;
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    assert_eq!(std::fs::read_to_string(&secrets).unwrap(), text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_database_is_replaced_only_with_replace() {
    let (mut t, fp) = lab_with_a_set().await;
    t.lab.churn(1).await.unwrap();
    let after_churn = t.lab.fingerprint().await.unwrap();
    let databases = t.lab.sql().databases();

    let out = t.run(&["restore", "--database"]).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("[OctopusDeploy] already exists")
            && stderr(&out).contains("--replace"),
        "{}",
        stderr(&out)
    );
    // Nothing changed: no restore ran, nothing staged.
    assert_eq!(t.lab.fingerprint().await.unwrap(), after_churn);
    assert_eq!(t.lab.sql().databases(), databases);
    assert!(seqs(&t.events(), "restore_started").is_empty());
    no_temporary_databases(&t);

    let report = t
        .json(&["--json", "restore", "--database", "--replace"])
        .await;
    assert_eq!(report["database"]["replaced_existing"], true);
    assert_eq!(t.database_digest("OctopusDeploy"), fp.database);
    no_temporary_databases(&t);
    // The replaced database's files were dropped with it; the new ones are beside them.
    let (data, _) = t.lab.sql().database_files("OctopusDeploy").unwrap();
    assert_eq!(data.parent(), Some(t.lab.dir().join("sqlserver").as_path()));
    assert!(
        !t.lab
            .dir()
            .join("sqlserver")
            .join("OctopusDeploy.mdf")
            .exists(),
        "the old data file is left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_in_the_way_are_moved_aside_never_overwritten() {
    let (mut t, fp) = lab_with_a_set().await;
    t.lab.churn(2).await.unwrap();
    let packages = t.lab.info().folders.packages.clone();
    // A local change to a file the set holds, and a file the set does not know.
    let (rel, _) = fp.folders["Packages"].iter().next().unwrap();
    let changed = rel.split('/').fold(packages.clone(), |p, c| p.join(c));
    std::fs::write(&changed, b"edited by hand").unwrap();
    std::fs::write(packages.join("local-only.txt"), b"keep me").unwrap();

    // To the original paths (the lab's own folders).
    let out = t.ok(&["--json", "restore", "--folders"]).await;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pk = report["folders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "Packages")
        .unwrap()
        .clone();
    assert!(pk["moved_aside"].as_u64().unwrap() >= 1, "{pk:#}");
    let aside = PathBuf::from(pk["moved_aside_to"].as_str().unwrap());
    assert!(
        aside
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("Packages.octobackup-before-"),
        "{}",
        aside.display()
    );
    // The hand-edited file is kept aside, the set's version is back in place.
    let kept = rel.split('/').fold(aside.clone(), |p, c| p.join(c));
    assert_eq!(std::fs::read(&kept).unwrap(), b"edited by hand");
    let now = hash_tree(&packages).unwrap();
    for (path, hash) in &fp.folders["Packages"] {
        assert_eq!(now.get(path), Some(hash), "{path}");
    }
    // A file the set does not hold stays where it was.
    assert_eq!(
        std::fs::read(packages.join("local-only.txt")).unwrap(),
        b"keep me"
    );
    // Nothing was lost: every file that was there is in place or aside.
    let aside_files = walk_files(&aside).len() as u64;
    assert_eq!(aside_files, pk["moved_aside"].as_u64().unwrap());
    assert!(stdout(&out).contains("\"moved_aside\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clone_gets_its_own_installation_id_database_and_folders() {
    let (t, fp) = lab_with_a_set().await;
    let original_id = t.lab.state().unwrap().installation_id.to_string();
    let folders = t.dir.path().join("clone-folders");

    // A clone needs its own name and folders.
    t.fails(&["restore", "--clone"], 2, "--database-name").await;
    let out = t
        .run(&[
            "restore",
            "--clone",
            "--database-name",
            "OctopusDeploy",
            "--folders-to",
            folders.to_str().unwrap(),
        ])
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    let out = t
        .ok(&[
            "--json",
            "restore",
            "--clone",
            "--database-name",
            "OctoClone",
            "--folders-to",
            folders.to_str().unwrap(),
        ])
        .await;
    assert_no_secrets(&t, &out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let new_id = report["new_installation_id"].as_str().unwrap().to_string();
    assert_ne!(new_id, original_id);
    uuid::Uuid::parse_str(&new_id).unwrap();

    let (clone_data, _) = t.lab.sql().database_files("OctoClone").unwrap();
    assert_eq!(installation_id(&clone_data), new_id);
    let (original_data, _) = t.lab.sql().database_files("OctopusDeploy").unwrap();
    assert_ne!(clone_data, original_data);
    assert_eq!(installation_id(&original_data), original_id);
    // The original is untouched, database and folders.
    assert_eq!(t.lab.fingerprint().await.unwrap(), fp);
    // The clone's folders are its own copy.
    for (name, files) in &fp.folders {
        assert_eq!(&hash_tree(&folders.join(name)).unwrap(), files, "{name}");
    }
    let windows = report["next_steps"]["windows"].to_string();
    assert!(
        windows.contains("--instance \\\"OctopusServerClone\\\""),
        "{windows}"
    );
    assert!(windows.contains("Database=OctoClone;"), "{windows}");
    no_temporary_databases(&t);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_shown_only_on_request() {
    let (t, _) = lab_with_a_set().await;
    let state = t.lab.state().unwrap();

    // All parts by default: the secrets are neither printed nor written anywhere.
    let out = t
        .ok(&[
            "restore",
            "--folders",
            "--secrets",
            "--folders-to",
            t.dir.path().join("f").to_str().unwrap(),
        ])
        .await;
    assert_no_secrets(&t, &out);
    assert!(
        stdout(&out).contains("--masterKey \"<master key"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("--secrets-file FILE or --show-secrets"));

    // --secrets alone needs a destination.
    t.fails(&["restore", "--secrets"], 2, "--secrets-file")
        .await;

    let set_id = t.sets().await[0]["set_id"].as_str().unwrap().to_string();
    let out = t
        .run(&["restore", &set_id[..20], "--secrets", "--show-secrets"])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&format!("restored set {set_id}")));
    let bogus = t
        .run(&["restore", "19990101T", "--secrets", "--show-secrets"])
        .await;
    assert_eq!(bogus.status.code(), Some(2), "{}", stderr(&bogus));
    assert!(stderr(&bogus).contains("no complete backup set matches '19990101T'"));
    let text = stdout(&out);
    assert!(text.contains(&format!("master key: {}", state.master_key)));
    assert!(text.contains(&format!("--masterKey \"{}\"", state.master_key)));
    assert!(!text.contains(&state.sql_password));
}

/// The temporary name the tool derives for (set, target): kept in step with run::restore.
fn temporary_name(set_id: &str, target: &str) -> String {
    let mut h = Sha256::new();
    for p in [set_id, target] {
        h.update(p.as_bytes());
        h.update([0]);
    }
    format!(
        "{target}_octobackup_restoring_{}",
        &hex::encode(h.finalize())[..8]
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_interrupted_before_the_rename_is_finished_by_the_next_run() {
    let (t, fp) = lab_with_a_set().await;
    let set_id = t.sets().await[0]["set_id"].as_str().unwrap().to_string();
    // What an interrupted run leaves: the set restored and online under its temporary name.
    let temp = temporary_name(&set_id, "OctoResumed");
    t.ok(&["restore", "--database", "--database-name", &temp])
        .await;
    assert!(t.lab.sql().databases().contains(&temp));
    let restores_before = seqs(&t.events(), "restore_started").len();

    let report = t
        .json(&[
            "--json",
            "restore",
            "--database",
            "--database-name",
            "OctoResumed",
        ])
        .await;
    assert_eq!(report["database"]["resumed"], true, "{report:#}");
    // Finished without restoring again: checked and renamed.
    assert_eq!(seqs(&t.events(), "restore_started").len(), restores_before);
    assert_eq!(t.database_digest("OctoResumed"), fp.database);
    no_temporary_databases(&t);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_striped_set_restores_under_a_name_that_needs_quoting() {
    let t = TestLab::start().await;
    t.init().await;
    t.edit_config(|c| {
        TestLab::instance_table(c)["sql"]
            .as_table_mut()
            .unwrap()
            .insert("stripes".into(), toml::Value::Integer(2));
    });
    let fp = t.lab.fingerprint().await.unwrap();
    t.ok(&["backup"]).await;
    let show = t.run(&["--json", "show", "latest"]).await;
    let m: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(m["database"]["files"].as_array().unwrap().len(), 2, "{m:#}");

    let name = "Octo]pus 'Restored";
    t.ok(&["restore", "--database", "--database-name", name])
        .await;
    assert_eq!(t.database_digest(name), fp.database);
    let (data, _) = t.lab.sql().database_files(name).unwrap();
    assert_eq!(
        data.file_name().unwrap().to_string_lossy(),
        "Octo_pus__Restored.mdf"
    );
    no_temporary_databases(&t);

    t.ok(&["drill"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_restore_leaves_no_database_behind_and_the_old_one_in_place() {
    let (t, fp) = lab_with_a_set().await;
    // The stored backup is damaged: RESTORE meets a bad page checksum part-way.
    crate::tamper::rewrite_latest_set(&t, |dir| {
        let bak = dir.join("database").join("OctopusDeploy.bak");
        octobackup_lab::sqlserver_files::bak::corrupt_one_page(&bak).unwrap();
    });
    let databases = t.lab.sql().databases();
    let out = t
        .run(&["restore", "--database", "--database-name", "OctoBroken"])
        .await;
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("RESTORE DATABASE") && stderr(&out).contains("Msg 3183"),
        "{}",
        stderr(&out)
    );
    assert_eq!(t.lab.sql().databases(), databases);
    no_temporary_databases(&t);

    // Over the existing database with --replace: it stays as it was.
    let out = t.run(&["restore", "--database", "--replace"]).await;
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(t.lab.sql().databases(), databases);
    assert_eq!(t.lab.fingerprint().await.unwrap(), fp);
    no_temporary_databases(&t);
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_the_restore_leaves_nothing_half_restored() {
    let (t, fp) = lab_with_a_set().await;
    let databases = t.lab.sql().databases();
    // Slow enough to be interrupted part-way.
    t.lab.sql().set_backup_rate(Some(512 * 1024));
    let mut cmd = t.command(&["restore", "--database", "--database-name", "OctoSlow"]);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let mut waited = 0;
    while seqs(&t.events(), "restore_started").is_empty() {
        assert!(waited < 600, "the restore never started");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        waited += 1;
    }
    let out = signal_and_wait(child, "INT").await;
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("the partly restored copy was dropped"),
        "{}",
        stderr(&out)
    );
    t.lab.sql().set_backup_rate(None);
    assert_eq!(t.lab.sql().databases(), databases);
    no_temporary_databases(&t);

    // The same command again completes.
    t.ok(&["restore", "--database", "--database-name", "OctoSlow"])
        .await;
    assert_eq!(t.database_digest("OctoSlow"), fp.database);
}

/// A set restored on another host: the original data and log folders do not exist there, so SQL
/// Server refuses the original paths (Msg 5133) and the files go to the instance's default
/// folders (`SERVERPROPERTY('InstanceDefaultDataPath')`/`'InstanceDefaultLogPath'`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_from_another_host_restores_into_the_instance_default_folders() {
    let (a, fp) = lab_with_a_set().await;
    // Carry the repository away, then the first host is gone with its folders.
    let carry = tempfile::tempdir().unwrap();
    let repo = carry.path().join("repository");
    let copy = std::process::Command::new("cp")
        .arg("-a")
        .arg(a.repo_dir())
        .arg(&repo)
        .status()
        .unwrap();
    assert!(copy.success());
    let password = carry.path().join("repository-password");
    std::fs::copy(a.repo_password_file(), &password).unwrap();
    let (old_data, _) = a.lab.sql().database_files("OctopusDeploy").unwrap();
    let TestLab { lab, dir, .. } = a;
    lab.shutdown().await;
    drop(dir);
    assert!(!old_data.parent().unwrap().exists());

    let b = TestLab::start().await;
    b.use_repository(&repo, &password);
    let out = b
        .ok(&["restore", "--database", "--database-name", "OctoMoved"])
        .await;
    assert!(
        stderr(&out).contains("original folders do not exist")
            && stderr(&out).contains("default folders"),
        "{}",
        stderr(&out)
    );
    let defaults = b.lab.sql().database_files("OctopusDeploy").unwrap();
    let (data, log) = b.lab.sql().database_files("OctoMoved").unwrap();
    assert_eq!(data.parent(), defaults.0.parent(), "{data:?}");
    assert_eq!(log.parent(), defaults.1.parent(), "{log:?}");
    assert_eq!(data.file_name().unwrap(), "OctoMoved.mdf");
    assert_eq!(b.database_digest("OctoMoved"), fp.database);
    no_temporary_databases(&b);
}

/// Transparent Data Encryption: `sys.databases.is_encrypted` goes into the manifest, and restoring
/// such a set says first that the certificate must be on the target server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tde_database_is_recorded_and_its_restore_names_the_certificate() {
    let (t, _) = lab_with_a_set().await;
    let show = |t: &TestLab| {
        let out = t.command(&["--json", "show", "latest"]).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    assert_eq!(
        show(&t)["database"]["tde_encrypted"],
        false,
        "{:#}",
        show(&t)
    );
    // A plain restore says nothing about certificates.
    let report = t
        .json(&[
            "--json",
            "restore",
            "--database",
            "--database-name",
            "OctoPlain",
        ])
        .await;
    assert!(
        !report["notes"]
            .to_string()
            .contains("Transparent Data Encryption")
    );

    t.lab.sql().set_encrypted("OctopusDeploy", true);
    t.ok(&["backup"]).await;
    assert_eq!(show(&t)["database"]["tde_encrypted"], true);

    let out = t
        .ok(&["restore", "--database", "--database-name", "OctoTde"])
        .await;
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        text.contains("Transparent Data Encryption")
            && text.contains("CREATE CERTIFICATE")
            && text.contains("Msg 33111"),
        "{text}"
    );
    // Said before the restore runs, and again among the notes at the end.
    assert!(
        stderr(&out).contains("must exist in [master] on the target server"),
        "{}",
        stderr(&out)
    );
    assert_no_secrets(&t, &out);
}
