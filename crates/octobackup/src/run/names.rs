//! The names octobackup gives its own things on SQL Server and the staging share: a short hash of
//! what they belong to, so a rerun finds them and they never collide with a user's.

use sha2::{Digest, Sha256};

/// A short, stable tag from some texts (the same inputs always give the same tag).
pub fn short_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())[..8].to_string()
}

/// The temporary name a restore of `set_id` to `target` uses until it is checked.
pub fn temporary_name(set_id: &str, target: &str) -> String {
    marked_name(
        target,
        &format!("_octobackup_restoring_{}", short_hash(&[set_id, target])),
    )
}

/// `base` + `suffix`, with `base` shortened so the whole fits SQL Server's 128-character names
/// (the suffix carries a hash of what was cut).
pub fn marked_name(base: &str, suffix: &str) -> String {
    let room = 128usize.saturating_sub(suffix.chars().count());
    let head: String = base.chars().take(room).collect();
    format!("{head}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_are_stable_per_set_and_target() {
        let a = temporary_name("20260101T000000Z-abc123", "Octo");
        assert_eq!(a, temporary_name("20260101T000000Z-abc123", "Octo"));
        assert_ne!(a, temporary_name("20260101T000000Z-abc124", "Octo"));
        assert!(a.starts_with("Octo_octobackup_restoring_"));
        let long = "x".repeat(128);
        let t = temporary_name("s", &long);
        assert_eq!(t.chars().count(), 128);
        assert_ne!(t, temporary_name("s", &format!("{}y", &long[..127])));
    }
}
