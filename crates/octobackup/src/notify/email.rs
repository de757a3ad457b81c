//! E-mail over SMTP (lettre): STARTTLS that must succeed (or TLS from the start), AUTH with the
//! password read from its source at send time, a plain-text body.

use super::{EmailConfig, Event, SmtpTls};
use crate::secret::SecretSource;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

pub fn message(cfg: &EmailConfig, event: &Event) -> Result<Message, String> {
    let mut b = Message::builder()
        .from(
            cfg.from
                .parse()
                .map_err(|e| format!("from '{}': {e}", cfg.from))?,
        )
        .subject(event.title());
    for to in &cfg.to {
        b = b.to(to.parse().map_err(|e| format!("to '{to}': {e}"))?);
    }
    b.header(ContentType::TEXT_PLAIN)
        .body(event.text())
        .map_err(|e| e.to_string())
}

pub async fn send(cfg: &EmailConfig, event: &Event, timeout: Duration) -> Result<(), String> {
    let msg = message(cfg, event)?;
    let tls = || -> Result<TlsParameters, String> {
        let mut b = TlsParameters::builder(cfg.server.clone());
        if let Some(ca) = &cfg.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| format!("cannot read ca_file {}: {e}", ca.display()))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| format!("ca_file {} is not a PEM certificate: {e}", ca.display()))?;
            b = b.add_root_certificate(cert);
        }
        b.build_rustls().map_err(|e| e.to_string())
    };
    let (tls, port) = match cfg.tls {
        SmtpTls::Starttls => (Tls::Required(tls()?), cfg.port.unwrap_or(587)),
        SmtpTls::Tls => (Tls::Wrapper(tls()?), cfg.port.unwrap_or(465)),
        SmtpTls::None => (Tls::None, cfg.port.unwrap_or(25)),
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.server)
        .port(port)
        .tls(tls)
        .timeout(Some(timeout));
    if let Some(user) = &cfg.username {
        let source = match (&cfg.password_env, &cfg.password_file) {
            (Some(e), _) => SecretSource::Env(e.clone()),
            (_, Some(f)) => SecretSource::File(f.clone()),
            _ => unreachable!("validated: a username comes with a password"),
        };
        let password = source.read("SMTP password").map_err(|e| e.to_string())?;
        builder = builder.credentials(Credentials::new(
            user.clone(),
            password.expose().to_string(),
        ));
    }
    let mailer = builder.build();
    match tokio::time::timeout(timeout, mailer.send(msg)).await {
        Ok(Ok(_)) => Ok(()),
        // lettre's errors carry the server's reply (e.g. "535 5.7.8 Authentication
        // credentials invalid"), never the credentials.
        Ok(Err(e)) => Err(format!("{}:{port}: {}", cfg.server, chain(&e))),
        Err(_) => Err(format!(
            "{}:{port}: no answer within {}s",
            cfg.server,
            timeout.as_secs()
        )),
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(&format!(": {t}"));
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_has_subject_and_body() {
        let cfg = EmailConfig {
            server: "smtp.example.com".into(),
            from: "octobackup <octobackup@example.com>".into(),
            to: vec!["ops@example.com".into()],
            ..Default::default()
        };
        let event = Event {
            event: "backup",
            copy: None,
            instance: "OctopusServer".into(),
            status: super::super::Status::Success,
            exit_code: 0,
            recovery: true,
            set_id: Some("20260101T000000Z".into()),
            snapshot_id: None,
            host: "backup01".into(),
            nodes: vec![],
            drained_nodes: vec![],
            started: chrono::Utc::now(),
            finished: chrono::Utc::now(),
            window_seconds: Some(3.0),
            database_bytes: Some(2048),
            folder_bytes: Some(4096),
            new_bytes: Some(1024),
            steps: vec![],
            drill: None,
            failure: None,
            fix: None,
        };
        let m = String::from_utf8(message(&cfg, &event).unwrap().formatted()).unwrap();
        assert!(m.contains("Subject: octobackup: backup of OctopusServer succeeded (recovered"));
        assert!(m.contains("To: ops@example.com"));
        assert!(m.contains("Database: 2.0 KiB"));
    }
}
