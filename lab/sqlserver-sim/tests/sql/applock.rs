//! sp_getapplock and sp_releaseapplock: return codes, conflicts between sessions, release by
//! procedure, at COMMIT and when the session's connection drops.

use crate::common::*;
use sqlserver_sim::{Edition, TlsSupport};

/// The form octobackup sends: the return status read back with SELECT.
fn get_lock(resource: &str, mode: &str, owner: &str, timeout: i32) -> String {
    format!(
        "DECLARE @r int; EXEC @r = sp_getapplock @Resource = {}, @LockMode = '{mode}', \
         @LockOwner = '{owner}', @LockTimeout = {timeout}; SELECT @r AS result;",
        quote_str(resource)
    )
}

fn release_lock(resource: &str, owner: &str) -> String {
    format!(
        "DECLARE @r int; EXEC @r = sp_releaseapplock @Resource = {}, @LockOwner = '{owner}'; \
         SELECT @r AS result;",
        quote_str(resource)
    )
}

async fn status(client: &mut TdsClient, sql: &str) -> i32 {
    let rows = query(client, sql).await.unwrap();
    rows.last().unwrap()[0].get::<i32, _>("result").unwrap()
}

#[tokio::test]
async fn an_exclusive_session_lock_blocks_other_sessions_until_released() {
    let lab = start_lab("applock", Edition::Standard, TlsSupport::NotSupported).await;
    attach_octopus(&lab, "Octopus");
    let mut a = connect(&lab).await;
    let mut b = connect(&lab).await;
    for c in [&mut a, &mut b] {
        query(c, "USE [Octopus]").await.unwrap();
    }
    let lock = get_lock("octobackup:Octopus", "Exclusive", "Session", 0);
    assert_eq!(status(&mut a, &lock).await, 0);
    assert_eq!(
        status(&mut b, &lock).await,
        -1,
        "the second session times out"
    );
    // Shared is refused beside Exclusive too; another resource, or the same name in another
    // database, is a different lock.
    let shared = get_lock("octobackup:Octopus", "Shared", "Session", 0);
    assert_eq!(status(&mut b, &shared).await, -1);
    assert_eq!(
        status(
            &mut b,
            &get_lock("octobackup:other", "Exclusive", "Session", 0)
        )
        .await,
        0
    );
    query(&mut b, "USE [master]").await.unwrap();
    assert_eq!(status(&mut b, &lock).await, 0);
    query(&mut b, "USE [Octopus]").await.unwrap();

    assert_eq!(
        status(&mut a, &release_lock("octobackup:Octopus", "Session")).await,
        0
    );
    assert_eq!(status(&mut b, &lock).await, 0, "free once released");
    // Releasing a lock not held: Msg 1223.
    let e = server_error(
        &mut a,
        "EXEC sp_releaseapplock @Resource = N'octobackup:Octopus', @LockOwner = 'Session'",
    )
    .await;
    assert_eq!(e.code(), 1223);
    assert!(
        e.message().contains("because it is not currently held"),
        "{}",
        e.message()
    );
    lab.server.shutdown().await;
}

#[tokio::test]
async fn a_session_lock_goes_when_the_connection_drops() {
    let lab = start_lab("applock-drop", Edition::Standard, TlsSupport::NotSupported).await;
    attach_octopus(&lab, "Octopus");
    let mut a = connect(&lab).await;
    let mut b = connect(&lab).await;
    for c in [&mut a, &mut b] {
        query(c, "USE [Octopus]").await.unwrap();
    }
    assert_eq!(
        status(&mut a, &get_lock("run", "Exclusive", "Session", 0)).await,
        0
    );
    assert_eq!(
        status(&mut b, &get_lock("run", "Update", "Session", 0)).await,
        -1
    );
    drop(a);
    // Waits (0: granted at once if the server saw the drop first, 1: after waiting for it).
    let got = status(&mut b, &get_lock("run", "Exclusive", "Session", 60_000)).await;
    assert!(
        got == 0 || got == 1,
        "granted once the holder is gone, got {got}"
    );
    lab.server.shutdown().await;
}

#[tokio::test]
async fn transaction_locks_need_a_transaction_and_end_with_it() {
    let lab = start_lab("applock-tran", Edition::Standard, TlsSupport::NotSupported).await;
    let mut a = connect(&lab).await;
    let mut b = connect(&lab).await;
    // Msg 15626 (severity 10) and -999 outside a transaction, as SQL Server does.
    assert_eq!(
        status(&mut a, &get_lock("t", "Exclusive", "Transaction", 0)).await,
        -999
    );
    assert_eq!(
        status(&mut b, &get_lock("t", "Exclusive", "Session", 0)).await,
        0
    );
    assert_eq!(status(&mut b, &release_lock("t", "Session")).await, 0);
    query(&mut a, "BEGIN TRAN").await.unwrap();
    assert_eq!(
        status(&mut a, &get_lock("t", "Exclusive", "Transaction", 0)).await,
        0
    );
    assert_eq!(
        status(&mut b, &get_lock("t", "IntentShared", "Session", 0)).await,
        -1
    );
    query(&mut a, "COMMIT").await.unwrap();
    assert_eq!(
        status(&mut b, &get_lock("t", "Exclusive", "Session", 0)).await,
        0
    );
    // Bad values: -999 with Msg 15625; an unknown parameter: Msg 8145; undeclared: Msg 137.
    assert_eq!(
        status(&mut a, &get_lock("u", "Bogus", "Session", 0)).await,
        -999
    );
    assert_eq!(
        status(&mut a, &get_lock("u", "Exclusive", "Bogus", 0)).await,
        -999
    );
    let e = server_error(
        &mut a,
        "EXEC sp_getapplock @Resource = N'u', @Mode = 'Exclusive'",
    )
    .await;
    assert_eq!(e.code(), 8145);
    let e = server_error(&mut a, "EXEC @nope = sp_getapplock N'u', 'Exclusive'").await;
    assert_eq!(e.code(), 137);
    lab.server.shutdown().await;
}
