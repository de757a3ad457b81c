//! `[notify]`: who is told about backups (webhooks, Microsoft Teams, Slack, e-mail) and when. The
//! schema and the checks that need nothing but the config; `notify` sends.

use crate::secret::{Secret, SecretSource};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// When a target is told.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum When {
    /// Every failed run (the default).
    #[default]
    Failure,
    /// Every run.
    Always,
    /// Every failed run, and the first success after a failure (no news while all is well).
    Recovery,
}

#[derive(Clone, Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Default for every target: "failure", "always" or "recovery".
    #[serde(default)]
    pub on: When,
    /// How long one target may take to accept a notification. Default 15 (seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    #[serde(default, rename = "webhook", skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<WebhookConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub email: Vec<EmailConfig>,
}

/// The body a webhook gets.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// octobackup's own JSON (the `Event` fields).
    #[default]
    Json,
    /// A Microsoft Teams incoming webhook (or a Teams Workflows "post to a channel" URL): an
    /// Adaptive Card in a message.
    Teams,
    /// A Slack incoming webhook: text with Block Kit blocks.
    Slack,
}

#[derive(Clone, Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    #[serde(default)]
    pub format: Format,
    /// The URL. Teams and Slack URLs carry their token: prefer url_env or url_file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_file: Option<PathBuf>,
    /// Overrides `[notify] on` for this target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<When>,
}

/// How the SMTP connection is protected.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which must succeed (port 587; the default).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS: only for a relay on the same host, and never with a password.
    None,
}

#[derive(Clone, Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// The SMTP server's host name (the name its certificate holds).
    pub server: String,
    /// Default: 587 with starttls, 465 with tls, 25 with none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: SmtpTls,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// A PEM file with the CA (or the certificate) the server's certificate is checked against,
    /// besides the system's roots: for a server with a private CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    pub from: String,
    pub to: Vec<String>,
    /// Overrides `[notify] on` for this target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<When>,
}

impl NotifyConfig {
    /// Checked when the config is loaded, so a broken target is a config error, not a silent
    /// warning the night it is needed. The e-mail addresses are checked by `notify::addresses`,
    /// with the mail crate's own parser (`cli::context::load_config` runs both).
    pub fn validate(&self) -> Result<(), String> {
        for (i, w) in self.webhooks.iter().enumerate() {
            let n = i + 1;
            let given = [w.url.is_some(), w.url_env.is_some(), w.url_file.is_some()];
            if given.iter().filter(|g| **g).count() != 1 {
                return Err(format!(
                    "notify.webhook #{n}: set exactly one of url, url_env or url_file"
                ));
            }
            if let Some(u) = &w.url
                && !(u.starts_with("http://") || u.starts_with("https://"))
            {
                return Err(format!(
                    "notify.webhook #{n}: the url must start with http:// or https://"
                ));
            }
        }
        for (i, e) in self.email.iter().enumerate() {
            let n = i + 1;
            if e.server.trim().is_empty() {
                return Err(format!(
                    "notify.email #{n}: server is empty (the SMTP server's host name)"
                ));
            }
            if e.to.is_empty() {
                return Err(format!(
                    "notify.email #{n}: to is empty (give at least one address)"
                ));
            }
            if e.password_env.is_some() && e.password_file.is_some() {
                return Err(format!(
                    "notify.email #{n}: set one of password_env or password_file, not both"
                ));
            }
            let password = e.password_env.is_some() || e.password_file.is_some();
            if password != e.username.is_some() {
                return Err(format!(
                    "notify.email #{n}: username and a password (password_env or password_file) go together"
                ));
            }
            if password && e.tls == SmtpTls::None {
                return Err(format!(
                    "notify.email #{n}: tls = \"none\" would send the SMTP password in clear: use starttls or tls"
                ));
            }
        }
        Ok(())
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds.unwrap_or(15).max(1))
    }
}

impl WebhookConfig {
    /// The URL, read from where the config says.
    pub fn url(&self) -> Result<Secret, String> {
        if let Some(u) = &self.url {
            return Ok(Secret::new(u.clone()));
        }
        let source = match (&self.url_env, &self.url_file) {
            (Some(e), _) => SecretSource::Env(e.clone()),
            (_, Some(f)) => SecretSource::File(f.clone()),
            _ => return Err("no url".into()),
        };
        source.read("webhook URL").map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_name_the_target() {
        let mut c = NotifyConfig::default();
        c.webhooks.push(WebhookConfig {
            url: Some("https://x".into()),
            url_env: Some("X".into()),
            ..Default::default()
        });
        assert!(c.validate().unwrap_err().contains("webhook #1"));
        let mut c = NotifyConfig::default();
        c.email.push(EmailConfig {
            server: "smtp.example.com".into(),
            from: "octobackup@example.com".into(),
            to: vec!["ops@example.com".into()],
            username: Some("u".into()),
            password_env: Some("P".into()),
            tls: SmtpTls::None,
            ..Default::default()
        });
        assert!(c.validate().unwrap_err().contains("in clear"));
        c.email[0].tls = SmtpTls::Starttls;
        c.validate().unwrap();
    }
}
