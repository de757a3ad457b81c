//! Telling people about a backup (`[notify]`): a JSON webhook, Microsoft Teams, Slack and e-mail.
//! A notification that cannot be sent is one warning line: it never changes the backup's outcome
//! or its exit code. Exit 7 (maintenance mode left changed) is sent at once, whatever `on` says.

mod email;
pub mod history;
mod webhook;

use crate::backupset::check::Check;
use crate::error::Exit;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use crate::config::notify::{EmailConfig, Format, NotifyConfig, SmtpTls, WebhookConfig, When};
pub use history::{DrillResult, History, InstanceHistory};

/// Called by the backup the moment maintenance mode could not be put back, with the message.
pub type Alarm = Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The e-mail addresses of `[notify]`, read as the mail crate reads them when it sends: checked
/// when the config is loaded (with `NotifyConfig::validate`), not found wrong the night it is needed.
pub fn addresses(config: &NotifyConfig) -> Result<(), String> {
    for (i, e) in config.email.iter().enumerate() {
        let n = i + 1;
        for a in std::iter::once(&e.from).chain(&e.to) {
            if a.parse::<lettre::message::Mailbox>().is_err() {
                return Err(format!(
                    "notify.email #{n}: '{a}' is not an e-mail address (name@example.com or \"Name <name@example.com>\")"
                ));
            }
        }
    }
    Ok(())
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

/// What a notification says about one backup run: the generic webhook's JSON body as it is, and
/// the source of the Teams, Slack and e-mail texts. It never holds a secret: the failure message
/// is the one printed on stderr, which names sources of secrets, never their values.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// "backup", or "copy" for a `[[copy]]` made after a backup (`copy` names it).
    pub event: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copy: Option<String>,
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
    /// Each step's name, outcome and time (no detail: the failure says what failed).
    pub steps: Vec<Check>,
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
        let what = match &self.copy {
            Some(c) => format!("copy of {} to '{c}'", self.instance),
            None => format!("backup of {}", self.instance),
        };
        let mut t = format!("octobackup: {what} {}", self.status.word());
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
        let mut f = vec![("Instance", self.instance.clone())];
        if let Some(c) = &self.copy {
            f.push(("Copy", c.clone()));
        }
        f.extend([
            ("Status", format!("{:?}", self.status).to_lowercase()),
            ("Exit code", self.exit_code.to_string()),
        ]);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn event(status: Status) -> Event {
        Event {
            event: "backup",
            copy: None,
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
    fn an_address_the_mail_crate_cannot_read_is_a_config_error() {
        let mut c = NotifyConfig::default();
        c.email.push(EmailConfig {
            server: "smtp.example.com".into(),
            from: "Octopus backups <octobackup@example.com>".into(),
            to: vec!["ops@example.com".into()],
            ..Default::default()
        });
        addresses(&c).unwrap();
        c.email[0].to.push("not an address".into());
        let e = addresses(&c).unwrap_err();
        assert!(
            e.contains("notify.email #1: 'not an address' is not an e-mail address"),
            "{e}"
        );
    }

    #[test]
    fn a_copys_title_names_the_copy() {
        let mut e = event(Status::Failed);
        e.event = "copy";
        e.copy = Some("offsite".into());
        e.exit_code = 9;
        assert_eq!(
            e.title(),
            "octobackup: copy of OctopusServer to 'offsite' FAILED (exit 9)"
        );
        assert!(e.facts().contains(&("Copy", "offsite".to_string())));
        let body = serde_json::to_value(&e).unwrap();
        assert_eq!(body["copy"], "offsite");
        // A backup's event has no copy field.
        assert!(
            serde_json::to_value(event(Status::Failed))
                .unwrap()
                .get("copy")
                .is_none()
        );
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
