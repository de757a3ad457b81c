//! The maintenance window never waits on storage: nothing inside it touches the
//! repository, what changed inside it is exactly what the set holds, and a window past its
//! budget puts maintenance mode back and completes nothing.

use crate::common::*;
use octobackup_lab::fingerprint::hash_tree;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

type Folders = BTreeMap<String, BTreeMap<String, String>>;

fn folder_hashes(folders: &[(String, PathBuf)]) -> Folders {
    folders
        .iter()
        .map(|(name, path)| (name.clone(), hash_tree(path).unwrap()))
        .collect()
}

fn first_file(dir: &Path) -> PathBuf {
    let mut files = walk_files(dir);
    files.sort();
    files.into_iter().next().expect("a file in the lab folder")
}

/// The repository is moved away the moment maintenance mode goes on (a lab step hook, run before
/// octobackup hears that it is on) and put back the moment it goes off: the backup still
/// completes, so nothing inside the window read or wrote it. Files added, changed and removed
/// inside the window are exactly what the set holds; changes made after it are not; stock
/// restic restores the set byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_runs_without_the_repository_and_the_set_is_the_window() {
    let t = TestLab::start().await;
    t.init().await;
    // A first night, so the second one has a parent.
    t.ok(&["backup"]).await;

    let info = t.lab.info().clone();
    let folders: Vec<(String, PathBuf)> = vec![
        ("Packages".into(), info.folders.packages.clone()),
        ("Artifacts".into(), info.folders.artifacts.clone()),
        ("TaskLogs".into(), info.folders.task_logs.clone()),
        ("EventExports".into(), info.folders.event_exports.clone()),
    ];
    let log = first_file(&info.folders.task_logs);
    let removed = first_file(&info.folders.packages);
    let added = info.folders.artifacts.join("ServerTasks-9999/window.txt");
    let after = info.folders.artifacts.join("after-the-window.txt");

    let repo = t.repo_dir();
    let away = t.dir.path().join("repository-away");
    let expected: Arc<Mutex<Option<Folders>>> = Arc::default();
    let seen: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    {
        let (repo, away, expected, seen) =
            (repo.clone(), away.clone(), expected.clone(), seen.clone());
        let (log, removed, added, after, folders) = (
            log.clone(),
            removed.clone(),
            added.clone(),
            after.clone(),
            folders.clone(),
        );
        t.lab.event_log().on("maintenance_changed", move |e| {
            if e.detail["on"] == true {
                std::fs::rename(&repo, &away).expect("the repository is there before the window");
                seen.lock().unwrap().push("moved away");
                // Octopus's activity inside the window: a log grows, a package goes, an
                // artifact comes.
                let mut text = std::fs::read(&log).unwrap();
                text.extend_from_slice(b"appended inside the window\n");
                std::fs::write(&log, text).unwrap();
                std::fs::remove_file(&removed).unwrap();
                std::fs::create_dir_all(added.parent().unwrap()).unwrap();
                std::fs::write(&added, b"written inside the window").unwrap();
                *expected.lock().unwrap() = Some(folder_hashes(&folders));
            } else {
                std::fs::rename(&away, &repo)
                    .expect("the repository was still away when the window ended");
                seen.lock().unwrap().push("put back");
                // After the window: the same log grows again (in place, as Octopus writes),
                // and a new file comes. Neither belongs in the set.
                let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
                std::io::Write::write_all(&mut f, b"appended after the window\n").unwrap();
                std::fs::write(&after, b"written after the window").unwrap();
            }
        });
    }

    let out = t.ok(&["--json", "backup"]).await;
    assert_eq!(*seen.lock().unwrap(), ["moved away", "put back"]);
    assert!(!t.lab.octopus().maintenance());
    assert_backups_inside_window(&t.events());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["complete"], true);
    assert!(
        t.staging_files().is_empty(),
        "staging left: {:?}",
        t.staging_files()
    );

    let m: serde_json::Value = t.json(&["--json", "show", "latest"]).await;
    assert_eq!(
        m["window"]["folder_files_read"], 2,
        "the grown log and the new artifact are copied inside the window: {}",
        m["window"]
    );

    let target = t.dir.path().join("restic-restore");
    let r = t.restic(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert!(r.status.success(), "restic restore: {}", stderr(&r));
    let expected = expected
        .lock()
        .unwrap()
        .clone()
        .expect("the window was entered");
    for (name, files) in &expected {
        let restored = hash_tree(&target.join("folders").join(name)).unwrap();
        assert_eq!(
            &restored, files,
            "folder {name} is not as inside the window"
        );
    }
    let rel = |p: &Path, root: &Path| {
        p.strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/")
    };
    assert!(expected["Artifacts"].contains_key(&rel(&added, &info.folders.artifacts)));
    assert!(!expected["Packages"].contains_key(&rel(&removed, &info.folders.packages)));
    assert!(!expected["Artifacts"].contains_key(&rel(&after, &info.folders.artifacts)));
    let check = t.restic(&["check", "--read-data"]);
    assert!(check.status.success(), "restic check: {}", stderr(&check));
}

/// BACKUP DATABASE made slow (the lab's rate knob) and a two-second budget: the window is cut
/// short, maintenance mode goes back as found (off, then on when it was on), nothing is
/// complete, the run exits 1 saying the window overran and on what, and nothing is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_past_its_budget_puts_maintenance_back_and_completes_nothing() {
    let t = TestLab::start().await;
    t.init().await;
    t.set_wait("1s", "2s");
    let journal = t.journal_path();
    t.lab.sql().set_backup_rate(Some(16 * 1024));

    for found_on in [false, true] {
        if found_on {
            t.lab.octopus().set_maintenance(true, "admin");
        }
        let out = t.run(&["backup"]).await;
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("overran its budget (wait.max_window = 2s)")
                && err.contains("BACKUP DATABASE"),
            "{err}"
        );
        // The cut BACKUP was told to stop (ATTENTION on its connection), after the window.
        assert!(
            err.contains("SQL Server stopped the cut BACKUP DATABASE (ATTENTION, acknowledged)"),
            "{err}"
        );
        let events = t.events();
        let started = *seqs(&events, "backup_started").last().unwrap();
        let acknowledged = seqs(&events, "attention_acknowledged");
        // Found on, maintenance mode is left on: no change marks the window's end.
        let window_off = maintenance_changes(&events)
            .into_iter()
            .rfind(|c| c.0 > started)
            .map_or(started, |c| c.0);
        assert!(
            acknowledged.iter().any(|a| *a > window_off),
            "no ATTENTION acknowledged after the window closed: {acknowledged:?}, window closed at {window_off}"
        );
        assert_eq!(t.lab.octopus().maintenance(), found_on, "{err}");
        assert!(!journal.exists(), "the run journal was left: {err}");
        assert!(
            t.sets().await.iter().all(|s| s["complete"] == false),
            "{err}"
        );
        assert!(
            t.staging_files().is_empty(),
            "staging left: {:?}",
            t.staging_files()
        );
    }
    t.lab.sql().set_backup_rate(None);
    assert!(t.restic(&["check"]).status.success());

    // A budget that does not cover the task wait is refused before anything changes.
    t.lab.octopus().set_maintenance(false, "admin");
    t.edit_config(|c| {
        let w = TestLab::instance_table(c)["wait"].as_table_mut().unwrap();
        w.insert("max_window".into(), "1s".into());
    });
    t.fails(&["backup"], 2, "wait.max_window").await;
    assert!(!t.lab.octopus().maintenance());
}
