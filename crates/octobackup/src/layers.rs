//! Imports point down (the README's "Layout"): `cli` on top, then `run` (the operations), then the
//! domain (`octopus`, `sqlserver`, `backupset`), then `config`, `error` and `secret`. These tests
//! read the sources and fail on an import that points up, and on an import circle between modules
//! (two modules, or two parts of one folder, that name each other, directly or round about).

use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every module above the leaves (`error.rs`, `secret.rs`, `format.rs`), which name none of them;
/// `config`, one step up, names none but itself.
const ABOVE_THE_LEAVES: &[&str] = &[
    "config",
    "cli",
    "lab",
    "run",
    "octopus",
    "sqlserver",
    "backupset",
    "notify",
    "metrics",
    "report",
    "schedule",
];

/// (files, modules they must not name).
fn rules(src: &Path) -> Vec<(Vec<PathBuf>, &'static [&'static str])> {
    // The files of a folder, its subfolders' too.
    let dir = |d: &str| -> Vec<PathBuf> {
        let mut v = Vec::new();
        files(&src.join(d), &mut v);
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
        (dir("config"), &ABOVE_THE_LEAVES[1..]),
        (
            vec![
                src.join("error.rs"),
                src.join("secret.rs"),
                src.join("format.rs"),
            ],
            ABOVE_THE_LEAVES,
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

/// The module a source file is (`run/backup.rs` → `run::backup`, `run/mod.rs` → `run`, `lib.rs`
/// → the root, ""); `None` for the binaries, which are not modules of the library.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts.first().map(String::as_str) == Some("bin") || parts == ["main.rs"] {
        return None;
    }
    let last = parts.pop()?;
    let stem = last.strip_suffix(".rs")?;
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    Some(parts.join("::"))
}

/// The source without comments and without its `#[cfg(test)] mod tests`: a test may use whatever
/// it tests from, the circles that matter are in the code that ships.
fn code(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((n, line)) = lines.next() {
        let t = line.trim_start();
        if t == "#[cfg(test)]"
            && lines
                .peek()
                .is_some_and(|(_, next)| next.trim_start().starts_with("mod tests"))
        {
            break;
        }
        if t.starts_with("//") {
            continue;
        }
        out.push((n + 1, line));
    }
    out
}

/// The paths a line names, as segments from the crate's root: `crate::a::b`, `super::c` (from
/// `module`), and each branch of a `{...}` group after either.
fn named_paths(module: &str, line: &str) -> Vec<Vec<String>> {
    fn ident(s: &str) -> usize {
        s.find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(s.len())
    }
    // The segments that follow `rest` (which starts after a `::`), each branch of a group apart.
    fn walk(base: Vec<String>, rest: &str, out: &mut Vec<Vec<String>>) {
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        walk(base.clone(), group[start..i].trim(), out);
                        return;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        walk(base.clone(), group[start..i].trim(), out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            // A group that goes on over more lines: what this line shows of it.
            walk(base, group[start..].trim(), out);
            return;
        }
        let n = ident(rest);
        if n == 0 {
            out.push(base);
            return;
        }
        let mut path = base;
        path.push(rest[..n].to_string());
        match rest[n..].strip_prefix("::") {
            Some(more) => walk(path, more, out),
            None => out.push(path),
        }
    }
    let mut out = Vec::new();
    let here: Vec<String> = module
        .split("::")
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    for (i, _) in line.match_indices("crate::") {
        let before = line[..i].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        walk(Vec::new(), &line[i + "crate::".len()..], &mut out);
    }
    for (i, _) in line.match_indices("super::") {
        let before = line[..i].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue; // `super::super::` is read from its first `super`
        }
        let mut base = here.clone();
        let mut rest = &line[i..];
        while let Some(r) = rest.strip_prefix("super::") {
            base.pop();
            rest = r;
        }
        walk(base, rest, &mut out);
    }
    out
}

/// Import circles between modules: for every import from `a` to `b`, the two children of their
/// closest common module that hold them (a folder's parts among themselves; `run::backup::chain`
/// naming `run::restore` is `run::backup` → `run::restore`). A module naming its own parent or
/// child is not a circle: a folder is one unit. Each circle comes back as its modules and the
/// lines that tie it.
fn circles(sources: &[(String, String, String)]) -> Vec<String> {
    use std::collections::{BTreeMap, BTreeSet};
    let modules: BTreeSet<Vec<String>> = sources
        .iter()
        .map(|(m, _, _)| {
            m.split("::")
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .collect();
    // edges[(from, to)] = where
    let mut edges: BTreeMap<(Vec<String>, Vec<String>), Vec<String>> = BTreeMap::new();
    for (module, file, text) in sources {
        let from: Vec<String> = module
            .split("::")
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        for (n, line) in code(text) {
            for path in named_paths(module, line) {
                // The deepest module the path names.
                let Some(to) = (0..=path.len())
                    .rev()
                    .map(|k| path[..k].to_vec())
                    .find(|p| modules.contains(p))
                else {
                    continue;
                };
                let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
                if common == from.len() || common == to.len() {
                    continue; // itself, a parent or a child
                }
                let at = edges
                    .entry((from[..=common].to_vec(), to[..=common].to_vec()))
                    .or_default();
                let here = format!("{file}:{n}");
                if !at.contains(&here) {
                    at.push(here);
                }
            }
        }
    }
    // Strongly connected sets of more than one module (Tarjan's, small enough to be plain).
    let nodes: BTreeSet<&Vec<String>> = edges.keys().flat_map(|(a, b)| [a, b]).collect();
    let reach = |start: &Vec<String>| -> BTreeSet<Vec<String>> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![start.clone()];
        while let Some(n) = todo.pop() {
            for (a, b) in edges.keys() {
                if *a == n && seen.insert(b.clone()) {
                    todo.push(b.clone());
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&Vec<String>, BTreeSet<Vec<String>>> =
        nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut done = BTreeSet::new();
    let mut found = Vec::new();
    for n in &nodes {
        if done.contains(*n) || !reached[n].contains(*n) {
            continue;
        }
        let set: BTreeSet<&Vec<String>> = nodes
            .iter()
            .copied()
            .filter(|m| reached[n].contains(*m) && reached[m].contains(*n))
            .collect();
        let mut text = format!(
            "{}:",
            set.iter()
                .map(|m| m.join("::"))
                .collect::<Vec<_>>()
                .join(" <-> ")
        );
        for ((a, b), at) in &edges {
            if set.contains(a) && set.contains(b) {
                text += &format!(
                    "\n  {} -> {} at {}",
                    a.join("::"),
                    b.join("::"),
                    at.join(", ")
                );
            }
        }
        found.push(text);
        done.extend(set.into_iter().cloned());
    }
    found
}

fn product_sources(src: &Path) -> Vec<(String, String, String)> {
    let mut paths = Vec::new();
    files(src, &mut paths);
    paths.sort();
    paths
        .into_iter()
        .filter_map(|p| {
            let module = module_of(src, &p)?;
            let text = std::fs::read_to_string(&p).unwrap();
            let shown = p.strip_prefix(src).unwrap().display().to_string();
            Some((module, shown, text))
        })
        .collect()
}

#[test]
fn no_import_circles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let sources = product_sources(&src);
    assert!(sources.len() > 60, "only {} files read", sources.len());
    let found = circles(&sources);
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

#[test]
fn the_check_finds_a_circle() {
    let src = |m: &str, text: &str| (m.to_string(), format!("{m}.rs"), text.to_string());
    let found = circles(&[
        src("", "pub mod run;"),
        src("run", "pub mod backup;\npub mod chain;"),
        src(
            "run::backup",
            "use super::chain::{Chain, Link};\n// crate::run::restore in a comment\n",
        ),
        src("run::chain", "fn f() { crate::run::backup::window(); }"),
        src("run::restore", "use crate::config::Config;"),
        src(
            "config",
            "pub mod notify;\nuse crate::{secret::Secret, notify::{When, Format}};",
        ),
        src(
            "config::notify",
            "use super::Config;\nuse super::super::run;",
        ),
        src("notify", "use crate::config::notify::When;"),
        src(
            "secret",
            "#[cfg(test)]\nmod tests {\n    use crate::config::Config;\n}",
        ),
    ]);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(
        found[0].starts_with("config <-> notify <-> run:"),
        "{}",
        found[0]
    );
    assert!(
        found[0].contains("config -> run at config::notify.rs:2"),
        "{}",
        found[0]
    );
    assert!(
        found[1].starts_with("run::backup <-> run::chain:"),
        "{}",
        found[1]
    );
    assert!(found.iter().all(|f| !f.contains("secret")));
    let mut none = vec![
        src("run::backup", "pub mod chain;"),
        src(
            "run::backup::chain",
            "use super::Window;\nuse crate::run::restore::Plan;",
        ),
        src("run::restore", "use crate::run::backup::chain::Chain;"),
    ];
    assert_eq!(
        circles(&none).len(),
        1,
        "the folder names restore, and restore the folder"
    );
    none.pop();
    assert!(circles(&none).is_empty());
}
