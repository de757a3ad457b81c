//! The checks of `octobackup doctor` (the CLI renders them): each passes, fails with the fix, warns
//! (works, with less) or is skipped with the reason. They change nothing that matters.
//!
//! How the permission to change maintenance mode is checked without changing it: the current
//! user's system permissions (`GET /api/users/me`, then `/api/users/{id}/permissions`, looking for
//! `AdministerSystem`), read through the same Octopus client a backup uses.
//!
//! How the staging path is checked: octobackup writes, reads and removes a probe file through its
//! own path, then SQL Server writes a small backup of `[model]` (`COPY_ONLY`, the DBA's chain is
//! untouched) to the same folder and octobackup reads it back and removes it. A server that cannot
//! back up `model` (the lab, a login without rights on it) gets that part skipped, with the reason.

use crate::backupset::check::{Check, Status};
use crate::backupset::list;
use crate::config::{Config, InstanceConfig};
use crate::error::Failure;
use crate::octopus::{OctopusClient, OctopusError, master_key};
use crate::run::connect::{sql_server, sql_side_path};
use crate::run::space::free_space;
use crate::sqlserver::{permissions, tsql};
use octobackup_repo::Repo;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Serialize)]
pub struct Report {
    pub ok: bool,
    pub instance: String,
    pub checks: Vec<Check>,
}

#[derive(Default)]
pub struct Checks(Vec<Check>);

impl Checks {
    fn pass(&mut self, name: &str, detail: impl Into<String>) {
        self.0.push(Check::new(name, Status::Pass, detail));
    }
    fn fail(&mut self, name: &str, detail: impl Into<String>, fix: impl Into<String>) {
        self.0
            .push(Check::new(name, Status::Fail, detail).with_fix(fix));
    }
    fn warn(&mut self, name: &str, detail: impl Into<String>, fix: impl Into<String>) {
        self.0
            .push(Check::new(name, Status::Warn, detail).with_fix(fix));
    }
    fn skip(&mut self, name: &str, detail: impl Into<String>) {
        self.0.push(Check::new(name, Status::Skip, detail));
    }
}

/// Largest clock difference with the Octopus Server accepted.
const MAX_SKEW: Duration = Duration::from_secs(120);

/// Every check for the instance `name`, in order. `open_repo` opens the repository (the CLI
/// knows where its password comes from, a prompt among them).
pub async fn checks(
    config: &Config,
    config_path: &Path,
    name: &str,
    configured: &InstanceConfig,
    open_repo: impl AsyncFnOnce() -> Result<Repo, Failure>,
) -> Report {
    let mut c = Checks::default();
    let inst = if configured.discover.is_some() {
        match crate::octopus::discovery::resolve(name, configured).await {
            Ok(i) => {
                c.pass("discovery", "Octopus.Server show-configuration answered; missing settings taken from the instance");
                Some(i)
            }
            Err(f) => {
                c.fail("discovery", f.message, "fix [instance.NAME.discover] (or give url, sql and master_key in the config); the message says what failed");
                None
            }
        }
    } else {
        Some(configured.clone())
    };
    if let Some(inst) = &inst {
        check_instance(config, inst, open_repo, &mut c).await;
        check_staging_leftovers(config, config_path, name, inst, &mut c);
        check_kept_sets(name, inst, &mut c);
        check_restore_leftovers(name, inst, &mut c);
    }
    Report {
        ok: c.0.iter().all(|k| k.status != Status::Fail),
        instance: name.to_string(),
        checks: c.0,
    }
}

/// Staging folders killed runs left: each a full, unencrypted copy of the database.
fn check_staging_leftovers(
    config: &Config,
    config_path: &Path,
    name: &str,
    inst: &InstanceConfig,
    c: &mut Checks,
) {
    // Only with the instance's lock free is a folder certainly not a running backup's.
    let state = crate::run::journal::StateDir::new(&config.state_dir(config_path));
    let Ok(_lock) = state.lock(name) else {
        return c.skip(
            "staging leftovers",
            "a run of this instance is going on (or the state folder is unusable)",
        );
    };
    let left = crate::run::backup::staging::staging_leftovers(name, inst);
    // Folders of octobackup's name without a marker: empty ones (a run killed as it started) go
    // with the next backup or `recover`; ones holding files (an older version) are the admin's.
    let (empty, unknown) = crate::run::backup::staging::unmarked_staging_folders(inst);
    if !unknown.is_empty() {
        let list: Vec<String> = unknown.iter().map(|p| p.display().to_string()).collect();
        c.warn(
            "staging folders of unknown runs",
            format!(
                "{} folder(s) with octobackup's staging name but no octobackup-run.json (an older version's), instance unknown: {}",
                unknown.len(),
                list.join(", ")
            ),
            "delete them by hand when no backup is running: they may hold a copy of a database",
        );
    }
    if !empty.is_empty() {
        let list: Vec<String> = empty.iter().map(|p| p.display().to_string()).collect();
        c.warn(
            "empty staging folders",
            format!(
                "runs killed as they started left {} empty staging folder(s): {}",
                empty.len(),
                list.join(", ")
            ),
            "run `octobackup recover` (the next backup removes them too)",
        );
    }
    if left.is_empty() {
        c.pass("staging leftovers", "none");
    } else {
        let list: Vec<String> = left.iter().map(|p| p.display().to_string()).collect();
        c.fail(
            "staging leftovers",
            format!(
                "interrupted runs left {} staging folder(s), each a copy of the database: {}",
                left.len(),
                list.join(", ")
            ),
            "run `octobackup recover` (the next backup removes them too)",
        );
    }
}

/// Sets kept on staging because the storage stopped after their window
/// (`run/backup/kept.rs`): each, its age and size, and whether the next backup stores or
/// removes it, judged as the backup judges.
fn check_kept_sets(name: &str, inst: &InstanceConfig, c: &mut Checks) {
    let database = sql_server(inst).ok().map(|s| s.database().to_string());
    let now = chrono::Utc::now();
    let sets = crate::run::backup::kept::kept_sets(name, inst, database.as_deref(), now);
    if sets.is_empty() {
        return c.pass("kept-sets", "none");
    }
    for set in sets {
        let age = set
            .kept_at
            .map(|t| {
                let m = (now - t).num_minutes().max(0);
                format!("kept {} h {} min ago", m / 60, m % 60)
            })
            .unwrap_or_else(|| "kept at an unknown time".into());
        let what = format!(
            "set {} of [{}] on staging ({}), {age}, {}",
            if set.set_id.is_empty() {
                "?"
            } else {
                &set.set_id
            },
            set.database,
            set.dir.display(),
            crate::format::bytes(set.bytes)
        );
        match set.next {
            Ok(()) => c.pass(
                "kept-set",
                format!("{what}: the next backup stores it (complete, with its own time) before its own, without a new database backup"),
            ),
            Err(why) => c.warn(
                "kept-set",
                format!("{what}: the next backup removes it, because {why}"),
                "nothing to do: the next backup removes it and takes its own (or delete the folder now to free the space)",
            ),
        }
    }
}

/// What killed restores and drills left: staging folders (a copy of the database) and temporary
/// databases, each named by its marker.
fn check_restore_leftovers(name: &str, inst: &InstanceConfig, c: &mut Checks) {
    let left = crate::run::leftovers::find(name, &inst.staging_local());
    if left.is_empty() {
        return c.pass("restore-drill-leftovers", "none");
    }
    let list: Vec<String> = left
        .iter()
        .map(|l| format!("{} ([{}])", l.dir.display(), l.marker.database))
        .collect();
    c.warn(
        "restore-drill-leftovers",
        format!(
            "{} folder(s) of interrupted restores or drills on the staging share, each with its temporary database (unless a restore or drill is running now): {}",
            left.len(),
            list.join(", ")
        ),
        "run `octobackup recover` (it drops the temporary databases and deletes the folders, which may hold an unencrypted copy of the database; the next backup, restore or drill does too)",
    );
}

async fn check_instance(
    config: &Config,
    inst: &InstanceConfig,
    open_repo: impl AsyncFnOnce() -> Result<Repo, Failure>,
    c: &mut Checks,
) {
    let key_ok = check_octopus(inst, c).await;

    // Master key.
    match master_key::read(&inst.master_key).await {
        Ok(k) => c.pass(
            "master-key",
            format!("obtained, base64 of {} bytes (AES-{})", k.bytes, k.bytes * 8),
        ),
        Err(e) => c.fail(
            "master-key",
            e.to_string(),
            "run octobackup as a local administrator on the Octopus host (or fix master_key in the config)",
        ),
    }

    // SQL Server: login, permission, staging.
    let staging_local = inst.staging_local();
    check_sql(inst, &staging_local, c).await;

    // Folders: configured, else from the API.
    let folders: Vec<(String, PathBuf)> = if !inst.folders.is_empty() {
        inst.folders
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    } else if key_ok {
        match crate::run::connect::octopus_client(inst) {
            Ok(client) => match client.server_folders().await {
                Ok(v) => v
                    .named()
                    .into_iter()
                    .map(|(n, p)| (n.to_string(), PathBuf::from(p)))
                    .collect(),
                Err(e) => {
                    c.fail(
                        "folders",
                        format!("cannot read the server folders from the API: {e}"),
                        "give them under [instance.NAME.folders]",
                    );
                    Vec::new()
                }
            },
            Err(f) => {
                c.fail("folders", f.message, "fix the API key source");
                Vec::new()
            }
        }
    } else {
        c.skip(
            "folders",
            "the API did not answer, so the folder paths are unknown (or give them under [instance.NAME.folders])",
        );
        Vec::new()
    };
    if !folders.is_empty() {
        let mut bad = Vec::new();
        for (name, path) in &folders {
            if let Err(e) = std::fs::read_dir(path).and_then(|mut d| d.next().transpose()) {
                bad.push(format!("{name} at {} ({e})", path.display()));
            }
        }
        if bad.is_empty() {
            c.pass(
                "folders",
                format!(
                    "readable: {}",
                    folders
                        .iter()
                        .map(|(n, p)| format!("{n} ({})", p.display()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        } else {
            c.fail(
                "folders",
                format!("not readable: {}", bad.join("; ")),
                "check the path (Octopus.Server path ... shows and sets them), the share, and that the user octobackup runs as may read it",
            );
        }
    }

    // Repository, then free space against the last set.
    let repo = match open_repo().await {
        Ok(r) => {
            let loc = r.location().to_string();
            let local = octobackup_repo::local_folder(&config.repository.location);
            match local.as_deref().map(write_probe) {
                Some(Err(e)) => c.fail(
                    "repository",
                    format!("opened {loc}, but cannot write there: {e}"),
                    "give the user octobackup runs as write access to the repository folder",
                ),
                _ => c.pass("repository", format!("opened {loc}; writable")),
            }
            check_delete_rules(r.storage().clone(), c).await;
            Some(r)
        }
        Err(f) => {
            c.fail(
                "repository",
                f.message,
                "create it with `octobackup init`, or fix repository.location and the password source",
            );
            None
        }
    };
    check_space(config, repo, &staging_local, c).await;
}

/// Every `[[copy]]`, one line each (named "copy", the detail starting with the copy's name): the
/// same checks as the main repository's (it opens with the copy's own password, it is writable,
/// its bucket's Object Lock and delete rights), with the fix. `open_copy` opens a copy by name
/// (the CLI knows where its password comes from). Adds to `report` and keeps its `ok` true only
/// while no check failed.
pub async fn check_copies(
    config: &Config,
    report: &mut Report,
    open_copy: impl AsyncFn(&str) -> Result<Repo, Failure>,
) {
    for copy in &config.copies {
        let mut c = Checks::default();
        let name = &copy.name;
        match open_copy(name).await {
            Ok(r) => {
                let loc = r.location().to_string();
                match octobackup_repo::local_folder(&copy.location)
                    .as_deref()
                    .map(write_probe)
                {
                    Some(Err(e)) => c.fail(
                        "copy",
                        format!("'{name}': opened {loc}, but cannot write there: {e}"),
                        "give the user octobackup runs as write access to the copy's folder",
                    ),
                    _ => {
                        let mut rules = Checks::default();
                        check_delete_rules(r.storage().clone(), &mut rules).await;
                        let mut detail = format!("'{name}': opened {loc} with its own password; writable");
                        let mut fixes = Vec::new();
                        let mut status = Status::Pass;
                        for k in rules.0 {
                            detail.push_str(&format!(
                                "; {}: {}",
                                k.name,
                                k.detail.unwrap_or_default()
                            ));
                            fixes.extend(k.fix);
                            status = match (status, k.status) {
                                (_, Status::Fail) | (Status::Fail, _) => Status::Fail,
                                (_, Status::Warn) | (Status::Warn, _) => Status::Warn,
                                _ => Status::Pass,
                            };
                        }
                        let check = Check::new("copy", status, detail);
                        c.0.push(if fixes.is_empty() {
                            check
                        } else {
                            check.with_fix(fixes.join("; "))
                        });
                    }
                }
            }
            // The message names the copy and its fix (`init --copy NAME`, its own password).
            Err(f) => c.fail(
                "copy",
                format!("'{name}': {}", f.message),
                format!(
                    "check [[copy]] '{name}' location, options and password_file/password_env; a copy not made yet: `octobackup init --copy {name}`"
                ),
            ),
        }
        report.checks.extend(c.0);
    }
    report.ok = report.checks.iter().all(|k| k.status != Status::Fail);
}

/// An S3 repository's rules on deleting: the bucket's Object Lock and whether the credentials
/// may delete (an append-only policy). Said only where there is something to say.
async fn check_delete_rules(storage: octobackup_repo::Storage, c: &mut Checks) {
    let found = crate::run::blocking::blocking("reading the bucket's delete rules", move || {
        Ok::<_, octobackup_repo::RepoError>((
            storage.object_lock()?,
            storage.may_delete()?,
            storage.recorded_object_lock()?,
        ))
    })
    .await;
    match found {
        Ok(Ok((lock, may_delete, recorded))) => {
            if let Some(r) = &recorded
                && let Some(what) = octobackup_repo::weakened(&r.lock, lock.as_ref())
            {
                c.fail(
                    "object-lock",
                    format!(
                        "{what}; it had {} when the repository was made ({}): someone changed the bucket's settings",
                        r.lock.describe(),
                        r.recorded
                    ),
                    "put the bucket's Object Lock configuration back (aws s3api put-object-lock-configuration) and find out who changed it: sets written since are not protected",
                );
                return;
            }
            if let Some(l) = lock {
                let days = l.days.map_or_else(
                    || "objects are locked only when a writer asks, which octobackup does not".to_string(),
                    |d| format!("sets cannot be forgotten before they are {d} days old, and prune leaves packs younger than that"),
                );
                c.pass("object-lock", format!("the bucket has Object Lock ({}): {days}", l.describe()));
            }
            if !may_delete {
                c.pass(
                    "append-only",
                    "the credentials may add but not delete: backups work; forget and prune need credentials that may delete",
                );
            }
        }
        Ok(Err(e)) => c.warn(
            "object-lock",
            format!("cannot read the bucket's Object Lock and delete rights: {e}"),
            "let the credentials read the bucket's Object Lock configuration (s3:GetBucketObjectLockConfiguration)",
        ),
        Err(e) => c.warn("object-lock", e.message, "run doctor again"),
    }
}

/// The API, the key, the permission, the clock, through the product's own Octopus client.
/// Returns whether the key works.
async fn check_octopus(inst: &InstanceConfig, c: &mut Checks) -> bool {
    let client = match crate::run::connect::octopus_client(inst) {
        Ok(client) => client,
        Err(f) => {
            c.fail(
                "octopus-api-key",
                f.message,
                "set api_key_env or api_key_file to an API key of a user with Administer System",
            );
            return false;
        }
    };
    check_octopus_with(client, c).await
}

async fn check_octopus_with(mut client: OctopusClient, c: &mut Checks) -> bool {
    // A preflight reports a dead server quickly rather than retrying as a backup would.
    client.attempts = 2;
    let base = client.url().to_string();

    // Reachable, version, clock.
    let sent_at = chrono::Utc::now();
    match client.root_with_date().await {
        Ok((root, date)) => {
            let received_at = chrono::Utc::now();
            let application = if root.application.is_empty() {
                "Octopus Deploy"
            } else {
                &root.application
            };
            c.pass(
                "octopus-api",
                format!("{base} answers: {application} {}", root.version),
            );
            match date {
                Some(d) => {
                    // The server stamped its Date between sending and receiving: compare with the middle.
                    let local = sent_at + (received_at - sent_at) / 2;
                    let skew = (local - d).num_milliseconds() as f64 / 1000.0;
                    // Date has whole seconds: allow for that on top of the limit.
                    if skew.abs() <= MAX_SKEW.as_secs_f64() + 1.0 {
                        c.pass(
                            "clock",
                            format!(
                                "local clock within {:.0}s of the Octopus Server's",
                                skew.abs().ceil()
                            ),
                        );
                    } else {
                        c.fail(
                            "clock",
                            format!("local clock is {skew:+.0}s off the Octopus Server's (more than {}s)", MAX_SKEW.as_secs()),
                            "synchronise the clocks (Windows: w32tm /resync; Linux: chrony or systemd-timesyncd): set times and repository locks depend on them",
                        );
                    }
                }
                None => c.skip("clock", "the Octopus Server sent no Date header"),
            }
        }
        Err(e @ OctopusError::Unreachable { .. }) => {
            c.fail(
                "octopus-api",
                e.to_string(),
                "check url, DNS, the firewall and proxy; the Octopus Server must answer from here",
            );
            for name in ["clock", "octopus-api-key", "administer-system"] {
                c.skip(name, "the Octopus Server did not answer");
            }
            return false;
        }
        Err(e) => {
            c.fail(
                "octopus-api",
                format!("{base}/api: {e}"),
                "check url: it must be the Octopus Server's address (the one its web portal is at)",
            );
            c.skip("clock", "the Octopus Server's API did not answer");
        }
    }

    // The key: whose it is.
    let user = match client.current_user().await {
        Ok(user) => user,
        Err(OctopusError::Unauthorized { .. }) => {
            c.fail(
                "octopus-api-key",
                "the Octopus Server refused the API key (401)",
                "create an API key (Profile > My API Keys) for a user with Administer System and put it where api_key_env/api_key_file says",
            );
            c.skip("administer-system", "the API key was refused");
            return false;
        }
        Err(e) => {
            c.fail(
                "octopus-api-key",
                e.to_string(),
                "check the network to the Octopus Server and that url is its address",
            );
            c.skip("administer-system", "the API key's user is unknown");
            return false;
        }
    };
    let who = user.name().to_string();
    c.pass("octopus-api-key", format!("accepted (user {who})"));

    // The permission maintenance mode needs, read without changing anything.
    match client.system_permissions(&user.id).await {
        Ok(permissions) if permissions.iter().any(|p| p == "AdministerSystem") => c.pass(
            "administer-system",
            format!("user {who} has Administer System: it can turn maintenance mode on and off"),
        ),
        Ok(_) => c.fail(
            "administer-system",
            format!("user {who} lacks the AdministerSystem permission: it cannot turn maintenance mode on"),
            admin_fix(),
        ),
        Err(e) => c.fail(
            "administer-system",
            format!("cannot read the system permissions of user {who}: {e}"),
            admin_fix(),
        ),
    }
    true
}

fn admin_fix() -> &'static str {
    "use an API key of a user in a team with Administer System (e.g. Octopus Administrators); maintenance mode needs it"
}

/// Login, BACKUP permission, the staging folder.
async fn check_sql(inst: &InstanceConfig, staging_local: &Path, c: &mut Checks) {
    // octobackup's side of the staging folder first: it needs no SQL Server.
    let local_ok = match write_probe(staging_local) {
        Ok(()) => true,
        Err(e) => {
            c.fail(
                "staging",
                format!("octobackup cannot use the staging folder {}: {e}", staging_local.display()),
                "create the folder (or fix staging.local_path/sql_path) and let both SQL Server's service account and the user octobackup runs as write it",
            );
            false
        }
    };
    let server = match sql_server(inst) {
        Ok(s) => s,
        Err(f) => {
            c.fail(
                "sql-login",
                f.message,
                "fix [instance.NAME.sql] in the config",
            );
            c.skip("sql-permission", "no SQL connection");
            local_only(c, local_ok, staging_local);
            return;
        }
    };
    let database = server.database().to_string();
    let mut session = match server.connect().await {
        Ok(s) => s,
        Err(e) => {
            let fix = match e {
                crate::sqlserver::SqlError::TcpDisabled { .. } => {
                    "enable TCP/IP for the instance in SQL Server Configuration Manager and restart its service"
                }
                crate::sqlserver::SqlError::Tls { .. } => {
                    "give SQL Server a certificate this machine trusts, or set TrustServerCertificate=True"
                }
                _ => "check the connection string's Server and User ID and the SQL password source",
            };
            c.fail("sql-login", e.to_string(), fix);
            c.skip("sql-permission", "no SQL connection");
            local_only(c, local_ok, staging_local);
            return;
        }
    };
    let info = match session.server_info().await {
        Ok(i) => i,
        Err(e) => {
            c.fail("sql-login", e.to_string(), "check the SQL login");
            c.skip("sql-permission", "the server properties could not be read");
            local_only(c, local_ok, staging_local);
            return;
        }
    };
    if let Err(e) = info.check_backup_to_disk(&server.server_display()) {
        c.fail(
            "sql-login",
            e.to_string(),
            "back this database up with the platform's own backups",
        );
        c.skip("sql-permission", "this platform has no BACKUP TO DISK");
        local_only(c, local_ok, staging_local);
        return;
    }
    match session.database_exists(&database).await {
        Ok(true) => c.pass(
            "sql-login",
            format!(
                "logged in to {} (SQL Server {} {}), database {database} exists",
                server.server_display(),
                info.product_version,
                info.edition
            ),
        ),
        Ok(false) => c.fail(
            "sql-login",
            format!(
                "logged in to {}, but there is no database {database}",
                server.server_display()
            ),
            "fix Database/Initial Catalog in the connection string",
        ),
        Err(e) => c.fail("sql-login", e.to_string(), "check the SQL login"),
    }
    check_permissions(&mut session, &database, info.is_sysadmin, c).await;
    // sql.chain = "owned" needs the database's backup chain to itself (run/backup/chain.rs).
    match crate::run::backup::chain::doctor(&mut session, inst, &database).await {
        Some(Ok(detail)) => c.pass("sql-chain", detail),
        Some(Err((detail, fix))) => c.fail("sql-chain", detail, fix),
        None => {}
    }
    if !local_ok {
        return;
    }
    // SQL Server's side: a small COPY_ONLY backup of [model] into the staging folder.
    let file = format!("octobackup-doctor-{}.bak", uuid::Uuid::new_v4().simple());
    let sql_path = sql_side_path(&inst.staging.sql_path, &file);
    let local = staging_local.join(&file);
    let stmt = format!(
        "BACKUP DATABASE [model] TO DISK = {} WITH COPY_ONLY, FORMAT, INIT",
        tsql::quote_str(&sql_path)
    );
    let result = session
        .execute(
            "staging probe (BACKUP DATABASE [model])",
            &stmt,
            Some(&sql_path),
        )
        .await;
    match result {
        Ok(()) => {
            let seen = std::fs::read(&local).map(|b| b.len());
            let _ = std::fs::remove_file(&local);
            match seen {
                Ok(n) => c.pass("staging", format!("SQL Server wrote {sql_path} and octobackup read it at {} ({n} bytes)", local.display())),
                Err(e) => c.fail(
                    "staging",
                    format!("SQL Server wrote {sql_path}, but octobackup cannot read it at {}: {e}", local.display()),
                    "staging.local_path must be the same folder as staging.sql_path, as octobackup sees it (a share for a remote SQL Server)",
                ),
            }
        }
        Err(e) => match e.number() {
            Some(3201) | Some(3202) => c.fail(
                "staging",
                e.to_string(),
                "give SQL Server's service account (e.g. NT Service\\MSSQLSERVER) write access to the folder, or fix staging.sql_path as SQL Server sees it",
            ),
            _ => c.pass(
                "staging",
                format!(
                    "octobackup can write, read and remove files in {}; SQL Server's side not probed (BACKUP DATABASE [model] failed: {e})",
                    staging_local.display()
                ),
            ),
        },
    }
}

/// What backup, drill and restore need of the login, each gap with the grant that fixes it
/// (`sqlserver::permissions` says which command needs which).
async fn check_permissions(
    session: &mut crate::sqlserver::client::Session,
    database: &str,
    is_sysadmin: bool,
    c: &mut Checks,
) {
    if is_sysadmin {
        c.pass(
            "sql-permission",
            "the login is sysadmin: backup, drill and restore may run",
        );
        return;
    }
    let perms = match permissions::read(session, database).await {
        Ok(p) => p,
        Err(e) => {
            c.fail(
                "sql-permission",
                format!("the login is not sysadmin, and its permissions could not be read: {e}"),
                format!(
                    "USE {db}; ALTER ROLE db_backupoperator ADD MEMBER [login]; USE master; GRANT CREATE ANY DATABASE TO [login]; (or use a sysadmin login)",
                    db = tsql::quote_ident(database)
                ),
            );
            return;
        }
    };
    let gaps = perms.gaps();
    if !gaps.iter().any(|g| g.check == "sql-permission") {
        c.pass(
            "sql-permission",
            format!("the login {} may BACKUP DATABASE {database}", perms.login),
        );
    }
    for (name, what) in [
        (
            "sql-create-database",
            "CREATE ANY DATABASE (VERIFYONLY, drill, restore)",
        ),
        ("sql-msdb-history", "SELECT on msdb's backup history"),
        ("sql-server-state", "VIEW SERVER STATE (progress)"),
        (
            "sql-kill",
            "ALTER ANY CONNECTION (KILL of a statement that ignores a stop)",
        ),
    ] {
        if !gaps.iter().any(|g| g.check == name) {
            c.pass(name, format!("the login {} holds {what}", perms.login));
        }
    }
    for gap in gaps {
        if gap.required {
            c.fail(gap.check, gap.detail, gap.grant);
        } else {
            c.warn(gap.check, gap.detail, gap.grant);
        }
    }
}

/// The staging line when SQL Server's side cannot be probed.
fn local_only(c: &mut Checks, local_ok: bool, staging_local: &Path) {
    if local_ok {
        c.pass(
            "staging",
            format!(
                "octobackup can write, read and remove files in {}; SQL Server's side not probed (no SQL connection)",
                staging_local.display()
            ),
        );
    }
}

fn write_probe(dir: &Path) -> std::io::Result<()> {
    let p = dir.join(format!(
        ".octobackup-doctor-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&p, b"octobackup doctor probe")?;
    let back = std::fs::read(&p);
    let _ = std::fs::remove_file(&p);
    if back? != b"octobackup doctor probe" {
        return Err(std::io::Error::other(
            "the probe file read back differently",
        ));
    }
    Ok(())
}

async fn check_space(
    config: &Config,
    repo: Option<octobackup_repo::Repo>,
    staging_local: &Path,
    c: &mut Checks,
) {
    let Some(repo) = repo else {
        c.skip(
            "free-space",
            "the repository did not open, so the last set's sizes are unknown",
        );
        return;
    };
    let repo = std::sync::Arc::new(repo);
    let r = repo.clone();
    let listed = crate::run::blocking::blocking("listing the sets", move || list::list(&r, None))
        .await
        .and_then(|r| r.map_err(Failure::from));
    let sets = match listed {
        Ok(sets) => sets,
        Err(f) => {
            c.skip(
                "free-space",
                format!(
                    "the sets could not be listed, so the last set's sizes are unknown: {}",
                    f.message
                ),
            );
            return;
        }
    };
    let Some(db_bytes) = sets
        .iter()
        .rev()
        .filter(|s| s.complete)
        .find_map(|s| s.database_bytes)
    else {
        c.skip("free-space", "no earlier backup set to size against");
        return;
    };
    let mut problems = Vec::new();
    let mut seen = Vec::new();
    // The .bak lands whole in staging; the repository needs at most as much again when every
    // page changed (usually far less: deduplication and compression).
    let need_staging = db_bytes + db_bytes / 10;
    match free_space(staging_local) {
        Some(free) if free < need_staging => problems.push(format!(
            "staging {} has {} free, the last database backup was {}",
            staging_local.display(),
            crate::format::bytes(free),
            crate::format::bytes(db_bytes)
        )),
        Some(free) => seen.push(format!("staging {} free", crate::format::bytes(free))),
        None => seen.push("staging free space unknown".into()),
    }
    if let Some(dir) = octobackup_repo::local_folder(&config.repository.location) {
        match free_space(&dir) {
            Some(free) if free < db_bytes => problems.push(format!(
                "repository {} has {} free, less than the last database backup ({})",
                dir.display(),
                crate::format::bytes(free),
                crate::format::bytes(db_bytes)
            )),
            Some(free) => seen.push(format!("repository {} free", crate::format::bytes(free))),
            None => seen.push("repository free space unknown".into()),
        }
    }
    if problems.is_empty() {
        c.pass(
            "free-space",
            format!(
                "{} (last database backup {})",
                seen.join(", "),
                crate::format::bytes(db_bytes)
            ),
        );
    } else {
        c.fail(
            "free-space",
            problems.join("; "),
            "free space or move staging/the repository; `octobackup forget`/`prune` free repository space",
        );
    }
}
