//! `octobackup-lab bench`: measures, in one run on the same lab data, what the promise of a
//! maintenance window of seconds rests on: octobackup's maintenance window against Octopus's manual procedure,
//! backup wall time against stock restic and against reading the data once, repository growth per
//! simulated day against the bytes that changed (and against keeping one .bak a night), restore
//! time against one plain copy, and peak memory. Figures are reported as ratios to a reference
//! measured in the same run; the table is also written as JSON.

use crate::config::Config;
use crate::error::{Exit, Failure};
use crate::lab;
use crate::octopus::OctopusClient;
use crate::run::connect::{octopus_client, sql_server};
use crate::sqlserver::tsql;
use octobackup_lab::Size;
use serde::Serialize;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long, default_value = "medium")]
    pub size: Size,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where to build the lab and the repositories (default: a temporary folder, removed after).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Write the results as JSON here (default: DIR/bench.json when --dir is given).
    #[arg(long)]
    pub json_out: Option<PathBuf>,
    /// zstd level for octobackup's repository (0 = none; default: the repository's, 1).
    #[arg(long)]
    pub compression: Option<i32>,
    /// A scaling run instead: one bench per point, FILES:SIZE separated by commas (e.g.
    /// `10k:0.5g,100k:5g,1m:20g`), with the fitted growth per file and per GiB and a plot.
    #[arg(long, value_delimiter = ',', conflicts_with = "size")]
    pub scale: Option<Vec<Size>>,
    /// Where a scaling run writes its plot (SVG; default: DIR/scale.svg).
    #[arg(long, requires = "scale")]
    pub plot: Option<PathBuf>,
    /// Also back up and restore the lab into this repository (a folder, s3://HOST/BUCKET/PATH,
    /// azure://CONTAINER/PATH, sftp://USER@HOST/PATH: the forms `init --repository` takes, with
    /// credentials from the environment) and report each against the local folder measured in
    /// the same run. It must not hold a repository yet.
    #[arg(long, value_name = "LOCATION", conflicts_with = "scale")]
    pub repository: Option<String>,
    /// An option of that repository, as in `[repository.options]` (repeatable).
    #[arg(
        long = "repository-option",
        value_name = "KEY=VALUE",
        requires = "repository",
        value_parser = parse_option
    )]
    pub repository_options: Vec<(String, String)>,
}

fn parse_option(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("'{s}' is not KEY=VALUE"))
}

/// One timed run of a program: wall time and peak resident memory (Linux: from wait4).
#[derive(Clone, Debug, Serialize, Default)]
pub struct Measured {
    pub seconds: f64,
    pub peak_mib: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Default)]
pub struct Night {
    /// Octopus's manual procedure: maintenance on, BACKUP DATABASE, copy the folders, maintenance off.
    pub manual_window_s: f64,
    pub manual_db_backup_s: f64,
    pub octobackup_window_s: f64,
    pub octobackup_db_backup_s: f64,
    pub octobackup: Measured,
    /// octobackup's wall time less the seconds SQL Server's work (BACKUP, VERIFYONLY) held it up:
    /// both run beside octobackup's own steps, so only the part longer than the step beside it
    /// counts. This is the figure to set against restic's, which backs up a .bak already made.
    pub octobackup_engine_s: f64,
    /// octobackup's own steps and their seconds, to see where its time goes.
    pub octobackup_steps: Vec<(String, f64)>,
    pub restic: Option<Measured>,
    pub repository_growth_bytes: u64,
    pub restic_repository_growth_bytes: Option<u64>,
    /// rustic (rustic-rs), a second peer, when installed.
    pub rustic: Option<Measured>,
    pub rustic_repository_growth_bytes: Option<u64>,
    pub bak_bytes: u64,
}

#[derive(Clone, Debug, Serialize, Default)]
pub struct Results {
    pub size: String,
    pub compression: Option<i32>,
    pub data_bytes: u64,
    pub files: u64,
    pub read_once_s: f64,
    pub first: Night,
    pub nightly: Night,
    pub changed_bytes_day: u64,
    /// The faster of [`RESTORE_ROUNDS`] restores (`restore_rounds_s`), with the most memory
    /// any of them took.
    pub restore: Measured,
    pub restore_rounds_s: Vec<f64>,
    /// One plain copy of the same folders and .bak, to its sync (as the restore): the faster
    /// of [`RESTORE_ROUNDS`] (`copy_rounds_s`), alternating with the restores.
    pub copy_s: f64,
    pub copy_rounds_s: Vec<f64>,
    /// The same copy when it returns, before its sync.
    pub copy_unsynced_s: f64,
    pub ratios: Ratios,
    /// The same lab backed up with `sql.chain = "owned"` (a repository of its own).
    pub owned: OwnedChain,
    /// `--repository`: a full backup and a restore there, against the local folder's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<OtherRepository>,
}

/// A full backup into an empty repository elsewhere and the restore of that set, each against
/// the same on the local folder in the same run (the first night's backup, the restore above).
/// The lab has changed by two simulated days since the local first night: about 1% of the data.
#[derive(Clone, Debug, Serialize, Default)]
pub struct OtherRepository {
    pub location: String,
    pub backup: Measured,
    pub restore: Measured,
    pub backup_vs_local: f64,
    pub restore_vs_local: f64,
}

/// `sql.chain = "owned"`: the first night takes the base before the window; after a day of
/// churn, the base is reused and only a differential runs inside the window.
#[derive(Clone, Debug, Serialize, Default)]
pub struct OwnedChain {
    pub first_window_s: f64,
    /// The base's BACKUP, before the window.
    pub first_base_s: f64,
    pub nightly_window_s: f64,
    pub nightly_db_backup_s: f64,
    pub nightly_differential_bytes: u64,
    pub nightly_wall_s: f64,
    /// Owned window after a day / copy-only window after a day.
    pub window_vs_copy_only: f64,
}

#[derive(Clone, Debug, Serialize, Default)]
pub struct Ratios {
    /// (octobackup window - its BACKUP time) / (manual window - its BACKUP time), after a day of churn.
    pub window_minus_backup_nightly: f64,
    pub window_minus_backup_first: f64,
    pub window_nightly: f64,
    pub full_backup_vs_restic: Option<f64>,
    pub nightly_backup_vs_restic: Option<f64>,
    /// octobackup's engine time (wall less SQL Server's share) against restic's wall time.
    pub full_engine_vs_restic: Option<f64>,
    pub nightly_engine_vs_restic: Option<f64>,
    pub full_engine_vs_rustic: Option<f64>,
    pub nightly_engine_vs_rustic: Option<f64>,
    pub full_backup_vs_read_once: f64,
    pub growth_vs_changed: f64,
    pub growth_vs_one_bak: f64,
    pub restore_vs_copy: f64,
}

pub(super) fn fail(e: impl std::fmt::Display) -> Failure {
    Failure::new(Exit::Failed, format!("benchmark: {e}"))
}

/// A child's own peak resident memory: its `VmHWM` (KiB), read every few milliseconds until it
/// ends. A high-water mark, so the last read holds the peak up to that moment.
#[cfg(target_os = "linux")]
struct OwnPeak {
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    reader: std::thread::JoinHandle<Option<u64>>,
}

#[cfg(target_os = "linux")]
impl OwnPeak {
    fn watch(pid: u32) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let done = std::sync::Arc::new(AtomicBool::new(false));
        let stop = done.clone();
        let status = format!("/proc/{pid}/status");
        let reader = std::thread::spawn(move || {
            let mut peak = None;
            while !stop.load(Ordering::Acquire) {
                if let Some(kib) = std::fs::read_to_string(&status)
                    .ok()
                    .as_deref()
                    .and_then(vm_hwm_kib)
                {
                    peak = peak.max(Some(kib));
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            peak
        });
        OwnPeak { done, reader }
    }

    fn finish(self) -> Option<u64> {
        self.done.store(true, std::sync::atomic::Ordering::Release);
        self.reader.join().ok().flatten()
    }
}

/// `VmHWM` of a `/proc/PID/status` text, in KiB.
#[cfg(target_os = "linux")]
fn vm_hwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()
}

/// Runs a program to completion, measuring wall time and (on Linux) its peak memory.
fn run_measured(cmd: &mut Command) -> Result<(Measured, Vec<u8>, Vec<u8>, bool), Failure> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let t0 = Instant::now();
    let mut child = cmd.spawn().map_err(fail)?;
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    #[cfg(target_os = "linux")]
    let own_peak = OwnPeak::watch(child.id());
    #[cfg(unix)]
    let (ok, peak) = {
        let mut status = 0i32;
        // SAFETY: wait4 on our own child's pid with valid out-pointers; the child is reaped here
        // and never waited for again through `child`.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let pid = child.id() as libc::pid_t;
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r < 0 {
            return Err(fail(std::io::Error::last_os_error()));
        }
        // `ru_maxrss` of a child starts from this process's resident size at the spawn (the
        // kernel keeps the larger of the two across exec), so a bench holding the lab's data
        // would be counted as octobackup's peak. Linux: the child's own high-water mark
        // (`VmHWM` of its status, proc(5)), read while it runs.
        #[cfg(target_os = "linux")]
        let peak_kib = own_peak.finish().unwrap_or(usage.ru_maxrss as u64);
        #[cfg(not(target_os = "linux"))]
        let peak_kib = usage.ru_maxrss as u64;
        (
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            Some(peak_kib as f64 / 1024.0),
        )
    };
    #[cfg(not(unix))]
    let (ok, peak) = (child.wait().map_err(fail)?.success(), None);
    let seconds = t0.elapsed().as_secs_f64();
    Ok((
        Measured {
            seconds,
            peak_mib: peak,
        },
        out_t.join().unwrap_or_default(),
        err_t.join().unwrap_or_default(),
        ok,
    ))
}

fn tree_size(dir: &Path) -> (u64, u64) {
    let mut bytes = 0;
    let mut files = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                stack.push(e.path());
            } else if let Ok(m) = e.metadata() {
                bytes += m.len();
                files += 1;
            }
        }
    }
    (bytes, files)
}

fn read_all(paths: &[PathBuf]) -> u64 {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    let mut stack: Vec<PathBuf> = paths.to_vec();
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        } else if let Ok(mut f) = std::fs::File::open(&p) {
            while let Ok(n) = f.read(&mut buf) {
                if n == 0 {
                    break;
                }
                total += n as u64;
            }
        }
    }
    total
}

/// Writes back everything dirty in the page cache (untimed, between measurements).
fn sync_all() {
    #[cfg(unix)]
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe {
        libc::sync()
    };
}

/// Each round's seconds, for the table: "3.10s 3.42s".
fn rounds(seconds: &[f64]) -> String {
    seconds
        .iter()
        .map(|s| format!("{s:.2}s"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// How many times the restore and the plain copy are each measured (alternating); the faster
/// of each is compared.
const RESTORE_ROUNDS: usize = 2;

/// Waits until what was written under `path` is on disk, as the restore does before it
/// reports success (one `syncfs` on Linux; elsewhere the copy is not synced, so the bench's
/// restore ratio is Linux's).
fn sync_fs(path: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let handle = std::fs::File::open(path)?;
        // SAFETY: `handle` is an open descriptor for the duration of the call.
        if unsafe { libc::syncfs(handle.as_raw_fd()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = path;
    Ok(())
}

/// One plain copy: `std::fs::copy` per file (on Linux `copy_file_range`, the kernel copying
/// page to page without a user-space buffer, as GNU cp 9 does).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), &target)?;
        }
    }
    Ok(())
}

/// Octopus's documented procedure by hand: maintenance on, BACKUP DATABASE, copy the folders,
/// maintenance off. Returns (window, BACKUP time).
async fn manual_procedure(
    config: &Config,
    folders: &[(&str, PathBuf)],
    bak: &Path,
    copy_to: &Path,
) -> Result<(f64, f64), Failure> {
    let (_, inst) = config
        .instances
        .iter()
        .next()
        .ok_or_else(|| fail("no instance"))?;
    let octopus: OctopusClient = octopus_client(inst)?;
    let sql = sql_server(inst)?;
    let _ = std::fs::remove_file(bak);
    let t0 = Instant::now();
    octopus.set_maintenance(true, 3).await?;
    let db0 = Instant::now();
    let mut session = sql.connect().await?;
    // The statement octobackup sends (WITH CHECKSUM, COPY_ONLY...), so both windows pay for the
    // same SQL Server work.
    let statement = tsql::backup_database(
        sql.database(),
        &[bak.display().to_string()],
        10,
        "manual procedure",
    );
    session.execute("BACKUP DATABASE", &statement, None).await?;
    let db_s = db0.elapsed().as_secs_f64();
    for (name, path) in folders {
        copy_tree(path, &copy_to.join(name)).map_err(fail)?;
    }
    octopus.set_maintenance(false, 3).await?;
    Ok((t0.elapsed().as_secs_f64(), db_s))
}

fn restic_available() -> bool {
    Command::new("restic")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn restic(repo: &Path, password_file: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("restic");
    c.arg("-r")
        .arg(repo)
        .args(args)
        .env("RESTIC_PASSWORD_FILE", password_file)
        .env("RESTIC_CACHE_DIR", repo.with_extension("cache"));
    c
}

fn rustic_available() -> bool {
    Command::new("rustic")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// rustic with the same password file; no cache (a local repository needs none).
fn rustic(repo: &Path, password_file: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("rustic");
    c.arg("-r")
        .arg(repo)
        .arg("--password-file")
        .arg(password_file)
        .args(["--no-cache", "--no-progress"])
        .args(args);
    c
}

/// Wall time less the seconds SQL Server's steps ran past octobackup's steps beside them.
fn engine_seconds(wall: f64, report: &serde_json::Value) -> f64 {
    // What runs beside BACKUP inside the window: the folder capture (run/backup/mod.rs's step names).
    let folders = step_seconds(report, "server folders (capture)")
        + step_seconds(report, "server folders (capture changes)");
    let bak = step_seconds(report, "database backup");
    let verify = step_seconds(report, "verify the database backup");
    let store = step_seconds(report, "store the database backup");
    (wall - (bak - folders).max(0.0) - (verify - store).max(0.0)).max(0.0)
}

fn step_seconds(report: &serde_json::Value, name: &str) -> f64 {
    report["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["name"] == name)
        .filter_map(|s| s["seconds"].as_f64())
        .sum()
}

/// One bench run (`--scale` runs several, `lab::scale`).
pub async fn run(args: Args, json: bool) -> Result<(), Failure> {
    // `--repository-option`s go into the bench's config file: a credential must come from the
    // environment or a file of its own, never be written there.
    if let Some((name, _)) = args
        .repository_options
        .iter()
        .find(|(n, _)| octobackup_repo::is_literal_secret_option(n))
    {
        return Err(Failure::new(
            Exit::Usage,
            format!(
                "--repository-option {name}=...: give the credential as {name}_env=VARIABLE or {name}_file=PATH (or the service's usual environment variables), so that it is not written into the bench's config"
            ),
        ));
    }
    let temp = tempfile::Builder::new()
        .prefix("octobackup-bench-")
        .tempdir()
        .map_err(fail)?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    let r = measure(&args, args.size, &dir, json).await?;
    let json_out = args
        .json_out
        .clone()
        .or_else(|| args.dir.as_ref().map(|d| d.join("bench.json")));
    if let Some(p) = &json_out {
        std::fs::write(p, serde_json::to_string_pretty(&r).expect("serializes")).map_err(fail)?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&r).expect("serializes"));
    } else {
        print!("{}", table(&r));
        if let Some(p) = json_out {
            println!("JSON: {}", p.display());
        }
    }
    Ok(())
}

/// One bench on a lab of `size` built in `dir`: both nights, the restore, the ratios.
pub(super) async fn measure(
    args: &Args,
    size: Size,
    dir: &Path,
    json: bool,
) -> Result<Results, Failure> {
    std::fs::create_dir_all(dir).map_err(fail)?;
    let say = |s: &str| {
        if !json {
            eprintln!("{s}");
        }
    };
    let exe = lab::product_exe().map_err(fail)?;
    let lab_exe = std::env::current_exe().map_err(fail)?;

    say(&format!(
        "building the {} lab in {} ...",
        size,
        dir.display()
    ));
    let mut lab = lab::start(&dir.join("lab"), size, args.seed, 16, true).await?;
    let config_path = lab::write_config(lab.info(), true).map_err(fail)?;
    if let Some(level) = args.compression {
        let mut c = Config::load(&config_path)?;
        c.repository.compression = Some(level);
        std::fs::write(&config_path, c.to_toml()).map_err(fail)?;
    }
    let config = Config::load(&config_path)?;
    let info = lab.info().clone();
    let folders: Vec<(&str, PathBuf)> = info
        .folders
        .named()
        .into_iter()
        .map(|(n, p)| (n, p.to_path_buf()))
        .collect();
    let data_file = lab
        .sql()
        .database_files(&info.database)
        .ok_or_else(|| fail("no database files"))?
        .0;
    let repo_dir = PathBuf::from(&config.repository.location);
    let password_file = config
        .repository
        .password_file
        .clone()
        .ok_or_else(|| fail("no password file"))?;

    let mut r = Results {
        size: size.to_string(),
        ..Default::default()
    };
    let mut inputs: Vec<PathBuf> = folders.iter().map(|(_, p)| p.clone()).collect();
    inputs.push(data_file.clone());
    let t = Instant::now();
    r.data_bytes = read_all(&inputs);
    r.read_once_s = t.elapsed().as_secs_f64();
    r.files = folders.iter().map(|(_, p)| tree_size(p).1).sum::<u64>() + 1;
    say(&format!(
        "read once: {} bytes in {:.2}s",
        r.data_bytes, r.read_once_s
    ));

    let (m, _, e, ok) = run_measured(
        Command::new(&exe)
            .arg("--config")
            .arg(&config_path)
            .arg("init"),
    )?;
    if !ok {
        return Err(fail(format!(
            "init failed: {}",
            String::from_utf8_lossy(&e)
        )));
    }
    let _ = m;
    let have_restic = restic_available();
    let restic_repo = dir.join("restic-repo");
    if have_restic {
        let (_, _, e, ok) = run_measured(&mut restic(&restic_repo, &password_file, &["init"]))?;
        if !ok {
            return Err(fail(format!(
                "restic init failed: {}",
                String::from_utf8_lossy(&e)
            )));
        }
    } else {
        say(
            "stock restic is not installed: the restic columns stay empty (apt-get install restic)",
        );
    }
    let have_rustic = rustic_available();
    let rustic_repo = dir.join("rustic-repo");
    if have_rustic {
        let (_, _, e, ok) = run_measured(&mut rustic(&rustic_repo, &password_file, &["init"]))?;
        if !ok {
            return Err(fail(format!(
                "rustic init failed: {}",
                String::from_utf8_lossy(&e)
            )));
        }
    } else {
        say("rustic is not installed: the rustic columns stay empty (cargo install rustic-rs)");
    }
    let manual_dir = dir.join("manual");
    let bak = manual_dir.join("OctopusDeploy.bak");
    std::fs::create_dir_all(&manual_dir).map_err(fail)?;

    for night in 0..2 {
        if night == 1 {
            let churn = lab.churn(1).await.map_err(fail)?;
            r.changed_bytes_day = churn.bytes_changed;
            say(&format!(
                "one simulated day: {} bytes changed",
                churn.bytes_changed
            ));
        }
        let mut n = Night::default();
        sync_all();
        let (w, db) = manual_procedure(
            &config,
            &folders,
            &bak,
            &manual_dir.join(format!("night{night}")),
        )
        .await?;
        n.manual_window_s = w;
        n.manual_db_backup_s = db;
        n.bak_bytes = std::fs::metadata(&bak).map(|m| m.len()).unwrap_or(0);
        let before = tree_size(&repo_dir).0;
        // Each backup starts with nothing dirty in the page cache: else it pays to write back
        // what the one before it wrote (the manual procedure's copy of every folder, or the
        // other tool's repository), and whichever runs second is slowed by the first.
        sync_all();
        let (m, out, e, ok) = run_measured(
            Command::new(&exe)
                .arg("--config")
                .arg(&config_path)
                .args(["--json", "backup"]),
        )?;
        if !ok {
            return Err(fail(format!(
                "octobackup backup failed: {}",
                String::from_utf8_lossy(&e)
            )));
        }
        let report: serde_json::Value = serde_json::from_slice(&out).map_err(fail)?;
        n.octobackup_engine_s = engine_seconds(m.seconds, &report);
        n.octobackup = m;
        n.octobackup_window_s = report["window_seconds"].as_f64().unwrap_or(0.0);
        n.octobackup_db_backup_s = step_seconds(&report, "database backup");
        n.octobackup_steps = report["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                (
                    s["name"].as_str().unwrap_or("").to_string(),
                    s["seconds"].as_f64().unwrap_or(0.0),
                )
            })
            .collect();
        n.repository_growth_bytes = tree_size(&repo_dir).0.saturating_sub(before);
        if have_restic {
            let before = tree_size(&restic_repo).0;
            let mut c = restic(&restic_repo, &password_file, &["backup", "-q"]);
            c.arg(&bak);
            for (_, p) in &folders {
                c.arg(p);
            }
            sync_all();
            let (m, _, e, ok) = run_measured(&mut c)?;
            if !ok {
                return Err(fail(format!(
                    "restic backup failed: {}",
                    String::from_utf8_lossy(&e)
                )));
            }
            n.restic = Some(m);
            n.restic_repository_growth_bytes =
                Some(tree_size(&restic_repo).0.saturating_sub(before));
        }
        if have_rustic {
            let before = tree_size(&rustic_repo).0;
            let mut c = rustic(&rustic_repo, &password_file, &["backup"]);
            c.arg(&bak);
            for (_, p) in &folders {
                c.arg(p);
            }
            sync_all();
            let (m, _, e, ok) = run_measured(&mut c)?;
            if !ok {
                return Err(fail(format!(
                    "rustic backup failed: {}",
                    String::from_utf8_lossy(&e)
                )));
            }
            n.rustic = Some(m);
            n.rustic_repository_growth_bytes =
                Some(tree_size(&rustic_repo).0.saturating_sub(before));
        }
        say(&format!(
            "night {}: manual window {:.2}s, octobackup window {:.2}s, octobackup {:.2}s (engine {:.2}s){}",
            night + 1,
            n.manual_window_s,
            n.octobackup_window_s,
            n.octobackup.seconds,
            n.octobackup_engine_s,
            n.restic
                .as_ref()
                .map(|m| format!(", restic {:.2}s", m.seconds))
                .unwrap_or_default()
        ));
        if night == 0 {
            r.first = n
        } else {
            r.nightly = n
        }
    }

    // Both sides start with nothing of the backups' left to write back (else whichever runs
    // first pays for it), read a source just read into the page cache (the repository for
    // the restore: octobackup's backup drops the data packs it writes from the cache; the
    // lab's folders and .bak for the copy: the bench's writes since the backups read them
    // may have pushed them out), write the same bytes to the same file system, and end once
    // what they wrote is on disk: the restore syncs before it reports success, so the copy
    // is timed to its sync as well. Each is measured twice, alternating, into folders of its
    // own, and the faster of each is kept: on a shared machine one run in a few takes twice
    // as long for reasons of its own. Nothing is deleted in between: on a file system without
    // a journal, ext4 passes over inodes freed in the last minutes for each file it creates.
    let mut sources: Vec<PathBuf> = folders.iter().map(|(_, p)| p.clone()).collect();
    sources.push(bak.clone());
    for round in 1..=RESTORE_ROUNDS {
        let _ = read_all(std::slice::from_ref(&repo_dir));
        sync_all();
        let (m, _, e, ok) = run_measured(
            Command::new(&lab_exe)
                .arg("--config")
                .arg(&config_path)
                .args(["restore-set", "--target"])
                .arg(dir.join(format!("restore{round}"))),
        )?;
        if !ok {
            return Err(fail(format!(
                "restore failed: {}",
                String::from_utf8_lossy(&e)
            )));
        }
        r.restore_rounds_s.push(m.seconds);
        if round == 1 || m.seconds < r.restore.seconds {
            r.restore.seconds = m.seconds;
        }
        // The most any round needed.
        r.restore.peak_mib = match (r.restore.peak_mib, m.peak_mib) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };

        let _ = read_all(&sources);
        sync_all();
        let t = Instant::now();
        let copy = dir.join(format!("copy{round}"));
        for (name, p) in &folders {
            copy_tree(p, &copy.join(name)).map_err(fail)?;
        }
        std::fs::copy(&bak, copy.join("OctopusDeploy.bak")).map_err(fail)?;
        let unsynced = t.elapsed().as_secs_f64();
        sync_fs(&copy).map_err(fail)?;
        let synced = t.elapsed().as_secs_f64();
        r.copy_rounds_s.push(synced);
        if round == 1 || synced < r.copy_s {
            r.copy_s = synced;
            r.copy_unsynced_s = unsynced;
        }
    }

    // The same lab with sql.chain = "owned", into a repository (and a state folder) of its own.
    say("sql.chain = \"owned\": the base before the window, a differential inside it ...");
    let owned_dir = dir.join("owned");
    std::fs::create_dir_all(&owned_dir).map_err(fail)?;
    let owned_config = owned_dir.join("octobackup.toml");
    let mut c = Config::load(&config_path)?;
    c.repository.location = owned_dir.join("repository").display().to_string();
    for inst in c.instances.values_mut() {
        inst.sql.chain = crate::config::SqlChain::Owned;
    }
    std::fs::write(&owned_config, c.to_toml()).map_err(fail)?;
    let octobackup = |args: &[&str]| {
        let mut cmd = Command::new(&exe);
        cmd.arg("--config").arg(&owned_config).args(args);
        cmd
    };
    let (_, _, e, ok) = run_measured(&mut octobackup(&["init"]))?;
    if !ok {
        return Err(fail(format!(
            "init (owned) failed: {}",
            String::from_utf8_lossy(&e)
        )));
    }
    for night in 0..2 {
        if night == 1 {
            lab.churn(1).await.map_err(fail)?;
        }
        let (m, out, e, ok) = run_measured(&mut octobackup(&["--json", "backup"]))?;
        if !ok {
            return Err(fail(format!(
                "octobackup backup (owned) failed: {}",
                String::from_utf8_lossy(&e)
            )));
        }
        let report: serde_json::Value = serde_json::from_slice(&out).map_err(fail)?;
        let window = report["window_seconds"].as_f64().unwrap_or(0.0);
        if night == 0 {
            r.owned.first_window_s = window;
            r.owned.first_base_s = step_seconds(&report, "database base (before the window)");
        } else {
            r.owned.nightly_window_s = window;
            r.owned.nightly_db_backup_s = step_seconds(&report, "database backup (differential)");
            r.owned.nightly_differential_bytes = report["database_bytes"].as_u64().unwrap_or(0);
            r.owned.nightly_wall_s = m.seconds;
        }
        say(&format!(
            "owned night {}: window {window:.2}s, octobackup {:.2}s",
            night + 1,
            m.seconds
        ));
    }
    if let Some(location) = &args.repository {
        let shown = described(location, &args.repository_options);
        say(&format!("the same backup and restore into {shown} ..."));
        r.repository = Some(
            other_repository(
                &config_path,
                location,
                &args.repository_options,
                dir,
                (&exe, &lab_exe),
            )
            .await?,
        );
    }
    lab.shutdown().await;

    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    if let Some(o) = r.repository.as_mut() {
        o.backup_vs_local = ratio(o.backup.seconds, r.first.octobackup.seconds);
        o.restore_vs_local = ratio(o.restore.seconds, r.restore.seconds);
    }
    let minus = |n: &Night| {
        ratio(
            (n.octobackup_window_s - n.octobackup_db_backup_s).max(0.0),
            (n.manual_window_s - n.manual_db_backup_s).max(1e-9),
        )
    };
    r.ratios = Ratios {
        window_minus_backup_nightly: minus(&r.nightly),
        window_minus_backup_first: minus(&r.first),
        window_nightly: ratio(r.nightly.octobackup_window_s, r.nightly.manual_window_s),
        full_backup_vs_restic: r
            .first
            .restic
            .as_ref()
            .map(|m| ratio(r.first.octobackup.seconds, m.seconds)),
        nightly_backup_vs_restic: r
            .nightly
            .restic
            .as_ref()
            .map(|m| ratio(r.nightly.octobackup.seconds, m.seconds)),
        full_engine_vs_restic: r
            .first
            .restic
            .as_ref()
            .map(|m| ratio(r.first.octobackup_engine_s, m.seconds)),
        nightly_engine_vs_restic: r
            .nightly
            .restic
            .as_ref()
            .map(|m| ratio(r.nightly.octobackup_engine_s, m.seconds)),
        full_engine_vs_rustic: r
            .first
            .rustic
            .as_ref()
            .map(|m| ratio(r.first.octobackup_engine_s, m.seconds)),
        nightly_engine_vs_rustic: r
            .nightly
            .rustic
            .as_ref()
            .map(|m| ratio(r.nightly.octobackup_engine_s, m.seconds)),
        full_backup_vs_read_once: ratio(r.first.octobackup.seconds, r.read_once_s),
        growth_vs_changed: ratio(
            r.nightly.repository_growth_bytes as f64,
            r.changed_bytes_day as f64,
        ),
        growth_vs_one_bak: ratio(
            r.nightly.repository_growth_bytes as f64,
            r.nightly.bak_bytes as f64,
        ),
        restore_vs_copy: ratio(r.restore.seconds, r.copy_s),
    };
    r.owned.window_vs_copy_only = ratio(r.owned.nightly_window_s, r.nightly.octobackup_window_s);
    Ok(r)
}

/// A repository as messages name it: bucket or container and endpoint, no credentials.
fn described(location: &str, options: &[(String, String)]) -> String {
    octobackup_repo::Storage::new(location, options.iter().cloned().collect()).describe()
}

/// `--repository`: init, a full backup and `restore-set` with the lab's config pointed there.
async fn other_repository(
    config_path: &Path,
    location: &str,
    options: &[(String, String)],
    dir: &Path,
    (exe, lab_exe): (&Path, &Path),
) -> Result<OtherRepository, Failure> {
    let shown = described(location, options);
    let other_dir = dir.join("other-repository");
    std::fs::create_dir_all(&other_dir).map_err(fail)?;
    let other_config = other_dir.join("octobackup.toml");
    let mut c = Config::load(config_path)?;
    c.repository.location = location.to_string();
    c.repository.options = options.iter().cloned().collect();
    std::fs::write(&other_config, c.to_toml()).map_err(fail)?;
    let run = |args: &[&str], what: &str| -> Result<Measured, Failure> {
        let mut cmd = Command::new(exe);
        cmd.arg("--config").arg(&other_config).args(args);
        let (m, _, e, ok) = run_measured(&mut cmd)?;
        if !ok {
            return Err(fail(format!(
                "{what} into {shown} failed: {}",
                String::from_utf8_lossy(&e)
            )));
        }
        Ok(m)
    };
    run(&["init"], "init")?;
    let backup = run(&["backup"], "octobackup backup")?;
    let (restore, _, e, ok) = run_measured(
        Command::new(lab_exe)
            .arg("--config")
            .arg(&other_config)
            .args(["restore-set", "--target"])
            .arg(other_dir.join("restore")),
    )?;
    if !ok {
        return Err(fail(format!(
            "restore from {shown} failed: {}",
            String::from_utf8_lossy(&e)
        )));
    }
    Ok(OtherRepository {
        location: shown,
        backup,
        restore,
        ..Default::default()
    })
}

fn table(r: &Results) -> String {
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let mem = |m: &Measured| {
        m.peak_mib
            .map(|p| format!("{p:.0} MiB"))
            .unwrap_or_else(|| "-".into())
    };
    let opt = |o: Option<f64>| o.map(|x| format!("{x:.2}x")).unwrap_or_else(|| "-".into());
    let mut s = String::new();
    s.push_str(&format!(
        "octobackup benchmark, lab size {}: {:.0} MiB in {} files (read once: {:.2}s)\n\n",
        r.size,
        mib(r.data_bytes),
        r.files,
        r.read_once_s
    ));
    s.push_str(&format!(
        "{:<46} {:>12} {:>12} {:>10}\n",
        "", "first night", "after 1 day", "ratio"
    ));
    let row = |s: &mut String, name: &str, a: String, b: String, ratio: String| {
        s.push_str(&format!("{name:<46} {a:>12} {b:>12} {ratio:>10}\n"))
    };
    row(
        &mut s,
        "manual procedure: maintenance window",
        format!("{:.2}s", r.first.manual_window_s),
        format!("{:.2}s", r.nightly.manual_window_s),
        String::new(),
    );
    row(
        &mut s,
        "octobackup: maintenance window",
        format!("{:.2}s", r.first.octobackup_window_s),
        format!("{:.2}s", r.nightly.octobackup_window_s),
        format!("{:.3}x", r.ratios.window_nightly),
    );
    row(
        &mut s,
        "octobackup window, sql.chain = \"owned\"",
        format!("{:.2}s", r.owned.first_window_s),
        format!("{:.2}s", r.owned.nightly_window_s),
        format!("{:.3}x", r.owned.window_vs_copy_only),
    );
    row(
        &mut s,
        "  owned: base before the window / differential",
        format!("{:.2}s", r.owned.first_base_s),
        format!("{:.1} MiB", mib(r.owned.nightly_differential_bytes)),
        String::new(),
    );
    row(
        &mut s,
        "manual window minus its BACKUP DATABASE",
        format!(
            "{:.2}s",
            r.first.manual_window_s - r.first.manual_db_backup_s
        ),
        format!(
            "{:.2}s",
            r.nightly.manual_window_s - r.nightly.manual_db_backup_s
        ),
        String::new(),
    );
    row(
        &mut s,
        "octobackup window minus its BACKUP DATABASE",
        format!(
            "{:.2}s",
            (r.first.octobackup_window_s - r.first.octobackup_db_backup_s).max(0.0)
        ),
        format!(
            "{:.2}s",
            (r.nightly.octobackup_window_s - r.nightly.octobackup_db_backup_s).max(0.0)
        ),
        format!("{:.3}x", r.ratios.window_minus_backup_nightly),
    );
    row(
        &mut s,
        "octobackup backup wall time",
        format!("{:.2}s", r.first.octobackup.seconds),
        format!("{:.2}s", r.nightly.octobackup.seconds),
        opt(r.ratios.nightly_backup_vs_restic),
    );
    row(
        &mut s,
        "octobackup engine time (less SQL Server's work)",
        format!("{:.2}s", r.first.octobackup_engine_s),
        format!("{:.2}s", r.nightly.octobackup_engine_s),
        opt(r.ratios.nightly_engine_vs_restic),
    );
    row(
        &mut s,
        "restic backup of the same .bak and folders",
        r.first
            .restic
            .as_ref()
            .map(|m| format!("{:.2}s", m.seconds))
            .unwrap_or("-".into()),
        r.nightly
            .restic
            .as_ref()
            .map(|m| format!("{:.2}s", m.seconds))
            .unwrap_or("-".into()),
        String::new(),
    );
    row(
        &mut s,
        "octobackup full backup vs restic",
        String::new(),
        String::new(),
        opt(r.ratios.full_backup_vs_restic),
    );
    row(
        &mut s,
        "octobackup full engine time vs restic",
        String::new(),
        String::new(),
        opt(r.ratios.full_engine_vs_restic),
    );
    let secs = |m: &Option<Measured>| {
        m.as_ref()
            .map(|m| format!("{:.2}s", m.seconds))
            .unwrap_or("-".into())
    };
    row(
        &mut s,
        "rustic backup of the same .bak and folders",
        secs(&r.first.rustic),
        secs(&r.nightly.rustic),
        opt(r.ratios.nightly_engine_vs_rustic),
    );
    row(
        &mut s,
        "octobackup full engine time vs rustic",
        String::new(),
        String::new(),
        opt(r.ratios.full_engine_vs_rustic),
    );
    row(
        &mut s,
        "octobackup full backup vs reading the data once",
        String::new(),
        String::new(),
        format!("{:.2}x", r.ratios.full_backup_vs_read_once),
    );
    row(
        &mut s,
        "octobackup peak memory",
        mem(&r.first.octobackup),
        mem(&r.nightly.octobackup),
        String::new(),
    );
    row(
        &mut s,
        "restic peak memory",
        r.first.restic.as_ref().map(mem).unwrap_or("-".into()),
        r.nightly.restic.as_ref().map(mem).unwrap_or("-".into()),
        String::new(),
    );
    row(
        &mut s,
        "repository growth (octobackup)",
        format!("{:.1} MiB", mib(r.first.repository_growth_bytes)),
        format!("{:.1} MiB", mib(r.nightly.repository_growth_bytes)),
        String::new(),
    );
    row(
        &mut s,
        "repository growth (restic)",
        r.first
            .restic_repository_growth_bytes
            .map(|b| format!("{:.1} MiB", mib(b)))
            .unwrap_or("-".into()),
        r.nightly
            .restic_repository_growth_bytes
            .map(|b| format!("{:.1} MiB", mib(b)))
            .unwrap_or("-".into()),
        String::new(),
    );
    row(
        &mut s,
        "bytes that changed in the day",
        String::new(),
        format!("{:.1} MiB", mib(r.changed_bytes_day)),
        format!("{:.2}x", r.ratios.growth_vs_changed),
    );
    row(
        &mut s,
        "one .bak a night instead",
        String::new(),
        format!("{:.1} MiB", mib(r.nightly.bak_bytes)),
        format!("{:.2}x", r.ratios.growth_vs_one_bak),
    );
    row(
        &mut s,
        "restore (repository to disk), the faster of",
        rounds(&r.restore_rounds_s),
        format!("{:.2}s", r.restore.seconds),
        format!("{:.2}x", r.ratios.restore_vs_copy),
    );
    row(
        &mut s,
        "one plain copy of the same data, to its sync",
        rounds(&r.copy_rounds_s),
        format!("{:.2}s", r.copy_s),
        format!("{:.2}s unsynced", r.copy_unsynced_s),
    );
    row(
        &mut s,
        "restore peak memory",
        String::new(),
        mem(&r.restore),
        String::new(),
    );
    if let Some(o) = &r.repository {
        s.push_str(&format!(
            "\ninto {} (against the local folder):\n",
            o.location
        ));
        row(
            &mut s,
            "  full backup",
            format!("{:.2}s", o.backup.seconds),
            String::new(),
            format!("{:.2}x", o.backup_vs_local),
        );
        row(
            &mut s,
            "  restore",
            String::new(),
            format!("{:.2}s", o.restore.seconds),
            format!("{:.2}x", o.restore_vs_local),
        );
        row(
            &mut s,
            "  peak memory: backup / restore",
            mem(&o.backup),
            mem(&o.restore),
            String::new(),
        );
    }
    s
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_gives_the_high_water_mark() {
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmHWM:\t   1234 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(vm_hwm_kib(status), Some(1234));
        assert_eq!(vm_hwm_kib("Name:\tx\n"), None);
    }

    /// A small child measured from a large bench process: its own peak, not the bench's size
    /// (which `ru_maxrss` of the child carries over from the spawn).
    #[test]
    fn a_childs_peak_is_its_own_not_the_spawning_processs() {
        let mut held = vec![0u8; 256 << 20];
        for page in held.chunks_mut(4096) {
            page[0] = 1;
        }
        let (m, _, _, ok) = run_measured(Command::new("sleep").arg("0.3")).unwrap();
        assert!(ok);
        let peak = m.peak_mib.unwrap();
        assert!(
            peak > 0.0 && peak < 64.0,
            "sleep's peak measured as {peak} MiB"
        );
        assert_eq!(held[4096], 1);
    }
}
