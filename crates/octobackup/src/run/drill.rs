//! `octobackup drill`: a restore test nobody has to remember, for nightly use after `backup`.
//!
//! The set is restored to a scratch database (`<db>_octobackup_drill_<short>`) and a scratch
//! folder, then checked the way dbatools' Test-DbaLastBackup checks a backup: RESTORE VERIFYONLY
//! on the staged .bak, DBCC CHECKDB on the restored copy; every folder file the set lists is
//! restored with its size (the restore itself checks content hashes) and the set agrees with its
//! manifest; the set's master key opens the restored database (most of its encrypted values and
//! the server certificate). The
//! scratch database and folders are removed whatever happens.

use super::connect::sql_server;
use super::journal::StateDir;
use super::names::{marked_name, short_hash};
use super::restore::database::{checkdb, restore_planned};
use super::restore::plan::file_list;
use super::restore::secrets::read_secrets;
use super::restore::set::{ChosenSet, choose_set};
use super::restore::staging::{Staged, copies_ended, stage_database};
use super::stop::{Stop, lab_point};
use crate::backupset::check::{Check, Status};
use crate::backupset::{self, manifest::FolderInfo};
use crate::config::InstanceConfig;
use crate::error::{Exit, Failure};
use crate::octopus::sensitive::{self, Opened};
use crate::run::progress::Ui;
use crate::sqlserver::SqlServer;
use crate::sqlserver::admin::{databases, drop_quietly};
use crate::sqlserver::client::Session;
use crate::sqlserver::tsql;
use base64::Engine;
use octobackup_repo::{EntryKind, FileEntry, Repo};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

pub struct DrillJob {
    pub instance_name: String,
    pub instance: InstanceConfig,
    pub repo: Arc<Repo>,
    pub set: Option<String>,
    /// Where the scratch folders go (a folder of their own inside). Default: the staging share.
    pub scratch: Option<PathBuf>,
    /// Folder for the scratch database's files, as SQL Server sees it. Default: beside the
    /// original files.
    pub data_dir: Option<String>,
    /// Where the drill's lock lives (one drill per instance at a time).
    pub state: StateDir,
    pub ui: Ui,
    /// Ctrl-C and SIGTERM, heard from the job's creation to the end of the run.
    pub stop: Stop,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct DrillReport {
    pub ok: bool,
    pub set_id: String,
    pub snapshot_id: String,
    pub instance: String,
    pub scratch_database: String,
    pub scratch_folder: String,
    pub checks: Vec<Check>,
    /// The failed checks with their reasons, when not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Default)]
struct Checks(Vec<Check>);

impl Checks {
    /// Runs a check; its Ok text is the detail shown.
    async fn run<F: std::future::Future<Output = Result<String, String>>>(
        &mut self,
        name: &str,
        ui: &Ui,
        f: F,
    ) -> bool {
        ui.status(&format!("drill: {name}"));
        let t0 = Instant::now();
        let r = f.await;
        let seconds = t0.elapsed().as_secs_f64();
        let ok = r.is_ok();
        let status = if ok { Status::Pass } else { Status::Fail };
        let detail = match r {
            Ok(d) | Err(d) => d,
        };
        self.0.push(Check {
            detail: Some(detail).filter(|d| !d.is_empty()),
            ..Check::new(name, status, "").timed(seconds)
        });
        ok
    }

    fn skip(&mut self, name: &str, why: &str) {
        self.0.push(Check::new(name, Status::Skip, why).timed(0.0));
    }
}

/// The scratch database's name for a set: the same for every drill of the set, so a drill that
/// was killed leaves a name the next one recognises and drops.
pub fn scratch_database(database: &str, set_id: &str) -> String {
    marked_name(
        database,
        &format!("_octobackup_drill_{}", &short_hash(&[set_id])[..6]),
    )
}

pub async fn run(job: DrillJob) -> Result<DrillReport, Failure> {
    let stop = job.stop.clone();
    let before = |sig: &str| {
        Failure::new(
            Exit::Interrupted,
            format!("the drill was interrupted by {sig} before it began; nothing was created"),
        )
    };
    let set = tokio::select! {
        s = choose_set(&job.repo, &job.instance_name, job.set.as_deref()) => s?,
        sig = stop.wait() => return Err(before(sig)),
    };
    let short = &short_hash(&[&set.set_id])[..6];
    let scratch_db = scratch_database(&set.manifest.database.name, &set.set_id);
    let scratch_root = job
        .scratch
        .clone()
        .unwrap_or_else(|| job.instance.staging_local())
        .join(format!("octobackup-drill-{short}"));
    let server = sql_server(&job.instance)?;
    // One drill of an instance at a time; it then owns every scratch copy a killed drill left.
    let _lock = job.state.lock(&format!("{} drill", job.instance_name))?;
    // VERIFYONLY, RESTORE and CHECKDB can be silent for minutes: no client timeout.
    let mut session = server.connect_unbounded().await?;
    let prefix = format!("{}_octobackup_drill_", set.manifest.database.name);
    for (name, _) in databases(&mut session).await? {
        if name.starts_with(&prefix) {
            drop_quietly(&mut session, &name).await?;
        }
    }
    let staged_folder = format!("octobackup-drill-{short}-database");
    for dir in [
        job.scratch
            .clone()
            .unwrap_or_else(|| job.instance.staging_local()),
        job.instance.staging_local(),
    ] {
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                if e.file_name()
                    .to_string_lossy()
                    .starts_with("octobackup-drill-")
                {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }

    // What killed restores left (copies of the database), when no restore or backup is running.
    if let Ok(_instance_lock) = server.lock_instance(&job.instance_name).await {
        let allowed = super::leftovers::Allowed {
            restore: true,
            drill: false,
            except: None,
        };
        let staging = job.instance.staging_local();
        for note in super::leftovers::remove(&job.instance_name, &staging, &server, allowed).await {
            job.ui.note(&note);
        }
    }

    if let Some(sig) = stop.requested() {
        return Err(before(sig));
    }
    let body = checks(
        &job,
        &set,
        &server,
        &mut session,
        &scratch_db,
        &scratch_root,
        &staged_folder,
    );
    let sig = tokio::select! {
        report = body => {
            // A copy from the repository that was stopped ends the checks with its own error; they
            // then cleaned up as always.
            if let Some(sig) = stop.requested()
                && !report.ok
            {
                let cleanup = report
                    .checks
                    .iter()
                    .find(|c| c.name == "remove the scratch database and folders");
                return Err(Failure::new(
                    Exit::Interrupted,
                    match cleanup {
                        Some(c) if c.status == Status::Fail => format!(
                            "the drill was interrupted by {sig}; removing its scratch copies failed ({}): `octobackup recover` or the next drill removes them",
                            c.detail.clone().unwrap_or_default()
                        ),
                        _ => format!("the drill was interrupted by {sig}; its scratch copies were removed"),
                    },
                ));
            }
            // Finished before the stop took effect: the report is true as it is.
            if let Some(sig) = stop.requested() {
                job.ui.note(&format!(
                    "{sig} was heard as the drill ended; it had finished and cleaned up"
                ));
            }
            return Ok(report);
        }
        sig = stop.wait() => sig,
    };
    // The RESTORE or CHECKDB the drill was in goes on on the server unless stopped: ATTENTION
    // on its connection, then the clean-up on a fresh one. The message says only what was done.
    use super::restore::{STATEMENT_STOP_WAIT, STATEMENTS};
    let stopped = session
        .stop(STATEMENT_STOP_WAIT)
        .await
        .unless_acknowledged(STATEMENTS, STATEMENT_STOP_WAIT);
    // A copy from the repository ends at its next write: then its file can go.
    copies_ended().await;
    let _ = std::fs::remove_dir_all(&scratch_root);
    let _ = std::fs::remove_dir_all(job.instance.staging_local().join(&staged_folder));
    // The server may still be ending the RESTORE of the cancelled request: retry a little.
    let mut dropped = Err(String::from("SQL Server did not answer"));
    for attempt in 0..10 {
        if attempt > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        dropped = match server.connect().await {
            Ok(mut s) => drop_quietly(&mut s, &scratch_db)
                .await
                .map_err(|e| e.message),
            Err(e) => Err(e.to_string()),
        };
        if dropped.is_ok() {
            break;
        }
    }
    Err(Failure::new(
        Exit::Interrupted,
        match dropped {
            Ok(()) => format!(
                "the drill was interrupted by {sig}; its scratch copies were removed{stopped}"
            ),
            Err(e) => format!(
                "the drill was interrupted by {sig}; its scratch folders were removed, but the scratch database [{scratch_db}] could not be dropped ({e}): `octobackup recover` or the next drill drops it{stopped}"
            ),
        },
    ))
}

#[allow(clippy::too_many_arguments)]
async fn checks(
    job: &DrillJob,
    set: &ChosenSet,
    server: &SqlServer,
    session: &mut Session,
    scratch_db: &str,
    scratch_root: &Path,
    staged_folder: &str,
) -> DrillReport {
    let mut checks = Checks::default();
    let mut staged: Option<Staged> = None;
    let mut restored_db = false;

    // The database: staged, verified, restored, checked, opened with the master key.
    let stage_ok = checks
        .run("stage the database backup", &job.ui, async {
            // The marker first: a killed drill's copy and scratch database are then found by `recover`.
            let marker = super::leftovers::Marker {
                instance: job.instance_name.clone(),
                kind: super::leftovers::Kind::Drill,
                database: scratch_db.to_string(),
                replaces: None,
                scratch_folder: Some(scratch_root.to_path_buf()),
            };
            super::leftovers::write(&job.instance.staging_local().join(staged_folder), &marker)
                .map_err(|e| format!("cannot write the marker on the staging share: {e}"))?;
            let s = stage_database(
                &job.repo,
                set,
                &job.instance,
                staged_folder,
                &job.ui,
                &job.stop,
            )
            .await
            .map_err(|e| e.message)?;
            let n = s.sql_paths.len() + s.base_sql_paths.len();
            staged = Some(s);
            Ok(format!("{n} file(s) from the repository"))
        })
        .await;
    lab_point("drill: staged").await;
    let names = [
        "RESTORE VERIFYONLY",
        "RESTORE DATABASE (scratch)",
        "DBCC CHECKDB",
        "master key opens the database",
    ];
    if let (true, Some(s)) = (stage_ok, staged.as_ref()) {
        let verify_ok = checks
            .run(names[0], &job.ui, async {
                // An owned chain's set: the base too.
                if !s.base_sql_paths.is_empty() {
                    session
                        .execute(
                            "RESTORE VERIFYONLY (base)",
                            &tsql::restore_verifyonly(&s.base_sql_paths),
                            None,
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                }
                session
                    .execute(
                        "RESTORE VERIFYONLY",
                        &tsql::restore_verifyonly(&s.sql_paths),
                        None,
                    )
                    .await
                    .map(|_| "the backup set is complete and its checksums match".to_string())
                    .map_err(|e| e.to_string())
            })
            .await;
        lab_point("drill: verified").await;
        let restore_ok = verify_ok
            && checks
                .run(names[1], &job.ui, async {
                    let files = file_list(session, &s.sql_paths)
                        .await
                        .map_err(|e| e.message)?;
                    restored_db = true;
                    restore_planned(
                        server,
                        session,
                        scratch_db,
                        s,
                        &files,
                        Some(scratch_db),
                        job.data_dir.as_deref(),
                        &job.ui,
                    )
                    .await
                    .map(|moves| {
                        let files: Vec<&str> = moves.iter().map(|(_, p)| p.as_str()).collect();
                        let how = if s.base_sql_paths.is_empty() {
                            ""
                        } else {
                            "base WITH NORECOVERY, then the differential, "
                        };
                        format!("{how}as [{scratch_db}] ({})", files.join(", "))
                    })
                    .map_err(|e| e.message)
                })
                .await;
        if !verify_ok {
            checks.skip(names[1], "the backup did not verify");
        }
        if restore_ok {
            lab_point("drill: restored").await;
            checks
                .run(names[2], &job.ui, async {
                    checkdb(server, session, scratch_db, &job.ui)
                        .await
                        .map(|_| "no allocation or consistency errors".to_string())
                        .map_err(|e| e.message)
                })
                .await;
            checks
                .run(
                    names[3],
                    &job.ui,
                    key_opens(&job.repo, set, session, scratch_db),
                )
                .await;
        } else {
            checks.skip(names[2], "no restored database");
            checks.skip(names[3], "no restored database");
        }
        // The .bak copy goes; the marker stays until the scratch copies are gone.
        super::leftovers::remove_copies(&s.local_dir);
    } else {
        for n in names {
            checks.skip(n, "the backup could not be staged");
        }
    }

    // The folders: restored to scratch and compared with the set's listing and manifest.
    let mut restored_folders = false;
    let folders_ok = checks
        .run("restore the folders (scratch)", &job.ui, async {
            restored_folders = true;
            restore_folders(job, set, scratch_root).await
        })
        .await;
    if folders_ok {
        lab_point("drill: folders").await;
        checks
            .run(
                "folder files match the set",
                &job.ui,
                compare_folders(&job.repo, set, scratch_root),
            )
            .await;
    } else {
        checks.skip(
            "folder files match the set",
            "the folders were not restored",
        );
    }

    // Clean up, whatever happened.
    lab_point("drill: cleanup").await;
    checks
        .run("remove the scratch database and folders", &job.ui, async {
            let mut problems = Vec::new();
            if restored_db && let Err(e) = drop_quietly(session, scratch_db).await {
                problems.push(e.message);
            }
            if restored_folders
                && scratch_root.exists()
                && let Err(e) = std::fs::remove_dir_all(scratch_root)
            {
                problems.push(format!("cannot remove {}: {e}", scratch_root.display()));
            }
            // The marker last, and only once nothing is left: it names the scratch copies.
            if let Some(s) = &staged {
                if problems.is_empty() {
                    s.remove();
                } else {
                    super::leftovers::remove_copies(&s.local_dir);
                }
            }
            if problems.is_empty() {
                Ok(String::new())
            } else {
                Err(problems.join("; "))
            }
        })
        .await;
    job.ui.clear_status();

    let failed: Vec<String> = checks
        .0
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| format!("{}: {}", c.name, c.detail.clone().unwrap_or_default()))
        .collect();
    DrillReport {
        ok: failed.is_empty(),
        set_id: set.set_id.clone(),
        snapshot_id: set.snapshot_id.clone(),
        instance: job.instance_name.clone(),
        scratch_database: scratch_db.to_string(),
        scratch_folder: scratch_root.display().to_string(),
        checks: checks.0,
        error: (!failed.is_empty()).then(|| failed.join("; ")),
    }
}

/// Rows read per query: a large `dbo.VariableSet` (a snapshot per release) is paged through,
/// never loaded whole.
const ROWS_PER_BATCH: u32 = 200;
/// Values enough to judge a key; reading stops there on very large databases.
const MAX_VALUES: u64 = 5000;
/// Where the lab keeps the server certificate. UNCONFIRMED against a real Octopus schema: the row
/// id (and that the certificate lives in `dbo.Configuration` at all) could not be confirmed from a
/// public source; when no such row exists the proof rests on the other values.
const SERVER_CERTIFICATE_ROW: &str = "servercertificate";

/// `SELECT TOP (n) [Id], [JSON] ... WHERE [Id] > N'after' ORDER BY [Id]`: one page, by key.
fn select_json_batch(database: &str, table: &str, after: Option<&str>) -> String {
    let mut s = format!(
        "SELECT TOP ({ROWS_PER_BATCH}) [Id], [JSON] FROM {}.[dbo].{}",
        tsql::quote_ident(database),
        tsql::quote_ident(table)
    );
    if let Some(after) = after {
        s.push_str(&format!(" WHERE [Id] > {}", tsql::quote_str(after)));
    }
    s.push_str(" ORDER BY [Id]");
    s
}

/// The set's master key must open the restored database: a clear majority of its encrypted values
/// (padding and UTF-8, see [`sensitive::Tally`]) and, when the database has one where the lab
/// keeps it, the server certificate (padding and DER).
async fn key_opens(
    repo: &Arc<Repo>,
    set: &ChosenSet,
    session: &mut Session,
    database: &str,
) -> Result<String, String> {
    let (key, _) = read_secrets(repo, set).await.map_err(|e| e.message)?;
    let key = key.ok_or("the set holds no master key")?;
    let raw = zeroize::Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(key.expose().trim())
            .map_err(|_| "the set's master key is not base64".to_string())?,
    );
    let mut tally = sensitive::Tally::default();
    let mut certificate: Option<Opened> = None;
    let mut rows = 0u64;
    'tables: for table in ["Configuration", "VariableSet"] {
        let mut after: Option<String> = None;
        loop {
            let batch = session
                .query_text(
                    &format!("read dbo.{table}"),
                    &select_json_batch(database, table, after.as_deref()),
                )
                .await
                .map_err(|e| e.to_string())?;
            let n = batch.len();
            let before = after.clone();
            for r in batch {
                rows += 1;
                let id = r.get("Id").cloned().flatten().unwrap_or_default();
                let Some(json) = r.get("JSON").cloned().flatten() else {
                    after = Some(id);
                    continue;
                };
                for v in sensitive::find_encrypted_values(&json) {
                    if table == "Configuration" && id.eq_ignore_ascii_case(SERVER_CERTIFICATE_ROW) {
                        certificate = Some(sensitive::open_certificate(&raw, &v));
                    } else {
                        tally.add(&format!("{table} {id}"), sensitive::open(&raw, &v));
                    }
                }
                after = Some(id);
            }
            if tally.tried >= MAX_VALUES {
                break 'tables;
            }
            // A short page is the last; a page that did not move the key on would repeat forever.
            if n < ROWS_PER_BATCH as usize || after == before {
                break;
            }
        }
    }
    let lost = "the key in the set does not belong to this database, and a restore from this set would lose every sensitive value";
    if let Some(Opened::No(why)) = &certificate {
        return Err(format!(
            "the set's master key does not open the server certificate (dbo.Configuration {SERVER_CERTIFICATE_ROW}: {why}): {lost}"
        ));
    }
    if tally.tried == 0 && certificate.is_none() {
        return Err(
            "the restored database holds no encrypted values in dbo.Configuration or dbo.VariableSet: nothing proves the key"
                .into(),
        );
    }
    if tally.tried > 0 && !tally.key_opens() {
        return Err(format!(
            "the set's master key does not open the database: it opened {} of {} encrypted values (first refused: {}); {lost}",
            tally.opened,
            tally.tried,
            tally.first_refused.as_deref().unwrap_or("none")
        ));
    }
    let certificate = match certificate {
        Some(_) => "the server certificate opened".to_string(),
        None => format!(
            "no server certificate in dbo.Configuration {SERVER_CERTIFICATE_ROW} (where Octopus keeps it is unconfirmed)"
        ),
    };
    Ok(format!(
        "{} of {} encrypted values opened ({rows} rows read in batches of {ROWS_PER_BATCH}); {certificate}",
        tally.opened, tally.tried
    ))
}

async fn restore_folders(job: &DrillJob, set: &ChosenSet, root: &Path) -> Result<String, String> {
    let mut files = 0;
    let mut warnings: Vec<String> = Vec::new();
    for f in &set.manifest.folders {
        let dest = root.join(&f.name);
        std::fs::create_dir_all(&dest)
            .map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
        let (repo, snap, path, sink) = (
            job.repo.clone(),
            set.snapshot_id.clone(),
            format!("{}/{}", backupset::FOLDERS_DIR, f.name),
            job.ui.repo_sink(&format!("drill: {}", f.name)),
        );
        let s = crate::run::blocking::blocking("restoring the folders", move || {
            repo.restore(&snap, &path, &dest, &*sink)
        })
        .await
        .map_err(|f| f.message)?
        .map_err(|e| format!("{}: {e}", f.name))?;
        // Warnings (ownership a non-root run cannot set...) do not fail the drill: the files are
        // checked next. They are shown.
        warnings.extend(s.warnings.iter().map(|w| format!("{}: {w}", f.name)));
        files += s.files_restored + s.files_unchanged;
    }
    let mut detail = format!(
        "{files} file(s) in {} folder(s)",
        set.manifest.folders.len()
    );
    if !warnings.is_empty() {
        detail.push_str(&format!(
            "; {} warning(s), first: {}",
            warnings.len(),
            warnings[0]
        ));
    }
    Ok(detail)
}

/// Every file the set lists is there with its size, and the set holds what its manifest says.
pub fn compare_listing(
    root: &Path,
    folders: &[FolderInfo],
    entries: &[FileEntry],
) -> Result<String, String> {
    let mut problems = Vec::new();
    let mut checked = 0u64;
    for f in folders {
        let prefix = format!("{}/{}/", backupset::FOLDERS_DIR, f.name);
        let (mut n, mut bytes) = (0u64, 0u64);
        for e in entries.iter().filter(|e| e.path.starts_with(&prefix)) {
            if e.kind != EntryKind::File {
                continue;
            }
            n += 1;
            bytes += e.size;
            let rel = &e.path[prefix.len()..];
            let local = rel.split('/').fold(root.join(&f.name), |p, c| p.join(c));
            match std::fs::metadata(&local) {
                Ok(m) if m.is_file() && m.len() == e.size => checked += 1,
                Ok(m) => problems.push(format!(
                    "{}/{rel} restored with {} bytes, the set says {}",
                    f.name,
                    m.len(),
                    e.size
                )),
                Err(_) => problems.push(format!("{}/{rel} was not restored", f.name)),
            }
        }
        if n != f.files || bytes != f.bytes {
            problems.push(format!(
                "{}: the manifest records {} file(s), {} bytes, but the set holds {n} file(s), {bytes} bytes",
                f.name, f.files, f.bytes
            ));
        }
    }
    if problems.is_empty() {
        Ok(format!("{checked} file(s) present with their sizes"))
    } else {
        let total = problems.len();
        problems.truncate(5);
        Err(format!("{total} problem(s): {}", problems.join("; ")))
    }
}

async fn compare_folders(repo: &Arc<Repo>, set: &ChosenSet, root: &Path) -> Result<String, String> {
    let (repo2, snap) = (repo.clone(), set.snapshot_id.clone());
    let entries = crate::run::blocking::blocking("listing the folders", move || {
        repo2.list_files(&snap, backupset::FOLDERS_DIR)
    })
    .await
    .map_err(|f| f.message)?
    .map_err(|e| e.to_string())?;
    compare_listing(root, &set.manifest.folders, &entries)
}

impl DrillReport {
    pub fn failure(&self) -> Option<Failure> {
        self.error.as_ref().map(|e| {
            Failure::new(
                Exit::CheckFailed,
                format!("the drill of set {} failed: {e}", self.set_id),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, size: u64) -> FileEntry {
        FileEntry {
            path: path.into(),
            kind: EntryKind::File,
            size,
            mode: None,
            mtime: None,
        }
    }

    #[test]
    fn the_listing_must_match_the_restored_files_and_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("Packages/a")).unwrap();
        std::fs::write(dir.path().join("Packages/a/x.nupkg"), b"12345").unwrap();
        let folders = vec![FolderInfo {
            name: "Packages".into(),
            source_path: "/p".into(),
            files: 1,
            bytes: 5,
        }];
        let entries = vec![entry("/folders/Packages/a/x.nupkg", 5)];
        assert!(compare_listing(dir.path(), &folders, &entries).is_ok());
        // A file the set lists that is not there, and a size that differs.
        let more = vec![
            entry("/folders/Packages/a/x.nupkg", 6),
            entry("/folders/Packages/y.nupkg", 1),
        ];
        let e = compare_listing(dir.path(), &folders, &more).unwrap_err();
        assert!(e.contains("restored with 5 bytes"), "{e}");
        assert!(e.contains("y.nupkg was not restored"), "{e}");
        // The set lost a file its manifest records.
        let mut fewer = folders.clone();
        fewer[0].files = 2;
        let e = compare_listing(dir.path(), &fewer, &entries).unwrap_err();
        assert!(e.contains("manifest records 2 file(s)"), "{e}");
    }

    #[test]
    fn batches_are_read_by_key() {
        assert_eq!(
            select_json_batch("Db", "VariableSet", None),
            "SELECT TOP (200) [Id], [JSON] FROM [Db].[dbo].[VariableSet] ORDER BY [Id]"
        );
        assert_eq!(
            select_json_batch("Db", "VariableSet", Some("it's")),
            "SELECT TOP (200) [Id], [JSON] FROM [Db].[dbo].[VariableSet] WHERE [Id] > N'it''s' ORDER BY [Id]"
        );
    }

    #[test]
    fn scratch_names_are_stable_and_marked() {
        let a = scratch_database("OctopusDeploy", "20260101T000000Z-abc123");
        assert_eq!(
            a,
            scratch_database("OctopusDeploy", "20260101T000000Z-abc123")
        );
        assert!(a.starts_with("OctopusDeploy_octobackup_drill_"));
    }
}
