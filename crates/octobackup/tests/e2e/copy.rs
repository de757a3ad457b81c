//! `copy --to NAME`: complete sets to a second repository (a local folder, S3 on moto, Azure
//! Blob on Azurite), incrementally, read back by stock restic, drilled and checked there, with
//! the escrow beside it; a wrong password, a missing target and a target that stops in the
//! middle of a copy.

use crate::common::*;
use crate::servers::{self, BUCKET};
use octobackup_lab::fingerprint::hash_tree;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const COPY_PASSWORD: &str = "a different password for the off-site copy";

/// Where a copy goes: its location, backend options and the environment its credentials are in.
#[derive(Clone, Default)]
struct Target {
    location: String,
    options: Vec<(String, String)>,
    env: Vec<(String, String)>,
}

impl Target {
    fn local(dir: &Path) -> Target {
        Target {
            location: dir.display().to_string(),
            ..Default::default()
        }
    }

    fn s3(addr: &str, path: &str) -> Target {
        Target {
            location: format!("s3:http://{addr}/{BUCKET}/{path}"),
            options: Vec::new(),
            env: vec![
                ("AWS_ACCESS_KEY_ID".into(), "octobackup-test".into()),
                (
                    "AWS_SECRET_ACCESS_KEY".into(),
                    "octobackup-test-secret".into(),
                ),
            ],
        }
    }

    fn azure(server: &servers::Server, path: &str) -> Target {
        Target {
            location: format!("azure://{BUCKET}/{path}"),
            options: vec![("endpoint".into(), servers::azurite_endpoint(server))],
            env: vec![
                (
                    "AZURE_STORAGE_ACCOUNT".into(),
                    servers::AZURITE_ACCOUNT.into(),
                ),
                ("AZURE_STORAGE_KEY".into(), servers::AZURITE_KEY.into()),
            ],
        }
    }
}

fn copy_password_file(t: &TestLab) -> PathBuf {
    t.dir.path().join("secrets").join("copy-password")
}

/// Adds (or replaces) the `[[copy]]` named `name`, with its own password in a file.
fn set_copy(t: &TestLab, name: &str, target: &Target, after_backup: bool, extra: &[(&str, &str)]) {
    let pw = copy_password_file(t);
    if !pw.exists() {
        std::fs::write(&pw, format!("{COPY_PASSWORD}\n")).unwrap();
    }
    t.edit_config(|c| {
        let mut copy = toml::Table::new();
        copy.insert("name".into(), name.into());
        copy.insert("location".into(), target.location.clone().into());
        copy.insert("password_file".into(), pw.display().to_string().into());
        copy.insert("after_backup".into(), after_backup.into());
        for (k, v) in extra {
            copy.insert(k.to_string(), (*v).into());
        }
        if !target.options.is_empty() {
            let mut options = toml::Table::new();
            for (k, v) in &target.options {
                options.insert(k.clone(), v.clone().into());
            }
            copy.insert("options".into(), options.into());
        }
        let copies = c
            .entry("copy")
            .or_insert_with(|| toml::Value::Array(Vec::new()))
            .as_array_mut()
            .unwrap();
        copies.retain(|v| v["name"].as_str() != Some(name));
        copies.push(copy.into());
    });
}

fn with_escrow(t: &TestLab) -> PathBuf {
    let identity = age::x25519::Identity::generate();
    t.edit_config(|c| {
        let mut escrow = toml::Table::new();
        escrow.insert(
            "age_recipients".into(),
            vec![toml::Value::from(identity.to_public().to_string())].into(),
        );
        c.insert("escrow".into(), escrow.into());
    });
    let id_file = t.dir.path().join("escrow-identity.txt");
    use age::secrecy::ExposeSecret;
    std::fs::write(&id_file, identity.to_string().expose_secret()).unwrap();
    id_file
}

async fn obk(t: &TestLab, target: &Target, args: &[&str]) -> Output {
    t.run_env(args, &target.env).await
}

async fn obk_ok(t: &TestLab, target: &Target, args: &[&str]) -> Output {
    t.ok_env(args, &target.env).await
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", stdout(out), stderr(out)))
}

/// An error is one line on stderr.
fn one_line(out: &Output) -> String {
    let err = stderr(out);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "not one line: {err}");
    for internal in ["WARN", "Backtrace", "opendal", "x-amz", "panicked"] {
        assert!(!err.contains(internal), "`{internal}` shown: {err}");
    }
    err
}

/// Stock restic on a copy (local or S3), with the copy's password from a file.
fn restic(t: &TestLab, target: &Target, args: &[&str]) -> Output {
    let repo = match target.location.strip_prefix("s3:") {
        Some(rest) => format!("s3:{rest}"),
        None => target.location.clone(),
    };
    std::process::Command::new("restic")
        .arg("-r")
        .arg(repo)
        .args(args)
        .env("RESTIC_PASSWORD_FILE", copy_password_file(t))
        .env("RESTIC_CACHE_DIR", t.dir.path().join("restic-cache"))
        .env_remove("RESTIC_PASSWORD")
        .envs(target.env.iter().cloned())
        .output()
        .unwrap_or_else(|e| {
            panic!("stock restic is needed ({e}): apt-get install restic (scripts/test.sh does)")
        })
}

fn restic_ok(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "restic {what}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    out
}

/// The main repository's complete snapshots: (id, sorted tags).
fn complete_in_main(t: &TestLab) -> Vec<(String, Vec<String>)> {
    let out = t.restic(&["snapshots", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let snaps: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    snaps
        .iter()
        .map(|s| (s["id"].as_str().unwrap().to_string(), tags(s)))
        .filter(|(_, tags)| {
            tags.iter().any(|t| t == "complete") && !tags.iter().any(|t| t == "part")
        })
        .collect()
}

/// The ids of the main repository's complete sets, as `snapshots --json` lists them.
async fn complete_set_ids(t: &TestLab) -> BTreeSet<String> {
    t.sets()
        .await
        .iter()
        .filter(|s| s["complete"] == true)
        .map(|s| s["set_id"].as_str().unwrap().to_string())
        .collect()
}

fn tags(s: &serde_json::Value) -> Vec<String> {
    let mut t: Vec<String> = s["tags"]
        .as_array()
        .map(|a| a.iter().map(|t| t.as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    t.sort();
    t
}

/// The set ids of `snapshots --copy NAME`, each checked complete.
async fn sets_in_copy(t: &TestLab, target: &Target, name: &str) -> BTreeSet<String> {
    let out = obk_ok(t, target, &["--json", "snapshots", "--copy", name]).await;
    let sets: Vec<serde_json::Value> = serde_json::from_value(json(&out)).unwrap();
    for s in &sets {
        assert_eq!(
            s["complete"], true,
            "a set in the copy is not complete: {s:#}"
        );
        // `show --copy` reads the set's manifest from the copy.
        let id = s["set_id"].as_str().unwrap();
        let out = obk_ok(t, target, &["--json", "show", "--copy", name, id]).await;
        assert_eq!(json(&out)["set_id"], id, "show --copy {name} {id}");
    }
    sets.iter()
        .map(|s| s["set_id"].as_str().unwrap().to_string())
        .collect()
}

/// Every file under `dir` (relative paths), to see that a copy wrote nothing.
fn files_under(dir: &Path) -> BTreeSet<String> {
    walk_files(dir)
        .iter()
        .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
        .collect()
}

/// Two complete sets (a churn between them) and the part of a run that did not finish.
async fn two_sets_and_a_part(t: &mut TestLab) -> Vec<(String, Vec<String>)> {
    t.init().await;
    t.ok(&["backup"]).await;
    t.lab.churn(1).await.unwrap();
    t.ok(&["backup"]).await;
    let repo = crate::sets::open_repo(t);
    crate::sets::add_part(
        &repo,
        "20991231T000000Z-unfini",
        chrono::Local::now(),
        b"half a database backup",
    );
    let complete = complete_in_main(t);
    assert_eq!(complete.len(), 2, "{complete:?}");
    complete
}

/// A copy 'offsite' that holds every complete set: copying again sends nothing, it checks with
/// its data read and drills, and with the main repository gone it gives back the master key
/// (then the main repository is put back).
async fn copy_again_sends_nothing_checks_drills_and_escrows(
    t: &TestLab,
    target: &Target,
    identity: &Path,
) {
    let out = obk_ok(t, target, &["--json", "copy", "--to", "offsite"]).await;
    assert_eq!(json(&out)["bytes_sent"], 0);
    obk_ok(t, target, &["check", "--copy", "offsite", "--read-data"]).await;
    let out = obk_ok(t, target, &["--json", "drill", "--copy", "offsite"]).await;
    assert_eq!(json(&out)["ok"], true);
    std::fs::rename(t.repo_dir(), t.dir.path().join("main-gone")).unwrap();
    let out = obk_ok(
        t,
        target,
        &[
            "key",
            "recover",
            "--copy",
            "offsite",
            "--identity",
            identity.to_str().unwrap(),
            "--show-secrets",
        ],
    )
    .await;
    assert!(stdout(&out).contains(&t.lab.state().unwrap().master_key));
    std::fs::rename(t.dir.path().join("main-gone"), t.repo_dir()).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn local_copy_is_whole_incremental_read_by_restic_drilled_and_escrowed() {
    let mut t = TestLab::start().await;
    let identity = with_escrow(&t);
    let source = two_sets_and_a_part(&mut t).await;
    let dir = t.dir.path().join("offsite");
    let target = Target::local(&dir);
    set_copy(&t, "offsite", &target, false, &[]);
    let main_before = files_under(&t.repo_dir());

    // Not created yet: `copy` does not create it (a mistyped location would fill a new place).
    let out = obk(&t, &target, &["copy", "--to", "offsite"]).await;
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(one_line(&out).contains("octobackup init --copy offsite"));
    assert!(!dir.join("config").exists());
    // An unknown copy is a usage error naming the ones there are.
    let out = obk(&t, &target, &["copy", "--to", "elsewhere"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(one_line(&out).contains("it has: offsite"));

    obk_ok(&t, &target, &["init", "--copy", "offsite"]).await;
    let out = obk_ok(&t, &target, &["--json", "copy", "--to", "offsite"]).await;
    let first = json(&out);
    assert_eq!(first["copied"], 2, "{first:#}");
    assert_eq!(first["already_there"], 0);
    assert_eq!(
        first["incomplete_left_out"], 1,
        "the part is left out: {first:#}"
    );
    assert!(first["bytes_sent"].as_u64().unwrap() > 0);
    for s in first["sets"].as_array().unwrap() {
        assert_eq!(s["escrow_published"], true, "{s:#}");
    }
    assert_eq!(
        files_under(&t.repo_dir()),
        main_before,
        "the copy wrote into the main repository"
    );

    // Stock restic reads the copy with its own password: the same sets, tags and content.
    let out = restic_ok(restic(&t, &target, &["snapshots", "--json"]), "snapshots");
    let copied: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(copied.len(), 2, "only the complete sets: {copied:#?}");
    let source_tags: BTreeSet<Vec<String>> = source.iter().map(|(_, t)| t.clone()).collect();
    let copied_tags: BTreeSet<Vec<String>> = copied.iter().map(tags).collect();
    assert_eq!(copied_tags, source_tags);
    let originals: BTreeSet<String> = copied
        .iter()
        .map(|s| s["original"].as_str().expect("original is set").to_string())
        .collect();
    let source_ids: BTreeSet<String> = source.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(originals, source_ids, "original names the source snapshot");
    restic_ok(
        restic(&t, &target, &["check", "--read-data"]),
        "check --read-data",
    );
    let newest_copy = copied
        .iter()
        .max_by_key(|s| s["time"].as_str().unwrap().to_string())
        .unwrap();
    let from_copy = t.dir.path().join("restic-from-copy");
    let from_main = t.dir.path().join("restic-from-main");
    restic_ok(
        restic(
            &t,
            &target,
            &[
                "restore",
                newest_copy["id"].as_str().unwrap(),
                "--target",
                from_copy.to_str().unwrap(),
            ],
        ),
        "restore from the copy",
    );
    let out = t.restic(&[
        "restore",
        newest_copy["original"].as_str().unwrap(),
        "--target",
        from_main.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let copy_tree = hash_tree(&from_copy).unwrap();
    assert!(
        copy_tree.keys().any(|k| k.ends_with(".bak")),
        "{copy_tree:?}"
    );
    assert_eq!(copy_tree, hash_tree(&from_main).unwrap(), "byte for byte");

    // Again: nothing new is sent and nothing is written.
    let target_before = files_under(&dir);
    let out = obk_ok(&t, &target, &["--json", "copy", "--to", "offsite"]).await;
    let second = json(&out);
    assert_eq!(second["copied"], 0, "{second:#}");
    assert_eq!(second["already_there"], 2);
    assert_eq!(second["bytes_sent"], 0);
    assert_eq!(
        files_under(&dir),
        target_before,
        "a second copy wrote files"
    );

    // check and drill target the copy.
    obk_ok(&t, &target, &["check", "--copy", "offsite", "--read-data"]).await;
    let out = obk_ok(&t, &target, &["--json", "drill", "--copy", "offsite"]).await;
    assert_eq!(json(&out)["ok"], true);

    // The escrow beside the copy opens the master key with the main repository gone.
    std::fs::rename(t.repo_dir(), t.dir.path().join("main-gone")).unwrap();
    let out = obk_ok(
        &t,
        &target,
        &[
            "key",
            "recover",
            "--copy",
            "offsite",
            "--identity",
            identity.to_str().unwrap(),
            "--show-secrets",
        ],
    )
    .await;
    let state = t.lab.state().unwrap();
    assert!(stdout(&out).contains(&state.master_key), "{}", stderr(&out));

    // And the folders come back from the copy alone, byte for byte.
    let fp = t.lab.fingerprint().await.unwrap();
    let folders = t.dir.path().join("restored-from-copy");
    obk_ok(
        &t,
        &target,
        &[
            "restore",
            "--copy",
            "offsite",
            "--folders",
            "--folders-to",
            folders.to_str().unwrap(),
        ],
    )
    .await;
    for (name, files) in &fp.folders {
        assert_eq!(&hash_tree(&folders.join(name)).unwrap(), files, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_copies_its_set_after_it_is_complete_and_a_failed_copy_is_exit_9() {
    let t = TestLab::start().await;
    t.init().await;
    let dir = t.dir.path().join("offsite");
    let target = Target::local(&dir);
    set_copy(&t, "offsite", &target, true, &[]);
    obk_ok(&t, &target, &["init", "--copy", "offsite"]).await;

    let out = obk_ok(&t, &target, &["--json", "backup"]).await;
    let first = json(&out);
    let copies = first["copies"].as_array().expect("copies in the result");
    assert_eq!(copies.len(), 1, "{first:#}");
    assert_eq!(copies[0]["copied"], 1);
    assert_eq!(copies[0]["sets"][0]["set_id"], first["set_id"]);
    assert_eq!(
        sets_in_copy(&t, &target, "offsite").await,
        BTreeSet::from([first["set_id"].as_str().unwrap().to_string()])
    );

    // The copy's password is wrong now: the backup stands (its set complete), exit 9.
    std::fs::write(copy_password_file(&t), "not the copy's password\n").unwrap();
    let copy_before = files_under(&dir);
    let out = obk(&t, &target, &["--json", "backup"]).await;
    assert_eq!(out.status.code(), Some(9), "{}", stderr(&out));
    let second = json(&out);
    assert_eq!(second["complete"], true, "{second:#}");
    let why = second["copy_error"].as_str().unwrap();
    assert!(why.contains("the backup is complete"), "{why}");
    assert!(
        why.contains("wrong password for the copy 'offsite'"),
        "{why}"
    );
    assert!(
        stderr(&out).contains("copy --to offsite"),
        "{}",
        stderr(&out)
    );
    let sets = t.sets().await;
    assert_eq!(sets.len(), 2);
    assert!(sets.iter().all(|s| s["complete"] == true), "{sets:#?}");
    assert_eq!(files_under(&dir), copy_before, "a refused copy wrote");

    // `copy` alone with the wrong password: exit 5, one line, nothing changed on either side.
    let main_before = files_under(&t.repo_dir());
    let out = obk(&t, &target, &["copy", "--to", "offsite"]).await;
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(one_line(&out).contains("wrong password for the copy 'offsite'"));
    assert!(!stderr(&out).contains(COPY_PASSWORD));
    assert_eq!(files_under(&t.repo_dir()), main_before);
    assert_eq!(files_under(&dir), copy_before);

    // Fixed: the next copy catches up with the set the failed one left behind.
    std::fs::write(copy_password_file(&t), format!("{COPY_PASSWORD}\n")).unwrap();
    let out = obk_ok(&t, &target, &["--json", "copy", "--to", "offsite"]).await;
    let caught_up = json(&out);
    assert_eq!(caught_up["copied"], 1, "{caught_up:#}");
    assert_eq!(caught_up["already_there"], 1);
    assert_eq!(sets_in_copy(&t, &target, "offsite").await.len(), 2);

    // `backup --all` copies once, after the last instance.
    let out = obk_ok(&t, &target, &["--json", "backup", "--all"]).await;
    let all = json(&out);
    assert_eq!(all["copies"][0]["copied"], 1, "{all:#}");
    assert_eq!(all["copies"][0]["already_there"], 2);
    assert_eq!(sets_in_copy(&t, &target, "offsite").await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_copy_after_a_backup_by_hand_or_after_all_is_told_to_notify_and_metrics_and_its_recovery_too()
 {
    use crate::notify::{Receiver, parse_metrics, sample};
    let t = TestLab::start().await;
    t.init().await;
    let dir = t.dir.path().join("offsite");
    let target = Target::local(&dir);
    set_copy(&t, "offsite", &target, true, &[]);
    obk_ok(&t, &target, &["init", "--copy", "offsite"]).await;
    let hooks = Receiver::start();
    let textfile = t.dir.path().join("octobackup.prom");
    let (failures, recoveries, tf) = (
        hooks.url("/failure"),
        hooks.url("/recovery"),
        textfile.display().to_string(),
    );
    t.edit_config(move |c| {
        let notify: toml::Table = toml::from_str(&format!(
            "on = \"failure\"\n[[webhook]]\nurl = \"{failures}\"\n[[webhook]]\nurl = \"{recoveries}\"\non = \"recovery\"\n"
        ))
        .unwrap();
        c.insert("notify".into(), notify.into());
        let metrics: toml::Table = toml::from_str(&format!("textfile = '{tf}'")).unwrap();
        c.insert("metrics".into(), metrics.into());
    });
    let copy = [("octopus_instance", "OctopusServer"), ("copy", "offsite")];
    // What the textfile says of the copy's last run: 1 passed, 0 failed.
    let copy_last_run = || {
        sample(
            &parse_metrics(textfile.to_str().unwrap()),
            "octobackup_copy_last_run_success",
            &copy,
        )
    };
    let instance = [("octopus_instance", "OctopusServer")];

    // 1. Backup and copy pass: on = "failure" tells no one; the metrics say the copy passed.
    obk_ok(&t, &target, &["backup"]).await;
    assert!(hooks.to("/").is_empty(), "{:?}", hooks.to("/"));
    let m = parse_metrics(textfile.to_str().unwrap());
    assert_eq!(copy_last_run(), Some(1.0));
    let copied_at = sample(&m, "octobackup_copy_last_success_timestamp_seconds", &copy).unwrap();

    // 2. The copy's password is wrong: exit 9, told to both targets as a failed copy that names
    // the copy, the cause and that the set is complete; the metrics say the copy failed and the
    // backup passed.
    std::fs::write(copy_password_file(&t), "not the copy's password\n").unwrap();
    let out = obk(&t, &target, &["--json", "backup"]).await;
    assert_eq!(out.status.code(), Some(9), "{}", stderr(&out));
    let set_id = json(&out)["set_id"].as_str().unwrap().to_string();
    assert!(
        t.sets()
            .await
            .iter()
            .any(|s| s["set_id"] == set_id.as_str() && s["complete"] == true)
    );
    for path in ["/failure", "/recovery"] {
        let told = hooks.to(path);
        assert_eq!(told.len(), 1, "{path}: {told:#?}");
        let failure = told_copy_failure(&told[0], 9, "OctopusServer");
        assert!(
            failure.contains("the backup is complete (its set is in the main repository)"),
            "{failure}"
        );
    }
    let m = parse_metrics(textfile.to_str().unwrap());
    assert_eq!(copy_last_run(), Some(0.0));
    assert_eq!(
        sample(&m, "octobackup_copy_last_success_timestamp_seconds", &copy),
        Some(copied_at),
        "a failed copy keeps the last success's time"
    );
    let failed = [
        ("octopus_instance", "OctopusServer"),
        ("copy", "offsite"),
        ("result", "failure"),
    ];
    assert_eq!(sample(&m, "octobackup_copy_runs_total", &failed), Some(1.0));
    assert_eq!(
        sample(&m, "octobackup_last_run_success", &instance),
        Some(1.0)
    );

    // 3. Fixed: the next backup's copy passes and catches up; only on = "recovery" hears of it.
    std::fs::write(copy_password_file(&t), format!("{COPY_PASSWORD}\n")).unwrap();
    obk_ok(&t, &target, &["backup"]).await;
    assert_eq!(hooks.to("/failure").len(), 1);
    let told = hooks.to("/recovery");
    assert_eq!(told.len(), 2, "{told:#?}");
    assert_eq!(told[1]["event"], "copy");
    assert_eq!(told[1]["status"], "success");
    assert_eq!(told[1]["recovery"], true);
    assert_eq!(sets_in_copy(&t, &target, "offsite").await.len(), 3);
    assert_eq!(copy_last_run(), Some(1.0));

    // 4. `copy --to` run by hand is told the same way, in its own words and with its own exit
    // code (no backup ran, so none is said complete).
    std::fs::write(copy_password_file(&t), "not the copy's password\n").unwrap();
    let out = obk(&t, &target, &["copy", "--to", "offsite"]).await;
    let code = out.status.code().unwrap();
    assert_ne!(code, 0, "{}", stderr(&out));
    let told = hooks.to("/failure");
    assert_eq!(told.len(), 2, "{told:#?}");
    let failure = told_copy_failure(&told[1], code, "every instance");
    assert!(
        failure.starts_with("the copy to 'offsite' failed: ")
            && !failure.contains("the backup is complete"),
        "{failure}"
    );
    assert_eq!(copy_last_run(), Some(0.0));
    std::fs::write(copy_password_file(&t), format!("{COPY_PASSWORD}\n")).unwrap();
    obk_ok(&t, &target, &["copy", "--to", "offsite"]).await;
    let told = hooks.to("/recovery");
    assert_eq!(told.len(), 4, "{told:#?}");
    assert_eq!(told[3]["event"], "copy");
    assert_eq!(told[3]["recovery"], true);
    // A copy name that is not in the config is a typo: exit 2, nothing told.
    let out = obk(&t, &target, &["copy", "--to", "nowhere"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(hooks.to("/").len(), 6, "{:#?}", hooks.to("/"));

    // 5. `backup --all` copies once, after the last instance: that copy is told as every
    // instance's, the backups complete.
    std::fs::write(copy_password_file(&t), "not the copy's password\n").unwrap();
    let out = obk(&t, &target, &["backup", "--all"]).await;
    assert_eq!(out.status.code(), Some(9), "{}", stderr(&out));
    let told = hooks.to("/failure");
    assert_eq!(told.len(), 3, "{told:#?}");
    let failure = told_copy_failure(&told[2], 9, "every instance");
    assert!(
        failure.contains("the backup is complete (its set is in the main repository)"),
        "{failure}"
    );
    assert_eq!(copy_last_run(), Some(0.0));
}

/// A notification of the copy 'offsite' (of `instance`'s sets) that failed with `exit` for its wrong
/// password, with the fix and without the password; returns its `failure`.
fn told_copy_failure(e: &serde_json::Value, exit: i32, instance: &str) -> String {
    assert_eq!(e["event"], "copy", "{e:#}");
    assert_eq!(e["copy"], "offsite");
    assert_eq!(e["instance"], instance);
    assert_eq!(e["status"], "failed");
    assert_eq!(e["exit_code"], exit);
    let failure = e["failure"].as_str().unwrap();
    assert!(
        failure.contains("wrong password for the copy 'offsite'"),
        "{failure}"
    );
    assert!(
        e["fix"]
            .as_str()
            .unwrap()
            .contains("octobackup copy --to offsite"),
        "{e:#}"
    );
    assert!(!e.to_string().contains(COPY_PASSWORD));
    failure.to_string()
}

/// doctor's lines for the copies: (status, detail, fix) in config order.
fn copy_checks(out: &Output) -> Vec<(String, String, String)> {
    let r: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor --json: {e}: {}", stderr(out)));
    r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["name"] == "copy")
        .map(|k| {
            (
                k["status"].as_str().unwrap().to_string(),
                k["detail"].as_str().unwrap().to_string(),
                k["fix"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_every_copy_and_names_a_missing_one_and_a_wrong_password_with_the_fix() {
    let t = TestLab::start().await;
    t.init().await;
    let target = Target::local(&t.dir.path().join("offsite"));
    set_copy(&t, "offsite", &target, true, &[]);
    obk_ok(&t, &target, &["init", "--copy", "offsite"]).await;

    // A healthy copy: a line of its own that passes, and doctor passes.
    let out = obk(&t, &target, &["--json", "doctor"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines = copy_checks(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].0, "pass", "{lines:?}");
    assert!(lines[0].1.starts_with("'offsite': opened "), "{lines:?}");
    assert!(lines[0].1.contains("writable"), "{lines:?}");

    // A second copy never made: its line fails with `init --copy`, the first still passes.
    let missing = Target::local(&t.dir.path().join("never-made"));
    set_copy(&t, "second", &missing, false, &[]);
    let out = obk(&t, &target, &["--json", "doctor"]).await;
    assert_eq!(out.status.code(), Some(8), "{}", stderr(&out));
    let lines = copy_checks(&out);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0].0, "pass", "{lines:?}");
    assert_eq!(lines[1].0, "fail", "{lines:?}");
    assert!(
        lines[1].1.starts_with("'second': no repository found"),
        "{lines:?}"
    );
    assert!(
        lines[1].1.contains("octobackup init --copy second"),
        "{lines:?}"
    );
    assert!(lines[1].2.contains("init --copy second"), "{lines:?}");
    assert!(
        !t.dir.path().join("never-made").exists(),
        "doctor made the copy"
    );
    let human = obk(&t, &target, &["doctor"]).await;
    assert!(stdout(&human).contains("FAIL copy"), "{}", stdout(&human));
    assert!(
        stderr(&human).contains("failed: copy"),
        "{}",
        stderr(&human)
    );

    // The first copy's password is wrong: its line fails and says so, without the password.
    std::fs::write(copy_password_file(&t), "not the copy's password\n").unwrap();
    let out = obk(&t, &target, &["--json", "doctor"]).await;
    assert_eq!(out.status.code(), Some(8), "{}", stderr(&out));
    let lines = copy_checks(&out);
    assert_eq!(lines[0].0, "fail", "{lines:?}");
    assert!(
        lines[0].1.contains("wrong password for the copy 'offsite'"),
        "{lines:?}"
    );
    assert!(lines[0].2.contains("password_file"), "{lines:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(COPY_PASSWORD));
    assert!(!stderr(&out).contains(COPY_PASSWORD));
}

/// Gives the `[[copy]]` named `name` its own `[copy.retention]` keep_last.
fn copy_keep_last(t: &TestLab, name: &str, n: i64) {
    t.edit_config(|c| {
        let copies = c["copy"].as_array_mut().unwrap();
        let copy = copies
            .iter_mut()
            .find(|v| v["name"].as_str() == Some(name))
            .unwrap();
        let mut retention = toml::Table::new();
        retention.insert("keep_last".into(), n.into());
        copy.as_table_mut()
            .unwrap()
            .insert("retention".into(), retention.into());
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_and_prune_on_a_copy_keep_its_own_policy_and_leave_the_main_repository_alone() {
    let t = TestLab::start().await;
    t.init().await;
    t.edit_config(|c| {
        let mut retention = toml::Table::new();
        retention.insert("keep_last".into(), 2.into());
        c.insert("retention".into(), retention.into());
    });
    // "offsite" has its own policy (keep 1); "plain" has none (the instance's: keep 2).
    let offsite = Target::local(&t.dir.path().join("offsite"));
    let plain = Target::local(&t.dir.path().join("plain"));
    set_copy(&t, "offsite", &offsite, true, &[]);
    set_copy(&t, "plain", &plain, true, &[]);
    copy_keep_last(&t, "offsite", 1);
    obk_ok(&t, &offsite, &["init", "--copy", "offsite"]).await;
    obk_ok(&t, &plain, &["init", "--copy", "plain"]).await;
    let mut sets = Vec::new();
    for _ in 0..3 {
        let out = obk_ok(&t, &offsite, &["--json", "backup"]).await;
        sets.push(json(&out)["set_id"].as_str().unwrap().to_string());
    }
    let all: BTreeSet<String> = sets.iter().cloned().collect();
    assert_eq!(sets_in_copy(&t, &offsite, "offsite").await, all);
    assert_eq!(sets_in_copy(&t, &plain, "plain").await, all);

    // forget --copy: the copy's own policy there; the main repository is not touched.
    let main_before = files_under(&t.repo_dir());
    let out = obk_ok(&t, &offsite, &["--json", "forget", "--copy", "offsite"]).await;
    let r = json(&out);
    assert_eq!(r["copy"], "offsite", "{r:#}");
    assert_eq!(r["instances"][0]["policy"], "keep-last 1", "{r:#}");
    assert_eq!(
        r["instances"][0]["dropped"].as_array().unwrap().len(),
        2,
        "{r:#}"
    );
    assert_eq!(
        sets_in_copy(&t, &offsite, "offsite").await,
        BTreeSet::from([sets[2].clone()])
    );
    let out = obk_ok(&t, &offsite, &["prune", "--copy", "offsite", "--instant"]).await;
    assert!(
        stdout(&out).contains("in the copy 'offsite'"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        files_under(&t.repo_dir()),
        main_before,
        "the main repository changed"
    );
    assert_eq!(t.sets().await.len(), 3);
    assert_eq!(
        sets_in_copy(&t, &plain, "plain").await,
        all,
        "another copy changed"
    );
    obk_ok(&t, &offsite, &["check", "--copy", "offsite"]).await;

    // A copy without its own policy: forget --copy applies the instance's (keep 2).
    let out = obk_ok(&t, &plain, &["--json", "forget", "--copy", "plain"]).await;
    assert_eq!(json(&out)["instances"][0]["policy"], "keep-last 2");
    assert_eq!(
        sets_in_copy(&t, &plain, "plain").await,
        BTreeSet::from([sets[1].clone(), sets[2].clone()])
    );
    assert_eq!(
        files_under(&t.repo_dir()),
        main_before,
        "the main repository changed"
    );

    // backup --forget: the main repository its policy (keep 2), the copy with its own policy
    // that one (keep 1); the copy without one keeps every set it has.
    let out = obk_ok(&t, &offsite, &["--json", "backup", "--forget"]).await;
    let r = json(&out);
    let new = r["set_id"].as_str().unwrap().to_string();
    assert_eq!(t.sets().await.len(), 2, "{r:#}");
    let copies = r["copies"].as_array().unwrap();
    assert_eq!(copies[0]["to"], "offsite");
    assert_eq!(copies[0]["forget"][0]["policy"], "keep-last 1", "{r:#}");
    assert!(copies[1].get("forget").is_none(), "{r:#}");
    assert_eq!(
        sets_in_copy(&t, &offsite, "offsite").await,
        BTreeSet::from([new.clone()])
    );
    assert_eq!(
        sets_in_copy(&t, &plain, "plain").await,
        BTreeSet::from([sets[1].clone(), sets[2].clone(), new])
    );
}

/// A forwarder in front of a storage server that, once `limit` bytes went from the client to
/// the server, either cuts every connection and refuses new ones (the server stops in the middle
/// of a copy) or holds them, forwarding nothing more (the copy hangs there, to be stopped by a
/// signal): at the same point whatever the timing.
struct Midway {
    port: u16,
    tripped: Arc<AtomicBool>,
    released: Arc<AtomicBool>,
}

impl Midway {
    fn cut_after(upstream: &str, limit: u64) -> Midway {
        Self::new(upstream, limit, false)
    }

    fn hold_after(upstream: &str, limit: u64) -> Midway {
        Self::new(upstream, limit, true)
    }

    fn new(upstream: &str, limit: u64, hold: bool) -> Midway {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let tripped = Arc::new(AtomicBool::new(false));
        let released = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let conns: Arc<std::sync::Mutex<Vec<TcpStream>>> = Default::default();
        let upstream = upstream.to_string();
        let (flag, done) = (tripped.clone(), released.clone());
        std::thread::spawn(move || {
            // After a cut, dropping the listener refuses new connections.
            let cut = |f: &AtomicBool| f.load(Ordering::SeqCst) && !hold;
            while !cut(&flag) && !done.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                conns.lock().unwrap().push(client.try_clone().unwrap());
                conns.lock().unwrap().push(server.try_clone().unwrap());
                let (mut up_from, mut up_to) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (sent, flag, done, conns) =
                    (sent.clone(), flag.clone(), done.clone(), conns.clone());
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        if flag.load(Ordering::SeqCst) && hold {
                            // Held: nothing more goes through until the test ends.
                            while !done.load(Ordering::SeqCst) {
                                std::thread::sleep(std::time::Duration::from_millis(20));
                            }
                            break;
                        }
                        let n = match up_from.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if up_to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        if sent.fetch_add(n as u64, Ordering::SeqCst) + n as u64 >= limit {
                            flag.store(true, Ordering::SeqCst);
                            if !hold {
                                for c in conns.lock().unwrap().drain(..) {
                                    let _ = c.shutdown(std::net::Shutdown::Both);
                                }
                                break;
                            }
                        }
                    }
                    let _ = up_to.shutdown(std::net::Shutdown::Both);
                });
                let (mut down_from, mut down_to) = (server, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut down_from, &mut down_to);
                    let _ = down_to.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Midway {
            port,
            tripped,
            released,
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn tripped(&self) -> bool {
        self.tripped.load(Ordering::SeqCst)
    }
}

impl Drop for Midway {
    fn drop(&mut self) {
        self.released.store(true, Ordering::SeqCst);
    }
}

/// SIGTERM to a run held by a [`Midway`] gate, and its output. The bound only makes a run that
/// waits for the held request fail the test (`what` said) instead of hanging it.
async fn sigterm_within_300_s(child: std::process::Child, what: &str) -> Output {
    tokio::time::timeout(std::time::Duration::from_secs(300), sigterm(child))
        .await
        .expect(what)
}

#[tokio::test(flavor = "multi_thread")]
async fn copy_to_s3_on_moto_read_by_restic_and_a_target_stopped_midway_is_finished_next_time() {
    let s3 = servers::start_s3();
    let mut t = TestLab::start().await;
    let identity = with_escrow(&t);
    let source = two_sets_and_a_part(&mut t).await;
    let target = Target::s3(&s3.server.addr(), "offsite");
    set_copy(&t, "offsite", &target, false, &[]);
    obk_ok(&t, &target, &["init", "--copy", "offsite"]).await;
    let out = obk_ok(&t, &target, &["--json", "copy", "--to", "offsite"]).await;
    let first = json(&out);
    assert_eq!(first["copied"], 2, "{first:#}");
    assert_eq!(first["incomplete_left_out"], 1);
    let full_bytes = first["bytes_sent"].as_u64().unwrap();

    let out = restic_ok(restic(&t, &target, &["snapshots", "--json"]), "snapshots");
    let copied: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let copied_tags: BTreeSet<Vec<String>> = copied.iter().map(tags).collect();
    let source_tags: BTreeSet<Vec<String>> = source.iter().map(|(_, t)| t.clone()).collect();
    assert_eq!(copied_tags, source_tags);
    restic_ok(
        restic(&t, &target, &["check", "--read-data"]),
        "check --read-data",
    );
    let from_copy = t.dir.path().join("restic-from-copy");
    restic_ok(
        restic(
            &t,
            &target,
            &["restore", "latest", "--target", from_copy.to_str().unwrap()],
        ),
        "restore",
    );
    let from_main = t.dir.path().join("restic-from-main");
    let newest_main = &source.iter().max_by_key(|(id, _)| {
        copied
            .iter()
            .find(|s| s["original"].as_str() == Some(id))
            .map(|s| s["time"].as_str().unwrap().to_string())
    });
    let out = t.restic(&[
        "restore",
        &newest_main.unwrap().0,
        "--target",
        from_main.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        hash_tree(&from_copy).unwrap(),
        hash_tree(&from_main).unwrap(),
        "byte for byte"
    );

    copy_again_sends_nothing_checks_drills_and_escrows(&t, &target, &identity).await;

    // A second target whose server stops half way through the copy.
    let direct = Target::s3(&s3.server.addr(), "midway");
    set_copy(&t, "midway", &direct, false, &[]);
    obk_ok(&t, &direct, &["init", "--copy", "midway"]).await;
    let gate = Midway::cut_after(&s3.server.addr(), full_bytes / 2);
    set_copy(
        &t,
        "midway",
        &Target::s3(&gate.addr(), "midway"),
        false,
        &[("retry_budget", "1s")],
    );
    let out = obk(&t, &direct, &["--json", "copy", "--to", "midway"]).await;
    assert!(
        gate.tripped(),
        "the server was not stopped: {}",
        stderr(&out)
    );
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let err = one_line(&out);
    assert!(err.contains("copy to 'midway'"), "{err}");
    assert!(err.contains("[[copy]] 'midway' retry_budget = 1s"), "{err}");
    // Straight to the server again: only whole sets there, and the copy finishes.
    set_copy(&t, "midway", &direct, false, &[]);
    let there = sets_in_copy(&t, &direct, "midway").await;
    assert!(there.len() < 2, "the stop came before the end: {there:?}");
    obk_ok(&t, &direct, &["check", "--copy", "midway"]).await;
    let out = obk_ok(&t, &direct, &["--json", "copy", "--to", "midway"]).await;
    let finished = json(&out);
    assert_eq!(
        finished["copied"].as_u64().unwrap() + finished["already_there"].as_u64().unwrap(),
        2,
        "{finished:#}"
    );
    assert_eq!(
        finished["already_there"].as_u64().unwrap() as usize,
        there.len()
    );
    assert_eq!(sets_in_copy(&t, &direct, "midway").await.len(), 2);
    obk_ok(&t, &direct, &["check", "--copy", "midway", "--read-data"]).await;
    restic_ok(
        restic(&t, &direct, &["check", "--read-data"]),
        "check of midway",
    );
    // A copy stopped by SIGTERM while the storage holds a request: exit 130 at once (the set
    // being copied is left unfinished, so not in the target), and the next copy finishes.
    let direct = Target::s3(&s3.server.addr(), "held");
    set_copy(&t, "held", &direct, false, &[]);
    obk_ok(&t, &direct, &["init", "--copy", "held"]).await;
    let gate = Midway::hold_after(&s3.server.addr(), full_bytes / 2);
    set_copy(&t, "held", &Target::s3(&gate.addr(), "held"), false, &[]);
    let mut cmd = t.command(&["--json", "copy", "--to", "held"]);
    cmd.envs(direct.env.iter().cloned())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    // Waits for the hold (a bound only so that a broken test ends).
    for _ in 0..6000 {
        if gate.tripped() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(gate.tripped(), "the copy never reached the middle");
    let out = sigterm_within_300_s(
        child,
        "the copy did not end after SIGTERM: it waits for the set being copied",
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let err = one_line(&out);
    assert!(err.contains("SIGTERM"), "{err}");
    assert!(err.contains("octobackup copy --to held"), "{err}");
    drop(gate);
    set_copy(&t, "held", &direct, false, &[]);
    let there = sets_in_copy(&t, &direct, "held").await;
    assert!(there.len() < 2, "{there:?}");
    let out = obk_ok(&t, &direct, &["--json", "copy", "--to", "held"]).await;
    assert_eq!(
        json(&out)["copied"].as_u64().unwrap() as usize,
        2 - there.len()
    );
    obk_ok(&t, &direct, &["check", "--copy", "held", "--read-data"]).await;
    // After a backup the copy runs once the window is over: held in the middle of the new set,
    // maintenance mode is already back off and the set is complete in the main repository; a
    // stop then ends the copy alone (exit 130) and the set stands.
    t.lab.churn(1).await.unwrap();
    let gate = Midway::hold_after(&s3.server.addr(), 128 * 1024);
    set_copy(&t, "held", &Target::s3(&gate.addr(), "held"), true, &[]);
    let changes_before = maintenance_changes(&t.events()).len();
    let mut cmd = t.command(&["--json", "backup"]);
    cmd.envs(direct.env.iter().cloned())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    // Waits for the hold (a bound only so that a broken test ends).
    for _ in 0..15000 {
        if gate.tripped() || child.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        gate.tripped(),
        "the copy after the backup never reached the middle"
    );
    assert!(
        !t.lab.octopus().maintenance(),
        "maintenance mode is on while the copy runs"
    );
    let changes = maintenance_changes(&t.events());
    assert_eq!(changes.len(), changes_before + 2, "{changes:?}");
    assert!(!changes.last().unwrap().1);
    assert_eq!(
        complete_in_main(&t).len(),
        3,
        "the new set is complete before the copy"
    );
    let out = sigterm_within_300_s(
        child,
        "the backup did not end after SIGTERM during its copy",
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let result = json(&out);
    assert_eq!(result["complete"], true, "{result:#}");
    assert!(
        result["copy_error"]
            .as_str()
            .unwrap()
            .contains("the backup is complete"),
        "{result:#}"
    );
    assert_eq!(complete_in_main(&t).len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn copy_to_azure_blob_on_azurite_is_checked_listed_and_escrowed() {
    // Stock restic 0.14 cannot reach Azurite on a free port (see backends.rs): octobackup checks.
    let azurite = servers::start_azurite();
    let mut t = TestLab::start().await;
    let identity = with_escrow(&t);
    let source = two_sets_and_a_part(&mut t).await;
    let target = Target::azure(&azurite, "offsite");
    set_copy(&t, "offsite", &target, false, &[]);
    obk_ok(&t, &target, &["init", "--copy", "offsite"]).await;
    let out = obk_ok(&t, &target, &["--json", "copy", "--to", "offsite"]).await;
    let first = json(&out);
    assert_eq!(first["copied"], 2, "{first:#}");
    assert_eq!(first["incomplete_left_out"], 1);
    let there = sets_in_copy(&t, &target, "offsite").await;
    let main_sets = complete_set_ids(&t).await;
    assert_eq!(there, main_sets);
    assert_eq!(source.len(), 2);
    copy_again_sends_nothing_checks_drills_and_escrows(&t, &target, &identity).await;
}

/// A copy to an SFTP server (OpenSSH's sshd): the complete sets copied, nothing sent again,
/// checked with its data read, drilled, the key recovered from it; no ssh process or control
/// folder outlives the runs.
#[tokio::test(flavor = "multi_thread")]
async fn copy_to_sftp_on_openssh_is_checked_drilled_and_escrowed() {
    use crate::backends::{Backend, Kind};
    let b = tokio::task::spawn_blocking(|| Backend::start(Kind::Sftp))
        .await
        .unwrap();
    let place = b.place(BUCKET, "offsite").unwrap();
    let mut t = TestLab::start().await;
    let identity = with_escrow(&t);
    two_sets_and_a_part(&mut t).await;
    let target = Target {
        location: place.location,
        options: place.options,
        env: place.env,
    };
    set_copy(&t, "offsite", &target, false, &[]);
    obk_ok(&t, &target, &["init", "--copy", "offsite"]).await;
    let out = obk_ok(&t, &target, &["--json", "copy", "--to", "offsite"]).await;
    let first = json(&out);
    assert_eq!(first["copied"], 2, "{first:#}");
    assert_eq!(first["incomplete_left_out"], 1);
    let main_sets = complete_set_ids(&t).await;
    assert_eq!(sets_in_copy(&t, &target, "offsite").await, main_sets);
    copy_again_sends_nothing_checks_drills_and_escrows(&t, &target, &identity).await;
    // Each run ends its ssh masters; one still closing is given a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut left = b.ssh_leftovers();
    while !left.is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        left = b.ssh_leftovers();
    }
    assert!(left.is_empty(), "ssh leftovers: {left:#?}");
}

/// An off-site copy in a Ceph RGW bucket with Object Lock (governance mode, 3 days): the copy
/// works and doctor reports the lock on its line; `forget --copy` leaves the sets under the lock
/// alone and says until when, `--set` of one is refused, `prune --copy` removes nothing, and
/// `backup --forget` does the same there; the main repository is not touched by any of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_locked_copy_on_ceph_is_copied_to_and_forget_there_respects_the_lock() {
    let ceph = tokio::task::spawn_blocking(servers::ceph).await.unwrap();
    let bucket = "locked-copy";
    {
        let ceph = ceph.clone();
        tokio::task::spawn_blocking(move || {
            ceph.owner(bucket)
                .create_bucket(Some(&octobackup_repo::ObjectLock {
                    mode: "GOVERNANCE".into(),
                    days: Some(3),
                }))
        })
        .await
        .unwrap()
        .unwrap();
    }
    let target = Target {
        location: format!("s3:{}/{bucket}/offsite", ceph.endpoint()),
        options: Vec::new(),
        env: vec![
            ("AWS_ACCESS_KEY_ID".into(), ceph.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY".into(), ceph.secret_key.clone()),
        ],
    };
    let mut t = TestLab::start().await;
    t.init().await;
    set_copy(&t, "locked", &target, true, &[]);
    copy_keep_last(&t, "locked", 1);
    let out = obk_ok(&t, &target, &["init", "--copy", "locked"]).await;
    assert!(
        stdout(&out).contains("GOVERNANCE mode, 3 day(s) default retention"),
        "{}",
        stdout(&out)
    );
    let first = json(&obk_ok(&t, &target, &["--json", "backup"]).await)["set_id"]
        .as_str()
        .unwrap()
        .to_string();
    t.lab.churn(1).await.unwrap();
    obk_ok(&t, &target, &["backup"]).await;
    assert_eq!(sets_in_copy(&t, &target, "locked").await.len(), 2);

    let out = obk_ok(&t, &target, &["--json", "doctor"]).await;
    let lines = copy_checks(&out);
    assert_eq!(lines[0].0, "pass", "{lines:?}");
    assert!(
        lines[0]
            .1
            .contains("GOVERNANCE mode, 3 day(s) default retention"),
        "{lines:?}"
    );

    // By the copy's policy (keep 1): the older set stays, with the date it may go.
    let main_before = files_under(&t.repo_dir());
    let out = obk_ok(&t, &target, &["--json", "forget", "--copy", "locked"]).await;
    let r = json(&out);
    let inst = &r["instances"][0];
    assert_eq!(inst["dropped"].as_array().unwrap().len(), 0, "{r:#}");
    assert_eq!(inst["left_alone"][0]["set_id"], first.as_str(), "{r:#}");
    assert!(
        inst["left_alone"][0]["reasons"]
            .to_string()
            .contains("Object Lock (GOVERNANCE mode) until"),
        "{r:#}"
    );
    // Named: refused whole, nothing removed.
    let out = obk(
        &t,
        &target,
        &["forget", "--copy", "locked", "--set", &first],
    )
    .await;
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(
        one_line(&out).contains(&format!("cannot forget set {first}")),
        "{}",
        stderr(&out)
    );
    let out = obk_ok(&t, &target, &["--json", "prune", "--copy", "locked"]).await;
    let p = json(&out);
    assert_eq!(p["copy"], "locked", "{p:#}");
    assert_eq!(p["packs_removed"], 0, "{p:#}");
    assert_eq!(p["locked_days"], 3, "{p:#}");
    assert_eq!(sets_in_copy(&t, &target, "locked").await.len(), 2);

    // backup --forget: the same in the copy; the main repository's policy keeps all its sets.
    t.edit_config(|c| {
        let mut retention = toml::Table::new();
        retention.insert("keep_last".into(), 10.into());
        c.insert("retention".into(), retention.into());
    });
    let out = obk_ok(&t, &target, &["--json", "backup", "--forget"]).await;
    let r = json(&out);
    let forgot = &r["copies"][0]["forget"][0];
    assert_eq!(forgot["dropped"].as_array().unwrap().len(), 0, "{r:#}");
    assert_eq!(forgot["left_alone"].as_array().unwrap().len(), 2, "{r:#}");
    assert_eq!(sets_in_copy(&t, &target, "locked").await.len(), 3);
    obk_ok(&t, &target, &["check", "--copy", "locked"]).await;
    assert!(
        files_under(&t.repo_dir()).is_superset(&main_before),
        "the copy's forget removed something from the main repository"
    );
    assert_eq!(t.sets().await.len(), 3);
}
