//! What the server says about itself and its host: the build's update level and @@VERSION text,
//! the operating system, and, posing as SQL Server on Linux in its container, the paths SQL
//! Server sees beside the host's.

use std::path::{Path, PathBuf};

use super::{Engine, ProductVersion};
use crate::{Edition, Platform};

/// The container's data, log and backup folder (Microsoft Learn, "Configure SQL Server on Linux
/// with mssql-conf": filelocation.defaultdatadir, defaultlogdir and defaultbackupdir all default
/// to /var/opt/mssql/data).
pub const LINUX_DATA_DIR: &str = "/var/opt/mssql/data";

/// The container's own file system, under the data directory: written there, seen nowhere else.
const CONTAINER_FS: &str = ".container-fs";

/// The release of a known build: SERVERPROPERTY('ProductLevel'), 'ProductUpdateLevel',
/// 'ProductUpdateReference' and the build date @@VERSION prints.
pub struct Build {
    pub level: &'static str,
    pub update_level: Option<&'static str>,
    pub update_reference: Option<&'static str>,
    pub date: &'static str,
}

/// The builds the lab runs as: the RTMs of 2016-2022, 2022 CU14 (the default) and 2014 SP3. Each
/// as real servers print them in @@VERSION (Microsoft Learn, "View and read SQL Server error
/// logs" for 16.0.4135.4; the RTM banners as servers print them).
pub fn build(version: &ProductVersion) -> Option<Build> {
    let b = |level, update_level, update_reference, date| Build {
        level,
        update_level,
        update_reference,
        date,
    };
    Some(match version.text.as_str() {
        "16.0.4135.4" => b(
            "RTM",
            Some("CU14"),
            Some("KB5038325"),
            "Jul 10 2024 14:09:09",
        ),
        "16.0.1000.6" => b("RTM", None, None, "Oct  8 2022 05:58:25"),
        "15.0.2000.5" => b("RTM", None, None, "Sep 24 2019 13:48:23"),
        "14.0.1000.169" => b("RTM", None, None, "Aug 22 2017 17:04:49"),
        "13.0.1601.5" => b("RTM", None, None, "Apr 29 2016 23:23:58"),
        "12.0.6024.0" => b("SP3", None, Some("KB4022619"), "Sep  7 2018 01:37:51"),
        _ => return None,
    })
}

impl Engine {
    /// Whether SQL Server runs on Linux here (posing as it, or the lab's own Linux machine).
    pub fn on_linux(&self) -> bool {
        matches!(self.platform, Platform::Linux { .. }) || !cfg!(windows)
    }

    /// sys.dm_os_host_info: (host_platform, host_distribution, host_release).
    pub fn host_info(&self) -> (&'static str, &'static str, &'static str) {
        if self.on_linux() {
            ("Linux", "Ubuntu", "22.04")
        } else {
            ("Windows", "Windows Server 2022 Standard", "10.0")
        }
    }

    /// @@VERSION, shaped like SQL Server's: "Microsoft SQL Server 2022 (RTM-CU14) (KB5038325) -
    /// 16.0.4135.4 (X64) \n\tJul 10 2024 14:09:09 \n\tCopyright (C) 2022 Microsoft Corporation\n\t
    /// Developer Edition (64-bit) on Linux (Ubuntu 22.04.4 LTS) <X64>".
    pub fn version_string(&self) -> String {
        let v = &self.version;
        if matches!(
            self.edition,
            Edition::AzureSqlDatabase | Edition::AzureSqlManagedInstance
        ) {
            return format!(
                "Microsoft SQL Azure (RTM) - {} (X64) \n\t(octobackup lab stand-in) \n\tCopyright (C) Microsoft Corporation\n",
                v.text
            );
        }
        let build = build(v);
        let level = match &build {
            Some(Build {
                level,
                update_level: Some(cu),
                update_reference: Some(kb),
                ..
            }) => format!("({level}-{cu}) ({kb})"),
            Some(Build {
                level,
                update_reference: Some(kb),
                ..
            }) => format!("({level}) ({kb})"),
            Some(b) => format!("({})", b.level),
            None => "(RTM)".to_string(),
        };
        // an unknown build says it is the lab's; known ones carry their build date
        let date = build.map_or("(octobackup lab stand-in)", |b| b.date);
        // 2016 and older print "Copyright (c) Microsoft Corporation"
        let copyright = if v.major >= 14 {
            format!("Copyright (C) {} Microsoft Corporation", v.release_name())
        } else {
            "Copyright (c) Microsoft Corporation".to_string()
        };
        let os = if self.on_linux() {
            "Linux (Ubuntu 22.04.4 LTS) <X64>"
        } else {
            "Windows Server 2022 Standard 10.0 <X64> (Build 20348: ) (Hypervisor)"
        };
        format!(
            "Microsoft SQL Server {} {level} - {} (X64) \n\t{date} \n\t{copyright}\n\t{} on {os}",
            v.release_name(),
            v.text,
            self.edition.edition_name(),
        )
    }

    /// The folder SERVERPROPERTY('InstanceDefaultDataPath'/'InstanceDefaultLogPath') names, with
    /// the trailing separator SQL Server writes.
    pub fn default_data_path(&self) -> String {
        if let Platform::Linux { .. } = self.platform {
            return format!("{LINUX_DATA_DIR}/");
        }
        let mut path = self.data_dir.display().to_string();
        if !path.ends_with(std::path::MAIN_SEPARATOR) {
            path.push(std::path::MAIN_SEPARATOR);
        }
        path
    }

    /// The host folders behind container paths, deepest host folder first.
    fn mounts(&self) -> Vec<(String, PathBuf)> {
        let Platform::Linux { volumes } = &self.platform else {
            return Vec::new();
        };
        let mut mounts: Vec<(String, PathBuf)> = volumes
            .iter()
            .map(|v| {
                (
                    v.container_path.trim_end_matches('/').to_string(),
                    v.host_path.clone(),
                )
            })
            .collect();
        mounts.push((LINUX_DATA_DIR.to_string(), self.data_dir.clone()));
        mounts.push((String::new(), self.data_dir.join(CONTAINER_FS)));
        mounts
    }

    /// Where a path SQL Server was given is on the host. Natively the path itself (relative
    /// ones under `default_dir`); in the Linux container through its volumes.
    pub fn host_path(&self, sql: &str, default_dir: &Path) -> PathBuf {
        if !matches!(self.platform, Platform::Linux { .. }) {
            let p = PathBuf::from(sql);
            return if p.is_absolute() {
                p
            } else {
                default_dir.join(p)
            };
        }
        if !sql.starts_with('/') {
            return self.host_path(&format!("{LINUX_DATA_DIR}/{sql}"), default_dir);
        }
        let mut mounts = self.mounts();
        // the longest container path that holds `sql` wins
        mounts.sort_by_key(|(c, _)| std::cmp::Reverse(c.len()));
        for (container, host) in mounts {
            if container.is_empty() {
                return host.join(sql.trim_start_matches('/'));
            }
            if sql == container {
                return host;
            }
            if let Some(rest) = sql.strip_prefix(&format!("{container}/")) {
                return host.join(rest);
            }
        }
        unreachable!("the container's own file system holds every path")
    }

    /// How SQL Server shows a host path (in msdb, sys.master_files, FILELISTONLY and messages).
    pub fn sql_path(&self, host: &Path) -> String {
        let mut mounts = self.mounts();
        mounts.sort_by_key(|(_, h)| std::cmp::Reverse(h.as_os_str().len()));
        for (container, root) in mounts {
            if let Ok(rest) = host.strip_prefix(&root) {
                let rest: Vec<String> = rest
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                return if rest.is_empty() {
                    if container.is_empty() {
                        "/".into()
                    } else {
                        container
                    }
                } else {
                    format!("{container}/{}", rest.join("/"))
                };
            }
        }
        host.to_string_lossy().into_owned()
    }

    /// A message as SQL Server would print it here: host folders shown as the container's, and
    /// on Linux the missing-path OS error as Linux reports it, error 2 where Windows says 3
    /// (MicrosoftDocs/sql-docs issue #4480: "Operating system error 2(The system cannot find the
    /// file specified.)" for a missing folder on Linux).
    pub fn shown(&self, text: &str) -> String {
        let mut text = text.to_string();
        let mut mounts = self.mounts();
        mounts.sort_by_key(|(_, h)| std::cmp::Reverse(h.as_os_str().len()));
        for (container, root) in mounts {
            let root = root.to_string_lossy().into_owned();
            text = text.replace(&root, &container);
        }
        if self.on_linux() {
            text = text.replace(
                "3(The system cannot find the path specified.)",
                "2(The system cannot find the file specified.)",
            );
        }
        text
    }

    /// The container's own folders a fresh container has.
    pub fn prepare_platform(&self) -> std::io::Result<()> {
        if let Platform::Linux { .. } = self.platform {
            for dir in ["tmp", "var/opt/mssql/log", "var/opt/mssql/secrets"] {
                std::fs::create_dir_all(self.data_dir.join(CONTAINER_FS).join(dir))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ServerOptions, SqlServerConfig, TlsSupport, Volume};

    fn linux(share: &Path) -> (PathBuf, Engine) {
        let dir = std::env::temp_dir().join(format!("sim-platform-{}", uuid::Uuid::new_v4()));
        let engine = Engine::new(&SqlServerConfig {
            data_dir: dir.clone(),
            logins: Vec::new(),
            edition: Edition::Developer,
            product_version: "16.0.4135.4".into(),
            tls: TlsSupport::NotSupported,
            events: None,
            options: ServerOptions {
                platform: Platform::Linux {
                    volumes: vec![Volume {
                        container_path: "/var/opt/mssql/backup/".into(),
                        host_path: share.to_path_buf(),
                    }],
                },
                ..Default::default()
            },
        })
        .unwrap();
        (dir, engine)
    }

    #[test]
    fn container_paths_map_to_the_host_and_back() {
        let share = std::env::temp_dir().join("sim-platform-share");
        let (dir, e) = linux(&share);
        let default = e.backup_directory();
        assert_eq!(default, dir);
        for (sql, host) in [
            ("/var/opt/mssql/data/a.mdf", dir.join("a.mdf")),
            (
                "/var/opt/mssql/backup/s/x.bak",
                share.join("s").join("x.bak"),
            ),
            ("/var/opt/mssql/backup", share.clone()),
            ("rel.bak", dir.join("rel.bak")),
            (
                "/tmp/x.bak",
                dir.join(CONTAINER_FS).join("tmp").join("x.bak"),
            ),
            // a folder that only starts like the volume's is not in it
            (
                "/var/opt/mssql/backups/x.bak",
                dir.join(CONTAINER_FS).join("var/opt/mssql/backups/x.bak"),
            ),
        ] {
            assert_eq!(e.host_path(sql, &default), host, "{sql}");
            let back = if sql == "rel.bak" {
                "/var/opt/mssql/data/rel.bak"
            } else {
                sql
            };
            assert_eq!(e.sql_path(&host), back, "{sql}");
        }
        assert_eq!(e.default_data_path(), "/var/opt/mssql/data/");
        assert_eq!(
            e.shown(&format!(
                "'{}' error 3(The system cannot find the path specified.)",
                share.join("x.bak").display()
            )),
            "'/var/opt/mssql/backup/x.bak' error 2(The system cannot find the file specified.)"
        );
        assert_eq!(e.host_info().0, "Linux");
        assert!(
            e.version_string()
                .ends_with("on Linux (Ubuntu 22.04.4 LTS) <X64>")
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
