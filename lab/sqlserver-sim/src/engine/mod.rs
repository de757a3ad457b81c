//! The server's state and behaviour: logins, sessions, the catalog of
//! databases and msdb history, faults, and the execution of statements.

pub mod applock;
mod backup;
pub mod catalog;
mod dbcc;
pub mod errors;
pub mod kill;
pub mod platform;
mod query;
mod scalar;
pub mod security;
pub mod session;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use anyhow::{Context, bail};
use chrono::NaiveDateTime;

use crate::{Edition, EventSink, SqlFault, SqlLogin, SqlServerConfig};
use catalog::{Catalog, DatabaseEntry};
use errors::SqlError;

pub use session::{Attention, Session};

/// @@SERVERNAME and SERVERPROPERTY('MachineName') of the lab instance (a default instance).
pub const SERVER_NAME: &str = "OCTOLAB-SQL";

/// The system databases every instance has, with their fixed ids.
pub const SYSTEM_DATABASES: [(&str, i32); 4] =
    [("master", 1), ("tempdb", 2), ("model", 3), ("msdb", 4)];

/// A parsed product version such as 16.0.4135.4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductVersion {
    pub text: String,
    pub major: u8,
    pub minor: u8,
    pub build: u16,
    pub revision: u16,
}

impl ProductVersion {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let parts: Vec<&str> = text.split('.').collect();
        if parts.len() != 4 {
            bail!("product version '{text}' is not major.minor.build.revision");
        }
        let bad = || format!("product version '{text}' has a part that is not a number");
        Ok(Self {
            text: text.to_string(),
            major: parts[0].parse().with_context(bad)?,
            minor: parts[1].parse().with_context(bad)?,
            build: parts[2].parse().with_context(bad)?,
            revision: parts[3].parse().with_context(bad)?,
        })
    }

    /// The release year SQL Server's name carries for this major version.
    pub fn release_name(&self) -> &'static str {
        match self.major {
            11 => "2012",
            12 => "2014",
            13 => "2016",
            14 => "2017",
            15 => "2019",
            16 => "2022",
            17 => "2025",
            _ => "",
        }
    }
}

/// A running request, as sys.dm_exec_requests shows it.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    pub command: String,
    pub start_time: NaiveDateTime,
    pub started: Instant,
    pub percent_complete: f32,
    pub database_id: i32,
}

/// A connected session.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub database: String,
    pub request: Option<RequestInfo>,
}

/// Shared by every connection of one server.
pub struct Engine {
    pub data_dir: PathBuf,
    pub edition: Edition,
    pub version: ProductVersion,
    logins: Vec<SqlLogin>,
    events: Option<EventSink>,
    catalog: Mutex<Catalog>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::RwLock<()>>>>,
    sessions: Mutex<BTreeMap<u16, SessionInfo>>,
    faults: Mutex<Vec<SqlFault>>,
    /// Bytes per second for BACKUP/RESTORE; 0 means unthrottled.
    backup_rate: AtomicU64,
    /// One permit per running file operation (BACKUP, RESTORE, ...), so shutdown can wait for them.
    pub operations: Arc<tokio::sync::Semaphore>,
    /// `backup compression default`: (config_value, run_value). sp_configure sets the first,
    /// RECONFIGURE installs it as the second (Microsoft Learn, sp_configure).
    compression_default: (AtomicBool, AtomicBool),
    /// Posing as Amazon RDS: the `rdsadmin` database exists.
    pub amazon_rds: bool,
    /// The operating system it runs on (`platform.rs`).
    pub platform: crate::Platform,
    /// Databases under Transparent Data Encryption (`sys.databases.is_encrypted`), lower-cased.
    /// Only the flag: pages are not encrypted, and a restored copy is not marked.
    tde: Mutex<std::collections::HashSet<String>>,
    /// sp_getapplock's locks.
    pub app_locks: applock::AppLocks,
    /// Logins, users, roles, grants and owners (`security.rs`).
    security: Mutex<security::Security>,
    /// Each session's ATTENTION, for KILL (`kill.rs`).
    kill_switches: kill::KillSwitches,
}

/// The database every Amazon RDS for SQL Server instance carries (AWS RDS user guide, "Importing
/// and exporting SQL Server databases using native backup and restore": `rdsadmin` procedures).
pub const RDSADMIN: &str = "rdsadmin";
/// The id the lab gives it: clear of the user databases it numbers from 5.
const RDSADMIN_ID: i32 = 32_000;

/// Permits of [`Engine::operations`]: more than can ever run at once.
pub const MAX_OPERATIONS: u32 = 1 << 20;

/// Locks a std mutex, ignoring poisoning: every critical section leaves the data consistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Engine {
    pub fn new(config: &SqlServerConfig) -> anyhow::Result<Self> {
        std::fs::create_dir_all(config.data_dir.join("Backup"))
            .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
        let catalog = Catalog::load(&config.data_dir.join("catalog.json"))?;
        let engine = Self {
            data_dir: config.data_dir.clone(),
            edition: config.edition,
            version: ProductVersion::parse(&config.product_version)?,
            logins: config.logins.clone(),
            events: config.events.clone(),
            catalog: Mutex::new(catalog),
            locks: Mutex::new(HashMap::new()),
            sessions: Mutex::new(BTreeMap::new()),
            faults: Mutex::new(Vec::new()),
            backup_rate: AtomicU64::new(0),
            operations: Arc::new(tokio::sync::Semaphore::new(MAX_OPERATIONS as usize)),
            compression_default: (
                AtomicBool::new(config.options.backup_compression_default),
                AtomicBool::new(config.options.backup_compression_default),
            ),
            amazon_rds: config.options.amazon_rds,
            platform: config.options.platform.clone(),
            tde: Mutex::new(std::collections::HashSet::new()),
            app_locks: applock::AppLocks::default(),
            security: Mutex::new(security::Security::default()),
            kill_switches: kill::KillSwitches::default(),
        };
        engine
            .prepare_platform()
            .context("creating the container's folders")?;
        Ok(engine)
    }

    /// Marks a database as encrypted with TDE (or not), as `ALTER DATABASE ... SET ENCRYPTION ON`
    /// does once the encryption scan ends.
    pub fn set_encrypted(&self, name: &str, on: bool) {
        let mut tde = lock(&self.tde);
        if on {
            tde.insert(name.to_lowercase());
        } else {
            tde.remove(&name.to_lowercase());
        }
    }

    pub fn is_encrypted(&self, name: &str) -> bool {
        lock(&self.tde).contains(&name.to_lowercase())
    }

    pub fn any_encrypted(&self) -> bool {
        !lock(&self.tde).is_empty()
    }

    /// Sends an event to the sink, if any.
    pub fn emit(&self, kind: &'static str, detail: serde_json::Value) {
        if let Some(sink) = &self.events {
            sink(kind, detail);
        }
    }

    /// Checks a SQL login. The failure never says which part was wrong, as SQL Server does.
    pub fn authenticate(&self, user: &str, password: &str) -> Result<SqlLogin, SqlError> {
        let forced = self
            .take_fault(|f| matches!(f, SqlFault::FailNextLogin))
            .is_some();
        let found = self.find_login(user, password);
        match found {
            Some(login) if !forced => Ok(login),
            _ => {
                self.emit("login_failed", serde_json::json!({ "login": user }));
                Err(errors::login_failed(user))
            }
        }
    }

    /// Registers a session and returns its id (51 and up, as user sessions are numbered).
    pub fn open_session(&self, database: &str) -> u16 {
        let mut sessions = lock(&self.sessions);
        let spid = (51u16..)
            .find(|id| !sessions.contains_key(id))
            .expect("a free session id");
        sessions.insert(
            spid,
            SessionInfo {
                database: database.to_string(),
                request: None,
            },
        );
        spid
    }

    pub fn close_session(&self, spid: u16) {
        lock(&self.sessions).remove(&spid);
        self.forget_kill_switch(spid);
        // A session's application locks go with it, however it ended.
        self.app_locks.release_all(spid, None);
    }

    pub fn set_session_database(&self, spid: u16, database: &str) {
        if let Some(s) = lock(&self.sessions).get_mut(&spid) {
            s.database = database.to_string();
        }
    }

    pub fn set_request(&self, spid: u16, request: Option<RequestInfo>) {
        if let Some(s) = lock(&self.sessions).get_mut(&spid) {
            s.request = request;
        }
    }

    pub fn set_percent_complete(&self, spid: u16, percent: f32) {
        if let Some(r) = lock(&self.sessions)
            .get_mut(&spid)
            .and_then(|s| s.request.as_mut())
        {
            r.percent_complete = percent;
        }
    }

    pub fn sessions(&self) -> Vec<(u16, SessionInfo)> {
        lock(&self.sessions)
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect()
    }

    /// Sessions other than `except` whose current database is `database`.
    pub fn sessions_using(&self, database: &str, except: u16) -> Vec<u16> {
        lock(&self.sessions)
            .iter()
            .filter(|(id, s)| **id != except && s.database.eq_ignore_ascii_case(database))
            .map(|(id, _)| *id)
            .collect()
    }

    pub fn catalog(&self) -> Catalog {
        lock(&self.catalog).clone()
    }

    /// Changes the catalog and saves it.
    pub fn update_catalog<R>(&self, change: impl FnOnce(&mut Catalog) -> R) -> anyhow::Result<R> {
        let mut catalog = lock(&self.catalog);
        let result = change(&mut catalog);
        catalog.save(&self.data_dir.join("catalog.json"))?;
        Ok(result)
    }

    pub fn database_entry(&self, name: &str) -> Option<DatabaseEntry> {
        lock(&self.catalog).database(name).cloned()
    }

    pub fn database_names(&self) -> Vec<String> {
        lock(&self.catalog)
            .databases
            .iter()
            .map(|d| d.name.clone())
            .collect()
    }

    /// Id of a system or user database.
    pub fn database_id(&self, name: &str) -> Option<i32> {
        if self.amazon_rds && name.eq_ignore_ascii_case(RDSADMIN) {
            return Some(RDSADMIN_ID);
        }
        system_database(name)
            .map(|(_, id)| id)
            .or_else(|| self.database_entry(name).map(|d| d.database_id))
    }

    /// The name of a database as stored (its own case).
    pub fn canonical_database_name(&self, name: &str) -> Option<String> {
        if self.amazon_rds && name.eq_ignore_ascii_case(RDSADMIN) {
            return Some(RDSADMIN.to_string());
        }
        system_database(name)
            .map(|(n, _)| n.to_string())
            .or_else(|| self.database_entry(name).map(|d| d.name))
    }

    /// `backup compression default` as running (after RECONFIGURE).
    pub fn backup_compression_default(&self) -> bool {
        self.compression_default.1.load(Ordering::Relaxed)
    }

    /// sp_configure 'backup compression default': returns the old config_value.
    pub fn configure_backup_compression_default(&self, on: bool) -> bool {
        self.compression_default.0.swap(on, Ordering::Relaxed)
    }

    /// RECONFIGURE: installs every config_value as run_value.
    pub fn reconfigure(&self) {
        let configured = self.compression_default.0.load(Ordering::Relaxed);
        self.compression_default
            .1
            .store(configured, Ordering::Relaxed);
    }

    pub fn database_name(&self, id: i32) -> Option<String> {
        SYSTEM_DATABASES
            .iter()
            .find(|(_, i)| *i == id)
            .map(|(n, _)| n.to_string())
            .or_else(|| {
                lock(&self.catalog)
                    .database_by_id(id)
                    .map(|d| d.name.clone())
            })
    }

    /// The lock that serialises access to a database's files (readers: BACKUP,
    /// SELECT, CHECKDB; writer: RESTORE, DROP, UPDATE).
    pub fn database_lock(&self, name: &str) -> Arc<tokio::sync::RwLock<()>> {
        lock(&self.locks)
            .entry(name.to_lowercase())
            .or_default()
            .clone()
    }

    /// Registers existing image files as a database.
    pub fn attach_database(
        &self,
        name: &str,
        data_file: &Path,
        log_file: &Path,
    ) -> anyhow::Result<()> {
        if name.is_empty() || name.chars().count() > 128 {
            bail!("a database name must have 1 to 128 characters");
        }
        if system_database(name).is_some() {
            bail!("'{name}' is a system database name");
        }
        sqlserver_files::image::read_header(data_file).with_context(|| {
            format!(
                "attaching {name}: {} is not a lab data file",
                data_file.display()
            )
        })?;
        sqlserver_files::image::read_log_header(log_file).with_context(|| {
            format!(
                "attaching {name}: {} is not a lab log file",
                log_file.display()
            )
        })?;
        let data_file = std::path::absolute(data_file)?;
        let log_file = std::path::absolute(log_file)?;
        self.update_catalog(|catalog| {
            if catalog.database(name).is_some() {
                bail!("database '{name}' already exists");
            }
            for file in [&data_file, &log_file] {
                if let Some(other) = catalog.database_using_file(file) {
                    bail!(
                        "{} is already used by database '{}'",
                        file.display(),
                        other.name
                    );
                }
            }
            let id = catalog.next_database_id;
            catalog.next_database_id += 1;
            catalog.databases.push(DatabaseEntry {
                name: name.to_string(),
                database_id: id,
                data_file,
                log_file,
                create_date: chrono::Local::now().naive_local(),
                restoring_from: None,
            });
            Ok(())
        })?
    }

    pub fn inject(&self, fault: SqlFault) {
        lock(&self.faults).push(fault);
    }

    /// Takes the first armed fault that `matches`.
    pub fn take_fault(&self, matches: impl Fn(&SqlFault) -> bool) -> Option<SqlFault> {
        let mut faults = lock(&self.faults);
        let index = faults.iter().position(matches)?;
        Some(faults.remove(index))
    }

    pub fn set_backup_rate(&self, bytes_per_sec: Option<u64>) {
        self.backup_rate
            .store(bytes_per_sec.unwrap_or(0), Ordering::Relaxed);
    }

    pub fn backup_rate(&self) -> Option<u64> {
        match self.backup_rate.load(Ordering::Relaxed) {
            0 => None,
            rate => Some(rate),
        }
    }

    /// The default backup directory, where relative backup paths land (as SQL Server's
    /// BackupDirectory setting does).
    pub fn backup_directory(&self) -> PathBuf {
        // on Linux the default backup folder is the data folder (mssql-conf defaultbackupdir)
        if let crate::Platform::Linux { .. } = self.platform {
            return self.data_dir.clone();
        }
        self.data_dir.join("Backup")
    }
}

/// A system database by name (case-insensitive), with its canonical name and id.
pub fn system_database(name: &str) -> Option<(&'static str, i32)> {
    SYSTEM_DATABASES
        .iter()
        .copied()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_product_versions() {
        let v = ProductVersion::parse("16.0.4135.4").unwrap();
        assert_eq!((v.major, v.minor, v.build, v.revision), (16, 0, 4135, 4));
        assert_eq!(v.release_name(), "2022");
        assert!(ProductVersion::parse("16.0").is_err());
        assert!(ProductVersion::parse("16.x.1.2").is_err());
    }

    #[test]
    fn system_databases_are_case_insensitive() {
        assert_eq!(system_database("MSDB"), Some(("msdb", 4)));
        assert_eq!(system_database("octopus"), None);
    }
}
