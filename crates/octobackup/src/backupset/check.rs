//! One record for every check and step octobackup reports: a backup's steps (in the set's
//! manifest, the notifications and their history), a drill's checks (in its record beside the
//! set, and `drill --json`) and doctor's checks (`doctor --json`). One type, one serialisation:
//!
//! `{"name", "status": "pass"|"fail"|"warn"|"skipped", "ok", "started"?, "seconds"?, "detail"?, "fix"?}`
//!
//! `ok` is written beside `status` because manifests have always carried it, and an older
//! octobackup reading a newer set needs it. Reading takes what earlier versions wrote: a step
//! with `ok` and no `status` (manifests), a check with `status` and no `ok` (drill records and
//! doctor), and `skip` (doctor's word) for `skipped`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    /// Works, with less: not a failure.
    Warn,
    /// Not run: what it depends on failed or is missing (the detail says which).
    #[serde(rename = "skipped", alias = "skip")]
    Skip,
}

impl Status {
    /// The word a human report shows.
    pub fn word(self) -> &'static str {
        match self {
            Status::Pass => "ok",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
            Status::Warn => "warn",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Wire", into = "Wire")]
pub struct Check {
    pub name: String,
    pub status: Status,
    /// When it started (a backup's steps).
    pub started: Option<DateTime<Utc>>,
    /// How long it took; `None` for checks that are not timed (doctor's).
    pub seconds: Option<f64>,
    pub detail: Option<String>,
    /// What to do about a failure or a warning.
    pub fix: Option<String>,
}

impl Check {
    pub fn new(name: impl Into<String>, status: Status, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status,
            started: None,
            seconds: None,
            detail: Some(detail.into()),
            fix: None,
        }
    }

    /// With the fix a failure or warning names.
    pub fn with_fix(mut self, fix: impl Into<String>) -> Check {
        self.fix = Some(fix.into());
        self
    }

    /// With the time it took.
    pub fn timed(mut self, seconds: f64) -> Check {
        self.seconds = Some(seconds);
        self
    }

    /// Passed, or only warned.
    pub fn ok(&self) -> bool {
        matches!(self.status, Status::Pass | Status::Warn)
    }
}

/// The serialised form.
#[derive(Serialize, Deserialize)]
struct Wire {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ok: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    started: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

impl From<Check> for Wire {
    fn from(c: Check) -> Wire {
        Wire {
            ok: Some(c.ok()),
            status: Some(c.status),
            name: c.name,
            started: c.started,
            seconds: c.seconds,
            detail: c.detail,
            fix: c.fix,
        }
    }
}

impl TryFrom<Wire> for Check {
    type Error = String;

    fn try_from(w: Wire) -> Result<Check, String> {
        let status = match (w.status, w.ok) {
            (Some(s), _) => s,
            (None, Some(true)) => Status::Pass,
            (None, Some(false)) => Status::Fail,
            (None, None) => {
                return Err(format!("the check {:?} has neither status nor ok", w.name));
            }
        };
        Ok(Check {
            name: w.name,
            status,
            started: w.started,
            seconds: w.seconds,
            detail: w.detail,
            fix: w.fix,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_step_as_earlier_versions_wrote_it_reads() {
        let step: Check = serde_json::from_str(
            r#"{"name":"database backup","started":"2026-01-01T02:00:00Z","seconds":12.5,"ok":true}"#,
        )
        .unwrap();
        assert_eq!(step.status, Status::Pass);
        assert_eq!(step.seconds, Some(12.5));
        assert!(step.started.is_some() && step.detail.is_none());
        let failed: Check = serde_json::from_str(
            r#"{"name":"preflight","started":null,"seconds":0.1,"ok":false,"detail":"no database"}"#,
        )
        .unwrap();
        assert_eq!(failed.status, Status::Fail);
        assert_eq!(failed.detail.as_deref(), Some("no database"));
        // The notification history's steps (and the webhook's) had name, seconds and ok only.
        let history: Check =
            serde_json::from_str(r#"{"name":"database backup","seconds":1.5,"ok":true}"#).unwrap();
        assert_eq!((history.status, history.seconds), (Status::Pass, Some(1.5)));
    }

    #[test]
    fn a_drill_record_as_earlier_versions_stored_it_reads() {
        // The checks of `/octobackup-drill/drill.json` before the one record type.
        let checks: Vec<Check> = serde_json::from_str(
            r#"[
              {"name":"RESTORE VERIFYONLY","status":"fail","seconds":1.25,"detail":"Msg 3241"},
              {"name":"DBCC CHECKDB","status":"skipped","seconds":0.0,"detail":"the restore failed"},
              {"name":"folder files match the set","status":"pass","seconds":0.5}
            ]"#,
        )
        .unwrap();
        let got: Vec<(&str, Status, Option<f64>)> = checks
            .iter()
            .map(|c| (c.name.as_str(), c.status, c.seconds))
            .collect();
        assert_eq!(
            got,
            vec![
                ("RESTORE VERIFYONLY", Status::Fail, Some(1.25)),
                ("DBCC CHECKDB", Status::Skip, Some(0.0)),
                ("folder files match the set", Status::Pass, Some(0.5)),
            ]
        );
        assert!(!checks[0].ok() && checks[2].ok());
    }

    #[test]
    fn doctors_words_read_and_every_record_writes_status_and_ok() {
        let c: Check =
            serde_json::from_str(r#"{"name":"sql","status":"skip","detail":"no SQL connection"}"#)
                .unwrap();
        assert_eq!(c.status, Status::Skip);
        let v =
            serde_json::to_value(Check::new("staging", Status::Warn, "slow").with_fix("move it"))
                .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"name":"staging","status":"warn","ok":true,"detail":"slow","fix":"move it"})
        );
        let back: Check = serde_json::from_value(v).unwrap();
        assert_eq!(back.status, Status::Warn);
        let skipped =
            serde_json::to_value(Check::new("DBCC CHECKDB", Status::Skip, "x").timed(0.0)).unwrap();
        assert_eq!(skipped["status"], "skipped");
        assert_eq!(skipped["seconds"], 0.0);
        assert!(serde_json::from_str::<Check>(r#"{"name":"x"}"#).is_err());
    }
}
