//! Size presets: how big a lab instance is on day 0 and how much one simulated day adds.

use serde::{Deserialize, Serialize};

/// The named sizes `lab up --size` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    /// A few MB: for tests.
    Small,
    /// About 2 GB in tens of thousands of files: for benchmarks.
    Medium,
    /// Medium's folders with a database ten times larger (about 5 GB, the same ~1% daily
    /// change): shows whether the window grows with the database.
    Large,
}

impl std::str::FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "small" => Ok(Size::Small),
            "medium" => Ok(Size::Medium),
            "large" => Ok(Size::Large),
            other => Err(format!(
                "unknown lab size '{other}': use small, medium or large"
            )),
        }
    }
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Size::Small => "small",
            Size::Medium => "medium",
            Size::Large => "large",
        })
    }
}

/// Inclusive byte range for generated files.
#[derive(Clone, Copy, Debug)]
pub struct Bytes(pub u64, pub u64);

/// Everything that decides the shape of an instance.
#[derive(Clone, Debug)]
pub struct Preset {
    pub package_ids: u32,
    pub versions_per_package: u32,
    pub package_bytes: Bytes,
    pub task_logs: u32,
    pub task_log_bytes: Bytes,
    pub artifacts: u32,
    pub artifact_bytes: Bytes,
    pub event_export_days: u32,
    pub event_export_bytes: Bytes,
    pub database_filler_pages: u32,
    pub day: DailyActivity,
}

/// What one simulated day of use adds or changes.
#[derive(Clone, Debug)]
pub struct DailyActivity {
    pub new_package_versions: u32,
    /// Retention removes the oldest versions of some packages, as Octopus's built-in feed retention does.
    pub removed_package_versions: u32,
    pub new_task_logs: u32,
    pub new_artifacts: u32,
    pub database_changed_fraction: f64,
    pub database_new_pages: u32,
}

impl Size {
    pub fn preset(self) -> Preset {
        match self {
            Size::Small => Preset {
                package_ids: 5,
                versions_per_package: 3,
                package_bytes: Bytes(24 << 10, 160 << 10),
                task_logs: 120,
                task_log_bytes: Bytes(1 << 10, 12 << 10),
                artifacts: 10,
                artifact_bytes: Bytes(2 << 10, 48 << 10),
                event_export_days: 3,
                event_export_bytes: Bytes(4 << 10, 16 << 10),
                database_filler_pages: 2048,
                day: DailyActivity {
                    new_package_versions: 2,
                    removed_package_versions: 1,
                    new_task_logs: 12,
                    new_artifacts: 2,
                    database_changed_fraction: 0.01,
                    database_new_pages: 8,
                },
            },
            Size::Medium => Preset {
                package_ids: 60,
                versions_per_package: 10,
                package_bytes: Bytes(400 << 10, 3 << 20),
                task_logs: 25_000,
                task_log_bytes: Bytes(1 << 10, 24 << 10),
                artifacts: 2_000,
                artifact_bytes: Bytes(4 << 10, 200 << 10),
                event_export_days: 60,
                event_export_bytes: Bytes(256 << 10, 2 << 20),
                database_filler_pages: 64_000,
                day: DailyActivity {
                    new_package_versions: 12,
                    removed_package_versions: 4,
                    new_task_logs: 300,
                    new_artifacts: 40,
                    database_changed_fraction: 0.01,
                    database_new_pages: 160,
                },
            },
            Size::Large => {
                let medium = Size::Medium.preset();
                Preset {
                    // 640,000 pages of 8 KiB: 5 GiB.
                    database_filler_pages: 640_000,
                    day: DailyActivity {
                        database_new_pages: 1_600,
                        ..medium.day.clone()
                    },
                    ..medium
                }
            }
        }
    }
}
