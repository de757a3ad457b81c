//! The benchmark command runs end to end on the small lab and reports every figure the README's
//! "Benchmark" section shows (values are not asserted: timings belong to the benchmark, not to tests).

#[test]
fn lab_bench_reports_every_figure_as_json() {
    let dir = tempfile::tempdir().unwrap();
    // `--repository`: the same backup and restore into S3 (moto), against the local folder.
    let s3 = crate::backends::Backend::start(crate::backends::Kind::S3);
    let place = s3.place(crate::servers::BUCKET, "bench").unwrap();
    let mut bench = std::process::Command::new(crate::common::lab_exe());
    bench
        .args(["--json", "bench", "--size", "small", "--dir"])
        .arg(dir.path())
        .args(["--repository", &place.location])
        .envs(place.env.iter().cloned());
    for (k, v) in &place.options {
        bench.args(["--repository-option", &format!("{k}={v}")]);
    }
    let out = bench.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for night in ["first", "nightly"] {
        for field in [
            "manual_window_s",
            "manual_db_backup_s",
            "octobackup_window_s",
            "octobackup_db_backup_s",
            "octobackup_engine_s",
            "bak_bytes",
        ] {
            assert!(
                r[night][field].as_f64().is_some_and(|v| v > 0.0),
                "{night}.{field}: {}",
                r[night]
            );
        }
        let wall = r[night]["octobackup"]["seconds"].as_f64().unwrap();
        assert!(wall > 0.0);
        // The engine time is the wall time less SQL Server's share: the steps it reads by name
        // must be the ones the backup reports, or nothing is taken off.
        let steps: Vec<&str> = r[night]["octobackup_steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s[0].as_str())
            .collect();
        for name in [
            "database backup",
            "verify the database backup",
            "store the database backup",
        ] {
            assert!(
                steps.contains(&name),
                "{night}: no step {name:?} in {steps:?}"
            );
        }
        assert!(
            steps
                .iter()
                .any(|s| s.starts_with("server folders (capture")),
            "{night}: {steps:?}"
        );
        assert!(r[night]["octobackup_engine_s"].as_f64().unwrap() <= wall);
        assert!(
            r[night]["restic"]["seconds"].as_f64().unwrap() > 0.0,
            "restic must be installed: apt-get install restic"
        );
    }
    // The copy is timed to its sync, as the restore is; the time before the sync beside it.
    let copy = r["copy_s"].as_f64().unwrap();
    let unsynced = r["copy_unsynced_s"].as_f64().unwrap();
    assert!(unsynced > 0.0 && copy >= unsynced, "{copy} {unsynced}");
    // Each measured twice, alternating; the faster of each compared.
    let fastest = |rounds: &serde_json::Value| {
        let rounds: Vec<f64> = rounds
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_f64().unwrap())
            .collect();
        assert_eq!(rounds.len(), 2, "{rounds:?}");
        rounds.into_iter().fold(f64::INFINITY, f64::min)
    };
    assert_eq!(fastest(&r["copy_rounds_s"]), copy);
    assert_eq!(
        fastest(&r["restore_rounds_s"]),
        r["restore"]["seconds"].as_f64().unwrap()
    );
    assert!(r["changed_bytes_day"].as_u64().unwrap() > 0);
    assert!(
        r["nightly"]["repository_growth_bytes"].as_u64().unwrap()
            < r["first"]["repository_growth_bytes"].as_u64().unwrap()
    );
    for ratio in [
        "window_minus_backup_nightly",
        "full_backup_vs_read_once",
        "growth_vs_changed",
        "growth_vs_one_bak",
        "restore_vs_copy",
        "full_engine_vs_restic",
        "nightly_engine_vs_restic",
    ] {
        assert!(r["ratios"][ratio].as_f64().is_some(), "{ratio}");
    }
    let other = &r["repository"];
    // Named as messages name it (bucket and endpoint), not as given.
    let shown = other["location"].as_str().unwrap();
    assert!(
        shown.starts_with(&format!("S3 bucket `{}` at http", crate::servers::BUCKET)),
        "{other}"
    );
    for field in ["backup", "restore"] {
        assert!(
            other[field]["seconds"].as_f64().is_some_and(|v| v > 0.0),
            "{field}: {other}"
        );
    }
    for ratio in ["backup_vs_local", "restore_vs_local"] {
        assert!(
            other[ratio].as_f64().is_some_and(|v| v > 0.0),
            "{ratio}: {other}"
        );
    }
    // Both chains: the owned window after a day, and its ratio to copy-only's.
    for field in [
        "first_window_s",
        "first_base_s",
        "nightly_window_s",
        "nightly_db_backup_s",
    ] {
        assert!(
            r["owned"][field].as_f64().is_some_and(|v| v > 0.0),
            "owned.{field}: {}",
            r["owned"]
        );
    }
    assert!(r["owned"]["nightly_differential_bytes"].as_u64().unwrap() > 0);
    assert!(r["owned"]["window_vs_copy_only"].as_f64().is_some());
    assert!(dir.path().join("bench.json").exists());
    // Each restore really produced the set's files.
    for round in ["restore1", "restore2"] {
        let restored = dir.path().join(round);
        assert!(restored.join("database/OctopusDeploy.bak").exists());
        assert!(restored.join("folders/TaskLogs").is_dir());
    }
}

/// A credential given to `bench --repository-option` as plain text is refused before anything
/// runs (it would be written into the bench's config file), without echoing it.
#[test]
fn lab_bench_refuses_a_plain_text_credential_option() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(crate::common::lab_exe())
        .args(["bench", "--size", "small", "--dir"])
        .arg(dir.path())
        .args(["--repository", "s3://127.0.0.1:9/bucket/bench"])
        .args(["--repository-option", "secret_access_key=NotToBeShown42"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("secret_access_key_env=VARIABLE"), "{err}");
    assert!(!err.contains("NotToBeShown42"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
