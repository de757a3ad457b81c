//! The README's first command: `octobackup-lab demo` runs the whole cycle against the lab.

#[test]
fn demo_runs_the_whole_cycle_and_cleans_up() {
    let out = std::process::Command::new(crate::common::lab_exe())
        .arg("demo")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "== 1.",
        "octobackup init",
        "octobackup backup",
        "A day of use",
        "octobackup snapshots",
        "inside the maintenance window",
    ] {
        assert!(text.contains(step), "missing '{step}' in:\n{text}");
    }
    assert!(text.matches("complete").count() >= 2, "{text}");
    // The temporary lab folder is gone afterwards.
    let dir = text
        .lines()
        .find_map(|l| l.strip_prefix("== 1. Starting the lab in "))
        .and_then(|l| l.split(':').next())
        .unwrap();
    assert!(!std::path::Path::new(dir).exists(), "{dir} was left behind");
}

#[test]
fn demo_json_is_machine_readable() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(crate::common::lab_exe())
        .args(["--json", "demo", "--dir"])
        .arg(dir.path().join("lab"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["sets"].as_array().unwrap().len(), 2);
    assert!(
        dir.path().join("lab/repository").is_dir(),
        "--dir keeps the folder"
    );
}
