//! `[retention]` and `[instance.NAME.retention]`: the policy as the config and `--keep-*` give
//! it. What it keeps is decided in `backupset::retention`.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A retention policy, from `[retention]`, `[instance.NAME.retention]` or `--keep-*` flags.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_hourly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_yearly: Option<u32>,
    /// Keep every set this much older than the newest, e.g. "30d" or "2w 3d".
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "within_serde"
    )]
    pub keep_within: Option<Duration>,
}

mod within_serde {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_within(&s)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

/// Parses a `keep-within` duration: humantime's syntax ("30d", "2w", "12h", "1y 6months").
pub fn parse_within(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("'{s}' is not a duration like 30d, 2w or 12h: {e}"))
}
