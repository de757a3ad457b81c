//! `octobackup schedule` on Linux: the unit files written for the lab's config, read back by
//! `show`, accepted by systemd itself (`systemd-analyze verify`), and removed by `remove`.

use crate::common::*;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_writes_units_systemd_accepts_show_reads_them_back_and_remove_removes_them() {
    let t = TestLab::start().await;
    let units = t.dir.path().join("units");
    let units_arg = units.to_str().unwrap();
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let report = t.dir.path().join("share").join("report.html");
    let out = t
        .ok(&[
            "schedule",
            "install",
            "--unit-dir",
            units_arg,
            "--at",
            "03:15",
            "--user",
            &user,
            "--report",
            report.to_str().unwrap(),
        ])
        .await;
    assert!(
        stdout(&out).contains("not registered (written to --unit-dir)"),
        "{}",
        stdout(&out)
    );
    let service = std::fs::read_to_string(units.join("octobackup-OctopusServer.service")).unwrap();
    let timer = std::fs::read_to_string(units.join("octobackup-OctopusServer.timer")).unwrap();
    let config = t.config.canonicalize().unwrap();
    let exe = exe();
    let backup = format!(
        "ExecStart=\"{}\" \"--config\" \"{}\" \"backup\" \"--instance\" \"OctopusServer\"",
        exe.display(),
        config.display()
    );
    let drill = backup.replace("\"backup\"", "\"drill\"");
    let lines: Vec<&str> = service.lines().collect();
    assert!(lines.contains(&backup.as_str()), "{backup}\n{service}");
    assert!(lines.contains(&drill.as_str()), "{drill}\n{service}");
    assert!(
        lines.contains(&format!("User={user}").as_str()),
        "{service}"
    );
    // The lab's staging folder lives under /tmp: writable, and /tmp not made private.
    let staging = t.dir.path().canonicalize().unwrap();
    assert!(
        service.contains(&format!("-{}", staging.display())),
        "the staging folder is left writable: {service}"
    );
    assert!(!service.contains("PrivateTmp"), "{service}");
    assert!(
        timer.lines().any(|l| l == "OnCalendar=*-*-* 03:15:00"),
        "{timer}"
    );
    assert!(timer.lines().any(|l| l == "Persistent=true"), "{timer}");
    // No secret of the lab in a unit (units are world-readable).
    let password = std::fs::read_to_string(t.repo_password_file()).unwrap();
    assert!(!service.contains(password.trim()));

    // systemd's own judgement of the files.
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(units.join("octobackup-OctopusServer.service"))
        .arg(units.join("octobackup-OctopusServer.timer"))
        .env("SYSTEMD_LOG_LEVEL", "warning")
        .output()
        .unwrap_or_else(|e| {
            panic!("systemd-analyze cannot run ({e}): install Debian's `systemd` (apt-get install systemd)")
        });
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(
        verify.status.success() && !said.contains("octobackup-OctopusServer"),
        "systemd-analyze verify refused the units ({}): {said}",
        verify.status
    );

    let shown = t.ok(&["schedule", "show", "--unit-dir", units_arg]).await;
    assert!(stdout(&shown).contains(&backup), "{}", stdout(&shown));
    assert!(stdout(&shown).contains("OnCalendar=*-*-* 03:15:00"));

    t.ok(&["schedule", "remove", "--unit-dir", units_arg]).await;
    assert!(!units.join("octobackup-OctopusServer.service").exists());
    assert!(!units.join("octobackup-OctopusServer.timer").exists());
    let again = t.run(&["schedule", "show", "--unit-dir", units_arg]).await;
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("run `octobackup schedule install`"),
        "{}",
        stderr(&again)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_time_is_refused_and_nothing_is_written() {
    let t = TestLab::start().await;
    let units = t.dir.path().join("units");
    t.fails(
        &[
            "schedule",
            "install",
            "--unit-dir",
            units.to_str().unwrap(),
            "--at",
            "25:00",
        ],
        2,
        "is not a time of day like 02:30",
    )
    .await;
    assert!(!units.exists());
}

/// What the Windows task runs, on any platform: backup, drill if it passed, the report always,
/// and the first failure's exit code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_run_backs_up_drills_and_reports_and_exits_with_the_first_failure() {
    use octobackup_lab::sqlserver_sim::SqlFault;
    let t = TestLab::start().await;
    t.init().await;
    let page = t.dir.path().join("report.html");
    let page_arg = page.to_str().unwrap();
    let out = t.ok(&["schedule", "run", "--report", page_arg]).await;
    assert!(stdout(&out).contains("drill of set"), "{}", stdout(&out));
    let drills = |t: &TestLab| {
        let out = t.restic(&["snapshots", "--json", "--tag", "octobackup-drill"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v.as_array().unwrap().len()
    };
    assert_eq!(drills(&t), 1);
    let first = std::fs::read_to_string(&page).unwrap();
    assert!(
        first.contains("<span class=\"pass\">passed</span>"),
        "{first}"
    );

    // A night whose backup fails: no drill, the report still written, the backup's exit code.
    t.lab.sql().inject(SqlFault::FailNextLogin);
    std::fs::remove_file(&page).unwrap();
    let out = t.run(&["schedule", "run", "--report", page_arg]).await;
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(!stdout(&out).contains("drill of set"), "{}", stdout(&out));
    assert_eq!(drills(&t), 1, "no drill after a failed backup");
    assert!(page.exists(), "the report is written after a failed night");
    assert!(!t.lab.octopus().maintenance());
}
