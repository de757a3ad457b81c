//! Small administration queries on SQL Server: a database's state, the databases, its files, and
//! a DROP that says which database it could not drop.

use crate::error::{Exit, Failure};
use crate::sqlserver::client::Session;
use crate::sqlserver::tsql;

pub async fn database_state(session: &mut Session, name: &str) -> Result<Option<String>, Failure> {
    let rows = session
        .query_text("database lookup", &tsql::database_state(name))
        .await?;
    Ok(rows
        .first()
        .map(|r| r.get("state_desc").cloned().flatten().unwrap_or_default()))
}

/// Every database on the server with its state.
pub async fn databases(session: &mut Session) -> Result<Vec<(String, String)>, Failure> {
    let rows = session
        .query_text("databases", "SELECT name, state_desc FROM sys.databases")
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let get = |k: &str| r.get(k).cloned().flatten().unwrap_or_default();
            (get("name"), get("state_desc"))
        })
        .collect())
}

pub async fn drop_quietly(session: &mut Session, name: &str) -> Result<(), Failure> {
    session
        .execute("DROP DATABASE", &tsql::drop_database_if_exists(name), None)
        .await
        .map_err(|e| Failure::new(Exit::Sql, format!("cannot drop [{name}]: {e}")))
}

/// The files of a database, as SQL Server sees them.
pub async fn database_files(session: &mut Session, name: &str) -> Result<Vec<String>, Failure> {
    let sql = format!(
        "SELECT physical_name FROM sys.master_files WHERE database_id = DB_ID({})",
        tsql::quote_str(name)
    );
    let rows = session.query_text("database files", &sql).await?;
    Ok(rows
        .iter()
        .filter_map(|r| r.get("physical_name").cloned().flatten())
        .collect())
}
