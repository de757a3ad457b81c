//! The lab instance on disk: deterministic from its seed, grown by simulated days, its database
//! holding values the master key opens.

use octobackup_lab::instance::{self, InstanceOptions, InstancePaths, InstanceState};
use octobackup_lab::sqlserver_files::image::{self, Value};
use octobackup_lab::{Size, crypto};

fn build(seed: u64, key_bytes: usize) -> (tempfile::TempDir, InstancePaths, InstanceState) {
    let dir = tempfile::tempdir().unwrap();
    let paths = InstancePaths::new(dir.path());
    let state = instance::create(
        &paths,
        &InstanceOptions {
            size: Size::Small,
            seed,
            master_key_bytes: key_bytes,
            nodes: 1,
        },
    )
    .unwrap();
    (dir, paths, state)
}

#[test]
fn the_same_seed_builds_the_same_instance_and_another_seed_does_not() {
    let (_a, pa, sa) = build(7, 16);
    let (_b, pb, sb) = build(7, 16);
    let (_c, pc, _) = build(8, 16);
    let fa = instance::fingerprint(&pa, &sa.database).unwrap();
    assert_eq!(fa, instance::fingerprint(&pb, &sb.database).unwrap());
    assert_eq!(sa.master_key, sb.master_key);
    let fc = instance::fingerprint(&pc, &sa.database).unwrap();
    assert_ne!(fa.database, fc.database);
    assert!(!fa.differences(&fc).is_empty());
    for name in ["Packages", "Artifacts", "TaskLogs", "EventExports"] {
        assert!(!fa.folders[name].is_empty(), "{name} is empty");
    }
}

#[test]
fn a_small_instance_is_a_few_megabytes() {
    let (dir, _, _) = build(1, 16);
    let total: u64 = walk(dir.path())
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(
        (2 << 20..40 << 20).contains(&total),
        "small instance is {total} bytes"
    );
}

#[test]
fn a_day_of_activity_adds_files_and_changes_pages_deterministically() {
    let (_a, pa, sa) = build(3, 16);
    let (_b, pb, _) = build(3, 16);
    let before = instance::fingerprint(&pa, &sa.database).unwrap();
    let ra = instance::churn(&pa, 2).unwrap();
    instance::churn(&pb, 1).unwrap();
    instance::churn(&pb, 1).unwrap();
    let after = instance::fingerprint(&pa, &sa.database).unwrap();
    assert_eq!(
        after,
        instance::fingerprint(&pb, &sa.database).unwrap(),
        "two days at once = one day twice"
    );
    assert_eq!(ra.day_now, 2);
    assert!(ra.folders.files_added > 0 && ra.database_pages_changed > 0);
    assert_ne!(before.database, after.database);
    let diffs = before.differences(&after);
    assert!(
        diffs
            .iter()
            .any(|d| d.contains("TaskLogs/") && d.ends_with("unexpected")),
        "{diffs:?}"
    );
    assert_eq!(InstanceState::load(&pa).unwrap().day, 2);
}

#[test]
fn the_database_holds_values_encrypted_with_the_master_key_as_octopus_does() {
    for key_bytes in [16, 32] {
        let (_d, paths, state) = build(5, key_bytes);
        let key = state.master_key_bytes();
        assert_eq!(key.len(), key_bytes);
        let config =
            image::read_table(&paths.data_file(&state.database), "dbo", "Configuration").unwrap();
        let cert_row = config
            .rows
            .iter()
            .find(|r| r[0] == Value::Text("servercertificate".into()))
            .expect("certificate row");
        let Value::Text(json) = &cert_row[1] else {
            panic!("JSON column")
        };
        let json: serde_json::Value = serde_json::from_str(json).unwrap();
        let stored = json["CertificateData"].as_str().unwrap();
        assert!(regex_like_octopus(stored), "{stored}");
        let plain = crypto::decrypt(&key, stored).unwrap();
        let der =
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, plain).unwrap();
        assert_eq!(der[0], 0x30, "a DER certificate");
        let mut wrong = key.clone();
        wrong[0] ^= 1;
        let attempt = crypto::decrypt(&wrong, stored);
        assert!(attempt.is_err() || attempt.unwrap() != crypto::decrypt(&key, stored).unwrap());

        let installation = config
            .rows
            .iter()
            .find(|r| r[0] == Value::Text("installation".into()))
            .unwrap();
        let Value::Text(json) = &installation[1] else {
            panic!()
        };
        assert!(json.contains(&state.installation_id.to_string()));
    }
}

/// `base64(cipher)|base64(16-byte iv)`
fn regex_like_octopus(s: &str) -> bool {
    let Some((c, iv)) = s.split_once('|') else {
        return false;
    };
    let b64 = |x: &str| {
        x.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "+/=".contains(ch))
    };
    b64(c) && b64(iv) && iv.len() == 24 && iv.ends_with("==")
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p))
        } else {
            out.push(p)
        }
    }
    out
}
