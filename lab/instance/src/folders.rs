//! The instance's server folders (Packages, Artifacts, TaskLogs, EventExports) laid out as Octopus
//! lays them out, created for day 0 and grown by each simulated day of use.

use crate::content;
use crate::preset::Preset;
use rand::RngExt;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The four folders Octopus's backup procedure names, under an instance's home.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ServerFolders {
    pub packages: PathBuf,
    pub artifacts: PathBuf,
    pub task_logs: PathBuf,
    pub event_exports: PathBuf,
}

impl ServerFolders {
    pub fn under(home: &Path) -> Self {
        ServerFolders {
            packages: home.join("Packages"),
            artifacts: home.join("Artifacts"),
            task_logs: home.join("TaskLogs"),
            event_exports: home.join("EventExports"),
        }
    }

    /// (name as octobackup stores it, path), in the procedure's order.
    pub fn named(&self) -> Vec<(&'static str, &Path)> {
        vec![
            ("Packages", self.packages.as_path()),
            ("Artifacts", self.artifacts.as_path()),
            ("TaskLogs", self.task_logs.as_path()),
            ("EventExports", self.event_exports.as_path()),
        ]
    }
}

/// What a generation step wrote, for churn reports and benchmarks.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FolderChange {
    pub files_added: u64,
    pub bytes_added: u64,
    pub files_removed: u64,
    pub bytes_removed: u64,
}

const PACKAGE_NAMES: &[&str] = &[
    "Acme.Web",
    "Acme.Api",
    "Acme.Worker",
    "Acme.Database",
    "Acme.Frontend",
    "Octo.Payments",
    "Octo.Identity",
    "Octo.Search",
    "Octo.Reports",
    "Octo.Gateway",
];

fn package_id(n: u32) -> String {
    let base = PACKAGE_NAMES[n as usize % PACKAGE_NAMES.len()];
    if (n as usize) < PACKAGE_NAMES.len() {
        base.to_string()
    } else {
        format!("{base}{}", n as usize / PACKAGE_NAMES.len())
    }
}

/// `Packages/Spaces-1/feeds-builtin/<id>/<id>.<version>.zip` (built-in feed layout since spaces).
fn package_path(folders: &ServerFolders, id: &str, version: u32) -> PathBuf {
    let ext = if version.is_multiple_of(3) {
        "nupkg"
    } else {
        "zip"
    };
    folders
        .packages
        .join("Spaces-1")
        .join("feeds-builtin")
        .join(id)
        .join(format!("{id}.1.{version}.0.{ext}"))
}

fn write_file(path: &Path, bytes: &[u8], change: &mut FolderChange) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    change.files_added += 1;
    change.bytes_added += bytes.len() as u64;
    Ok(())
}

fn write_package(
    folders: &ServerFolders,
    p: &Preset,
    seed: u64,
    id: &str,
    version: u32,
    c: &mut FolderChange,
) -> std::io::Result<()> {
    let mut rng = content::stream(seed, &format!("package/{id}/{version}"));
    let len = content::size_in(&mut rng, p.package_bytes.0, p.package_bytes.1);
    write_file(
        &package_path(folders, id, version),
        &content::random_bytes(&mut rng, len),
        c,
    )
}

fn write_task_log(
    folders: &ServerFolders,
    p: &Preset,
    seed: u64,
    task: u64,
    c: &mut FolderChange,
) -> std::io::Result<()> {
    let mut rng = content::stream(seed, &format!("tasklog/{task}"));
    let len = content::size_in(&mut rng, p.task_log_bytes.0, p.task_log_bytes.1);
    let text = content::task_log_text(&mut rng, task, len);
    write_file(
        &folders
            .task_logs
            .join(format!("servertasks-{task}.log.txt")),
        &text,
        c,
    )
}

fn write_artifact(
    folders: &ServerFolders,
    p: &Preset,
    seed: u64,
    n: u64,
    c: &mut FolderChange,
) -> std::io::Result<()> {
    let mut rng = content::stream(seed, &format!("artifact/{n}"));
    let len = content::size_in(&mut rng, p.artifact_bytes.0, p.artifact_bytes.1);
    // Artifacts are a mix: screenshots and zips (incompressible), reports (text).
    let (name, bytes) = if n.is_multiple_of(2) {
        (
            format!("screenshot-{n}.png"),
            content::random_bytes(&mut rng, len),
        )
    } else {
        (
            format!("report-{n}.txt"),
            content::task_log_text(&mut rng, n, len),
        )
    };
    let task = 1000 + n * 7;
    write_file(
        &folders
            .artifacts
            .join("Spaces-1")
            .join(format!("ServerTasks-{task}"))
            .join(name),
        &bytes,
        c,
    )
}

fn write_event_export(
    folders: &ServerFolders,
    p: &Preset,
    seed: u64,
    day: u32,
    c: &mut FolderChange,
) -> std::io::Result<()> {
    let mut rng = content::stream(seed, &format!("events/{day}"));
    let len = content::size_in(&mut rng, p.event_export_bytes.0, p.event_export_bytes.1);
    write_file(
        &folders
            .event_exports
            .join(format!("events-day{day:05}.jsonl")),
        &content::event_export_text(&mut rng, day, len),
        c,
    )
}

/// Where the counters stand after `day` days: what exists is a pure function of (preset, seed, day).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Counters {
    pub next_task: u64,
    pub next_artifact: u64,
    /// Per package id: oldest and next version number.
    pub versions: Vec<(u32, u32)>,
}

impl Counters {
    pub fn day_zero(p: &Preset) -> Self {
        Counters {
            next_task: p.task_logs as u64 + 1,
            next_artifact: p.artifacts as u64,
            versions: (0..p.package_ids)
                .map(|_| (0, p.versions_per_package))
                .collect(),
        }
    }
}

/// Writes day 0 of the four folders.
pub fn create(
    folders: &ServerFolders,
    p: &Preset,
    seed: u64,
) -> std::io::Result<(Counters, FolderChange)> {
    let mut c = FolderChange::default();
    for (_, dir) in folders.named() {
        std::fs::create_dir_all(dir)?;
    }
    for pkg in 0..p.package_ids {
        let id = package_id(pkg);
        for v in 0..p.versions_per_package {
            write_package(folders, p, seed, &id, v, &mut c)?;
        }
    }
    for task in 1..=p.task_logs as u64 {
        write_task_log(folders, p, seed, task, &mut c)?;
    }
    for n in 0..p.artifacts as u64 {
        write_artifact(folders, p, seed, n, &mut c)?;
    }
    for day in 0..p.event_export_days {
        write_event_export(folders, p, seed, day, &mut c)?;
    }
    Ok((Counters::day_zero(p), c))
}

/// One simulated day of use: new package versions pushed, old ones removed by retention, new task
/// logs and artifacts, a new event export file.
pub fn day_of_activity(
    folders: &ServerFolders,
    p: &Preset,
    seed: u64,
    day: u32,
    counters: &mut Counters,
) -> std::io::Result<FolderChange> {
    let mut c = FolderChange::default();
    let mut rng = content::stream(seed, &format!("day/{day}"));
    for _ in 0..p.day.new_package_versions {
        let pkg = rng.random_range(0..p.package_ids);
        let id = package_id(pkg);
        let v = counters.versions[pkg as usize].1;
        write_package(folders, p, seed, &id, v, &mut c)?;
        counters.versions[pkg as usize].1 += 1;
    }
    for _ in 0..p.day.removed_package_versions {
        let pkg = rng.random_range(0..p.package_ids);
        let (oldest, next) = counters.versions[pkg as usize];
        // Retention keeps at least two versions of every package.
        if next - oldest > 2 {
            let path = package_path(folders, &package_id(pkg), oldest);
            if let Ok(meta) = std::fs::metadata(&path) {
                std::fs::remove_file(&path)?;
                c.files_removed += 1;
                c.bytes_removed += meta.len();
            }
            counters.versions[pkg as usize].0 += 1;
        }
    }
    for _ in 0..p.day.new_task_logs {
        write_task_log(folders, p, seed, counters.next_task, &mut c)?;
        counters.next_task += 1;
    }
    for _ in 0..p.day.new_artifacts {
        write_artifact(folders, p, seed, counters.next_artifact, &mut c)?;
        counters.next_artifact += 1;
    }
    write_event_export(folders, p, seed, p.event_export_days + day, &mut c)?;
    Ok(c)
}
