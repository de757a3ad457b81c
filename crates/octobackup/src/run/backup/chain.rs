//! `sql.chain = "owned"`: a maintenance window that does not grow with the database.
//!
//! Before the window, while users still deploy, octobackup takes (or reuses) a full backup that is
//! NOT COPY_ONLY: it becomes the database's differential base. Inside the window only a
//! differential runs (the extents changed since the base). The set holds both files; the base is
//! the same file night after night until a new one is due, so it deduplicates to nothing.
//!
//! The base .bak stays on the staging share between runs, in a folder of its own
//! (`octobackup-base-<hash>`) with a small state file, so that the next night's set can include
//! it. A new base is taken when there is none, when it is `sql.base_every` old, or when the last
//! differential passed `sql.base_max_share` of it. If anyone else took a full backup meanwhile the
//! base moved and a differential would not restore onto octobackup's base: that night falls back
//! to a copy-only full inside the window and says why; the next run takes a new base.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::BackupJob;
use crate::backupset::manifest::{ChainInfo, DatabaseInfo};
use crate::config::{InstanceConfig, SqlChain};
use crate::error::{Exit, Failure};
use crate::run::connect::sql_side_path;
use crate::run::steps::Steps;
use crate::sqlserver::chain::{self as sql_chain, same_guid};
use crate::sqlserver::{SqlServer, client as sql, tsql};
use octobackup_repo::SourceItem;

/// Where the base lives inside a set.
pub const BASE_DIR: &str = "/database/base";
const STATE_FILE: &str = "octobackup-base.json";

/// What octobackup remembers of its current base (beside the base files on the staging share).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BaseState {
    pub backup_set_guid: String,
    pub taken: DateTime<Utc>,
    /// Size of the base files.
    pub bytes: u64,
    /// File names in the base folder, one per stripe.
    pub files: Vec<String>,
    /// Size of the last differential taken on this base.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_differential_bytes: Option<u64>,
}

/// The base folder's name on the staging share: one per instance.
pub fn base_folder(instance_name: &str) -> String {
    format!(
        "octobackup-base-{}",
        crate::run::names::short_hash(&[instance_name])
    )
}

fn base_dir_local(instance_name: &str, inst: &InstanceConfig) -> PathBuf {
    inst.staging_local().join(base_folder(instance_name))
}

fn load_state(dir: &Path) -> Option<BaseState> {
    let bytes = std::fs::read(dir.join(STATE_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn save_state(dir: &Path, state: &BaseState) -> Result<(), Failure> {
    let text = serde_json::to_vec_pretty(state).expect("the base state serializes");
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, dir.join(STATE_FILE)))
        .map_err(|e| {
            Failure::new(
                Exit::Failed,
                format!(
                    "cannot write {} on the staging share: {e}",
                    dir.join(STATE_FILE).display()
                ),
            )
        })
}

/// Forgets the base: the next run takes a new one.
fn forget_base(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(STATE_FILE));
}

/// Why a new base is due, or None to reuse the current one (the policy).
pub fn new_base_reason(
    state: Option<&BaseState>,
    files_present: bool,
    now: DateTime<Utc>,
    every: Duration,
    max_share: f64,
) -> Option<String> {
    let Some(state) = state else {
        return Some("no base yet".into());
    };
    if !files_present {
        return Some("the base's files are no longer on the staging share".into());
    }
    let age = (now - state.taken).to_std().unwrap_or_default();
    if age >= every {
        return Some(format!(
            "the base is {} old (sql.base_every = {})",
            humantime::format_duration(Duration::from_secs(age.as_secs())),
            humantime::format_duration(every)
        ));
    }
    if let Some(last) = state.last_differential_bytes
        && state.bytes > 0
        && last as f64 > max_share * state.bytes as f64
    {
        return Some(format!(
            "the last differential was {:.0}% of the base (sql.base_max_share = {max_share})",
            last as f64 * 100.0 / state.bytes as f64
        ));
    }
    None
}

/// Before the window: decides this night's chain and records it in the manifest. With `copy_only`
/// it does nothing. With `owned`, takes a new base when one is due, or checks in msdb that the
/// base has not moved; a moved base makes the night a copy-only full (`fallback`).
pub async fn before_window(
    job: &BackupJob,
    sqlserver: &SqlServer,
    set_id: &str,
    stripe_names: &[String],
    m: &mut crate::backupset::Manifest,
    steps: &mut Steps,
) -> Result<(), Failure> {
    if job.instance.sql.chain != SqlChain::Owned {
        return Ok(());
    }
    let database = m.database.name.clone();
    let dir = base_dir_local(&job.instance_name, &job.instance);
    let state = load_state(&dir);
    let present = state
        .as_ref()
        .is_some_and(|s| !s.files.is_empty() && s.files.iter().all(|f| dir.join(f).is_file()));
    let reason = new_base_reason(
        state.as_ref(),
        present,
        Utc::now(),
        job.instance.sql.base_every(),
        job.instance.sql.base_max_share(),
    );
    let state = match (reason, state) {
        (None, Some(state)) => {
            // Reuse, unless someone else's full backup moved the differential base since.
            let mut session = sqlserver.connect().await?;
            match sql_chain::full_backups_of(&mut session, &database).await {
                Ok(fulls) => {
                    if let Some(latest) = fulls.first()
                        && !same_guid(&latest.backup_set_uuid, &state.backup_set_guid)
                    {
                        let why = format!(
                            "someone else took a full backup of [{database}] after octobackup's base ({}), so the differential base moved and a differential would not restore onto the base octobackup holds: tonight's backup is a copy-only full inside the window, and the next run takes a new base. If a DBA backs this database up, use sql.chain = \"copy_only\".",
                            latest.describe()
                        );
                        job.ui.note(&why);
                        forget_base(&dir);
                        m.database.chain = Some(ChainInfo {
                            fallback: Some(why),
                            ..Default::default()
                        });
                        return Ok(());
                    }
                }
                Err(e) => job.ui.note(&format!(
                    "msdb's backup history cannot be read ({e}); the differential's base is checked from its header once it is taken"
                )),
            }
            state
        }
        (reason, _) => {
            let reason = reason.unwrap_or_else(|| "no base yet".into());
            let r = steps.start("database base (before the window)");
            let taken = take_base(job, sqlserver, &database, set_id, stripe_names, &dir).await;
            steps.finish(
                r,
                taken.is_ok(),
                Some(match &taken {
                    Ok(_) => format!("new base: {reason}"),
                    Err(e) => e.message.clone(),
                }),
            );
            let state = taken?;
            job.ui
                .note(&format!("took a new differential base ({reason})"));
            m.database.chain = Some(ChainInfo {
                new_base: true,
                base_reason: Some(reason),
                ..Default::default()
            });
            state
        }
    };
    let info = m.database.chain.get_or_insert_with(ChainInfo::default);
    info.base_files = state
        .files
        .iter()
        .map(|f| format!("{BASE_DIR}/{f}"))
        .collect();
    info.base_bytes = state.bytes;
    info.base_backup_set_guid = Some(state.backup_set_guid);
    info.base_taken = Some(state.taken);
    Ok(())
}

/// BACKUP DATABASE (not COPY_ONLY) into the base folder, RESTORE VERIFYONLY, then the state.
async fn take_base(
    job: &BackupJob,
    sqlserver: &SqlServer,
    database: &str,
    set_id: &str,
    stripe_names: &[String],
    dir: &Path,
) -> Result<BaseState, Failure> {
    forget_base(dir);
    std::fs::create_dir_all(dir).map_err(|e| {
        Failure::new(
            Exit::Failed,
            format!("cannot create {} on the staging share: {e}", dir.display()),
        )
    })?;
    let sql_dir = sql_side_path(
        &job.instance.staging.sql_path,
        &base_folder(&job.instance_name),
    );
    let stripes: Vec<String> = stripe_names
        .iter()
        .map(|n| sql_side_path(&sql_dir, n))
        .collect();
    let mut session = sqlserver.connect_unbounded().await?;
    let spid = session.server_info().await?.spid;
    let statement =
        sql_chain::backup_base(database, &stripes, &sql_chain::base_description(set_id));
    let bar = job.ui.percent_bar("BACKUP DATABASE (base)");
    let first = stripes.first().map(String::as_str);
    let ran = sql::run_with_progress(
        sqlserver,
        &mut session,
        spid,
        "BACKUP DATABASE (base)",
        &statement,
        first,
        &|p| bar.set(p),
    )
    .await;
    bar.finish();
    ran?;
    session
        .execute(
            "RESTORE VERIFYONLY (base)",
            &tsql::restore_verifyonly(&stripes),
            first,
        )
        .await?;
    let header = sql_chain::header(&mut session, &stripes).await?;
    let mut bytes = 0;
    for name in stripe_names {
        bytes += std::fs::metadata(dir.join(name))
            .map_err(|e| {
                Failure::new(
                    Exit::Failed,
                    format!(
                        "SQL Server wrote the base but octobackup cannot see {}: {e}. staging.sql_path and staging.local_path must name the same folder.",
                        dir.join(name).display()
                    ),
                )
            })?
            .len();
    }
    let state = BaseState {
        backup_set_guid: header.backup_set_guid,
        taken: Utc::now(),
        bytes,
        files: stripe_names.to_vec(),
        last_differential_bytes: None,
    };
    save_state(dir, &state)?;
    Ok(state)
}

/// Whether tonight's BACKUP inside the window is a differential.
pub fn differential_tonight(info: &DatabaseInfo) -> bool {
    info.chain.as_ref().is_some_and(ChainInfo::is_differential)
}

/// The base files, stored beside the differential under /database/base.
pub fn base_items(job: &BackupJob, info: &DatabaseInfo) -> Vec<SourceItem> {
    base_items_of(&job.instance_name, &job.instance, info)
}

/// [`base_items`] for an instance by name and config (`doctor` has no job).
pub fn base_items_of(
    instance_name: &str,
    inst: &InstanceConfig,
    info: &DatabaseInfo,
) -> Vec<SourceItem> {
    let Some(chain) = info.chain.as_ref().filter(|c| c.is_differential()) else {
        return Vec::new();
    };
    let dir = base_dir_local(instance_name, inst);
    chain
        .base_files
        .iter()
        .map(|f| SourceItem::Path {
            source: dir.join(f.rsplit('/').next().unwrap_or(f)),
            target: f.clone(),
        })
        .collect()
}

/// After the differential: its header must name the base as its DifferentialBaseGUID, or the set
/// would not restore. Records both GUIDs.
pub async fn confirm(
    job: &BackupJob,
    session: &mut sql::Session,
    bak_sql: &[String],
    info: &mut DatabaseInfo,
) -> Result<(), Failure> {
    let Some(chain) = info.chain.as_mut().filter(|c| c.is_differential()) else {
        return Ok(());
    };
    let header = sql_chain::header(session, bak_sql).await?;
    chain.differential_backup_set_guid = Some(header.backup_set_guid.clone());
    chain.differential_base_guid = header.differential_base_guid.clone();
    let base = chain.base_backup_set_guid.clone().unwrap_or_default();
    let matches = header.backup_type == 5
        && header
            .differential_base_guid
            .as_deref()
            .is_some_and(|g| same_guid(g, &base));
    if !matches {
        forget_base(&base_dir_local(&job.instance_name, &job.instance));
        return Err(Failure::new(
            Exit::Failed,
            format!(
                "the differential's base is {} but the set's base is {base}: someone took a full backup of [{}] during this run, so base + differential would not restore. Nothing was marked complete; the next run takes a new base.",
                header.differential_base_guid.as_deref().unwrap_or("none"),
                info.name
            ),
        ));
    }
    Ok(())
}

/// After a complete set: remember the differential's size for the policy.
pub fn after_set(job: &BackupJob, info: &DatabaseInfo) {
    if !differential_tonight(info) {
        return;
    }
    let dir = base_dir_local(&job.instance_name, &job.instance);
    if let Some(mut state) = load_state(&dir) {
        state.last_differential_bytes = Some(info.bytes);
        let _ = save_state(&dir, &state);
    }
}

/// What `doctor` says of the chain: None with `copy_only`; with `owned`, Ok(detail) when no one
/// else took a full, non-COPY_ONLY backup of the database lately (within twice `sql.base_every`),
/// Err((detail naming them, fix)) when someone did (they own the chain: the differential base
/// would move under octobackup), or when msdb's history cannot be read.
pub async fn doctor(
    session: &mut sql::Session,
    inst: &InstanceConfig,
    database: &str,
) -> Option<Result<String, (String, String)>> {
    if inst.sql.chain != SqlChain::Owned {
        return None;
    }
    let fulls = match sql_chain::full_backups_of(session, database).await {
        Ok(f) => f,
        Err(e) => {
            return Some(Err((
                format!("sql.chain = \"owned\", but msdb's backup history cannot be read ({e}), so whether someone else takes full backups of [{database}] is unknown"),
                "GRANT SELECT ON msdb.dbo.backupset and msdb.dbo.backupmediafamily to the login (USE msdb; CREATE USER ...), or use sql.chain = \"copy_only\"".into(),
            )));
        }
    };
    let since = Utc::now().naive_utc()
        - chrono::Duration::from_std(inst.sql.base_every() * 2).unwrap_or_default();
    let others: Vec<String> = fulls
        .iter()
        .filter(|b| !b.is_octobackups())
        .filter(|b| parse_msdb_date(&b.finished).is_none_or(|d| d >= since))
        .map(|b| b.describe())
        .collect();
    if others.is_empty() {
        return Some(Ok(format!(
            "sql.chain = \"owned\": no one else took a full (not COPY_ONLY) backup of [{database}] lately; octobackup owns its differential base"
        )));
    }
    Some(Err((
        format!(
            "sql.chain = \"owned\", but someone else takes full backups of [{database}] that are not COPY_ONLY, and each moves the differential base: {}",
            others.join("; ")
        ),
        "use sql.chain = \"copy_only\" (the default) while a DBA or a maintenance plan backs this database up, or make those backups COPY_ONLY".into(),
    )))
}

/// msdb's datetime as text ("2026-11-29 21:00:00" with or without fractions).
fn parse_msdb_date(s: &str) -> Option<chrono::NaiveDateTime> {
    let s = s.trim();
    [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S",
    ]
    .iter()
    .find_map(|f| chrono::NaiveDateTime::parse_from_str(s, f).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(bytes: u64, last: Option<u64>) -> BaseState {
        BaseState {
            backup_set_guid: "g".into(),
            taken: "2026-11-20T21:00:00Z".parse().unwrap(),
            bytes,
            files: vec!["Octopus.bak".into()],
            last_differential_bytes: last,
        }
    }

    #[test]
    fn a_new_base_when_none_gone_old_or_outgrown() {
        let week = Duration::from_secs(7 * 24 * 3600);
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let day3 = at("2026-11-23T21:00:00Z");
        assert_eq!(
            new_base_reason(None, false, day3, week, 0.5).as_deref(),
            Some("no base yet")
        );
        let s = state(1000, Some(100));
        assert_eq!(new_base_reason(Some(&s), true, day3, week, 0.5), None);
        assert!(
            new_base_reason(Some(&s), false, day3, week, 0.5)
                .unwrap()
                .contains("no longer on the staging share")
        );
        let old = new_base_reason(Some(&s), true, at("2026-11-27T21:00:00Z"), week, 0.5).unwrap();
        assert!(
            old.contains("7days old") && old.contains("base_every"),
            "{old}"
        );
        let big = state(1000, Some(600));
        let r = new_base_reason(Some(&big), true, day3, week, 0.5).unwrap();
        assert!(r.contains("60% of the base"), "{r}");
        assert_eq!(new_base_reason(Some(&big), true, day3, week, 0.7), None);
    }

    #[test]
    fn msdb_dates_parse() {
        assert!(parse_msdb_date("2026-11-29 21:00:00.123").is_some());
        assert!(parse_msdb_date("2026-11-29 21:00:00").is_some());
        assert!(parse_msdb_date("yesterday").is_none());
    }

    #[test]
    fn the_base_folder_is_per_instance_and_not_a_run_folder() {
        assert_ne!(base_folder("A"), base_folder("B"));
        assert!(base_folder("A").starts_with("octobackup-base-"));
    }
}
