//! `[[copy]]`: second repositories the sets are copied to (`octobackup copy --to NAME`, and after
//! each backup with `after_backup`). Each has its own location, backend options and password.

use super::RepositoryConfig;
use crate::secret::SecretSource;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug, Deserialize, Serialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CopyConfig {
    /// What commands call it: `copy --to NAME`, `check --copy NAME`, `drill --copy NAME`.
    pub name: String,
    /// As `[repository] location`: a folder, `s3://...`, `azure://...`, `sftp://...`.
    pub location: String,
    /// The copy's own password (not the main repository's): a file or a variable holding it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// Backend options, as `[repository.options]`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// As `[repository] retry_budget`, for this storage. Default 2m.
    #[serde(
        default,
        with = "super::humantime_serde_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub retry_budget: Option<Duration>,
    /// Copy the instance's new set here after each successful backup. Default true.
    #[serde(default = "super::yes")]
    pub after_backup: bool,
    /// `[copy.retention]`: the copy's own policy (`forget --copy NAME`, and `backup --forget`
    /// after the copy). Without one, `forget --copy NAME` applies the instance's policy and
    /// `backup --forget` leaves the copy's sets alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<super::retention::Policy>,
}

impl CopyConfig {
    /// The copy as a repository section: what opening it and its escrow place need.
    pub fn repository(&self) -> RepositoryConfig {
        RepositoryConfig {
            location: self.location.clone(),
            password_file: self.password_file.clone(),
            password_env: self.password_env.clone(),
            options: self.options.clone(),
            compression: None,
            retry_budget: self.retry_budget,
        }
    }

    pub fn password_source(&self) -> Option<SecretSource> {
        if let Some(f) = &self.password_file {
            return Some(SecretSource::File(f.clone()));
        }
        self.password_env
            .as_ref()
            .map(|e| SecretSource::Env(e.clone()))
    }
}

/// Names must be unique and usable on a command line; each copy needs a location and exactly one
/// password source, and must not be the main repository itself.
pub fn validate(copies: &[CopyConfig], main: &RepositoryConfig) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for c in copies {
        if c.name.is_empty()
            || !c
                .name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
        {
            return Err(format!(
                "[[copy]] name '{}' must be letters, digits, '-' or '_' (it is given as `copy --to NAME`)",
                c.name
            ));
        }
        if !seen.insert(c.name.as_str()) {
            return Err(format!("two [[copy]] entries are named '{}'", c.name));
        }
        if c.location.trim().is_empty() {
            return Err(format!("[[copy]] '{}' has no location", c.name));
        }
        if c.location == main.location && c.options == main.options {
            return Err(format!(
                "[[copy]] '{}' is the main repository itself ({}): a copy goes to another place",
                c.name, c.location
            ));
        }
        match (&c.password_file, &c.password_env) {
            (Some(_), None) | (None, Some(_)) => {}
            _ => {
                return Err(format!(
                    "[[copy]] '{}' needs exactly one of password_file or password_env: the copy has its own password",
                    c.name
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(name: &str, location: &str) -> CopyConfig {
        CopyConfig {
            name: name.into(),
            location: location.into(),
            password_env: Some("OCTOBACKUP_COPY_PASSWORD".into()),
            after_backup: true,
            ..Default::default()
        }
    }

    #[test]
    fn bad_copies_are_named() {
        let main = RepositoryConfig {
            location: "/backups/octopus".into(),
            ..Default::default()
        };
        assert!(validate(&[copy("offsite", "s3://h/b")], &main).is_ok());
        let cases = [
            (vec![copy("off site", "s3://h/b")], "must be letters"),
            (
                vec![copy("a", "s3://h/b"), copy("a", "s3://h/c")],
                "two [[copy]] entries are named 'a'",
            ),
            (vec![copy("a", " ")], "has no location"),
            (
                vec![copy("a", "/backups/octopus")],
                "the main repository itself",
            ),
            (
                vec![CopyConfig {
                    password_file: Some("/p".into()),
                    ..copy("a", "s3://h/b")
                }],
                "exactly one of password_file or password_env",
            ),
            (
                vec![CopyConfig {
                    password_env: None,
                    ..copy("a", "s3://h/b")
                }],
                "exactly one of password_file or password_env",
            ),
        ];
        for (copies, expect) in cases {
            let e = validate(&copies, &main).unwrap_err();
            assert!(e.contains(expect), "{e}");
        }
    }

    #[test]
    fn the_templates_example_parses_once_uncommented() {
        let t = super::super::template("/backups/octo");
        let start = t.find("# [[copy]]").expect("the template shows [[copy]]");
        let block: Vec<&str> = t[start..]
            .lines()
            .take_while(|l| l.starts_with("# "))
            .map(|l| &l[2..])
            .collect();
        let text = format!(
            "[repository]\nlocation = \"/backups/octo\"\n{}\n",
            block.join("\n")
        );
        let c: super::super::Config = toml::from_str(&text).unwrap();
        assert_eq!(c.copies.len(), 1);
        assert_eq!(c.copies[0].name, "offsite");
        assert!(c.copies[0].after_backup);
        assert!(c.copies[0].options.contains_key("secret_access_key_file"));
        let kept = c.copies[0].retention.as_ref().expect("[copy.retention]");
        assert!(kept.keep_monthly.is_some(), "{kept:?}");
        validate(&c.copies, &c.repository).unwrap();
    }
}
