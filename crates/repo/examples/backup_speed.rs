//! A focused measurement of a first backup (issue 13) beside stock restic on the same folder.
//! Not a test: timings only mean something as ratios taken in the same run.
//!
//! ```text
//! cargo build --release -p octobackup-repo --example backup_speed
//! backup_speed SRC DIR [ROUNDS [LEVEL]]  # per round: octobackup's engine (zstd LEVEL, default
//!                                        # the repository's), then restic, each into a fresh
//!                                        # repository under DIR; wall and CPU seconds, ratios
//! ```
//!
//! The page cache is left warm (SRC is read once first), so both read from memory and the
//! comparison is of the work done on the bytes, not of the disk.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use octobackup_repo::{NoProgress, Password, Repo, RepoConfig, SetOptions, SourceItem};

const PASSWORD: &str = "backup speed";

fn config(repo: &Path) -> RepoConfig {
    RepoConfig {
        repository: repo.display().to_string(),
        options: Default::default(),
        password: Password::new(PASSWORD),
        retry_budget: None,
    }
}

/// CPU seconds (user + system) of this process and, separately, of its waited-for children.
#[cfg(target_os = "linux")]
fn cpu_seconds() -> (f64, f64) {
    fn of(who: libc::c_int) -> f64 {
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut usage) };
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(usage.ru_utime) + tv(usage.ru_stime)
    }
    (of(libc::RUSAGE_SELF), of(libc::RUSAGE_CHILDREN))
}

/// Not measured here (the comparison is made on Linux).
#[cfg(not(target_os = "linux"))]
fn cpu_seconds() -> (f64, f64) {
    (0.0, 0.0)
}

fn fresh(path: &Path) {
    let _ = fs::remove_dir_all(path);
}

fn read_once(src: &Path) {
    fn walk(path: &Path) {
        for entry in fs::read_dir(path).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                walk(&entry.path());
            } else {
                let _ = fs::read(entry.path());
            }
        }
    }
    walk(src);
}

fn octobackup(src: &Path, repo: &Path, level: Option<i32>) -> (f64, f64) {
    fresh(repo);
    let (cpu0, _) = cpu_seconds();
    let t = Instant::now();
    let r = Repo::init(&config(repo)).unwrap();
    r.backup(
        vec![SourceItem::Path {
            source: src.to_path_buf(),
            target: "/folders/All".into(),
        }],
        &SetOptions {
            compression: level,
            ..SetOptions::default()
        },
        &NoProgress,
    )
    .unwrap();
    (t.elapsed().as_secs_f64(), cpu_seconds().0 - cpu0)
}

fn restic(src: &Path, repo: &Path, password_file: &Path) -> (f64, f64) {
    fresh(repo);
    let (_, cpu0) = cpu_seconds();
    let t = Instant::now();
    for args in [
        vec!["init"],
        vec!["backup", "--quiet", &src.display().to_string()],
    ] {
        let ok = Command::new("restic")
            .args(&args)
            .arg("--repo")
            .arg(repo)
            .arg("--password-file")
            .arg(password_file)
            .arg("--no-cache")
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "restic {args:?} failed");
    }
    (t.elapsed().as_secs_f64(), cpu_seconds().1 - cpu0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (src, dir) = match &args[..] {
        [src, dir, ..] => (PathBuf::from(src), PathBuf::from(dir)),
        _ => panic!("usage: backup_speed SRC DIR [ROUNDS [LEVEL]]"),
    };
    let rounds: usize = args.get(2).map_or(1, |n| n.parse().unwrap());
    let level: Option<i32> = args.get(3).map(|n| n.parse().unwrap());
    fs::create_dir_all(&dir).unwrap();
    let password_file = dir.join("password");
    fs::write(&password_file, PASSWORD).unwrap();
    read_once(&src);
    for round in 1..=rounds {
        let (ow, oc) = octobackup(&src, &dir.join("octobackup"), level);
        let (rw, rc) = restic(&src, &dir.join("restic"), &password_file);
        println!(
            "round {round}: octobackup {ow:.2}s wall {oc:.2}s cpu, restic {rw:.2}s wall {rc:.2}s cpu: {:.2}x wall {:.2}x cpu",
            ow / rw,
            oc / rc
        );
    }
}
