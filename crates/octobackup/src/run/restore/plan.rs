//! Where each database file goes: the backup's file list (RESTORE FILELISTONLY) and the WITH MOVE
//! plan (the original paths, a new name's, or `--data-dir`), from the instance's default folders.

use crate::error::{Exit, Failure};
use crate::run::connect::sql_side_path;
use crate::sqlserver::client::Session;
use crate::sqlserver::tsql;

/// One file of a backup, from RESTORE FILELISTONLY.
#[derive(Clone, Debug, PartialEq)]
pub struct BackupFile {
    pub logical: String,
    pub physical: String,
    /// `D` data, `L` log.
    pub kind: char,
}

pub async fn file_list(
    session: &mut Session,
    stripes: &[String],
) -> Result<Vec<BackupFile>, Failure> {
    let rows = session
        .query_text("RESTORE FILELISTONLY", &tsql::restore_filelistonly(stripes))
        .await?;
    let files: Vec<BackupFile> = rows
        .iter()
        .map(|r| {
            let get = |k: &str| r.get(k).cloned().flatten().unwrap_or_default();
            BackupFile {
                logical: get("LogicalName"),
                physical: get("PhysicalName"),
                kind: get("Type").chars().next().unwrap_or('D'),
            }
        })
        .collect();
    if files.is_empty() {
        return Err(Failure::new(
            Exit::Sql,
            "RESTORE FILELISTONLY listed no files in the backup",
        ));
    }
    Ok(files)
}

/// `(folder, file name)` of a path as SQL Server sees it (either separator).
pub(super) fn split_sql_path(p: &str) -> (&str, &str) {
    match p.rfind(['\\', '/']) {
        Some(i) => (&p[..i.max(1)], &p[i + 1..]),
        None => ("", p),
    }
}

/// Where each logical file goes: in `data_dir` (log files in `log_dir`, else `data_dir` too) or
/// beside the original file; named after `base` (`base.mdf`, `base_log.ldf`, `base_2.ndf`...) or,
/// with `base` None, keeping the original names.
pub fn plan_moves(
    files: &[BackupFile],
    base: Option<&str>,
    data_dir: Option<&str>,
    log_dir: Option<&str>,
) -> Vec<(String, String)> {
    let safe = base.map(|b| {
        b.chars()
            .map(|c| {
                if c.is_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect::<String>()
    });
    let (mut data_n, mut log_n) = (0, 0);
    files
        .iter()
        .map(|f| {
            let (dir, name) = split_sql_path(&f.physical);
            let ext = name
                .rsplit_once('.')
                .map(|(_, e)| format!(".{e}"))
                .unwrap_or_else(|| if f.kind == 'L' { ".ldf" } else { ".mdf" }.into());
            let new_name = match &safe {
                None => name.to_string(),
                Some(b) if f.kind == 'L' => {
                    log_n += 1;
                    if log_n == 1 {
                        format!("{b}_log{ext}")
                    } else {
                        format!("{b}_log{log_n}{ext}")
                    }
                }
                Some(b) => {
                    data_n += 1;
                    if data_n == 1 {
                        format!("{b}{ext}")
                    } else {
                        format!("{b}_{data_n}{ext}")
                    }
                }
            };
            let chosen = if f.kind == 'L' {
                log_dir.or(data_dir)
            } else {
                data_dir
            };
            let dir = chosen.unwrap_or(dir);
            let path = if dir.is_empty() {
                new_name
            } else {
                sql_side_path(dir, &new_name)
            };
            (f.logical.clone(), path)
        })
        .collect()
}

/// `SERVERPROPERTY('InstanceDefaultDataPath')` and `'InstanceDefaultLogPath'` (SQL Server 2012
/// and later): where the target server puts new databases' files.
pub async fn instance_default_paths(session: &mut Session) -> Result<(String, String), Failure> {
    let rows = session
        .query_text(
            "instance default paths",
            "SELECT CAST(SERVERPROPERTY('InstanceDefaultDataPath') AS nvarchar(4000)) AS DataPath, \
             CAST(SERVERPROPERTY('InstanceDefaultLogPath') AS nvarchar(4000)) AS LogPath",
        )
        .await?;
    let get = |k: &str| {
        rows.first()
            .and_then(|r| r.get(k).cloned().flatten())
            .filter(|p| !p.trim().is_empty())
    };
    match (get("DataPath"), get("LogPath")) {
        (Some(data), log) => {
            let log = log.unwrap_or_else(|| data.clone());
            Ok((data, log))
        }
        _ => Err(Failure::new(
            Exit::Sql,
            "the target server does not say where new databases go (SERVERPROPERTY('InstanceDefaultDataPath') is NULL: SQL Server 2008 R2 or older); give the folder with --data-dir",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> Vec<BackupFile> {
        vec![
            BackupFile {
                logical: "OctopusDeploy".into(),
                physical: r"D:\Data\OctopusDeploy.mdf".into(),
                kind: 'D',
            },
            BackupFile {
                logical: "OctopusDeploy_log".into(),
                physical: r"D:\Logs\OctopusDeploy_log.ldf".into(),
                kind: 'L',
            },
        ]
    }
    #[test]
    fn moves_keep_names_or_follow_the_new_name() {
        assert_eq!(
            plan_moves(&files(), None, None, None),
            vec![
                ("OctopusDeploy".into(), r"D:\Data\OctopusDeploy.mdf".into()),
                (
                    "OctopusDeploy_log".into(),
                    r"D:\Logs\OctopusDeploy_log.ldf".into()
                )
            ]
        );
        assert_eq!(
            plan_moves(&files(), Some("Octo Clone"), None, None),
            vec![
                ("OctopusDeploy".into(), r"D:\Data\Octo_Clone.mdf".into()),
                (
                    "OctopusDeploy_log".into(),
                    r"D:\Logs\Octo_Clone_log.ldf".into()
                )
            ]
        );
        assert_eq!(
            plan_moves(&files(), Some("X"), Some("/var/opt/mssql/data"), None),
            vec![
                ("OctopusDeploy".into(), "/var/opt/mssql/data/X.mdf".into()),
                (
                    "OctopusDeploy_log".into(),
                    "/var/opt/mssql/data/X_log.ldf".into()
                )
            ]
        );
        // The instance's default folders (with SQL Server's trailing separator): logs apart.
        assert_eq!(
            plan_moves(
                &files(),
                None,
                Some("/var/opt/mssql/data/"),
                Some("/var/opt/mssql/log/")
            ),
            vec![
                (
                    "OctopusDeploy".into(),
                    "/var/opt/mssql/data/OctopusDeploy.mdf".into()
                ),
                (
                    "OctopusDeploy_log".into(),
                    "/var/opt/mssql/log/OctopusDeploy_log.ldf".into()
                )
            ]
        );
    }
    #[test]
    fn sql_paths_split_on_either_separator() {
        assert_eq!(split_sql_path(r"D:\Data\a.mdf"), (r"D:\Data", "a.mdf"));
        assert_eq!(split_sql_path("/var/a.mdf"), ("/var", "a.mdf"));
        assert_eq!(split_sql_path("a.mdf"), ("", "a.mdf"));
    }
}
