//! The fault matrix for maintenance mode: API faults (refusals, errors, resets, answers that come
//! too late but still apply) on each maintenance call, inside the window and around it. After
//! each, at most the documented `recover` later: maintenance mode is as found, no set claims to be
//! complete unless the run said so, the exit code is the documented one, the repository checks.

use crate::common::*;
use octobackup_lab::octopus_sim::{Fault, FaultKind, Method};
use std::time::Duration;

const MAINTENANCE: &str = "/api/maintenanceconfiguration";

/// Where in the run a fault is injected.
#[derive(Clone, Copy, Debug)]
enum When {
    /// Before the run starts: the first matching request gets it.
    Start,
    /// Once BACKUP DATABASE runs: the requests after the database backup get it.
    InWindow,
}

struct Case {
    name: &'static str,
    when: When,
    method: Method,
    path: &'static str,
    kind: FaultKind,
    times: u32,
    /// The exit code the run must end with.
    exit: i32,
}

fn case(
    name: &'static str,
    when: When,
    method: Method,
    path: &'static str,
    kind: FaultKind,
    times: u32,
    exit: i32,
) -> Case {
    Case {
        name,
        when,
        method,
        path,
        kind,
        times,
        exit,
    }
}

/// Starts `backup` with `fault` injected `when` said (inside the window: once the database
/// backup runs, which then goes on at full speed), its stderr to `stderr`.
async fn spawn_backup_with_fault(
    t: &TestLab,
    when: When,
    fault: Fault,
    stderr: std::process::Stdio,
) -> std::process::Child {
    match when {
        When::Start => {
            t.lab.octopus().inject(fault);
            t.command(&["backup"])
                .stdout(std::process::Stdio::null())
                .stderr(stderr)
                .spawn()
                .unwrap()
        }
        When::InWindow => {
            let child = t.spawn_slow_backup(stderr).await;
            t.lab.octopus().inject(fault);
            t.lab.sql().set_backup_rate(None);
            child
        }
    }
}

async fn run_case(c: &Case) {
    let t = TestLab::start().await;
    t.init().await;
    // Short API timeouts, so a late answer is seen as one within the test's time.
    t.edit_config(|cfg| {
        TestLab::instance_table(cfg).insert("api_timeout".into(), "2s".into());
    });
    let fault = Fault {
        method: Some(c.method.clone()),
        path_prefix: c.path.into(),
        kind: c.kind.clone(),
        times: c.times,
    };
    let child = spawn_backup_with_fault(&t, c.when, fault, std::process::Stdio::piped()).await;
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let name = c.name;
    assert_eq!(
        out.status.code(),
        Some(c.exit),
        "{name}: exit code; stderr: {}",
        stderr(&out)
    );
    t.lab.octopus().clear_faults();
    if c.exit == 7 {
        // The documented way out: `recover` once the server answers.
        assert!(
            stderr(&out).contains("octobackup recover"),
            "{name}: {}",
            stderr(&out)
        );
        let r = t.run(&["recover"]).await;
        assert!(r.status.success(), "{name}: recover: {}", stderr(&r));
    }
    // Every request that was delayed has been handled by now.
    let delayed = seqs(&t.events(), "fault_served").len();
    if matches!(c.kind, FaultKind::Delay(_)) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while seqs(&t.events(), "delayed_request_handled").len() < delayed {
            assert!(
                std::time::Instant::now() < deadline,
                "{name}: delayed requests pending"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let changes = maintenance_changes(&t.events());
    assert!(
        !t.lab.octopus().maintenance(),
        "{name}: maintenance mode left on: {changes:?}"
    );
    let sets = t.sets().await;
    let complete = sets.iter().filter(|s| s["complete"] == true).count();
    assert_eq!(
        complete,
        usize::from(c.exit == 0),
        "{name}: complete sets: {sets:#?}"
    );
    if c.exit == 0 {
        assert_backups_inside_window(&t.events());
    }
    let check = t.restic(&["check"]);
    assert!(
        check.status.success(),
        "{name}: restic check: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(!t.journal_path().exists(), "{name}: journal left");
}

const LATE: FaultKind = FaultKind::Delay(Duration::from_secs(3));

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_on_turning_maintenance_mode_on() {
    let put = Method::PUT;
    for c in [
        case(
            "on: 401",
            When::Start,
            put.clone(),
            MAINTENANCE,
            FaultKind::Status(401),
            1,
            3,
        ),
        case(
            "on: 403",
            When::Start,
            put.clone(),
            MAINTENANCE,
            FaultKind::Status(403),
            1,
            3,
        ),
        case(
            "on: 500 once",
            When::Start,
            put.clone(),
            MAINTENANCE,
            FaultKind::Status(500),
            1,
            0,
        ),
        case(
            "on: 500 always",
            When::Start,
            put.clone(),
            MAINTENANCE,
            FaultKind::Status(500),
            4,
            3,
        ),
        case(
            "on: reset always",
            When::Start,
            put.clone(),
            MAINTENANCE,
            FaultKind::Reset,
            4,
            3,
        ),
        case(
            "on: late twice",
            When::Start,
            put.clone(),
            MAINTENANCE,
            LATE,
            2,
            0,
        ),
    ] {
        run_case(&c).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_on_putting_maintenance_mode_back() {
    let put = Method::PUT;
    for c in [
        case(
            "off: 500 twice",
            When::InWindow,
            put.clone(),
            MAINTENANCE,
            FaultKind::Status(500),
            2,
            0,
        ),
        case(
            "off: reset twice",
            When::InWindow,
            put.clone(),
            MAINTENANCE,
            FaultKind::Reset,
            2,
            0,
        ),
        case(
            "off: late once",
            When::InWindow,
            put.clone(),
            MAINTENANCE,
            LATE,
            1,
            0,
        ),
        case(
            "off: 401",
            When::InWindow,
            put.clone(),
            MAINTENANCE,
            FaultKind::Status(401),
            1,
            7,
        ),
        case(
            "off: 403",
            When::InWindow,
            put.clone(),
            MAINTENANCE,
            FaultKind::Status(403),
            1,
            7,
        ),
    ] {
        run_case(&c).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_on_reading_maintenance_mode_and_tasks() {
    let get = Method::GET;
    for c in [
        case(
            "read before: 500 always",
            When::Start,
            get.clone(),
            MAINTENANCE,
            FaultKind::Status(500),
            4,
            3,
        ),
        case(
            "read before: 401",
            When::Start,
            get.clone(),
            MAINTENANCE,
            FaultKind::Status(401),
            1,
            3,
        ),
        case(
            "read after BACKUP: 500 always",
            When::InWindow,
            get.clone(),
            MAINTENANCE,
            FaultKind::Status(500),
            4,
            3,
        ),
        case(
            "read after BACKUP: late",
            When::InWindow,
            get.clone(),
            MAINTENANCE,
            LATE,
            1,
            0,
        ),
        case(
            "tasks: 500 five times",
            When::Start,
            get.clone(),
            "/api/tasks",
            FaultKind::Status(500),
            5,
            0,
        ),
        case(
            "tasks: 403",
            When::Start,
            get.clone(),
            "/api/tasks",
            FaultKind::Status(403),
            1,
            3,
        ),
        case(
            "tasks: reset once",
            When::Start,
            get.clone(),
            "/api/tasks",
            FaultKind::Reset,
            1,
            0,
        ),
    ] {
        run_case(&c).await;
    }
}

/// A stop request (SIGTERM or SIGINT) while the run waits on one Octopus call: exit 130, the
/// message says so, maintenance mode as found, nothing complete, no journal.
#[cfg(unix)]
async fn stop_case(name: &str, when: When, method: Method, path: &str, signal: &str) {
    let t = TestLab::start().await;
    t.init().await;
    let fault = Fault {
        method: Some(method),
        path_prefix: path.into(),
        kind: FaultKind::Delay(Duration::from_secs(2)),
        times: 1,
    };
    let child = spawn_backup_with_fault(&t, when, fault, std::process::Stdio::piped()).await;
    t.wait_for_event("fault_served").await;
    let out = signal_and_wait(child, signal).await;
    assert_eq!(out.status.code(), Some(130), "{name}: {}", stderr(&out));
    let said = if signal == "INT" { "Ctrl-C" } else { "SIGTERM" };
    assert!(
        stderr(&out).contains(&format!("interrupted by {said}")),
        "{name}: {}",
        stderr(&out)
    );
    assert!(
        !t.lab.octopus().maintenance(),
        "{name}: maintenance mode left on"
    );
    assert!(
        t.sets().await.iter().all(|s| s["complete"] == false),
        "{name}: a set claims to be complete"
    );
    assert!(!t.journal_path().exists(), "{name}: journal left");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_requests_at_each_octopus_call_of_a_backup() {
    let (get, put) = (Method::GET, Method::PUT);
    for (name, when, method, path) in [
        (
            "preflight",
            When::Start,
            get.clone(),
            "/api/octopusservernodes",
        ),
        ("license", When::Start, get.clone(), "/api/licenses"),
        ("maintenance read", When::Start, get.clone(), MAINTENANCE),
        ("maintenance on", When::Start, put.clone(), MAINTENANCE),
        ("task wait", When::Start, get.clone(), "/api/tasks"),
        ("window check", When::InWindow, get.clone(), MAINTENANCE),
        ("maintenance off", When::InWindow, put.clone(), MAINTENANCE),
    ] {
        for signal in ["TERM", "INT"] {
            stop_case(
                &format!("{name} ({signal})"),
                when,
                method.clone(),
                path,
                signal,
            )
            .await;
        }
    }
}

/// kill -9 while the run waits on one Octopus call (the request on its way, answered or applied
/// after the kill), then the documented `recover`: maintenance mode off, nothing complete, the
/// repository checks, no journal and no staging folder left.
async fn kill_case(name: &str, when: When, method: Method, path: &str) {
    let t = TestLab::start().await;
    t.init().await;
    t.edit_config(|cfg| {
        TestLab::instance_table(cfg).insert("api_timeout".into(), "2s".into());
    });
    let fault = Fault {
        method: Some(method),
        path_prefix: path.into(),
        kind: FaultKind::Delay(Duration::from_secs(3)),
        times: 1,
    };
    let mut child = spawn_backup_with_fault(&t, when, fault, std::process::Stdio::null()).await;
    t.wait_for_event("fault_served").await;
    child.kill().unwrap();
    child.wait().unwrap();
    t.lab.sql().set_backup_rate(None);
    let r = t.run(&["recover"]).await;
    assert!(r.status.success(), "{name}: recover: {}", stderr(&r));
    // The request the kill left on its way has landed by now.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while seqs(&t.events(), "delayed_request_handled").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "{name}: the delayed request never landed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let changes = maintenance_changes(&t.events());
    assert!(
        !t.lab.octopus().maintenance(),
        "{name}: maintenance mode left on: {changes:?}"
    );
    assert!(
        t.sets().await.iter().all(|s| s["complete"] == false),
        "{name}: a set claims to be complete"
    );
    let check = t.restic(&["check"]);
    assert!(
        check.status.success(),
        "{name}: restic check: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(!t.journal_path().exists(), "{name}: journal left");
    assert!(
        t.staging_files().is_empty(),
        "{name}: staging left: {:?}",
        t.staging_files()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_each_octopus_call_of_a_backup_then_recover() {
    let (get, put) = (Method::GET, Method::PUT);
    for (name, when, method, path) in [
        (
            "preflight",
            When::Start,
            get.clone(),
            "/api/octopusservernodes",
        ),
        ("license", When::Start, get.clone(), "/api/licenses"),
        ("maintenance read", When::Start, get.clone(), MAINTENANCE),
        ("maintenance on", When::Start, put.clone(), MAINTENANCE),
        ("task wait", When::Start, get.clone(), "/api/tasks"),
        ("window check", When::InWindow, get.clone(), MAINTENANCE),
        ("maintenance off", When::InWindow, put.clone(), MAINTENANCE),
    ] {
        kill_case(name, when, method, path).await;
    }
}

/// SQL Server faults, each through the lab's own control: the exit code, maintenance mode as
/// found, a complete set only when the run said so, the repository checks, no journal left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_server_faults_leave_maintenance_as_found_and_no_false_set() {
    use octobackup_lab::sqlserver_sim::SqlFault;
    let cases: Vec<(&str, SqlFault, i32)> = vec![
        (
            "BACKUP: 3201 cannot open the device",
            SqlFault::FailNextBackup {
                number: 3201,
                message: "Cannot open backup device 'X:\\missing\\OctopusDeploy.bak'. Operating system error 3(The system cannot find the path specified.).".into(),
            },
            4,
        ),
        (
            "BACKUP: 262 permission denied",
            SqlFault::FailNextBackup {
                number: 262,
                message: "BACKUP DATABASE permission denied in database 'OctopusDeploy'.".into(),
            },
            4,
        ),
        ("BACKUP: connection dropped", SqlFault::DropConnectionDuringNextBackup, 4),
        ("BACKUP: damaged .bak", SqlFault::CorruptNextBackup, 4),
        ("login refused (18456)", SqlFault::FailNextLogin, 4),
        ("msdb history denied (229)", SqlFault::DenyNextHistoryQuery, 0),
    ];
    for (name, fault, exit) in cases {
        let t = TestLab::start().await;
        t.init().await;
        t.lab.sql().inject(fault);
        let out = t.run(&["backup"]).await;
        assert_eq!(out.status.code(), Some(exit), "{name}: {}", stderr(&out));
        let changes = maintenance_changes(&t.events());
        assert!(
            !t.lab.octopus().maintenance(),
            "{name}: maintenance mode left on: {changes:?}"
        );
        let complete = t
            .sets()
            .await
            .iter()
            .filter(|s| s["complete"] == true)
            .count();
        assert_eq!(complete, usize::from(exit == 0), "{name}: complete sets");
        let check = t.restic(&["check"]);
        assert!(
            check.status.success(),
            "{name}: restic check: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        assert!(!t.journal_path().exists(), "{name}: journal left");
        assert!(
            t.staging_files().is_empty(),
            "{name}: staging left: {:?}",
            t.staging_files()
        );
    }
}

/// After the window, storing and sealing the set: a stop (SIGTERM) or a kill -9 at any moment
/// there. Whatever moment it hits, the answer is true: exit 130 only with no complete set and a
/// message that says so; a set sealed before the stop is complete and the exit code says so (0);
/// after a kill, any complete set is a whole one; the repository always checks.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_and_kills_while_the_set_is_stored_tell_the_truth() {
    for (after_ms, signal) in [
        (0, "TERM"),
        (200, "TERM"),
        (400, "TERM"),
        (600, "TERM"),
        (800, "TERM"),
        (1200, "TERM"),
        (100, "KILL"),
        (250, "KILL"),
    ] {
        let t = TestLab::start().await;
        t.init().await;
        let child = t
            .command(&["backup"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The window ends (maintenance mode off again), then the set is stored and sealed.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while maintenance_changes(&t.events()).len() < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "the window never ended"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // A different moment each time.
        tokio::time::sleep(Duration::from_millis(after_ms)).await;
        let out = signal_and_wait(child, signal).await;
        let sets = t.sets().await;
        let complete: Vec<_> = sets.iter().filter(|s| s["complete"] == true).collect();
        let e = stderr(&out);
        eprintln!(
            "SIG{signal} after {after_ms} ms: exit {:?}, {} complete set(s)",
            out.status.code(),
            complete.len()
        );
        match out.status.code() {
            Some(130) => {
                assert!(complete.is_empty(), "exit 130 but a set is complete: {e}");
                assert!(e.contains("nothing was marked complete"), "{e}");
            }
            Some(0) => assert_eq!(complete.len(), 1, "exit 0 without a complete set: {e}"),
            // kill -9: no exit code; any complete set must be whole.
            None => {
                for s in &complete {
                    let id = s["set_id"].as_str().unwrap().to_string();
                    let show = t.ok(&["--json", "show", &id]).await;
                    let m: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
                    assert_eq!(m["complete"], true);
                    assert_eq!(m["database"]["verified"], true);
                }
            }
            other => panic!("exit {other:?}: {e}"),
        }
        assert!(!t.lab.octopus().maintenance());
        let check = t.restic(&["check"]);
        assert!(
            check.status.success(),
            "restic check: {}",
            String::from_utf8_lossy(&check.stderr)
        );
    }
}

fn assert_repository_checks(t: &TestLab, name: &str) {
    let check = t.restic(&["check"]);
    assert!(
        check.status.success(),
        "{name}: restic check: {}",
        String::from_utf8_lossy(&check.stderr)
    );
}

/// A backup killed inside the window, then SQL Server gone: the next backup cannot take the SQL
/// Server lock (exit 4, SQL Server's error), but first puts maintenance mode back as the killed
/// run found it, from its journal, and says so. Maintenance mode found off, and found on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_runs_maintenance_mode_is_put_back_when_sql_server_is_gone() {
    for found_on in [false, true] {
        let name = if found_on { "found on" } else { "found off" };
        let t = TestLab::start().await;
        t.init().await;
        if found_on {
            t.lab.octopus().set_maintenance(true, "admin");
        }
        let mut child = t.spawn_slow_backup(std::process::Stdio::null()).await;
        assert!(t.lab.octopus().maintenance(), "{name}: inside the window");
        child.kill().unwrap();
        child.wait().unwrap();
        // Found on, the run changes nothing and keeps no journal.
        assert_eq!(
            t.journal_path().exists(),
            !found_on,
            "{name}: the killed run's journal"
        );
        // SQL Server goes away: nothing answers on its port any more.
        t.lab.sql().clone().shutdown().await;
        let out = t.run(&["backup"]).await;
        let e = stderr(&out);
        assert_eq!(out.status.code(), Some(4), "{name}: {e}");
        assert_eq!(
            t.lab.octopus().maintenance(),
            found_on,
            "{name}: maintenance mode not as found: {:?}",
            maintenance_changes(&t.events())
        );
        if !found_on {
            assert!(
                e.contains("put back what an interrupted earlier run left"),
                "{name}: {e}"
            );
        }
        assert!(!e.contains("panicked"), "{name}: {e}");
        assert!(!t.journal_path().exists(), "{name}: journal left");
        assert!(
            t.sets().await.iter().all(|s| s["complete"] == false),
            "{name}: a set claims to be complete"
        );
        assert_repository_checks(&t, name);
    }
}

/// Plants a staging folder as a killed run of this instance leaves it (its marker and a .bak).
fn plant_leftover(t: &TestLab, set_id: &str) -> std::path::PathBuf {
    t.plant_staging_folder(
        set_id,
        &serde_json::json!({"instance": "OctopusServer", "set_id": set_id, "pid": 1}),
        "OctopusDeploy.bak",
        b"a copy of the database",
    )
}

/// `recover` without the SQL Server lock (SQL Server not answering) keeps the staging folders: a
/// run from another machine may be writing there. It says so, and which; with the lock, the next
/// `recover` removes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_keeps_staging_folders_without_the_sql_server_lock() {
    let t = TestLab::start().await;
    t.init().await;
    let left = plant_leftover(&t, "20260101T000000Z-0123ab");
    // SQL Server unreachable for this config: a port nothing listens on.
    let good = std::fs::read_to_string(&t.config).unwrap();
    let port = t
        .lab
        .info()
        .sql_address
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port().to_string();
    drop(closed);
    let unreachable = good.replace(&format!(",{port};"), &format!(",{closed_port};"));
    assert_ne!(unreachable, good);
    std::fs::write(&t.config, unreachable).unwrap();
    let out = t.run(&["recover"]).await;
    let e = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "{e}");
    assert!(
        left.join("OctopusDeploy.bak").exists(),
        "removed without the lock: {e}"
    );
    assert!(
        e.contains(&format!("kept {}", left.display()))
            && e.contains("without the SQL Server lock"),
        "{e}"
    );
    std::fs::write(&t.config, good).unwrap();
    let out = t.run(&["recover"]).await;
    let e = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "{e}");
    assert!(!left.exists(), "kept with the lock: {e}");
    assert!(e.contains(&format!("removed {}", left.display())), "{e}");
}

/// Staging folders of runs killed before they wrote their marker: an empty one (killed as it
/// started) is reported by `doctor` and removed by `backup`; one holding files but no marker (an
/// older version's) is never removed, only reported, by doctor, recover and backup alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_folders_without_a_marker_are_told_apart() {
    let t = TestLab::start().await;
    t.init().await;
    let staging = t.lab.info().staging_dir.clone();
    let empty = staging.join("octobackup-20260101T000000Z-0123ab");
    let old = staging.join("octobackup-20260102T000000Z-0123ab");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::create_dir_all(&old).unwrap();
    std::fs::write(old.join("OctopusDeploy.bak"), b"an older version's copy").unwrap();

    let doctor = t.run(&["doctor"]).await;
    let d = stdout(&doctor);
    assert!(
        d.contains("empty staging folders") && d.contains(&empty.display().to_string()),
        "{d}"
    );
    assert!(
        d.contains("staging folders of unknown runs") && d.contains(&old.display().to_string()),
        "{d}"
    );

    let recover = t.run(&["recover"]).await;
    let r = format!("{}{}", stdout(&recover), stderr(&recover));
    assert!(recover.status.success(), "{r}");
    assert!(!empty.exists(), "{r}");
    assert!(old.join("OctopusDeploy.bak").exists(), "{r}");
    assert!(r.contains(&format!("kept {}", old.display())), "{r}");

    std::fs::create_dir_all(&empty).unwrap();
    let out = t.ok(&["backup"]).await;
    let b = stderr(&out);
    assert!(!empty.exists(), "{b}");
    assert!(old.join("OctopusDeploy.bak").exists(), "{b}");
    assert!(b.contains(&format!("kept {}", old.display())), "{b}");
    assert_eq!(
        t.staging_files(),
        vec![old.clone()],
        "only the unknown folder is left"
    );
    assert_repository_checks(&t, "unmarked staging");
}
