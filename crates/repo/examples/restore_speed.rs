//! A focused measurement of the streamed restore (issue 13), beside one plain copy of the same
//! files. Not a test: timings only mean something as ratios taken in the same run.
//!
//! ```text
//! cargo build --release -p octobackup-repo --example restore_speed
//! restore_speed prepare DIR FILES BIG_MB   # DIR/src (FILES small files, one BIG_MB file), DIR/repo
//! restore_speed compare DIR ROUNDS         # per round: a plain copy of DIR/src, then a restore
//!                                          # of the set; times, ratio, the restore's peak memory
//! restore_speed restore DIR OUT             # restores the set to OUT, prints seconds and summary
//! ```
//!
//! `compare` copies as `lab bench` does (file by file, no sync) and restores as `restore-set`
//! does (the repository opened, the set restored and synced); both start with the page cache
//! written back (`sync`) and into a folder just removed.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use octobackup_repo::{NoProgress, Password, Repo, RepoConfig, SetOptions, SourceItem};

fn config(dir: &Path) -> RepoConfig {
    RepoConfig {
        repository: dir.join("repo").display().to_string(),
        options: Default::default(),
        password: Password::new("restore speed"),
        retry_budget: None,
    }
}

/// Bytes like a database backup's or a task log's: half repeated text, half noise, so zstd
/// has work to do both ways.
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 64);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if x.is_multiple_of(2) {
            out.extend_from_slice(
                format!("{:016x} task log line, step {}\n", x, x % 97).as_bytes(),
            );
        } else {
            out.extend_from_slice(&x.to_le_bytes());
            out.extend_from_slice(&x.rotate_left(17).to_le_bytes());
        }
    }
    out.truncate(len);
    out
}

fn prepare(dir: &Path, files: usize, big_mb: usize) {
    let src = dir.join("src");
    let logs = src.join("TaskLogs");
    for i in 0..files {
        let path = logs.join(format!("{:03}/ServerTasks-{i}.log.txt", i / 500));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content(500 + (i * 7919) % 30_000, i as u64)).unwrap();
    }
    let db = src.join("Database");
    fs::create_dir_all(&db).unwrap();
    let mut big = Vec::with_capacity(big_mb << 20);
    let mut seed = 99;
    while big.len() < big_mb << 20 {
        big.extend_from_slice(&content(1 << 20, seed));
        seed += 1;
    }
    fs::write(db.join("OctopusDeploy.bak"), &big).unwrap();
    let repo = Repo::init(&config(dir)).unwrap();
    let set = repo
        .backup(
            vec![SourceItem::Path {
                source: src,
                target: "/folders/All".into(),
            }],
            &SetOptions::default(),
            &NoProgress,
        )
        .unwrap();
    fs::write(dir.join("snapshot"), &set.snapshot_id).unwrap();
    println!("prepared {} in {}", set.snapshot_id, dir.display());
}

fn restore(dir: &Path, out: &Path) {
    let snapshot = fs::read_to_string(dir.join("snapshot")).unwrap();
    let t = Instant::now();
    let repo = Repo::open(&config(dir)).unwrap();
    let summary = repo
        .restore(snapshot.trim(), "/folders/All", out, &NoProgress)
        .unwrap();
    println!(
        "restore {:.2}s: {} restored, {} unchanged, {} bytes",
        t.elapsed().as_secs_f64(),
        summary.files_restored,
        summary.files_unchanged,
        summary.bytes_restored
    );
}

/// A plain copy, as `lab bench` makes one.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::create_dir_all(to)?;
    for e in fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &target)?;
        } else {
            fs::copy(e.path(), &target)?;
        }
    }
    Ok(())
}

/// The process's peak resident set so far, in MiB (Linux), and a fresh start for the next.
fn peak_mib() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    fs::write("/proc/self/clear_refs", "5").ok()?;
    Some(kib / 1024)
}

fn fresh(path: &Path) {
    let _ = fs::remove_dir_all(path);
    let _ = std::process::Command::new("sync").status();
}

fn compare(dir: &Path, rounds: usize) {
    let snapshot = fs::read_to_string(dir.join("snapshot")).unwrap();
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        let copy = dir.join("copy");
        fresh(&copy);
        let t = Instant::now();
        copy_tree(&dir.join("src"), &copy).unwrap();
        let copy_s = t.elapsed().as_secs_f64();
        fresh(&copy);

        let out = dir.join("out");
        fresh(&out);
        let t = Instant::now();
        let repo = Repo::open(&config(dir)).unwrap();
        let open_s = t.elapsed().as_secs_f64();
        // Opening derives the key (scrypt: over 100 MiB for a moment): not the restore's peak.
        peak_mib();
        repo.restore(snapshot.trim(), "/folders/All", &out, &NoProgress)
            .unwrap();
        let restore_s = t.elapsed().as_secs_f64();
        let peak = peak_mib().map_or("?".into(), |m| m.to_string());
        drop(repo);
        fresh(&out);
        let ratio = restore_s / copy_s;
        ratios.push(ratio);
        println!(
            "round {round}: copy {copy_s:.2}s, restore {restore_s:.2}s (open {open_s:.2}s): {ratio:.2}x one copy, restore peak {peak} MiB"
        );
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "median {:.2}x one plain copy over {rounds} round(s)",
        ratios[ratios.len() / 2]
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["prepare", dir, files, big] => {
            prepare(Path::new(dir), files.parse().unwrap(), big.parse().unwrap())
        }
        ["restore", dir, out] => restore(Path::new(dir), &PathBuf::from(out)),
        ["compare", dir, rounds] => compare(Path::new(dir), rounds.parse().unwrap()),
        _ => eprintln!(
            "usage: restore_speed prepare DIR FILES BIG_MB | compare DIR ROUNDS | restore DIR OUT"
        ),
    }
}
