//! `octobackup doctor`: a preflight of everything a backup needs, changing nothing that matters:
//! each check passes or fails with the fix. Exit 8 when any check fails. The checks are
//! `run::doctor`'s; this file renders them.

use super::repository;
use crate::backupset::check::Status;
use crate::error::{Exit, Failure};
use crate::run::doctor::{self, Report};
use std::path::Path;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The instance to check (a [instance.NAME] of the config; optional when there is one).
    #[arg(long, short)]
    pub instance: Option<String>,
}

pub async fn run(config_path: &Path, args: Args, json: bool) -> Result<(), Failure> {
    let config = super::context::load_config(config_path)?;
    let (name, configured) = config.instance(config_path, args.instance.as_deref())?;
    let mut report = doctor::checks(&config, config_path, name, configured, async || {
        repository::open(&config).await
    })
    .await;
    doctor::check_copies(&config, &mut report, async |copy| {
        repository::open_copy(&config, copy).await
    })
    .await;
    let failed: Vec<&str> = report
        .checks
        .iter()
        .filter(|k| k.status == Status::Fail)
        .map(|k| k.name.as_str())
        .collect();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("serializable")
        );
    } else {
        print!("{}", human(&report));
    }
    if failed.is_empty() {
        return Ok(());
    }
    let f = Failure::new(
        Exit::CheckFailed,
        format!(
            "{} check(s) failed: {} (each FAIL line above says the fix)",
            failed.len(),
            failed.join(", ")
        ),
    );
    // With --json the report above is the result: main adds no error object after it.
    Err(if json { f.result_printed() } else { f })
}

pub fn human(r: &Report) -> String {
    let mut s = format!("doctor for instance {}\n", r.instance);
    for k in &r.checks {
        s.push_str(&format!(
            "  {:<4} {:<20} {}\n",
            k.status.word(),
            k.name,
            k.detail.as_deref().unwrap_or_default()
        ));
        if let Some(fix) = &k.fix {
            s.push_str(&format!("       {:<20} fix: {fix}\n", ""));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::backupset::check::Check;

    #[test]
    fn human_report_shows_each_fix() {
        let r = Report {
            ok: false,
            instance: "OctopusServer".into(),
            checks: vec![Check::new("staging", Status::Fail, "missing").with_fix("create it")],
        };
        let h = human(&r);
        assert!(
            h.contains("FAIL staging") && h.contains("fix: create it"),
            "{h}"
        );
    }
}
