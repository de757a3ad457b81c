//! The connections every operation opens from an instance's config: SQL Server (the connection
//! string and password resolved from their sources) and the Octopus API, and the staging folder as
//! SQL Server sees it. Backup, restore, drill, recover and doctor all start here.

use crate::config::InstanceConfig;
use crate::error::Failure;
use crate::octopus::OctopusClient;
use crate::secret::{Secret, SecretSource};
use crate::sqlserver::{ConnectionString, SqlServer};
use std::time::Duration;

/// The SQL connection described by the instance's config, with its password resolved.
pub fn sql_server(inst: &InstanceConfig) -> Result<SqlServer, Failure> {
    let text = if let Some(cs) = &inst.sql.connection_string {
        Secret::new(cs.clone())
    } else if let Some(env) = &inst.sql.connection_string_env {
        SecretSource::Env(env.clone()).read("SQL connection string")?
    } else if let Some(file) = &inst.sql.connection_string_file {
        SecretSource::File(file.clone()).read("SQL connection string")?
    } else {
        unreachable!("validated config")
    };
    let conn = ConnectionString::parse(text.expose())?;
    for w in crate::sqlserver::connstr::questionable_keys(text.expose()) {
        tracing::warn!("SQL connection string: {w}");
    }
    let password = match (&inst.sql.password_env, &inst.sql.password_file) {
        (Some(e), _) => Some(SecretSource::Env(e.clone()).read("SQL password")?),
        (_, Some(f)) => Some(SecretSource::File(f.clone()).read("SQL password")?),
        _ => None,
    };
    if conn.password.is_some() && password.is_some() {
        tracing::warn!(
            "the SQL connection string has a Password and sql.password_env/password_file gives one too; octobackup uses the one from {}. Keep only one.",
            if inst.sql.password_env.is_some() {
                "sql.password_env"
            } else {
                "sql.password_file"
            }
        );
    }
    Ok(SqlServer::new(
        conn,
        password,
        inst.sql.command_timeout.unwrap_or(Duration::from_secs(600)),
    ))
}

pub fn octopus_client(inst: &InstanceConfig) -> Result<OctopusClient, Failure> {
    let key = inst.api_key_source().read("Octopus API key")?;
    Ok(OctopusClient::with_timeout(
        &inst.url,
        key,
        inst.api_timeout.unwrap_or(Duration::from_secs(60)),
    )?)
}

/// Joins a file name onto the staging folder as SQL Server sees it, with that host's separator.
pub fn sql_side_path(sql_dir: &str, file: &str) -> String {
    let windows_style = sql_dir.contains('\\') || sql_dir.as_bytes().get(1) == Some(&b':');
    let sep = if windows_style { '\\' } else { '/' };
    let trimmed = sql_dir.trim_end_matches(['\\', '/']);
    format!("{trimmed}{sep}{file}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_side_paths_use_the_sql_hosts_separator() {
        assert_eq!(sql_side_path(r"D:\Backups\", "a.bak"), r"D:\Backups\a.bak");
        assert_eq!(sql_side_path(r"\\nas\octo", "a.bak"), r"\\nas\octo\a.bak");
        assert_eq!(
            sql_side_path("/var/opt/mssql/backup/", "a.bak"),
            "/var/opt/mssql/backup/a.bak"
        );
        assert_eq!(sql_side_path("C:", "a.bak"), r"C:\a.bak");
    }
}
