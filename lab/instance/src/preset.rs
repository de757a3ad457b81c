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
    /// About `mib` MiB (a quarter of it the database) in about `files` files: one point of the
    /// scaling curve. Written `FILES:SIZE`, e.g. `10k:0.5g`, `1m:20g`.
    Scale { files: u64, mib: u64 },
}

/// `10k`, `1m`, `2500` as a count.
fn parse_count(s: &str) -> Option<u64> {
    let (num, mult) = match s.to_ascii_lowercase() {
        t if t.ends_with('k') => (t[..t.len() - 1].to_string(), 1e3),
        t if t.ends_with('m') => (t[..t.len() - 1].to_string(), 1e6),
        t => (t, 1.0),
    };
    let v = num.parse::<f64>().ok()? * mult;
    (v.is_finite() && v >= 1.0).then_some(v as u64)
}

/// `0.5g`, `512m` as MiB.
fn parse_mib(s: &str) -> Option<u64> {
    let t = s.to_ascii_lowercase();
    let (num, mult) = if let Some(n) = t.strip_suffix('g') {
        (n, 1024.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 1.0)
    } else {
        return None;
    };
    let v = num.parse::<f64>().ok()? * mult;
    (v.is_finite() && v >= 1.0).then_some(v as u64)
}

impl std::str::FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "small" => Ok(Size::Small),
            "medium" => Ok(Size::Medium),
            "large" => Ok(Size::Large),
            other => {
                let point = other.split_once(':').and_then(|(files, size)| {
                    Some(Size::Scale {
                        files: parse_count(files)?,
                        mib: parse_mib(size)?,
                    })
                });
                point.ok_or_else(|| {
                    format!(
                        "unknown lab size '{other}': use small, medium, large or FILES:SIZE (e.g. 10k:0.5g)"
                    )
                })
            }
        }
    }
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Size::Small => f.write_str("small"),
            Size::Medium => f.write_str("medium"),
            Size::Large => f.write_str("large"),
            Size::Scale { files, mib } => write!(f, "{files}:{mib}m"),
        }
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
            Size::Scale { files, mib } => scaled(files, mib),
        }
    }
}

/// A preset of about `files` files and `mib` MiB, shaped like a real server's folders: task logs
/// are most of the files, packages most of the bytes, the database a quarter; a day changes what
/// the medium preset's day changes, in proportion.
fn scaled(files: u64, mib: u64) -> Preset {
    let bytes = mib << 20;
    let database_filler_pages = ((bytes / 4) / 8192).max(256) as u32;
    let task_logs = (files * 90 / 100).max(10) as u32;
    let artifacts = (files * 3 / 100).max(2) as u32;
    let event_export_days = (files / 1000).clamp(3, 365) as u32;
    let package_ids = (files / 500).clamp(3, 2000) as u32;
    let versions_per_package = 10;
    // Average sizes: task logs 12.5 KiB, artifacts 102 KiB, event exports 1.1 MiB.
    let fixed = task_logs as u64 * (25 << 9)
        + artifacts as u64 * (102 << 10)
        + event_export_days as u64 * (1152 << 10);
    let packages = (package_ids * versions_per_package) as u64;
    let folder_bytes = bytes - bytes / 4;
    let package_avg = (folder_bytes.saturating_sub(fixed) / packages).max(64 << 10);
    Preset {
        package_ids,
        versions_per_package,
        package_bytes: Bytes(package_avg / 2, package_avg * 3 / 2),
        task_logs,
        task_log_bytes: Bytes(1 << 10, 24 << 10),
        artifacts,
        artifact_bytes: Bytes(4 << 10, 200 << 10),
        event_export_days,
        event_export_bytes: Bytes(256 << 10, 2 << 20),
        database_filler_pages,
        day: DailyActivity {
            new_package_versions: (packages / 50).max(1) as u32,
            removed_package_versions: (packages / 150).max(1) as u32,
            new_task_logs: (task_logs / 83).max(1),
            new_artifacts: (artifacts / 50).max(1),
            database_changed_fraction: 0.01,
            database_new_pages: (database_filler_pages / 400).max(8),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_points_parse_and_print() {
        assert_eq!(
            "10k:0.5g".parse::<Size>(),
            Ok(Size::Scale {
                files: 10_000,
                mib: 512
            })
        );
        assert_eq!(
            "1M:20G".parse::<Size>(),
            Ok(Size::Scale {
                files: 1_000_000,
                mib: 20 << 10
            })
        );
        let s = Size::Scale {
            files: 2500,
            mib: 300,
        };
        assert_eq!(s.to_string().parse::<Size>(), Ok(s));
        assert!("10k".parse::<Size>().is_err());
        assert!("10k:5".parse::<Size>().is_err());
        assert!("huge".parse::<Size>().is_err());
    }

    #[test]
    fn a_scaled_preset_has_about_the_files_and_bytes_asked() {
        for (files, mib) in [
            (10_000u64, 512u64),
            (100_000, 5 << 10),
            (1_000_000, 20 << 10),
        ] {
            let p = scaled(files, mib);
            let count = p.task_logs as u64
                + p.artifacts as u64
                + p.event_export_days as u64
                + (p.package_ids * p.versions_per_package) as u64;
            assert!(
                count >= files * 9 / 10 && count <= files * 11 / 10,
                "{files}: {count}"
            );
            let avg = |b: Bytes| (b.0 + b.1) / 2;
            let total = p.task_logs as u64 * avg(p.task_log_bytes)
                + p.artifacts as u64 * avg(p.artifact_bytes)
                + p.event_export_days as u64 * avg(p.event_export_bytes)
                + (p.package_ids * p.versions_per_package) as u64 * avg(p.package_bytes)
                + p.database_filler_pages as u64 * 8192;
            let asked = mib << 20;
            assert!(
                total >= asked * 8 / 10 && total <= asked * 13 / 10,
                "{files}: {total} of {asked}"
            );
        }
    }
}
