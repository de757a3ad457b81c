//! Imports point down (the README's "Layout"): `cli` on top, then `run` (the operations), then the
//! domain (`octopus`, `sqlserver`, `backupset`), then `config`, `error` and `secret`. This test
//! reads the sources and fails on an import that points up.

use std::path::{Path, PathBuf};

/// (files, modules they must not name).
fn rules(src: &Path) -> Vec<(Vec<PathBuf>, &'static [&'static str])> {
    let dir = |d: &str| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(src.join(d))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    };
    let domain = [dir("octopus"), dir("sqlserver"), dir("backupset")].concat();
    vec![
        (dir("run"), &["cli", "lab"]),
        (
            [
                dir("notify"),
                dir("metrics"),
                dir("report"),
                dir("schedule"),
            ]
            .concat(),
            &["cli", "lab"],
        ),
        (domain, &["cli", "lab", "run"]),
        (
            dir("config"),
            &["cli", "lab", "run", "octopus", "sqlserver", "backupset"],
        ),
        (
            vec![
                src.join("error.rs"),
                src.join("secret.rs"),
                src.join("format.rs"),
            ],
            &[
                "cli",
                "lab",
                "run",
                "octopus",
                "sqlserver",
                "backupset",
                "config",
            ],
        ),
    ]
}

/// Lines of `text` that name `crate::<module>` or `super::<module>` (the module itself: `client`
/// does not match `cli`).
fn naming(text: &str, module: &str) -> Vec<usize> {
    let mut hits = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for prefix in ["crate::", "super::"] {
            let needle = format!("{prefix}{module}");
            let named = line.match_indices(&needle).any(|(i, _)| {
                !line[i + needle.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
            });
            if named {
                hits.push(n + 1);
            }
        }
    }
    hits
}

#[test]
fn imports_point_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut upward = Vec::new();
    let mut files = 0;
    for (paths, banned) in rules(&src) {
        for p in paths {
            files += 1;
            let text = std::fs::read_to_string(&p).unwrap();
            for m in banned {
                for n in naming(&text, m) {
                    upward.push(format!("{}:{n} names {m}", p.display()));
                }
            }
        }
    }
    assert!(files > 25, "only {files} files read");
    assert!(
        upward.is_empty(),
        "imports that point up:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_check_finds_an_upward_import() {
    assert_eq!(
        naming(
            "use crate::cli::ui::Ui;\nuse super::client::Session;",
            "cli"
        ),
        [1]
    );
    assert_eq!(
        naming("x: crate::backupset::retention::Policy,", "backupset"),
        [1]
    );
    assert!(naming("use super::client::{Session, SqlError};", "cli").is_empty());
}
