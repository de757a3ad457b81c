//! Logins and TLS at every encryption level tiberius offers.

use crate::common::*;
use sqlserver_sim::{Edition, SqlFault, TlsSupport};
use tiberius::EncryptionLevel;

#[tokio::test]
async fn login_and_select_one_at_every_encryption_level() {
    let lab = start_lab("tls", Edition::Developer, TlsSupport::Supported).await;
    for level in [
        EncryptionLevel::Required,
        EncryptionLevel::On,
        EncryptionLevel::Off,
        EncryptionLevel::NotSupported,
    ] {
        let mut client = connect_as(&lab, "sa", SA_PASSWORD, level)
            .await
            .unwrap_or_else(|e| panic!("{level:?}: {e}"));
        let rows = query(&mut client, "SELECT 1 AS one, SUSER_SNAME() AS who")
            .await
            .unwrap();
        assert_eq!(rows[0][0].get::<i32, _>("one"), Some(1), "{level:?}");
        assert_eq!(rows[0][0].get::<&str, _>("who"), Some("sa"), "{level:?}");
        // a second statement on the same connection still works (Off switched back to plain TDS)
        let rows = query(&mut client, "SELECT @@SPID").await.unwrap();
        assert!(rows[0][0].get::<i16, _>(0).unwrap() >= 51);
    }
    lab.server.shutdown().await;
}

#[tokio::test]
async fn server_without_tls_refuses_clients_that_require_it() {
    let lab = start_lab("notls", Edition::Express, TlsSupport::NotSupported).await;
    for level in [EncryptionLevel::Required, EncryptionLevel::On] {
        let err = connect_as(&lab, "sa", SA_PASSWORD, level)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("encryption"), "{level:?}: {err}");
    }
    let mut client = connect_as(&lab, "sa", SA_PASSWORD, EncryptionLevel::NotSupported)
        .await
        .unwrap();
    assert_eq!(
        query(&mut client, "SELECT 2").await.unwrap()[0][0].get::<i32, _>(0),
        Some(2)
    );
    lab.server.shutdown().await;
}

#[tokio::test]
async fn wrong_password_is_msg_18456_without_the_password() {
    let lab = start_lab("badpw", Edition::Developer, TlsSupport::Supported).await;
    let secret = "not-the-right-one-xyz";
    for level in [
        EncryptionLevel::Required,
        EncryptionLevel::Off,
        EncryptionLevel::NotSupported,
    ] {
        match connect_as(&lab, "sa", secret, level).await {
            Err(tiberius::error::Error::Server(e)) => {
                assert_eq!(e.code(), 18456);
                assert_eq!(e.class(), 14);
                assert_eq!(e.message(), "Login failed for user 'sa'.");
                assert!(!e.message().contains(secret));
            }
            other => panic!("{level:?}: expected Msg 18456, got {other:?}"),
        }
    }
    let failures = lab.events_of("login_failed");
    assert_eq!(failures.len(), 3);
    assert_eq!(failures[0]["login"], "sa");
    assert!(!failures.iter().any(|f| f.to_string().contains(secret)));
    lab.server.shutdown().await;
}

#[tokio::test]
async fn unknown_login_and_injected_failure_are_18456() {
    let lab = start_lab("nologin", Edition::Developer, TlsSupport::NotSupported).await;
    let err = connect_as(&lab, "nobody", "x", EncryptionLevel::NotSupported)
        .await
        .unwrap_err();
    assert!(
        matches!(err, tiberius::error::Error::Server(ref e) if e.code() == 18456 && e.message() == "Login failed for user 'nobody'.")
    );
    lab.server.inject(SqlFault::FailNextLogin);
    let err = connect_as(&lab, "sa", SA_PASSWORD, EncryptionLevel::NotSupported)
        .await
        .unwrap_err();
    assert!(matches!(err, tiberius::error::Error::Server(ref e) if e.code() == 18456));
    // one-shot: the next login works
    connect_as(&lab, "sa", SA_PASSWORD, EncryptionLevel::NotSupported)
        .await
        .unwrap();
    lab.server.shutdown().await;
}
