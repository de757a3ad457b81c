//! Telling people about a backup (`[notify]`): a JSON webhook, Microsoft Teams, Slack and e-mail.
//! A notification that cannot be sent is one warning line: it never changes the backup's outcome
//! or its exit code. Exit 7 (maintenance mode left changed) is sent at once, whatever `on` says.

mod email;
pub mod history;
mod webhook;

use crate::error::Exit;
use crate::secret::{Secret, SecretSource};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use history::{DrillResult, History, InstanceHistory};

/// Called by the backup the moment maintenance mode could not be put back, with the message.
pub type Alarm = Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

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
    /// warning the night it is needed.
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
            for a in std::iter::once(&e.from).chain(&e.to) {
                if a.parse::<lettre::message::Mailbox>().is_err() {
                    return Err(format!(
                        "notify.email #{n}: '{a}' is not an e-mail address (name@example.com or \"Name <name@example.com>\")"
                    ));
                }
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

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds.unwrap_or(15).max(1))
    }
}

impl WebhookConfig {
    fn url(&self) -> Result<Secret, String> {
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

/// How a run ended, in a word.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Success,
    Failed,
    Interrupted,
    /// Exit 7: maintenance mode could not be put back.
    MaintenanceStuck,
}

impl Status {
    pub fn of(exit: Option<Exit>) -> Status {
        match exit {
            None => Status::Success,
            Some(Exit::MaintenanceStuck) => Status::MaintenanceStuck,
            Some(Exit::Interrupted) => Status::Interrupted,
            Some(_) => Status::Failed,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Status::Success => "succeeded",
            Status::Failed => "FAILED",
            Status::Interrupted => "was interrupted",
            Status::MaintenanceStuck => "LEFT MAINTENANCE MODE CHANGED",
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct StepSeconds {
    pub name: String,
    pub seconds: f64,
    pub ok: bool,
}

/// What a notification says about one backup run: the generic webhook's JSON body as it is, and
/// the source of the Teams, Slack and e-mail texts. It never holds a secret: the failure message
/// is the one printed on stderr, which names sources of secrets, never their values.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    pub event: &'static str,
    pub instance: String,
    pub status: Status,
    pub exit_code: u8,
    /// The first success after a failure.
    pub recovery: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// The machine octobackup ran on.
    pub host: String,
    /// The cluster's nodes and those drained (not taking tasks) as the API listed them after the run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drained_nodes: Vec<String>,
    pub started: chrono::DateTime<chrono::Utc>,
    pub finished: chrono::DateTime<chrono::Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub folder_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepSeconds>,
    /// The instance's last drill (`octobackup drill`), if one ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drill: Option<DrillResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// What to do about a failure, by exit code (the message itself says the cause and, mostly, the
/// exact fix; this is the line a reader of a chat message acts on).
pub fn fix_for(exit: Exit) -> &'static str {
    match exit {
        Exit::Failed => {
            "Read the failure above; nothing was marked complete. Run the backup again once it is fixed."
        }
        Exit::Usage => "Fix the config or the command line named above, then run the backup again.",
        Exit::Octopus => {
            "Check the Octopus Server: that it answers, that the API key is valid and its user may change maintenance mode; `octobackup doctor` checks each."
        }
        Exit::Sql => {
            "Check SQL Server: the login, its BACKUP DATABASE permission and the staging path; `octobackup doctor` checks each."
        }
        Exit::Repository => {
            "Check the repository: that it is reachable, the password and free space; `octobackup check` names damage."
        }
        Exit::Busy => {
            "Another run holds this instance's lock: let it finish; no change was made by this one."
        }
        Exit::MaintenanceStuck => {
            "ACT NOW: put maintenance mode back in Octopus (Configuration > Maintenance) or run `octobackup recover` once the server answers."
        }
        Exit::CheckFailed => {
            "A check failed: read which one above and fix it before relying on the set."
        }
        Exit::CopyFailed => {
            "The backup is complete, but its copy to the second repository failed: fix what the message names, then `octobackup copy --to NAME`."
        }
        Exit::Interrupted => {
            "The run was stopped; maintenance mode was put back. Run the backup again."
        }
    }
}

impl Event {
    /// One line: "octobackup: backup of OctopusServer FAILED (exit 4)".
    pub fn title(&self) -> String {
        let mut t = format!(
            "octobackup: backup of {} {}",
            self.instance,
            self.status.word()
        );
        if self.exit_code != 0 {
            t.push_str(&format!(" (exit {})", self.exit_code));
        }
        if self.recovery {
            t.push_str(" (recovered after a failure)");
        }
        t
    }

    /// The facts every format shows, in order: (label, value).
    pub fn facts(&self) -> Vec<(&'static str, String)> {
        let mut f = vec![
            ("Instance", self.instance.clone()),
            ("Status", format!("{:?}", self.status).to_lowercase()),
            ("Exit code", self.exit_code.to_string()),
        ];
        if let Some(s) = &self.set_id {
            f.push(("Set", s.clone()));
        }
        f.push(("Host", self.host.clone()));
        if !self.nodes.is_empty() {
            f.push(("Nodes", self.nodes.join(", ")));
        }
        if !self.drained_nodes.is_empty() {
            f.push(("Drained nodes", self.drained_nodes.join(", ")));
        }
        if let Some(w) = self.window_seconds {
            f.push(("Maintenance window", format!("{w:.1} s")));
        }
        if let Some(b) = self.database_bytes {
            f.push(("Database", crate::format::bytes(b)));
        }
        if let Some(b) = self.folder_bytes {
            f.push(("Folders", crate::format::bytes(b)));
        }
        if let Some(b) = self.new_bytes {
            f.push(("New data", crate::format::bytes(b)));
        }
        if let Some(d) = &self.drill {
            f.push((
                "Last drill",
                format!(
                    "{} (set {}, {})",
                    if d.ok { "passed" } else { "FAILED" },
                    d.set_id,
                    d.finished.format("%Y-%m-%d %H:%M UTC")
                ),
            ));
        }
        f.push((
            "Finished",
            self.finished.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        ));
        f
    }

    /// The plain-text form (e-mail body).
    pub fn text(&self) -> String {
        let mut s = format!("{}\n\n", self.title());
        for (k, v) in self.facts() {
            s.push_str(&format!("{k}: {v}\n"));
        }
        if let Some(f) = &self.failure {
            s.push_str(&format!("\nFailure: {f}\n"));
        }
        if let Some(f) = &self.fix {
            s.push_str(&format!("Fix: {f}\n"));
        }
        s
    }
}

/// Whether a target whose rule is `when` is told about `event`, given the previous run's status.
pub fn wanted(when: When, event: &Event, previous: Option<Status>) -> bool {
    if event.status == Status::MaintenanceStuck {
        return true;
    }
    let failed = event.status != Status::Success;
    match when {
        When::Always => true,
        When::Failure => failed,
        When::Recovery => failed || previous.is_some_and(|p| p != Status::Success),
    }
}

/// Sends `event` to every target that wants it. Failures are logged, one line each, and
/// otherwise ignored: a notification never changes the outcome of the backup.
pub async fn send(config: &NotifyConfig, event: &Event, previous: Option<Status>) {
    let timeout = config.timeout();
    let mut sends: Vec<Pin<Box<dyn Future<Output = ()> + Send + '_>>> = Vec::new();
    for (i, w) in config.webhooks.iter().enumerate() {
        if !wanted(w.on.unwrap_or(config.on), event, previous) {
            continue;
        }
        sends.push(Box::pin(async move {
            let what = format!("webhook #{} ({:?})", i + 1, w.format).to_lowercase();
            let r = match w.url() {
                Ok(url) => webhook::send(w.format, &url, event, timeout).await,
                Err(e) => Err(e),
            };
            report(&what, &event.instance, r);
        }));
    }
    for (i, e) in config.email.iter().enumerate() {
        if !wanted(e.on.unwrap_or(config.on), event, previous) {
            continue;
        }
        sends.push(Box::pin(async move {
            let what = format!("e-mail #{} ({})", i + 1, e.server);
            report(&what, &event.instance, email::send(e, event, timeout).await);
        }));
    }
    // All at once: one slow target does not hold back the others.
    futures_join_all(sends).await;
}

fn report(what: &str, instance: &str, r: Result<(), String>) {
    match r {
        Ok(()) => tracing::info!("notification for {instance} sent to {what}"),
        Err(e) => tracing::warn!(
            "the notification for {instance} could not be sent to {what}: {e} (the backup's result is unchanged)"
        ),
    }
}

async fn futures_join_all(futs: Vec<Pin<Box<dyn Future<Output = ()> + Send + '_>>>) {
    let mut set = Vec::new();
    for f in futs {
        set.push(f);
    }
    // Polled together on this task: no 'static bound needed, as spawning would require.
    let mut pending: Vec<_> = set.into_iter().map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut all_done = true;
        for slot in pending.iter_mut() {
            if let Some(f) = slot {
                if f.as_mut().poll(cx).is_ready() {
                    *slot = None;
                } else {
                    all_done = false;
                }
            }
        }
        if all_done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}

/// After `octobackup drill`: keeps its result for the next backup's notification and for the
/// metrics (`octobackup_drill_success`), when `[notify]` or `[metrics]` is configured.
pub async fn after_drill(
    config: &crate::config::Config,
    config_path: &std::path::Path,
    instance: &str,
    set_id: &str,
    ok: bool,
) {
    if config.notify.is_none() && config.metrics.is_none() {
        return;
    }
    let state_dir = config.state_dir(config_path);
    let drill = DrillResult {
        ok,
        set_id: set_id.to_string(),
        finished: chrono::Utc::now(),
    };
    if let Err(e) = History::new(&state_dir).record_drill(instance, drill) {
        tracing::warn!(
            "the drill's result could not be kept in {}: {e} (the drill's result is unchanged)",
            state_dir.display()
        );
    }
    if let Some(m) = &config.metrics {
        crate::metrics::publish(m, &state_dir, instance).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(status: Status) -> Event {
        Event {
            event: "backup",
            instance: "OctopusServer".into(),
            status,
            exit_code: if status == Status::Success { 0 } else { 4 },
            recovery: false,
            set_id: Some("20260101T000000Z".into()),
            snapshot_id: None,
            host: "backup01".into(),
            nodes: vec![],
            drained_nodes: vec![],
            started: chrono::Utc::now(),
            finished: chrono::Utc::now(),
            window_seconds: Some(12.5),
            database_bytes: Some(1 << 20),
            folder_bytes: None,
            new_bytes: None,
            steps: vec![],
            drill: None,
            failure: (status != Status::Success).then(|| "SQL Server refused".into()),
            fix: None,
        }
    }

    #[test]
    fn when_rules() {
        let ok = event(Status::Success);
        let bad = event(Status::Failed);
        let stuck = event(Status::MaintenanceStuck);
        assert!(!wanted(When::Failure, &ok, None));
        assert!(wanted(When::Failure, &bad, Some(Status::Success)));
        assert!(wanted(When::Always, &ok, Some(Status::Success)));
        // Recovery: failures, and the first success after one only.
        assert!(wanted(When::Recovery, &bad, None));
        assert!(wanted(When::Recovery, &ok, Some(Status::Failed)));
        assert!(!wanted(When::Recovery, &ok, Some(Status::Success)));
        assert!(!wanted(When::Recovery, &ok, None));
        // Exit 7 goes out whatever the rule.
        for w in [When::Failure, When::Always, When::Recovery] {
            assert!(wanted(w, &stuck, Some(Status::Success)));
        }
    }

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
        c.email[0].to = vec!["not an address".into()];
        assert!(c.validate().unwrap_err().contains("not an e-mail address"));
    }

    #[test]
    fn text_names_failure_and_fix() {
        let mut e = event(Status::Failed);
        e.fix = Some(fix_for(Exit::Sql).into());
        let t = e.text();
        assert!(t.starts_with("octobackup: backup of OctopusServer FAILED (exit 4)"));
        assert!(t.contains("Failure: SQL Server refused"));
        assert!(t.contains("Fix: Check SQL Server"));
    }
}
