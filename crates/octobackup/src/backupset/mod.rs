//! A backup set: what one `backup` run captured, as one restic snapshot with a fixed layout and
//! tags that say what it is (restic keeps tags through `restic tag`; it drops labels).
//!
//! ```text
//! /octobackup/manifest.json      what the set holds: Octopus version, backup metadata, timings
//! /octobackup/master-key         the instance's master key (mode 0600; encrypted by the repository)
//! /octobackup/license.xml        the license (mode 0600)
//! /database/<db>.bak             the SQL Server backup (or <db>.1of2.bak, <db>.2of2.bak stripes)
//! /folders/Packages/...          the server folders
//! /folders/Artifacts/...  /folders/TaskLogs/...  /folders/EventExports/...
//! ```

pub mod check;
pub mod escrow;
pub mod list;
pub mod manifest;
pub mod retention;

pub use manifest::Manifest;

pub use crate::config::FOLDER_NAMES;

pub const MANIFEST_PATH: &str = "/octobackup/manifest.json";
pub const MASTER_KEY_PATH: &str = "/octobackup/master-key";
pub const LICENSE_PATH: &str = "/octobackup/license.xml";
pub const DATABASE_DIR: &str = "/database";
pub const FOLDERS_DIR: &str = "/folders";

/// Every octobackup snapshot carries this tag.
pub const TAG: &str = "octobackup";
pub const TAG_COMPLETE: &str = "complete";
pub const TAG_PART: &str = "part";

pub fn tag_set(id: &str) -> String {
    format!("set:{id}")
}
pub fn tag_instance(name: &str) -> String {
    format!("instance:{name}")
}

/// The value of a `key:value` tag.
pub fn tag_value<'a>(tags: &'a [String], key: &str) -> Option<&'a str> {
    tags.iter()
        .find_map(|t| t.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
}

/// File names of the staged backup: one file, or N stripes.
pub fn stripe_names(database: &str, stripes: u8) -> Vec<String> {
    let safe: String = database
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if stripes <= 1 {
        vec![format!("{safe}.bak")]
    } else {
        (1..=stripes)
            .map(|n| format!("{safe}.{n}of{stripes}.bak"))
            .collect()
    }
}

/// A new set id: time-ordered and readable, unique enough for one repository.
pub fn new_set_id(now: chrono::DateTime<chrono::Utc>) -> String {
    let rand = uuid::Uuid::new_v4().simple().to_string();
    format!("{}-{}", now.format("%Y%m%dT%H%M%SZ"), &rand[..6])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripe_names_are_safe_file_names() {
        assert_eq!(stripe_names("OctopusDeploy", 1), vec!["OctopusDeploy.bak"]);
        assert_eq!(
            stripe_names("Octo]pus/x", 2),
            vec!["Octo_pus_x.1of2.bak", "Octo_pus_x.2of2.bak"]
        );
    }

    #[test]
    fn tags_round_trip() {
        let tags = vec![
            TAG.to_string(),
            tag_set("20260101T000000Z-abc123"),
            tag_instance("Octopus Server"),
        ];
        assert_eq!(tag_value(&tags, "set"), Some("20260101T000000Z-abc123"));
        assert_eq!(tag_value(&tags, "instance"), Some("Octopus Server"));
        assert_eq!(tag_value(&tags, "missing"), None);
    }

    #[test]
    fn set_ids_sort_by_time() {
        let a = new_set_id(
            chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
                .unwrap()
                .into(),
        );
        let b = new_set_id(
            chrono::DateTime::parse_from_rfc3339("2026-01-02T00:00:00Z")
                .unwrap()
                .into(),
        );
        assert!(a < b);
        assert!(a.starts_with("20260101T000000Z-"));
    }
}
