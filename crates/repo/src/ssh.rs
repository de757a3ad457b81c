//! The `ssh` processes behind an SFTP repository. OpenDAL's SFTP starts one ssh master per
//! connection (`ssh -M -f -N`, detached from this process) with its control socket in a
//! `.ssh-connection*` folder, and by default the master stays up for ever. Here (with the patched
//! `opendal-service-sftp`) each run keeps its control sockets in a folder of its own,
//! `$TMPDIR/octobackup-ssh/<pid>`, the masters end on their own a few seconds after their last
//! use, and the run closes them and removes the folder when it ends ([`close_ssh_connections`]).
//! A run that was killed outright leaves its folder behind: the next run removes it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

/// Seconds an ssh master stays up once nothing uses it: it outlives a run that was killed by
/// this long at most.
pub(crate) const MASTER_IDLE_SECONDS: u64 = 10;
/// Seconds ssh waits for the server to answer before the try counts as failed (then the retry
/// budget decides).
pub(crate) const CONNECT_TIMEOUT_SECONDS: u64 = 20;
/// Seconds between keep-alive probes: a server gone silent is noticed after 3 of them.
pub(crate) const SERVER_ALIVE_SECONDS: u64 = 15;

/// The folder all runs' control folders go in.
fn root() -> PathBuf {
    std::env::temp_dir().join("octobackup-ssh")
}

/// This run's control folder, made (and the ones killed runs left removed) on first use.
static OURS: OnceLock<Mutex<Option<PathBuf>>> = OnceLock::new();

fn ours() -> std::sync::MutexGuard<'static, Option<PathBuf>> {
    OURS.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// The SFTP options octobackup sets unless the config does: the run's control folder, masters
/// that end when idle, a connect timeout, and `connections` below sshd's `MaxStartups`.
pub(crate) fn sftp_defaults(options: &mut BTreeMap<String, String>) {
    // A stock sshd drops unauthenticated connections beyond `MaxStartups 10`: stay below.
    options
        .entry("connections".into())
        .or_insert_with(|| "8".into());
    options
        .entry("control_persist".into())
        .or_insert_with(|| MASTER_IDLE_SECONDS.to_string());
    options
        .entry("connect_timeout".into())
        .or_insert_with(|| CONNECT_TIMEOUT_SECONDS.to_string());
    options
        .entry("server_alive_interval".into())
        .or_insert_with(|| SERVER_ALIVE_SECONDS.to_string());
    if !options.contains_key("control_dir")
        && let Some(dir) = control_dir()
    {
        options.insert("control_dir".into(), dir.display().to_string());
    }
}

fn control_dir() -> Option<PathBuf> {
    let mut ours = ours();
    if let Some(dir) = ours.as_ref() {
        return Some(dir.clone());
    }
    let root = root();
    remove_leftovers(&root);
    let dir = root.join(std::process::id().to_string());
    make_private(&root).ok()?;
    make_private(&dir).ok()?;
    *ours = Some(dir.clone());
    Some(dir)
}

#[cfg(unix)]
fn make_private(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        // Made by an earlier run of this account (another account's cannot be used: then
        // OpenDAL's default folder is).
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let mine = std::fs::metadata(dir)?;
            if mine.permissions().mode() & 0o077 != 0 {
                return Err(std::io::Error::other("shared control folder"));
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

#[cfg(not(unix))]
fn make_private(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// Is process `pid` running? Unknown (`true`) where `/proc` is not there.
fn running(pid: u32) -> bool {
    let proc = Path::new("/proc");
    !proc.is_dir() || proc.join(pid.to_string()).exists()
}

/// Removes the control folders of runs that are no longer running, ending their masters.
fn remove_leftovers(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !running(pid) {
            close_in(&entry.path());
        }
    }
}

/// Ends every master whose control socket is in `dir` and removes `dir`. A master still
/// logging in has its folder but no socket yet, and no run will use it any more: removing the
/// folder under it would leave it running until ssh's own timeout (20 s, or a keep-alive's 45 s
/// on a server that stopped answering mid-login; CI once saw one outlive the run). So every ssh
/// process still naming the folder on its command line (`-S`, `-E`) is ended too; the folder is
/// this run's own (`<pid>` in its path), so nothing else can match it. Where processes cannot be
/// listed (no `/proc`), the logins are waited for instead, bounded by what a login may take.
fn close_in(dir: &Path) {
    let mut ended: Vec<PathBuf> = Vec::new();
    let deadline = std::time::Instant::now() + LOGIN_BOUND;
    loop {
        let mut pending = false;
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let socket = entry.path().join("master");
                if ended.contains(&socket) {
                    continue;
                }
                if !socket.exists() {
                    pending = true;
                    continue;
                }
                // `ssh -O exit` asks the master on that socket to end; the host name is not
                // used to connect, only required by the command line.
                let _ = std::process::Command::new("ssh")
                    .arg("-S")
                    .arg(&socket)
                    .args(["-O", "exit", "octobackup-closing"])
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status();
                ended.push(socket);
            }
        }
        if !pending || processes::listable() || std::time::Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // A master removes its socket as it ends: wait for that (briefly), so that the run ends
    // after its masters.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while ended.iter().any(|s| s.exists()) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    processes::end_naming(dir);
    let _ = std::fs::remove_dir_all(dir);
}

/// The ssh processes of a control folder, found by their command lines.
#[cfg(target_os = "linux")]
mod processes {
    use std::path::Path;
    use std::time::{Duration, Instant};

    pub(super) fn listable() -> bool {
        Path::new("/proc/self/cmdline").exists()
    }

    /// The processes (other than this one) one of whose arguments lies in `dir`.
    fn naming(dir: &Path) -> Vec<libc::pid_t> {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        let me = std::process::id();
        let needle = dir.as_os_str().as_encoded_bytes();
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|&pid| pid != me)
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|line| line.split(|&b| b == 0).any(|arg| inside(arg, needle)))
            })
            .filter_map(|pid| libc::pid_t::try_from(pid).ok())
            .collect()
    }

    /// Whether `arg` is the folder `dir` or a path in it: `.../octobackup-ssh/1234` must not
    /// match a path of run 12345's folder.
    pub(super) fn inside(arg: &[u8], dir: &[u8]) -> bool {
        arg.strip_prefix(dir)
            .is_some_and(|rest| rest.is_empty() || rest[0] == b'/')
    }

    /// Ends them: SIGTERM, then SIGKILL for what is still there after 2 s.
    pub(super) fn end_naming(dir: &Path) {
        let found = naming(dir);
        if found.is_empty() {
            return;
        }
        for &pid in &found {
            // SAFETY: kill(2) with a pid and a signal number has no memory effects.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if naming(dir).is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for pid in naming(dir) {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod processes {
    pub(super) fn listable() -> bool {
        false
    }

    pub(super) fn end_naming(_dir: &std::path::Path) {}
}

/// How long a login may take: ssh's `ConnectTimeout` (20 s, `sftp_defaults`) and then the
/// key exchange and authentication.
const LOGIN_BOUND: std::time::Duration = std::time::Duration::from_secs(30);

/// Ends this run's ssh masters and removes its control folder. Call it once the run's work is
/// over (on success, failure and after a stop); nothing is left to use the connections.
pub fn close_ssh_connections() {
    if let Some(dir) = ours().take() {
        close_in(&dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sftp_gets_bounded_connections_and_masters_that_end() {
        let mut o = BTreeMap::from([("connections".to_string(), "4".to_string())]);
        sftp_defaults(&mut o);
        assert_eq!(o["connections"], "4");
        assert_eq!(o["control_persist"], "10");
        assert_eq!(o["connect_timeout"], "20");
        assert_eq!(o["server_alive_interval"], "15");
        let dir = PathBuf::from(&o["control_dir"]);
        assert!(dir.ends_with(std::process::id().to_string()), "{dir:?}");
        assert!(dir.is_dir());
        close_ssh_connections();
        assert!(!dir.exists());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn only_paths_in_the_runs_own_folder_are_its_processes() {
        let dir = b"/tmp/octobackup-ssh/1234";
        assert!(processes::inside(
            b"/tmp/octobackup-ssh/1234/.ssh-connectionX/log",
            dir
        ));
        assert!(processes::inside(b"/tmp/octobackup-ssh/1234", dir));
        assert!(!processes::inside(
            b"/tmp/octobackup-ssh/12345/.ssh-connectionX/log",
            dir
        ));
        assert!(!processes::inside(b"-p", dir));
    }

    /// A login still in flight when the run closes (a folder without a socket, a process
    /// naming it) is ended with the folder, not left to ssh's own timeout.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_login_still_in_flight_is_ended_at_close() {
        let dir = std::env::temp_dir().join(format!("obk-ssh-close-{}", std::process::id()));
        let conn = dir.join(".ssh-connectionABC");
        std::fs::create_dir_all(&conn).unwrap();
        std::fs::write(conn.join("log"), b"").unwrap();
        // Stands for `ssh -E <folder>/log ...` waiting on a server that never answers.
        let mut login = std::process::Command::new("tail")
            .arg("-f")
            .arg(conn.join("log"))
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        close_in(&dir);
        // `tail -f` never ends by itself: that it ends says close ended it. Its command line is
        // gone (what close waits for) a moment before it can be reaped: wait for that, bounded.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let status = loop {
            match login.try_wait().unwrap() {
                Some(status) => break Some(status),
                None if std::time::Instant::now() > deadline => break None,
                None => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        };
        if status.is_none() {
            let _ = login.kill();
        }
        assert!(status.is_some_and(|s| !s.success()), "{status:?}");
        assert!(!dir.exists());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn folders_of_runs_that_are_gone_are_removed() {
        let root = std::env::temp_dir().join(format!("obk-ssh-test-{}", std::process::id()));
        // A PID above the kernel's limit runs nowhere.
        let stale = root.join("4194305/.ssh-connection123");
        let live = root.join(format!("{}/.ssh-connection456", std::process::id()));
        std::fs::create_dir_all(&stale).unwrap();
        std::fs::create_dir_all(&live).unwrap();
        remove_leftovers(&root);
        assert!(!root.join("4194305").exists());
        assert!(live.exists());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
