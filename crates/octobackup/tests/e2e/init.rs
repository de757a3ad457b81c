//! `octobackup init`: a repository stock restic reads, a config template for a new user, and
//! refusals that change nothing.

use crate::common::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Every file under `dir` with its bytes.
fn contents(dir: &Path) -> BTreeMap<std::path::PathBuf, Vec<u8>> {
    walk_files(dir)
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

/// The scrypt cost (N, r, p) of each key file of the repository at `repo`.
pub fn key_costs(repo: &Path) -> Vec<(u64, u64, u64)> {
    walk_files(&repo.join("keys"))
        .into_iter()
        .map(|p| {
            let key: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            let n = |f: &str| key[f].as_u64().unwrap_or_else(|| panic!("{f} in {key}"));
            (n("N"), n("r"), n("p"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_makes_a_repository_restic_reads_and_a_second_init_changes_nothing() {
    let t = TestLab::start().await;
    let out = t.ok(&["init"]).await;
    assert!(
        stdout(&out).contains("created repository"),
        "{}",
        stdout(&out)
    );
    let restic = t.restic(&["cat", "config"]);
    assert!(restic.status.success(), "restic: {}", stderr(&restic));
    // The key costs N=2^16, r=8, p=2, OWASP's equal of scrypt's recommended N=2^17, r=8, p=1,
    // in two lanes derived on two cores (restic calibrates its own; the tests' cheap keys come
    // from the lab, never from the product's init).
    assert_eq!(key_costs(&t.repo_dir()), vec![(1 << 16, 8, 2)]);
    let before = contents(&t.repo_dir());
    assert!(!before.is_empty());

    let out = t
        .fails(&["init"], 5, "a repository already exists at")
        .await;
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    assert_eq!(
        contents(&t.repo_dir()),
        before,
        "a second init changed the repository"
    );

    // The repository still works: a backup into it is listed.
    t.ok(&["backup"]).await;
    assert_eq!(t.sets().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_for_a_new_user_writes_the_config_template_and_refuses_what_it_cannot_do() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("octobackup.toml");
    let repo = dir.path().join("repository");
    let run = |args: &[&str], password: Option<&str>| {
        let mut c = Command::new(exe());
        c.arg("--config").arg(&config).args(args);
        c.env_remove("OCTOBACKUP_PASSWORD");
        if let Some(p) = password {
            c.env("OCTOBACKUP_PASSWORD", p);
        }
        c.stdin(std::process::Stdio::null());
        c.output().unwrap()
    };

    // Nowhere to put it: said, nothing written.
    let out = run(&["init"], Some("correct horse"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("octobackup init --repository PATH"),
        "{}",
        stderr(&out)
    );
    assert!(!config.exists());

    // No password and no terminal to ask on: said, nothing written.
    let out = run(&["init", "--repository", repo.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no repository password"),
        "{}",
        stderr(&out)
    );
    assert!(!repo.exists(), "a repository was made without a password");
    assert!(!config.exists());

    let out = run(
        &["init", "--repository", repo.to_str().unwrap()],
        Some("correct horse"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("wrote a config template to"),
        "{}",
        stdout(&out)
    );
    assert!(
        !stdout(&out).contains("correct horse") && !stderr(&out).contains("correct horse"),
        "the password was printed"
    );
    let template = std::fs::read_to_string(&config).unwrap();
    assert!(
        template.contains(&repo.display().to_string()),
        "the template does not name the repository:\n{template}"
    );
    assert!(
        !template.contains("correct horse"),
        "the password was written to the config"
    );

    // The template is a config octobackup reads: the empty repository lists no set.
    let out = run(&["snapshots"], Some("correct horse"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("0 set(s)"), "{}", stdout(&out));
    // A wrong password for it is a repository error, not a crash.
    let out = run(&["snapshots"], Some("wrong"));
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tests_cheap_key_opens_for_octobackup_and_stock_restic() {
    // `t.init()` (every other test's repository): the lab's key with scrypt's cost lowered, as
    // restic's tests lower theirs. It must open as any key does, for octobackup and restic.
    let t = TestLab::start().await;
    t.init().await;
    assert_eq!(key_costs(&t.repo_dir()), vec![(1 << 10, 8, 1)]);
    t.ok(&["backup"]).await;
    assert_eq!(t.sets().await.len(), 1);
    let restic = t.restic(&["snapshots", "--json"]);
    assert!(restic.status.success(), "restic: {}", stderr(&restic));
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&restic.stdout).unwrap();
    assert_eq!(listed.len(), 1);
}
