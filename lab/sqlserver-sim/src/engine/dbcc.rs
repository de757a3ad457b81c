//! DBCC CHECKDB: page checksums and structure through `sqlserver-files`'
//! check, reported with CHECKDB's messages.

use std::io;

use sqlserver_files::image;

use super::errors::{self, SqlError};
use super::session::{Outcome, Session, raise};
use crate::sql::ast::{CheckDb, DbccTarget};
use crate::tds::response::Response;

pub async fn check_db(
    session: &mut Session,
    check: &CheckDb,
    resp: &mut Response<'_>,
    line: i32,
) -> io::Result<Outcome> {
    let engine = session.engine.clone();
    let requested = match &check.target {
        DbccTarget::Current => session.database.clone(),
        DbccTarget::Name(n) => n.clone(),
        DbccTarget::Id(id) => match engine.database_name(*id as i32) {
            Some(n) => n,
            None => {
                raise(resp, &errors::dbcc_database_missing(&id.to_string()), line);
                return Ok(Outcome::failed());
            }
        },
    };
    let Some(name) = engine.canonical_database_name(&requested) else {
        raise(resp, &errors::dbcc_database_missing(&requested), line);
        return Ok(Outcome::failed());
    };
    // sysadmin or db_owner (Microsoft Learn, DBCC CHECKDB: Permissions).
    if engine.is_database_role_member(&session.login.name, &name, "db_owner") != Some(true) {
        raise(
            resp,
            &errors::dbcc_permission(&session.login.name, &name),
            line,
        );
        return Ok(Outcome::failed());
    }
    let Some(entry) = engine.database_entry(&name) else {
        raise(
            resp,
            &SqlError::lab(format!(
                "the lab holds no files for system database '{name}'; DBCC CHECKDB checks user databases"
            )),
            line,
        );
        return Ok(Outcome::failed());
    };
    // Not checked while RESTORING: SQL Server cannot open it.
    if entry.restoring_from.is_some() {
        raise(resp, &errors::database_restoring(&name), line);
        return Ok(Outcome::failed());
    }
    let guard = engine.database_lock(&name).read_owned().await;
    let data_file = entry.data_file.clone();
    let report = tokio::task::spawn_blocking(move || image::check(&data_file))
        .await
        .map_err(|e| io::Error::other(format!("DBCC CHECKDB panicked: {e}")))?;
    drop(guard);
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            raise(
                resp,
                &SqlError::lab(format!(
                    "DBCC CHECKDB could not read '{}': {e:#}",
                    entry.data_file.display()
                )),
                line,
            );
            return Ok(Outcome::failed());
        }
    };
    if !check.no_infomsgs {
        raise(
            resp,
            &SqlError::new(2536, 10, 1, format!("DBCC results for '{name}'.")),
            line,
        );
    }
    // Each damaged page: "could not be processed" and the failed test, as CHECKDB reports a bad checksum.
    let alloc_unit = 72_057_594_043_236_352i64 + entry.database_id as i64;
    for problem in &report.problems {
        raise(
            resp,
            &SqlError::new(
                8928,
                16,
                1,
                format!(
                    "Object ID 0, index ID -1, partition ID 0, alloc unit ID {alloc_unit} (type Unknown): Page (1:{}) could not be processed.  See other errors for details.",
                    problem.page
                ),
            ),
            line,
        );
        raise(
            resp,
            &SqlError::new(
                8939,
                16,
                98,
                format!(
                    "Table error: Object ID 0, index ID -1, partition ID 0, alloc unit ID {alloc_unit} (type Unknown), page (1:{}). Test (IS_OFF (BUF_IOERR, pBUF->bstat)) failed. Values are 2057 and -4.",
                    problem.page
                ),
            ),
            line,
        );
    }
    let consistency_errors = report.problems.len() * 2;
    let summary = format!(
        "CHECKDB found 0 allocation errors and {consistency_errors} consistency errors in database '{name}'."
    );
    if consistency_errors > 0 {
        raise(resp, &SqlError::new(8989, 16, 1, summary), line);
        raise(
            resp,
            &SqlError::new(
                8958,
                10,
                1,
                format!(
                    "repair_allow_data_loss is the minimum repair level for the errors found by DBCC CHECKDB ({name})."
                ),
            ),
            line,
        );
    } else if !check.no_infomsgs {
        raise(resp, &SqlError::new(8989, 10, 1, summary), line);
    }
    if !check.no_infomsgs {
        raise(
            resp,
            &SqlError::new(
                2528,
                10,
                1,
                "DBCC execution completed. If DBCC printed error messages, contact your system administrator.",
            ),
            line,
        );
    }
    Ok(if consistency_errors > 0 {
        Outcome::failed()
    } else {
        Outcome::ok()
    })
}
