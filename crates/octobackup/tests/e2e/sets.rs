//! Sets written straight into a test's repository (parts, sets of chosen dates) and the
//! repository opened as the tests see it.

use crate::common::*;
use chrono::{Local, TimeZone};
use octobackup::backupset::{TAG, TAG_PART, tag_instance, tag_set};
use octobackup_repo::{Password, Repo, RepoConfig, SetOptions, SourceItem, Zeroizing};
use std::collections::BTreeSet;
use std::path::Path;

pub fn open_repo(t: &TestLab) -> Repo {
    let password = std::fs::read_to_string(t.repo_password_file()).unwrap();
    Repo::open(&RepoConfig {
        repository: t.repo_dir().display().to_string(),
        options: Default::default(),
        password: Password::new(password.trim_end()),
        retry_budget: None,
    })
    .unwrap()
}

pub fn opts(tags: Vec<String>, time: chrono::DateTime<Local>) -> SetOptions {
    SetOptions {
        tags,
        hostname: "test".into(),
        parent_tags: vec![],
        time: Some(time),
        compression: None,
        chunk_memory: None,
    }
}

/// A part snapshot of `set_id` (what a run leaves before it seals its set).
pub fn add_part(repo: &Repo, set_id: &str, time: chrono::DateTime<Local>, bytes: &[u8]) -> String {
    let tags = vec![
        TAG.to_string(),
        tag_set(set_id),
        tag_instance("OctopusServer"),
        TAG_PART.to_string(),
    ];
    let item = SourceItem::Memory {
        target: "/database/OctopusDeploy.bak".into(),
        bytes: Zeroizing::new(bytes.to_vec()),
        mode: 0o644,
    };
    repo.backup(vec![item], &opts(tags, time), &octobackup_repo::NoProgress)
        .unwrap()
        .snapshot_id
}

pub fn noon(y: i32, m: u32, d: u32) -> chrono::DateTime<Local> {
    Local.with_ymd_and_hms(y, m, d, 12, 0, 0).unwrap()
}

pub fn dir_bytes(dir: &Path) -> u64 {
    walk_files(dir)
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum()
}

/// Pseudo-random bytes that do not compress or deduplicate.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub fn set_ids_of(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s["set_id"].as_str().unwrap().to_string())
        .collect()
}
