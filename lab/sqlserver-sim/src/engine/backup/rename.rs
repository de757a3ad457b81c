//! ALTER DATABASE ... MODIFY NAME.

use serde_json::json;

use super::*;
use crate::engine::errors::SqlError;
use crate::engine::session::{Outcome, Session, raise};
use crate::engine::system_database;
use crate::tds::response::Response;

/// `ALTER DATABASE [a] MODIFY NAME = [b]`: renames in the catalog and in the data file's header,
/// as SQL Server keeps the files where they are. Msg 5011/5069 for a missing database, 1801 when
/// the new name is taken, 5030 while another session uses it.
pub async fn rename_database(
    session: &mut Session,
    name: &str,
    new_name: &str,
    resp: &mut Response<'_>,
    line: i32,
) -> Outcome {
    let engine = session.engine.clone();
    let failed = |resp: &mut Response<'_>, err: SqlError| {
        raise(resp, &err, line);
        raise(
            resp,
            &SqlError::new(5069, 16, 1, "ALTER DATABASE statement failed."),
            line,
        );
        Outcome::failed()
    };
    let entry = match engine.database_entry(name) {
        Some(e) if may_alter_database(session, &e.name) && system_database(name).is_none() => e,
        _ => {
            return failed(
                resp,
                SqlError::new(
                    5011,
                    14,
                    5,
                    format!(
                        "User does not have permission to alter database '{name}', the database does not exist, or the database is not in a state that allows access checks."
                    ),
                ),
            );
        }
    };
    if engine.database_entry(new_name).is_some() || system_database(new_name).is_some() {
        return failed(
            resp,
            SqlError::new(
                1801,
                16,
                3,
                format!("Database '{new_name}' already exists. Choose a different database name."),
            ),
        );
    }
    if !engine.sessions_using(&entry.name, session.spid).is_empty() {
        return failed(
            resp,
            SqlError::new(
                5030,
                16,
                2,
                "The database could not be exclusively locked to perform the operation.",
            ),
        );
    }
    let guard = engine.database_lock(&entry.name).write_owned().await;
    let data_file = entry.data_file.clone();
    let renamed = new_name.to_string();
    let header = tokio::task::spawn_blocking(move || {
        sqlserver_files::image::set_database_name(&data_file, &renamed)
    })
    .await;
    if let Err(e) = header.map_err(anyhow::Error::from).and_then(|r| r) {
        drop(guard);
        return failed(
            resp,
            SqlError::lab(format!("the data file could not be renamed: {e:#}")),
        );
    }
    let id = entry.database_id;
    let saved = engine.update_catalog(|c| {
        if let Some(d) = c.databases.iter_mut().find(|d| d.database_id == id) {
            d.name = new_name.to_string();
        }
    });
    drop(guard);
    if let Err(e) = saved {
        return failed(
            resp,
            SqlError::lab(format!("the catalog could not be saved: {e:#}")),
        );
    }
    engine.rename_database_principals(&entry.name, new_name);
    if session.database.eq_ignore_ascii_case(&entry.name) {
        session.database = new_name.to_string();
    }
    raise(
        resp,
        &SqlError::new(
            5022,
            0,
            1,
            format!("The database name '{new_name}' has been set."),
        ),
        line,
    );
    engine.emit(
        "database_renamed",
        json!({ "database": entry.name, "new_name": new_name }),
    );
    Outcome::ok()
}
