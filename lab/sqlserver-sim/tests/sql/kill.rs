//! KILL: one session ends another's statement and connection; refusals carry SQL Server's
//! numbers (Microsoft Learn, "KILL (Transact-SQL)" and "Database engine events and errors").

use std::time::Duration;

use crate::common::*;
use sqlserver_sim::{Edition, SqlFault, TlsSupport};
use tiberius::EncryptionLevel;

const PASSWORD: &str = "Operator-Passw0rd!";

async fn spid(client: &mut TdsClient) -> i16 {
    query(client, "SELECT @@SPID").await.unwrap()[0][0]
        .get(0)
        .unwrap()
}

/// Polls (bounded) until the event log holds an event of this kind.
async fn wait_for(lab: &TestServer, kind: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while lab.events_of(kind).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no {kind} within a minute"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn kill_refusals_carry_sql_servers_numbers() {
    let lab = start_lab("kill-refused", Edition::Developer, TlsSupport::NotSupported).await;
    let mut sa = connect(&lab).await;
    query(
        &mut sa,
        &format!("CREATE LOGIN [operator] WITH PASSWORD = N'{PASSWORD}'"),
    )
    .await
    .unwrap();
    let mut op = connect_as(&lab, "operator", PASSWORD, EncryptionLevel::NotSupported)
        .await
        .unwrap();
    let sa_spid = spid(&mut sa).await;
    let own = spid(&mut op).await;

    // Without ALTER ANY CONNECTION: 6102, severity 14, and the other session lives on.
    let e = server_error(&mut op, &format!("KILL {sa_spid}")).await;
    assert_eq!((e.code(), e.class()), (6102, 14), "{e}");
    assert_eq!(
        e.message(),
        "User does not have permission to use the KILL statement."
    );
    assert_eq!(
        query(&mut sa, "SELECT 1").await.unwrap()[0][0].get::<i32, _>(0),
        Some(1)
    );

    let e = server_error(&mut sa, &format!("KILL {sa_spid}")).await;
    assert_eq!(e.code(), 6104, "{e}");
    let e = server_error(&mut sa, "KILL 9999").await;
    assert_eq!(e.code(), 6106, "{e}");
    assert_eq!(e.message(), "Process ID 9999 is not an active process ID.");
    let e = server_error(&mut sa, "KILL 5").await;
    assert_eq!(e.code(), 6107, "{e}");
    let e = server_error(&mut sa, "KILL 0").await;
    assert_eq!(e.code(), 6101, "{e}");

    // processadmin holds ALTER ANY CONNECTION (as HAS_PERMS_BY_NAME says).
    query(
        &mut sa,
        &format!("CREATE LOGIN [proc] WITH PASSWORD = N'{PASSWORD}'; ALTER SERVER ROLE processadmin ADD MEMBER [proc]"),
    )
    .await
    .unwrap();
    let mut proc_admin = connect_as(&lab, "proc", PASSWORD, EncryptionLevel::NotSupported)
        .await
        .unwrap();
    let holds = "SELECT HAS_PERMS_BY_NAME(NULL, NULL, 'ALTER ANY CONNECTION')";
    let rows = query(&mut proc_admin, holds).await.unwrap();
    assert_eq!(rows[0][0].get::<i32, _>(0), Some(1));
    let rows = query(&mut op, holds).await.unwrap();
    assert_eq!(rows[0][0].get::<i32, _>(0), Some(0));
    drop(proc_admin);
    // Granted ALTER ANY CONNECTION, the login may.
    query(&mut sa, "GRANT ALTER ANY CONNECTION TO [operator]")
        .await
        .unwrap();
    let mut victim = connect(&lab).await;
    let victim_spid = spid(&mut victim).await;
    query(&mut op, &format!("KILL {victim_spid}"))
        .await
        .unwrap();
    assert!(query(&mut victim, "SELECT 1").await.is_err());
    let killed = lab.events_of("session_killed");
    assert_eq!(killed.len(), 1, "{killed:?}");
    assert_eq!(killed[0]["spid"], victim_spid as i64);
    assert_eq!(killed[0]["by"], own as i64);
    // An idle session's connection is closed at once: only sa and operator remain.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while lab.server.session_count() != 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the killed session lingers"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lab.server.shutdown().await;
}

/// A BACKUP that does not heed ATTENTION (a real one blocked on I/O) runs on after the client's
/// ATTENTION; KILL from a second session ends it: the killed client reads Msg 596 and its
/// connection closes, the BACKUP is recorded as failed, no file and no msdb row are left.
#[tokio::test]
async fn kill_ends_a_backup_that_ignores_attention() {
    let lab = start_lab("kill-backup", Edition::Developer, TlsSupport::NotSupported).await;
    attach_with_pages(&lab, "Octopus", 512);
    let mut client = connect(&lab).await;
    let target = spid(&mut client).await;
    let path = lab.dir().join("deaf.bak").to_string_lossy().into_owned();
    lab.server.set_backup_rate(Some(128 * 1024));
    lab.server.inject(SqlFault::IgnoreAttentionDuringNext {
        command: "BACKUP DATABASE".into(),
    });
    let sql = format!(
        "BACKUP DATABASE [Octopus] TO DISK = {} WITH STATS = 1",
        quote_str(&path)
    );
    {
        let running = query(&mut client, &sql);
        tokio::pin!(running);
        tokio::select! {
            r = &mut running => panic!("the throttled backup ended first: {r:?}"),
            _ = wait_for(&lab, "backup_started") => {}
        }
    }
    let mut killer = connect(&lab).await;
    let cancel = client.cancel_query();
    tokio::pin!(cancel);
    let running = format!("SELECT command FROM sys.dm_exec_requests WHERE session_id = {target}");
    tokio::select! {
        r = &mut cancel => panic!("ATTENTION was acknowledged: {r:?}"),
        _ = wait_for(&lab, "attention_received") => {}
    }
    // ATTENTION arrived and the BACKUP still runs.
    let rows = query(&mut killer, &running).await.unwrap();
    assert_eq!(
        rows[0].first().and_then(|r| r.get::<&str, _>("command")),
        Some("BACKUP DATABASE")
    );
    assert!(lab.events_of("backup_finished").is_empty());
    query(&mut killer, &format!("KILL {target}")).await.unwrap();
    // The killed side: the stop it awaited never comes as an acknowledgment.
    let ended = tokio::time::timeout(Duration::from_secs(60), &mut cancel)
        .await
        .expect("the killed connection closes");
    assert!(ended.is_err(), "{ended:?}");
    assert!(lab.events_of("attention_acknowledged").is_empty());
    let finished = lab.events_of("backup_finished");
    assert_eq!(finished.len(), 1, "{finished:?}");
    assert_eq!(finished[0]["ok"], false);
    assert!(query(&mut killer, &running).await.unwrap()[0].is_empty());
    assert!(
        !std::path::Path::new(&path).exists(),
        "a killed backup leaves no file"
    );
    // KILL of the session now gone: 6106.
    let e = server_error(&mut killer, &format!("KILL {target}")).await;
    assert_eq!(e.code(), 6106, "{e}");
    lab.server.set_backup_rate(None);
    lab.server.shutdown().await;
}

/// Without KILL, the BACKUP that ignored ATTENTION runs to its end, and the ATTENTION is then
/// acknowledged: the session is usable again.
#[tokio::test]
async fn an_ignored_attention_is_acknowledged_when_the_statement_ends() {
    let lab = start_lab(
        "kill-late-ack",
        Edition::Developer,
        TlsSupport::NotSupported,
    )
    .await;
    attach_with_pages(&lab, "Octopus", 64);
    let mut client = connect(&lab).await;
    let path = lab.dir().join("late.bak").to_string_lossy().into_owned();
    lab.server.set_backup_rate(Some(128 * 1024));
    lab.server.inject(SqlFault::IgnoreAttentionDuringNext {
        command: "BACKUP DATABASE".into(),
    });
    let sql = format!("BACKUP DATABASE [Octopus] TO DISK = {}", quote_str(&path));
    {
        let running = query(&mut client, &sql);
        tokio::pin!(running);
        tokio::select! {
            r = &mut running => panic!("the throttled backup ended first: {r:?}"),
            _ = wait_for(&lab, "backup_started") => {}
        }
    }
    {
        let cancel = client.cancel_query();
        tokio::pin!(cancel);
        tokio::select! {
            r = &mut cancel => panic!("ATTENTION was acknowledged while the BACKUP ran: {r:?}"),
            _ = wait_for(&lab, "attention_received") => {}
        }
        lab.server.set_backup_rate(None);
        tokio::time::timeout(Duration::from_secs(60), cancel)
            .await
            .expect("acknowledged once the backup ends")
            .unwrap();
    }
    assert_eq!(lab.events_of("attention_acknowledged").len(), 1);
    assert_eq!(
        query(&mut client, "SELECT 7").await.unwrap()[0][0].get::<i32, _>(0),
        Some(7)
    );
    lab.server.shutdown().await;
}
