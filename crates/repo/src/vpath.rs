//! Paths inside a snapshot ("virtual paths"): always `/`-separated and absolute, whatever the
//! platform, so a set written on Windows reads the same on Linux and in restic.

use std::path::PathBuf;

use crate::error::RepoError;

/// A checked snapshot path: `/` followed by names, no `.`/`..`, no empty names, no backslash.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct VirtualPath {
    names: Vec<String>,
}

impl VirtualPath {
    /// Parses a path inside a snapshot; `/` itself is the snapshot root.
    pub(crate) fn parse(text: &str) -> Result<Self, RepoError> {
        let invalid = |why: &str| {
            RepoError::InvalidInput(format!(
                "invalid snapshot path `{text}`: {why} (write it like `/folders/Packages`)"
            ))
        };
        let Some(rest) = text.strip_prefix('/') else {
            return Err(invalid("it must start with `/`"));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() {
            return Ok(Self { names: Vec::new() });
        }
        let names = rest
            .split('/')
            .map(|name| match name {
                "" => Err(invalid("it has an empty name (`//`)")),
                "." | ".." => Err(invalid("`.` and `..` are not allowed")),
                _ if name.contains(['\\', '\0']) => {
                    Err(invalid("names cannot contain `\\` or NUL"))
                }
                _ => Ok(name.to_string()),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { names })
    }

    /// Parses a target for new content: the root itself cannot be one.
    pub(crate) fn parse_target(text: &str) -> Result<Self, RepoError> {
        let path = Self::parse(text)?;
        if path.is_root() {
            return Err(RepoError::InvalidInput(
                "`/` cannot be a backup target: map each source to its own path like `/folders/Packages`"
                    .into(),
            ));
        }
        Ok(path)
    }

    pub(crate) fn is_root(&self) -> bool {
        self.names.is_empty()
    }

    pub(crate) fn names(&self) -> &[String] {
        &self.names
    }

    /// The last name (empty for the root).
    pub(crate) fn file_name(&self) -> &str {
        self.names.last().map_or("", String::as_str)
    }

    /// Whether one of the two contains the other (or they are equal).
    pub(crate) fn overlaps(&self, other: &Self) -> bool {
        let n = self.names.len().min(other.names.len());
        self.names[..n] == other.names[..n]
    }

    /// This path under `base`, for rustic, which works with `Path`s.
    pub(crate) fn to_path(&self) -> PathBuf {
        // Built from the `/`-joined text, not by pushing names: on Windows a pushed name gets a `\`
        // separator, which restic would record in the snapshot's paths (`/folders\Packages`) and
        // which `parse` rightly refuses. Windows reads `/` as a separator just the same.
        PathBuf::from(self.to_string())
    }

    /// `self` joined with a relative `/`-separated tail.
    pub(crate) fn join(&self, tail: &str) -> String {
        let text = self.to_string();
        match (text.as_str(), tail.is_empty()) {
            (_, true) => text,
            ("/", false) => format!("/{tail}"),
            _ => format!("{text}/{tail}"),
        }
    }
}

impl std::fmt::Display for VirtualPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.names.is_empty() {
            return f.write_str("/");
        }
        for name in &self.names {
            write!(f, "/{name}")?;
        }
        Ok(())
    }
}

/// Checks that no target contains another or repeats: rustic builds one tree from entries
/// sorted by path, which cannot hold a folder both as a source's root and inside another one.
pub(crate) fn check_disjoint(targets: &[&VirtualPath]) -> Result<(), RepoError> {
    let mut sorted: Vec<&VirtualPath> = targets.to_vec();
    sorted.sort();
    for pair in sorted.windows(2) {
        if pair[0].overlaps(pair[1]) {
            return Err(RepoError::InvalidInput(format!(
                "snapshot paths `{}` and `{}` overlap: each source needs its own path, and none may lie inside another",
                pair[0], pair[1]
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let p = VirtualPath::parse("/folders/Packages/").unwrap();
        assert_eq!(p.to_string(), "/folders/Packages");
        assert_eq!(p.file_name(), "Packages");
        assert!(VirtualPath::parse("/").unwrap().is_root());
        assert_eq!(VirtualPath::parse("/").unwrap().join("a/b"), "/a/b");
        assert_eq!(p.join("x"), "/folders/Packages/x");
        for bad in ["folders", "/a//b", "/a/../b", "/a/./b", "/a\\b", ""] {
            assert!(VirtualPath::parse(bad).is_err(), "{bad}");
        }
        assert!(VirtualPath::parse_target("/").is_err());
    }

    #[test]
    fn nested_or_repeated_targets_are_refused() {
        let a = VirtualPath::parse("/folders").unwrap();
        let b = VirtualPath::parse("/folders/Packages").unwrap();
        let c = VirtualPath::parse("/folders-old").unwrap();
        let d = VirtualPath::parse("/database/x.bak").unwrap();
        assert!(check_disjoint(&[&b, &a]).is_err());
        assert!(check_disjoint(&[&d, &d]).is_err());
        assert!(check_disjoint(&[&a, &c, &d]).is_ok());
    }

    #[test]
    fn sorting_follows_names_so_trees_come_out_in_order() {
        let mut v: Vec<VirtualPath> = ["/b", "/a-b", "/a/x"]
            .iter()
            .map(|s| VirtualPath::parse(s).unwrap())
            .collect();
        v.sort();
        let shown: Vec<String> = v.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["/a/x", "/a-b", "/b"]);
    }
}
