//! RESTORE VERIFYONLY.

use std::io;

use serde_json::json;
use sqlserver_files::bak::{self, BakError};

use super::*;
use crate::Edition;
use crate::engine::errors;
use crate::engine::session::{Outcome, Session, raise};
use crate::sql::ast::{Restore, RestoreOption};
use crate::tds::response::Response;

pub async fn verify_only(
    session: &mut Session,
    restore: &Restore,
    resp: &mut Response<'_>,
    line: i32,
) -> io::Result<Outcome> {
    const OP: &str = "VERIFY DATABASE";
    let engine = session.engine.clone();
    if engine.edition == Edition::AzureSqlDatabase {
        raise(
            resp,
            &errors::azure_not_supported("RESTORE VERIFYONLY"),
            line,
        );
        return Ok(Outcome::failed());
    }
    if session.tran_count > 0 {
        return Ok(fail(resp, &[errors::in_transaction()], OP, line));
    }
    if !may_create_database(session) {
        return Ok(fail(
            resp,
            &[errors::permission_denied("CREATE DATABASE", "master")],
            OP,
            line,
        ));
    }
    let devices = device_paths(&engine, &restore.disks);
    let position = restore_position(&restore.options);
    let checksum = restore.options.contains(&RestoreOption::Checksum)
        && !restore.options.contains(&RestoreOption::NoChecksum);
    let database = read_headers(devices.clone())
        .await
        .ok()
        .and_then(|h| h.into_iter().find(|s| s.position == position))
        .map(|h| h.database_name)
        .unwrap_or_default();
    let permit = engine
        .operations
        .clone()
        .acquire_owned()
        .await
        .expect("the operations semaphore is never closed");
    let stripes = devices.clone();
    let result = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        bak::verify(&stripes, position, checksum)
    })
    .await
    .unwrap_or_else(|e| Err(BakError::InvalidRequest(format!("verify panicked: {e}"))));
    let files: Vec<String> = devices.iter().map(|d| path_text(d)).collect();
    match result {
        Ok(()) => {
            engine.emit("verify_finished", json!({ "files": files, "ok": true }));
            raise(resp, &errors::backup_set_valid(position), line);
            Ok(Outcome::ok())
        }
        Err(err) => {
            let errs = shown(&engine, position_errors(&err, &database, &devices));
            engine.emit(
                "verify_finished",
                json!({ "files": files, "ok": false, "error": errs.iter().map(|e| format!("Msg {}: {}", e.number, e.text)).collect::<Vec<_>>().join(" ") }),
            );
            Ok(fail(resp, &errs, OP, line))
        }
    }
}
