//! DROP DATABASE [IF EXISTS].

use std::io;

use serde_json::json;

use super::*;
use crate::engine::errors::{self, SqlError};
use crate::engine::session::{Outcome, Session, raise};
use crate::engine::system_database;
use crate::tds::response::Response;

pub async fn drop_databases(
    session: &mut Session,
    names: &[String],
    if_exists: bool,
    resp: &mut Response<'_>,
    line: i32,
) -> Outcome {
    let engine = session.engine.clone();
    if session.tran_count > 0 {
        raise(
            resp,
            &SqlError::new(
                226,
                16,
                1,
                "DROP DATABASE statement cannot be used inside a user transaction.",
            ),
            line,
        );
        return Outcome::failed();
    }
    let mut error = false;
    for requested in names {
        if let Some((system, _)) = system_database(requested) {
            raise(resp, &errors::cannot_drop_system(system), line);
            error = true;
            continue;
        }
        let entry = match engine.database_entry(requested) {
            Some(e) if may_alter_database(session, &e.name) => e,
            None if if_exists => continue,
            _ => {
                raise(resp, &errors::cannot_drop_missing(requested), line);
                error = true;
                continue;
            }
        };
        if session.database.eq_ignore_ascii_case(&entry.name)
            || !engine.sessions_using(&entry.name, session.spid).is_empty()
        {
            raise(resp, &errors::cannot_drop_in_use(&entry.name), line);
            error = true;
            continue;
        }
        let guard = engine.database_lock(&entry.name).write_owned().await;
        for file in [&entry.data_file, &entry.log_file] {
            if let Err(e) = std::fs::remove_file(file)
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!("DROP DATABASE could not remove {}: {e}", file.display());
            }
        }
        let id = entry.database_id;
        let saved = engine.update_catalog(|c| c.databases.retain(|d| d.database_id != id));
        drop(guard);
        if let Err(e) = saved {
            raise(
                resp,
                &SqlError::lab(format!("the catalog could not be saved: {e:#}")),
                line,
            );
            error = true;
        }
        engine.forget_database_principals(&entry.name);
        engine.emit("database_dropped", json!({ "database": entry.name }));
    }
    if error {
        Outcome::failed()
    } else {
        Outcome::ok()
    }
}
