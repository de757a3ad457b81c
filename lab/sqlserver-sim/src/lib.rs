//! A SQL Server stand-in speaking real TDS, for octobackup's lab.
//!
//! It accepts the clients octobackup and its tests use (tiberius 0.13, python-tds)
//! unchanged: PRELOGIN with TDS 7.x TLS, LOGIN7 with SQL logins, SQL batches,
//! ATTENTION. Its T-SQL covers what octobackup sends (server properties, table
//! reads, BACKUP/RESTORE/VERIFYONLY/HEADERONLY/FILELISTONLY, msdb history,
//! sys.dm_exec_requests, DBCC CHECKDB, DROP DATABASE) with behaviour: BACKUP writes
//! real .bak files through `sqlserver-files`, RESTORE reads them, and the catalog
//! persists in `data_dir/catalog.json`. See README.md for what it cannot prove.

mod browser;
mod engine;
mod server;
pub mod sql;
pub mod tds;
pub mod tls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Receives events as they happen: a kind and a JSON detail. Called synchronously,
/// so the lab can timestamp and log them. Details never carry passwords.
pub type EventSink = Arc<dyn Fn(&'static str, serde_json::Value) + Send + Sync>;

/// A SQL login. `Debug` leaves the password out.
#[derive(Clone, PartialEq, Eq)]
pub struct SqlLogin {
    pub name: String,
    pub password: String,
    pub sysadmin: bool,
}

impl SqlLogin {
    pub fn new(name: impl Into<String>, password: impl Into<String>, sysadmin: bool) -> Self {
        Self {
            name: name.into(),
            password: password.into(),
            sysadmin,
        }
    }
}

impl std::fmt::Debug for SqlLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlLogin")
            .field("name", &self.name)
            .field("sysadmin", &self.sysadmin)
            .finish_non_exhaustive()
    }
}

/// The edition the server reports, and whose limits it enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edition {
    Express,
    Standard,
    Developer,
    Enterprise,
    AzureSqlDatabase,
    /// Azure SQL Managed Instance: BACKUP only TO URL, COPY_ONLY mandatory (Microsoft Learn,
    /// "T-SQL differences between SQL Server and Azure SQL Managed Instance", Backup).
    AzureSqlManagedInstance,
}

impl Edition {
    /// SERVERPROPERTY('Edition').
    pub fn edition_name(self) -> &'static str {
        match self {
            Edition::Express => "Express Edition (64-bit)",
            Edition::Standard => "Standard Edition (64-bit)",
            Edition::Developer => "Developer Edition (64-bit)",
            Edition::Enterprise => "Enterprise Edition (64-bit)",
            Edition::AzureSqlDatabase | Edition::AzureSqlManagedInstance => "SQL Azure",
        }
    }

    /// SERVERPROPERTY('EngineEdition'): 2 Standard, 3 Enterprise/Developer, 4 Express, 5 Azure SQL
    /// Database, 8 Managed Instance (Microsoft Learn, SERVERPROPERTY).
    pub fn engine_edition(self) -> i32 {
        match self {
            Edition::Standard => 2,
            Edition::Developer | Edition::Enterprise => 3,
            Edition::Express => 4,
            Edition::AzureSqlDatabase => 5,
            Edition::AzureSqlManagedInstance => 8,
        }
    }
}

/// Whether the server can encrypt (it then has a self-signed certificate, as
/// SQL Server does when no certificate is configured).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsSupport {
    NotSupported,
    Supported,
}

/// How to run the server.
#[derive(Clone)]
pub struct SqlServerConfig {
    /// Holds catalog.json (databases and msdb history) and is the default file location.
    pub data_dir: PathBuf,
    pub logins: Vec<SqlLogin>,
    pub edition: Edition,
    /// e.g. "16.0.4135.4" (SQL Server 2022).
    pub product_version: String,
    pub tls: TlsSupport,
    pub events: Option<EventSink>,
    /// Server settings a real install may have other than the lab's defaults.
    pub options: ServerOptions,
}

/// Server-level settings and platforms the stand-in can pose as.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerOptions {
    /// `sp_configure 'backup compression default', 1` already run (many enterprise servers):
    /// a BACKUP that says neither COMPRESSION nor NO_COMPRESSION is compressed.
    pub backup_compression_default: bool,
    /// Poses as Amazon RDS for SQL Server, whose instances carry the `rdsadmin` database.
    pub amazon_rds: bool,
    /// The loopback address to listen on (default 127.0.0.1); a named instance's lab gives its
    /// own 127.x.y.z so that its SQL Browser can own port 1434 there.
    pub listen: Option<std::net::IpAddr>,
    /// The operating system the server runs on and whose paths it takes.
    pub platform: Platform,
}

/// Where the stand-in says it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Platform {
    /// The machine's own system (Windows on Windows, Linux elsewhere); paths are the machine's.
    #[default]
    Native,
    /// SQL Server 2022 on Linux in its container (`mcr.microsoft.com/mssql/server`, Ubuntu):
    /// @@VERSION "... on Linux (Ubuntu 22.04.4 LTS)", sys.dm_os_host_info 'Linux', the default
    /// data, log and backup folder `/var/opt/mssql/data/` (Microsoft Learn, "Configure SQL
    /// Server on Linux with mssql-conf"), OS error 2 for a missing path. Paths are the
    /// container's: `/var/opt/mssql` is the data directory, each volume is a host folder seen
    /// at its own path, and anything else lands in the container's private file system (under
    /// the data directory, invisible to the host as in a real container).
    Linux { volumes: Vec<Volume> },
}

/// A host folder mounted into the Linux container (`docker run -v host:container`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// As SQL Server sees it, e.g. `/var/opt/mssql/backup/octobackup`.
    pub container_path: String,
    pub host_path: PathBuf,
}

impl std::fmt::Debug for SqlServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlServerConfig")
            .field("data_dir", &self.data_dir)
            .field("logins", &self.logins)
            .field("edition", &self.edition)
            .field("product_version", &self.product_version)
            .field("tls", &self.tls)
            .field("events", &self.events.is_some())
            .field("options", &self.options)
            .finish()
    }
}

/// One-shot faults for reliability tests: each applies to the next matching operation only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlFault {
    /// The next BACKUP fails with this error (severity 16), then Msg 3013.
    FailNextBackup { number: i32, message: String },
    /// The next BACKUP succeeds but writes a .bak whose RESTORE VERIFYONLY WITH CHECKSUM fails.
    CorruptNextBackup,
    /// The next BACKUP's connection is dropped part-way; the backup is abandoned.
    DropConnectionDuringNextBackup,
    /// The next login fails with Msg 18456 whatever its password.
    FailNextLogin,
    /// Right after the next BACKUP, another backup of the same database ends and lands in msdb
    /// (a DBA's full backup to another device, then a log backup), as when a scheduled job runs
    /// between octobackup's BACKUP and its history query.
    OtherBackupsAfterNextBackup,
    /// The next query of msdb's backup history fails with Msg 229 (SELECT denied), as for a
    /// login that has BACKUP rights in its database but no SELECT in msdb.
    DenyNextHistoryQuery,
    /// The next statement whose sys.dm_exec_requests command starts with `command` ("RESTORE
    /// VERIFYON", "DBCC TABLE CHECK", "RESTORE DATABASE", "BACKUP DATABASE") first sends
    /// nothing for `silence`, as a real server is silent through CHECKDB WITH NO_INFOMSGS,
    /// VERIFYONLY without STATS or RESTORE's file zeroing on a big database. ATTENTION ends it.
    SilenceBeforeNext {
        command: String,
        silence: std::time::Duration,
    },
    /// The next statement whose sys.dm_exec_requests command starts with `command` does not
    /// heed ATTENTION, as a real BACKUP blocked on I/O may not acknowledge it for minutes: it
    /// runs on (the ATTENTION stays pending and is acknowledged when it ends), and only KILL
    /// from another session or the client's going stops it.
    IgnoreAttentionDuringNext { command: String },
}

pub use browser::{
    BrowserHandle, BrowserInstance, SQL_BROWSER_PORT, random_loopback, start_browser,
};
pub use engine::SERVER_NAME;

/// A database's files, held exclusively until dropped.
pub struct DatabaseFilesGuard {
    pub data_file: PathBuf,
    pub log_file: PathBuf,
    _guard: tokio::sync::OwnedRwLockWriteGuard<()>,
}

impl std::fmt::Debug for DatabaseFilesGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseFilesGuard")
            .field("data_file", &self.data_file)
            .field("log_file", &self.log_file)
            .finish()
    }
}

/// Starts a server on 127.0.0.1 (or `options.listen`; an ephemeral port), loading `data_dir/catalog.json` if present.
pub async fn start(config: SqlServerConfig) -> anyhow::Result<SqlServerHandle> {
    server::start(config)
        .await
        .map(|inner| SqlServerHandle { inner })
}

/// A running server. Clones share it.
#[derive(Clone)]
pub struct SqlServerHandle {
    inner: Arc<server::Server>,
}

impl std::fmt::Debug for SqlServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlServerHandle")
            .field("addr", &self.addr())
            .finish_non_exhaustive()
    }
}

impl SqlServerHandle {
    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// Registers existing image files (made with `sqlserver_files::image::create`) as database `name`.
    pub fn attach_database(
        &self,
        name: &str,
        data_file: &Path,
        log_file: &Path,
    ) -> anyhow::Result<()> {
        self.inner.engine.attach_database(name, data_file, log_file)
    }

    /// The (data, log) files of a database, if it exists.
    pub fn database_files(&self, name: &str) -> Option<(PathBuf, PathBuf)> {
        self.inner
            .engine
            .database_entry(name)
            .map(|d| (d.data_file, d.log_file))
    }

    /// User databases, in creation order.
    pub fn databases(&self) -> Vec<String> {
        self.inner.engine.database_names()
    }

    /// Marks a database as encrypted with Transparent Data Encryption: `sys.databases.is_encrypted`
    /// answers 1 for it (and for tempdb). Only the flag is modelled.
    pub fn set_encrypted(&self, name: &str, on: bool) {
        self.inner.engine.set_encrypted(name, on);
    }

    /// How many sessions are connected (a test waits for a dropped client's session to end).
    pub fn session_count(&self) -> usize {
        self.inner.engine.sessions().len()
    }

    /// `USE [database]; CREATE USER [user] FOR LOGIN [login]`, as a DBA sets up a login: the user
    /// is in `public` only until roles or grants are added.
    pub fn create_user(&self, database: &str, user: &str, login: &str) {
        self.inner.engine.create_user(database, user, login);
    }

    /// Arms a one-shot fault.
    pub fn inject(&self, fault: SqlFault) {
        self.inner.engine.inject(fault);
    }

    /// Throttles BACKUP and RESTORE to this many bytes per second (`None`: full speed), so tests
    /// can interrupt them part-way. Takes effect immediately, also for running operations.
    pub fn set_backup_rate(&self, bytes_per_sec: Option<u64>) {
        self.inner.engine.set_backup_rate(bytes_per_sec);
    }

    /// Exclusive access to a database's files for work done outside T-SQL (the lab's daily churn),
    /// serialised with BACKUP, RESTORE, CHECKDB and queries as SQL Server serialises its own
    /// writes. `None` when the database does not exist.
    pub async fn lock_database(&self, name: &str) -> Option<DatabaseFilesGuard> {
        let entry = self.inner.engine.database_entry(name)?;
        let guard = self
            .inner
            .engine
            .database_lock(&entry.name)
            .write_owned()
            .await;
        // the database may have been dropped or restored elsewhere while we waited
        let entry = self.inner.engine.database_entry(name)?;
        Some(DatabaseFilesGuard {
            data_file: entry.data_file,
            log_file: entry.log_file,
            _guard: guard,
        })
    }

    /// The self-signed certificate (PEM) when TLS is supported, for clients that pin it.
    pub fn certificate_pem(&self) -> Option<String> {
        self.inner.tls.as_ref().map(|t| t.certificate_pem.clone())
    }

    /// Stops accepting, closes every connection and waits for running statements to stop.
    pub async fn shutdown(self) {
        self.inner.shutdown().await;
    }
}
