//! One run per Octopus instance, wherever octobackup runs: an application lock named after the
//! Octopus database (sp_getapplock, Microsoft Learn "sp_getapplock (Transact-SQL)"), owned by a
//! session of its own. Every copy of the config, on every machine, meets at that SQL Server,
//! where the local lock file in the state folder only sees runs sharing the folder. The lock is
//! taken in master, not in the Octopus database: a session sitting in that database would keep
//! a RESTORE into it from getting exclusive access (Msg 3101). It lasts as long as the
//! connection: SQL Server releases a session's locks when it logs out or its connection drops,
//! so a run that is killed frees it without anyone's help.

use super::client::{Session, SqlError, SqlServer};
use super::tsql::quote_str;

/// Held for the whole run; dropping it closes the connection, which releases the lock.
pub struct InstanceLock {
    _session: Session,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another octobackup run holds the lock for instance '{instance}' (SQL Server application lock '{resource}' in master on {server}); it may run on another machine or from another copy of the config. Wait for it to end and try again. A run that was killed frees the lock as soon as SQL Server sees its connection close. Nothing was changed: maintenance mode was not touched."
    )]
    Held {
        instance: String,
        resource: String,
        server: String,
    },
    #[error(
        "SQL Server refused the application lock '{resource}' in master on {server} (sp_getapplock returned {code}). The SQL login needs to be able to use master (every login can, through its guest user, unless that was revoked). Nothing was changed: maintenance mode was not touched."
    )]
    Refused {
        resource: String,
        server: String,
        code: i64,
    },
    #[error(transparent)]
    Sql(#[from] SqlError),
}

/// The lock's name: per database, since the database is what a run changes (the same Octopus
/// database under two instance names in two configs is still one lock). sp_getapplock keeps
/// 255 characters; a database name has at most 128.
pub fn resource(database: &str) -> String {
    format!("octobackup:{database}")
}

/// The batch that asks for the lock without waiting (@LockTimeout = 0) and reads back the
/// return status: 0 granted, -1 held by another session, other negatives refused.
pub fn get_applock(resource: &str) -> String {
    format!(
        "USE [master]; DECLARE @r int; EXEC @r = sp_getapplock @Resource = {}, @LockMode = 'Exclusive', @LockOwner = 'Session', @LockTimeout = 0; SELECT @r AS result;",
        quote_str(resource)
    )
}

impl SqlServer {
    /// Takes the instance's lock on a connection of its own, held until the lock is dropped.
    pub async fn lock_instance(&self, instance: &str) -> Result<InstanceLock, LockError> {
        let mut session = self.connect().await?;
        let resource = resource(self.database());
        let rows = session
            .query_text("take the instance lock", &get_applock(&resource))
            .await?;
        let code = rows
            .first()
            .and_then(|r| r.get("result").cloned().flatten())
            .and_then(|t| t.parse::<i64>().ok())
            .unwrap_or(-999);
        match code {
            0 | 1 => Ok(InstanceLock { _session: session }),
            -1 => Err(LockError::Held {
                instance: instance.to_string(),
                resource,
                server: self.server_display(),
            }),
            code => Err(LockError::Refused {
                resource,
                server: self.server_display(),
                code,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batch_quotes_the_resource() {
        let sql = get_applock(&resource("Octo'pus"));
        assert!(sql.contains("@Resource = N'octobackup:Octo''pus'"), "{sql}");
        assert!(
            sql.contains("@LockOwner = 'Session', @LockTimeout = 0"),
            "{sql}"
        );
        assert!(sql.ends_with("SELECT @r AS result;"));
    }

    #[test]
    fn held_says_nothing_changed() {
        // Its exit code (6) is checked with the others in `cli::exit`.
        let f = LockError::Held {
            instance: "main".into(),
            resource: resource("Octopus"),
            server: "sql01".into(),
        }
        .to_string();
        assert!(f.starts_with("another octobackup run holds the lock"));
        assert!(f.contains("maintenance mode was not touched"));
    }
}
