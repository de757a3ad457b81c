//! Prometheus metrics (`[metrics]`): a textfile for node_exporter's textfile collector, written
//! whole or not at all, and a push to a Pushgateway. Both come from the run history in the state
//! folder, so every instance shows, whichever ran last, and a failure keeps the last success's
//! time and sizes. Names follow Prometheus's conventions: an `octobackup_` prefix, base units
//! (`_seconds`, `_bytes`), `_timestamp_seconds` for points in time, `_total` for counters. Ages
//! are left to the query (`time() - octobackup_last_success_timestamp_seconds`): a textfile read
//! an hour later would show a stale age.

pub use crate::config::metrics::MetricsConfig;
use crate::notify::history::{InstanceHistory, write_atomically};
use crate::notify::{History, Status};
use base64::Engine;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// The label that names the Octopus instance. Not `instance`: Prometheus sets that one to the
/// scraped target (node_exporter, the Pushgateway) and would rename ours `exported_instance`.
pub const INSTANCE_LABEL: &str = "octopus_instance";

struct Family<'a> {
    name: &'a str,
    kind: &'a str,
    help: &'a str,
    samples: Vec<(Vec<(&'a str, String)>, f64)>,
}

fn ts(t: chrono::DateTime<chrono::Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// The text exposition format for these instances. With `label_instance` false (a Pushgateway
/// group, whose key carries the instance) the instance label is left out.
pub fn render(histories: &[InstanceHistory], label_instance: bool) -> String {
    let mut fams: Vec<Family> = vec![
        Family {
            name: "octobackup_last_run_timestamp_seconds",
            kind: "gauge",
            help: "When the last backup run ended (Unix time), whatever its result.",
            samples: vec![],
        },
        Family {
            name: "octobackup_last_run_success",
            kind: "gauge",
            help: "1 if the last backup run succeeded, 0 if it failed.",
            samples: vec![],
        },
        Family {
            name: "octobackup_last_run_exit_code",
            kind: "gauge",
            help: "The exit code of the last backup run (0 success, 7 maintenance mode left changed; see the README).",
            samples: vec![],
        },
        Family {
            name: "octobackup_last_success_timestamp_seconds",
            kind: "gauge",
            help: "When the last successful backup ended (Unix time): the newest complete set.",
            samples: vec![],
        },
        Family {
            name: "octobackup_runs_total",
            kind: "counter",
            help: "Backup runs recorded in this state folder, by result.",
            samples: vec![],
        },
        Family {
            name: "octobackup_maintenance_window_seconds",
            kind: "gauge",
            help: "How long maintenance mode was on during the last successful backup.",
            samples: vec![],
        },
        Family {
            name: "octobackup_step_seconds",
            kind: "gauge",
            help: "How long each step of the last successful backup took.",
            samples: vec![],
        },
        Family {
            name: "octobackup_database_bytes",
            kind: "gauge",
            help: "Size of the database backup (.bak) in the last successful backup.",
            samples: vec![],
        },
        Family {
            name: "octobackup_folder_bytes",
            kind: "gauge",
            help: "Size of each server folder in the last successful backup.",
            samples: vec![],
        },
        Family {
            name: "octobackup_new_bytes",
            kind: "gauge",
            help: "Data the last successful backup added to the repository (after deduplication and compression).",
            samples: vec![],
        },
        Family {
            name: "octobackup_repository_bytes",
            kind: "gauge",
            help: "Size of the repository after the last backup (local repositories only).",
            samples: vec![],
        },
        Family {
            name: "octobackup_drill_success",
            kind: "gauge",
            help: "1 if the last restore drill passed, 0 if it failed.",
            samples: vec![],
        },
        Family {
            name: "octobackup_last_drill_timestamp_seconds",
            kind: "gauge",
            help: "When the last restore drill ended (Unix time).",
            samples: vec![],
        },
        Family {
            name: "octobackup_copy_last_run_success",
            kind: "gauge",
            help: "1 if the last copy to this [[copy]] after a backup succeeded, 0 if it failed (the backup's set is complete in the main repository either way).",
            samples: vec![],
        },
        Family {
            name: "octobackup_copy_last_run_timestamp_seconds",
            kind: "gauge",
            help: "When the last copy to this [[copy]] after a backup ended (Unix time), whatever its result.",
            samples: vec![],
        },
        Family {
            name: "octobackup_copy_last_success_timestamp_seconds",
            kind: "gauge",
            help: "When the last successful copy to this [[copy]] ended (Unix time).",
            samples: vec![],
        },
        Family {
            name: "octobackup_copy_runs_total",
            kind: "counter",
            help: "Copies to this [[copy]] after backups recorded in this state folder, by result.",
            samples: vec![],
        },
    ];
    for h in histories {
        let base: Vec<(&str, String)> = if label_instance {
            vec![(INSTANCE_LABEL, h.instance.clone())]
        } else {
            vec![]
        };
        let with = |extra: (&'static str, String)| {
            let mut l = base.clone();
            l.push(extra);
            l
        };
        let mut put = |name: &str, labels: Vec<(&'static str, String)>, v: f64| {
            if let Some(f) = fams.iter_mut().find(|f| f.name == name) {
                f.samples.push((labels, v));
            }
        };
        if let Some(r) = &h.last_run {
            put(
                "octobackup_last_run_timestamp_seconds",
                base.clone(),
                ts(r.finished),
            );
            put(
                "octobackup_last_run_success",
                base.clone(),
                f64::from(u8::from(r.status == Status::Success)),
            );
            put(
                "octobackup_last_run_exit_code",
                base.clone(),
                f64::from(r.exit_code),
            );
        }
        put(
            "octobackup_runs_total",
            with(("result", "success".into())),
            h.runs_succeeded as f64,
        );
        put(
            "octobackup_runs_total",
            with(("result", "failure".into())),
            h.runs_failed as f64,
        );
        if let Some(s) = &h.last_success {
            put(
                "octobackup_last_success_timestamp_seconds",
                base.clone(),
                ts(s.finished),
            );
            if let Some(w) = s.window_seconds {
                put("octobackup_maintenance_window_seconds", base.clone(), w);
            }
            for step in &s.steps {
                put(
                    "octobackup_step_seconds",
                    with(("step", step.name.clone())),
                    step.seconds.unwrap_or_default(),
                );
            }
            if let Some(b) = s.database_bytes {
                put("octobackup_database_bytes", base.clone(), b as f64);
            }
            for (folder, b) in &s.folders {
                put(
                    "octobackup_folder_bytes",
                    with(("folder", folder.clone())),
                    *b as f64,
                );
            }
            if let Some(b) = s.new_bytes {
                put("octobackup_new_bytes", base.clone(), b as f64);
            }
        }
        if let Some(b) = h.repository_bytes {
            put("octobackup_repository_bytes", base.clone(), b as f64);
        }
        if let Some(d) = &h.last_drill {
            put(
                "octobackup_drill_success",
                base.clone(),
                f64::from(u8::from(d.ok)),
            );
            put(
                "octobackup_last_drill_timestamp_seconds",
                base.clone(),
                ts(d.finished),
            );
        }
        for (copy, c) in &h.copies {
            let named = with(("copy", copy.clone()));
            if let Some(r) = &c.last_run {
                put(
                    "octobackup_copy_last_run_success",
                    named.clone(),
                    f64::from(u8::from(r.status == Status::Success)),
                );
                put(
                    "octobackup_copy_last_run_timestamp_seconds",
                    named.clone(),
                    ts(r.finished),
                );
            }
            if let Some(t) = c.last_success {
                put(
                    "octobackup_copy_last_success_timestamp_seconds",
                    named.clone(),
                    ts(t),
                );
            }
            for (result, n) in [("success", c.runs_succeeded), ("failure", c.runs_failed)] {
                let mut l = named.clone();
                l.push(("result", result.into()));
                put("octobackup_copy_runs_total", l, n as f64);
            }
        }
    }
    let mut out = String::new();
    for f in fams.iter().filter(|f| !f.samples.is_empty()) {
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
        for (labels, v) in &f.samples {
            let labels = if labels.is_empty() {
                String::new()
            } else {
                let inner: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                    .collect();
                format!("{{{}}}", inner.join(","))
            };
            let _ = writeln!(out, "{}{labels} {}", f.name, number(*v));
        }
    }
    out
}

/// Writes the textfile (every instance of the history) and pushes `instance`'s group. Each
/// failure is one warning line: metrics never change a backup's outcome.
pub async fn publish(config: &MetricsConfig, state_dir: &Path, instance: &str) {
    let history = History::new(state_dir);
    if let Some(path) = &config.textfile {
        let text = render(&history.all(), true);
        match write_atomically(path, text.as_bytes()) {
            Ok(()) => tracing::info!("metrics written to {}", path.display()),
            Err(e) => tracing::warn!(
                "the metrics file {} could not be written: {e} (the backup's result is unchanged)",
                path.display()
            ),
        }
    }
    if let Some(url) = &config.pushgateway {
        let text = render(&[history.load(instance)], false);
        let job = config.job.as_deref().unwrap_or("octobackup");
        if let Err(e) = push(url, job, instance, text).await {
            tracing::warn!(
                "the metrics could not be pushed to the Pushgateway: {e} (the backup's result is unchanged)"
            );
        }
    }
}

/// A path segment of the Pushgateway's grouping key: as it is when plain, else in the base64 form
/// the Pushgateway's README gives for values with `/` or other characters (`LABEL@base64/VALUE`).
fn key_segment(label: &str, value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if plain {
        format!("{label}/{value}")
    } else {
        let b = base64::engine::general_purpose::URL_SAFE.encode(value);
        format!("{label}@base64/{b}")
    }
}

/// PUT replaces the whole group (job + instance): a metric the run no longer has goes away.
pub fn push_url(base: &str, job: &str, instance: &str) -> String {
    format!(
        "{}/metrics/{}/{}",
        base.trim_end_matches('/'),
        key_segment("job", job),
        key_segment(INSTANCE_LABEL, instance)
    )
}

async fn push(base: &str, job: &str, instance: &str, text: String) -> Result<(), String> {
    let url = push_url(base, job, instance);
    // A Pushgateway behind basic auth is written http://user:password@host: say the host only.
    let base = shown(base);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .map_err(|e| e.to_string())?;
    let resp = client
        .put(&url)
        .header("Content-Type", "text/plain; version=0.0.4")
        .body(text)
        .send()
        .await
        .map_err(|e| format!("{base}: {}", crate::error::innermost(&e.without_url())))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        Err(format!(
            "{base} answered HTTP {status}: {}",
            body.trim().chars().take(300).collect::<String>()
        ))
    }
}

/// A Pushgateway URL as it may be printed: its password (`http://user:password@host`) as `***`.
fn shown(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(_) => url.to_string(),
        // Not a URL: printed only up to an `@`, which may follow a password.
        Err(_) => url
            .rsplit_once('@')
            .map_or(url, |(_, host)| host)
            .to_string(),
    }
}

/// The size of a local repository: the files under its folder. Other storage is not measured
/// (listing a bucket each night costs requests; the metric is left out).
pub fn local_repository_bytes(folder: &Path) -> Option<u64> {
    fn walk(p: &Path) -> std::io::Result<u64> {
        let mut total = 0;
        for e in std::fs::read_dir(p)? {
            let e = e?;
            let t = e.file_type()?;
            if t.is_dir() {
                total += walk(&e.path())?;
            } else if t.is_file() {
                total += e.metadata()?.len();
            }
        }
        Ok(total)
    }
    walk(folder).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backupset::check::{self, Check};
    use crate::notify::history::{DrillResult, RunRecord};

    #[test]
    fn a_pushgateway_password_is_never_printed() {
        assert_eq!(
            shown("http://ops:S3cret@pg:9091/"),
            "http://ops:***@pg:9091/"
        );
        assert_eq!(shown("http://pg:9091"), "http://pg:9091");
        assert!(!shown("ftp//ops:S3cret@pg").contains("S3cret"));
        let bad = MetricsConfig {
            pushgateway: Some("pg://ops:S3cret@pg:9091".into()),
            ..Default::default()
        };
        assert!(!bad.validate().unwrap_err().contains("S3cret"));
    }

    fn history() -> InstanceHistory {
        let t = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05.5Z")
            .unwrap()
            .to_utc();
        let ok = RunRecord {
            finished: t,
            status: Status::Success,
            exit_code: 0,
            set_id: Some("S".into()),
            window_seconds: Some(4.25),
            database_bytes: Some(1000),
            folders: vec![("Packages".into(), 20), ("Task \"Logs\"".into(), 30)],
            new_bytes: Some(7),
            steps: vec![Check::new("database backup", check::Status::Pass, "").timed(1.5)],
        };
        InstanceHistory {
            instance: "OctopusServer".into(),
            last_run: Some(RunRecord {
                status: Status::Failed,
                exit_code: 4,
                ..ok.clone()
            }),
            last_success: Some(ok.clone()),
            runs_succeeded: 3,
            runs_failed: 1,
            last_drill: Some(DrillResult {
                ok: true,
                set_id: "S".into(),
                finished: t,
            }),
            repository_bytes: Some(123456),
            copies: [(
                "offsite".to_string(),
                crate::notify::history::CopyRecord {
                    last_run: Some(RunRecord {
                        status: Status::Failed,
                        exit_code: 9,
                        ..ok.clone()
                    }),
                    last_success: Some(t),
                    runs_succeeded: 2,
                    runs_failed: 1,
                },
            )]
            .into(),
        }
    }

    #[test]
    fn renders_the_text_format() {
        let text = render(&[history()], true);
        assert!(text.contains("# TYPE octobackup_runs_total counter\n"));
        assert!(text.contains(
            "octobackup_runs_total{octopus_instance=\"OctopusServer\",result=\"failure\"} 1\n"
        ));
        assert!(
            text.contains("octobackup_last_run_success{octopus_instance=\"OctopusServer\"} 0\n")
        );
        assert!(
            text.contains("octobackup_last_run_exit_code{octopus_instance=\"OctopusServer\"} 4\n")
        );
        assert!(text.contains("octobackup_last_success_timestamp_seconds{octopus_instance=\"OctopusServer\"} 1767323045.5\n"));
        assert!(text.contains("folder=\"Task \\\"Logs\\\"\""), "{text}");
        assert!(text.contains("octobackup_step_seconds{octopus_instance=\"OctopusServer\",step=\"database backup\"} 1.5\n"));
        // A copy's result beside the backup's, by copy name.
        assert!(text.contains(
            "octobackup_copy_last_run_success{octopus_instance=\"OctopusServer\",copy=\"offsite\"} 0\n"
        ));
        assert!(text.contains("octobackup_copy_runs_total{octopus_instance=\"OctopusServer\",copy=\"offsite\",result=\"success\"} 2\n"));
        assert!(text.contains("octobackup_copy_last_success_timestamp_seconds{octopus_instance=\"OctopusServer\",copy=\"offsite\"} 1767323045.5\n"));
        // Each family's HELP and TYPE once.
        assert_eq!(text.matches("# TYPE octobackup_step_seconds ").count(), 1);
        let pushed = render(&[history()], false);
        assert!(pushed.contains("octobackup_database_bytes 1000\n"));
        assert!(!pushed.contains("octopus_instance"));
    }

    #[test]
    fn grouping_key_encodes_odd_names() {
        assert_eq!(
            push_url("http://pg:9091/", "octobackup", "OctopusServer"),
            "http://pg:9091/metrics/job/octobackup/octopus_instance/OctopusServer"
        );
        assert!(
            push_url("http://pg:9091", "octobackup", "a/b")
                .ends_with("octopus_instance@base64/YS9i")
        );
    }

    #[test]
    fn config_checks() {
        let c = MetricsConfig {
            textfile: Some("/x/octobackup.txt".into()),
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().contains(".prom"));
        let c = MetricsConfig {
            pushgateway: Some("pg:9091".into()),
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().contains("http://"));
    }
}
