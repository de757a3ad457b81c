//! Shared helpers: test data, stock restic, tree comparison.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use octobackup_repo::{
    BackupSummary, NoProgress, Password, ProgressSink, Repo, RepoConfig, SetOptions, SourceItem,
    Zeroizing,
};

pub const PASSWORD: &str = "correct horse battery staple";

pub fn config(repo_dir: &Path) -> RepoConfig {
    RepoConfig {
        repository: repo_dir.display().to_string(),
        options: BTreeMap::new(),
        password: Password::new(PASSWORD),
        retry_budget: None,
    }
}

/// A new repository whose key is cheap to open (scrypt N=2^10), for this test and for stock
/// restic; `open_init.rs` tests `Repo::init` itself.
pub fn new_repo(dir: &Path) -> Repo {
    Repo::init_for_tests(&config(&dir.join("repo"))).expect("init")
}

/// One set of `source` (a file or a folder) stored at `target`, with the default options.
pub fn backup_path(repo: &Repo, source: &Path, target: &str) -> BackupSummary {
    repo.backup(
        vec![SourceItem::Path {
            source: source.to_path_buf(),
            target: target.into(),
        }],
        &SetOptions::default(),
        &NoProgress,
    )
    .expect("backup")
}

/// A new repository under `dir` holding one set of `source` at `target`: the repository and
/// the set's summary.
pub fn repo_with_set(dir: &Path, source: &Path, target: &str) -> (Repo, BackupSummary) {
    let repo = new_repo(dir);
    let set = backup_path(&repo, source, target);
    (repo, set)
}

/// Runs stock restic on `repo` with the password in the environment (never in argv).
/// Fails the test, with the fix, when restic is not installed.
pub fn restic(repo: &Path, args: &[&str]) -> Output {
    let output = Command::new("restic")
        .args(args)
        .env("RESTIC_REPOSITORY", repo)
        .env("RESTIC_PASSWORD", PASSWORD)
        .env("RESTIC_CACHE_DIR", repo.with_extension("restic-cache"))
        .env_remove("RESTIC_PASSWORD_FILE")
        .output()
        .unwrap_or_else(|e| {
            panic!("stock restic is needed for this test ({e}): apt-get install -y restic")
        });
    assert!(
        output.status.success(),
        "restic {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `restic check --read-data` on `repo` finds nothing wrong.
pub fn assert_restic_reads_every_pack(repo: &Path) {
    let out = restic(repo, &["check", "--read-data"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("no errors were found"), "{text}");
}

/// Restores snapshot `id` with stock restic into `target` (created).
pub fn restic_restore(repo: &Path, id: &str, target: &Path) {
    restic(repo, &["restore", id, "--target", target.to_str().unwrap()]);
}

/// Deterministic, incompressible bytes (xorshift), so dedup and compression do not hide bugs.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn write(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

#[cfg(unix)]
pub fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// An Octopus-like instance: Packages (nested, an empty file and folder, a link, odd modes),
/// TaskLogs (many small files), and a staged database backup.
pub struct Instance {
    pub packages: PathBuf,
    pub task_logs: PathBuf,
    pub bak: PathBuf,
}

pub fn instance(dir: &Path, bak_len: usize) -> Instance {
    let packages = dir.join("src/Packages");
    let task_logs = dir.join("src/TaskLogs");
    let bak = dir.join("staging/OctopusDeploy.bak");
    write(
        &packages.join("feeds-builtin/Acme.Web/Acme.Web.1.0.0.nupkg"),
        &noise(300_000, 1),
    );
    write(
        &packages.join("feeds-builtin/Acme.Web/Acme.Web.1.0.1.nupkg"),
        &noise(2_500_000, 2),
    );
    write(
        &packages.join("feeds-builtin/Acme.Api/Acme.Api.2.0.0.zip"),
        &noise(40_000, 3),
    );
    write(&packages.join("empty.txt"), b"");
    write(
        &packages.join("naïve name with spaces.txt"),
        b"unicode and spaces\n",
    );
    fs::create_dir_all(packages.join("empty-folder")).unwrap();
    for i in 0..40 {
        let text = format!("task {i} log line\n").repeat(i * 7 + 1);
        write(
            &task_logs.join(format!("ServerTasks-{i}.log.txt")),
            text.as_bytes(),
        );
    }
    write(&bak, &noise(bak_len, 4));
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("feeds-builtin/Acme.Web", packages.join("latest-web")).unwrap();
        chmod(
            &packages.join("feeds-builtin/Acme.Api/Acme.Api.2.0.0.zip"),
            0o640,
        );
        chmod(&packages.join("empty.txt"), 0o755);
        chmod(&packages, 0o750);
    }
    Instance {
        packages,
        task_logs,
        bak,
    }
}

pub const MANIFEST: &[u8] = br#"{"octopusVersion":"2024.1.1","database":"OctopusDeploy"}"#;
pub const MASTER_KEY: &[u8] = b"6EzU4gxuFm7uGCBD1jdwAw==";

pub fn items(inst: &Instance, manifest: &[u8]) -> Vec<SourceItem> {
    vec![
        SourceItem::Path {
            source: inst.packages.clone(),
            target: "/folders/Packages".into(),
        },
        SourceItem::Path {
            source: inst.task_logs.clone(),
            target: "/folders/TaskLogs".into(),
        },
        SourceItem::Path {
            source: inst.bak.clone(),
            target: "/database/OctopusDeploy.bak".into(),
        },
        SourceItem::Memory {
            target: "/octobackup/manifest.json".into(),
            bytes: Zeroizing::new(manifest.to_vec()),
            mode: 0o644,
        },
        SourceItem::Memory {
            target: "/octobackup/secrets/master-key".into(),
            bytes: Zeroizing::new(MASTER_KEY.to_vec()),
            mode: 0o600,
        },
    ]
}

/// What a tree holds, for comparing a restore with its source.
#[derive(Debug, PartialEq, Eq)]
pub enum Entry {
    File {
        bytes: Vec<u8>,
        mode: u32,
        mtime: Option<(i64, i64)>,
    },
    Dir {
        mode: u32,
    },
    Link {
        target: PathBuf,
    },
}

/// Every entry below `root` (not `root` itself), by relative path.
pub fn tree(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Entry>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = fs::symlink_metadata(&path).unwrap();
        let rel = path.strip_prefix(root).unwrap().to_path_buf();
        let entry = if meta.file_type().is_symlink() {
            Entry::Link {
                target: fs::read_link(&path).unwrap(),
            }
        } else if meta.is_dir() {
            walk(root, &path, out);
            Entry::Dir { mode: mode(&meta) }
        } else {
            Entry::File {
                bytes: fs::read(&path).unwrap(),
                mode: mode(&meta),
                mtime: mtime(&meta),
            }
        };
        out.insert(rel, entry);
    }
}

#[cfg(unix)]
pub fn mode(meta: &fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o7777
}

#[cfg(not(unix))]
pub fn mode(_meta: &fs::Metadata) -> u32 {
    0
}

#[cfg(unix)]
fn mtime(meta: &fs::Metadata) -> Option<(i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.mtime(), meta.mtime_nsec()))
}

#[cfg(not(unix))]
fn mtime(_meta: &fs::Metadata) -> Option<(i64, i64)> {
    None
}

/// Asserts that `restored` holds exactly what `source` holds (content, modes, mtimes, links).
pub fn assert_same_tree(source: &Path, restored: &Path) {
    let want = tree(source);
    let got = tree(restored);
    let want_keys: BTreeSet<_> = want.keys().collect();
    let got_keys: BTreeSet<_> = got.keys().collect();
    assert_eq!(
        want_keys, got_keys,
        "entries differ: {source:?} vs {restored:?}"
    );
    for (path, entry) in &want {
        assert!(
            &got[path] == entry,
            "{} differs after restore: {:?} vs {:?}",
            path.display(),
            short(entry),
            short(&got[path])
        );
    }
}

fn short(e: &Entry) -> String {
    match e {
        Entry::File { bytes, mode, mtime } => {
            format!("file {} bytes mode {mode:o} mtime {mtime:?}", bytes.len())
        }
        Entry::Dir { mode } => format!("dir mode {mode:o}"),
        Entry::Link { target } => format!("link -> {}", target.display()),
    }
}

/// Records what a call reported.
#[derive(Default)]
pub struct RecordedProgress {
    pub events: Mutex<Vec<Event>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Start(String, Option<u64>),
    Advance(u64),
    Finish,
}

impl ProgressSink for RecordedProgress {
    fn start(&self, what: &str, total: Option<u64>) {
        self.events
            .lock()
            .unwrap()
            .push(Event::Start(what.into(), total));
    }
    fn advance(&self, bytes: u64) {
        self.events.lock().unwrap().push(Event::Advance(bytes));
    }
    fn finish(&self) {
        self.events.lock().unwrap().push(Event::Finish);
    }
}

impl RecordedProgress {
    pub fn take(&self) -> Vec<Event> {
        std::mem::take(&mut self.events.lock().unwrap())
    }
}
