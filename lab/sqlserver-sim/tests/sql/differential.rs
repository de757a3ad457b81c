//! Differential backups as SQL Server takes and restores them: the base is the last full backup
//! that was not COPY_ONLY, Msg 3035 without one, BackupType 5 with DifferentialBaseGUID, RESTORE
//! WITH NORECOVERY then the differential, Msg 3136 on the wrong base and 3117 on a recovered
//! database.

use crate::common::*;
use sqlserver_files::image;
use sqlserver_sim::{Edition, TlsSupport};
use tiberius::numeric::Numeric;
use uuid::Uuid;

async fn backup(client: &mut TdsClient, path: &str, with: &str) -> tiberius::Result<()> {
    query(
        client,
        &format!("BACKUP DATABASE [Octopus] TO DISK = {} WITH FORMAT, INIT, CHECKSUM, NO_COMPRESSION{with}", quote_str(path)),
    )
    .await
    .map(|_| ())
}

/// (BackupType, BackupSetGUID, DifferentialBaseGUID, BackupSize) from RESTORE HEADERONLY.
async fn header(client: &mut TdsClient, path: &str) -> (i16, Uuid, Option<Uuid>, u64) {
    let rows = query(
        client,
        &format!("RESTORE HEADERONLY FROM DISK = {}", quote_str(path)),
    )
    .await
    .unwrap();
    let h = &rows[0][0];
    let size: Numeric = h.get("BackupSize").unwrap();
    (
        h.get::<i16, _>("BackupType").unwrap(),
        h.get::<Uuid, _>("BackupSetGUID").unwrap(),
        h.get::<Uuid, _>("DifferentialBaseGUID"),
        size.value() as u64,
    )
}

fn restore(target: &str, bak: &str, dir: &std::path::Path, recovery: &str) -> String {
    format!(
        "RESTORE DATABASE {} FROM DISK = {} WITH MOVE N'Octopus' TO {}, MOVE N'Octopus_log' TO {}, {recovery}",
        quote_ident(target),
        quote_str(bak),
        quote_str(&dir.join(format!("{target}.mdf")).to_string_lossy()),
        quote_str(&dir.join(format!("{target}_log.ldf")).to_string_lossy()),
    )
}

fn path(lab: &TestServer, name: &str) -> String {
    lab.dir().join(name).to_string_lossy().into_owned()
}

#[tokio::test]
async fn a_differential_needs_a_full_that_is_not_copy_only() {
    let lab = start_lab("diff-nobase", Edition::Developer, TlsSupport::NotSupported).await;
    attach_octopus(&lab, "Octopus");
    let mut client = connect(&lab).await;
    let diff = path(&lab, "d.bak");
    let err = server_error(
        &mut client,
        &format!(
            "BACKUP DATABASE [Octopus] TO DISK = {} WITH DIFFERENTIAL",
            quote_str(&diff)
        ),
    )
    .await;
    assert_eq!(err.code(), 3035, "{err:?}");
    assert!(err.message().contains("\"Octopus\""), "{}", err.message());
    backup(&mut client, &path(&lab, "copy.bak"), ", COPY_ONLY")
        .await
        .unwrap();
    let err = server_error(
        &mut client,
        &format!(
            "BACKUP DATABASE [Octopus] TO DISK = {} WITH DIFFERENTIAL",
            quote_str(&diff)
        ),
    )
    .await;
    assert_eq!(err.code(), 3035, "a COPY_ONLY full is no base: {err:?}");
}

#[tokio::test]
async fn differential_backup_headers_history_and_restore_on_its_base() {
    let lab = start_lab("diff-chain", Edition::Developer, TlsSupport::NotSupported).await;
    let (data, _) = attach_with_pages(&lab, "Octopus", 4000);
    let mut client = connect(&lab).await;
    let (base, diff, other) = (
        path(&lab, "base.bak"),
        path(&lab, "diff.bak"),
        path(&lab, "other.bak"),
    );
    backup(&mut client, &base, "").await.unwrap();
    let (base_type, base_guid, base_diff_guid, base_size) = header(&mut client, &base).await;
    assert_eq!((base_type, base_diff_guid), (1, None));
    // a COPY_ONLY full in between leaves the base where it is
    backup(&mut client, &other, ", COPY_ONLY").await.unwrap();
    image::churn(&data, 1, 0.01, 8, 3).unwrap();
    backup(&mut client, &diff, ", DIFFERENTIAL").await.unwrap();
    let (diff_type, _, diff_base, diff_size) = header(&mut client, &diff).await;
    assert_eq!(diff_type, 5);
    assert_eq!(diff_base, Some(base_guid));
    assert!(
        diff_size * 10 < base_size,
        "differential {diff_size} vs full {base_size}"
    );
    let rows = query(
        &mut client,
        "SELECT type, is_copy_only, differential_base_guid FROM msdb.dbo.backupset ORDER BY backup_set_id",
    )
    .await
    .unwrap();
    let history: Vec<(String, bool, Option<Uuid>)> = rows[0]
        .iter()
        .map(|r| {
            (
                r.get::<&str, _>(0).unwrap().to_string(),
                r.get::<bool, _>(1).unwrap(),
                r.get::<Uuid, _>(2),
            )
        })
        .collect();
    assert_eq!(
        history,
        vec![
            ("D".to_string(), false, None),
            ("D".to_string(), true, None),
            ("I".to_string(), false, Some(base_guid)),
        ]
    );

    // a differential onto nothing, onto a recovered copy, onto the wrong base: refused
    let dir = lab.dir().to_path_buf();
    let err = server_error(&mut client, &restore("Nowhere", &diff, &dir, "RECOVERY")).await;
    assert_eq!(err.code(), 3117, "{err:?}");
    query(&mut client, &restore("Recovered", &base, &dir, "RECOVERY"))
        .await
        .unwrap();
    let err = server_error(&mut client, &restore("Recovered", &diff, &dir, "RECOVERY")).await;
    assert_eq!(err.code(), 3117, "{err:?}");
    query(&mut client, &restore("Wrong", &other, &dir, "NORECOVERY"))
        .await
        .unwrap();
    let err = server_error(&mut client, &restore("Wrong", &diff, &dir, "RECOVERY")).await;
    assert_eq!(err.code(), 3136, "{err:?}");

    // the base WITH NORECOVERY: RESTORING, not usable; then the differential WITH RECOVERY
    query(&mut client, &restore("Copy", &base, &dir, "NORECOVERY"))
        .await
        .unwrap();
    let state = query(
        &mut client,
        "SELECT state_desc FROM sys.databases WHERE name = N'Copy'",
    )
    .await
    .unwrap();
    assert_eq!(state[0][0].get::<&str, _>(0), Some("RESTORING"));
    let err = server_error(&mut client, "USE [Copy]").await;
    assert_eq!(err.code(), 927, "{err:?}");
    // Neither checked nor backed up while RESTORING.
    let err = server_error(&mut client, "DBCC CHECKDB (N'Copy') WITH NO_INFOMSGS").await;
    assert_eq!(err.code(), 927, "{err:?}");
    let bak = dir.join("copy-while-restoring.bak");
    let err = server_error(
        &mut client,
        &format!("BACKUP DATABASE [Copy] TO DISK = N'{}'", bak.display()),
    )
    .await;
    assert_eq!(err.code(), 927, "{err:?}");
    query(&mut client, &restore("Copy", &diff, &dir, "RECOVERY"))
        .await
        .unwrap();
    let state = query(
        &mut client,
        "SELECT state_desc FROM sys.databases WHERE name = N'Copy'",
    )
    .await
    .unwrap();
    assert_eq!(state[0][0].get::<&str, _>(0), Some("ONLINE"));
    let copy = dir.join("Copy.mdf");
    assert_eq!(
        image::content_digest(&copy).unwrap(),
        image::content_digest(&data).unwrap(),
        "base + differential is the database as the differential saw it"
    );
    let check = query(&mut client, "DBCC CHECKDB([Copy]) WITH NO_INFOMSGS").await;
    assert!(check.is_ok(), "{check:?}");
}

/// Refusals SQL Server gives before restoring anything: RECOVERY with NORECOVERY (Msg 3031), and
/// a MOVE naming a logical file the set does not have, on a differential too (Msg 3234).
#[tokio::test]
async fn conflicting_recovery_options_and_unknown_move_names_are_refused() {
    let lab = start_lab(
        "diff-refusals",
        Edition::Developer,
        TlsSupport::NotSupported,
    )
    .await;
    let (data, _) = attach_with_pages(&lab, "Octopus", 200);
    let mut client = connect(&lab).await;
    let (base, diff) = (path(&lab, "base.bak"), path(&lab, "diff.bak"));
    backup(&mut client, &base, "").await.unwrap();
    image::churn(&data, 1, 0.05, 8, 3).unwrap();
    backup(&mut client, &diff, ", DIFFERENTIAL").await.unwrap();
    let dir = lab.dir().to_path_buf();

    for recovery in ["RECOVERY, NORECOVERY", "NORECOVERY, RECOVERY"] {
        let err = server_error(&mut client, &restore("Both", &base, &dir, recovery)).await;
        assert_eq!(err.code(), 3031, "{recovery}: {err:?}");
        assert!(
            err.message().contains("'recovery'") && err.message().contains("'norecovery'"),
            "{}",
            err.message()
        );
    }
    let rows = query(&mut client, "SELECT DB_ID(N'Both')").await.unwrap();
    assert_eq!(rows[0][0].get::<i32, _>(0), None, "nothing was restored");
    assert!(!dir.join("Both.mdf").exists());

    // the base restored WITH NORECOVERY, then the differential with a MOVE the set lacks
    query(&mut client, &restore("Copy", &base, &dir, "NORECOVERY"))
        .await
        .unwrap();
    let err = server_error(
        &mut client,
        &format!(
            "RESTORE DATABASE [Copy] FROM DISK = {} WITH MOVE N'NoSuchFile' TO {}, RECOVERY",
            quote_str(&diff),
            quote_str(&dir.join("x.ndf").to_string_lossy())
        ),
    )
    .await;
    assert_eq!(err.code(), 3234, "{err:?}");
    assert!(err.message().contains("'NoSuchFile'"), "{}", err.message());
    // refused before anything ran: the copy is still RESTORING and takes the differential
    let state = query(
        &mut client,
        "SELECT state_desc FROM sys.databases WHERE name = N'Copy'",
    )
    .await
    .unwrap();
    assert_eq!(state[0][0].get::<&str, _>(0), Some("RESTORING"));
    query(&mut client, &restore("Copy", &diff, &dir, "RECOVERY"))
        .await
        .unwrap();
    assert_eq!(
        image::content_digest(&dir.join("Copy.mdf")).unwrap(),
        image::content_digest(&data).unwrap()
    );
}
