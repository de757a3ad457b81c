//! A tiberius connection to the Octopus database's SQL Server.
//!
//! Long statements: tiberius 0.13's command timeout restarts on every packet, so BACKUP with
//! `STATS` (an INFO message every few percent) stays alive; the timeout is set to the configured
//! longest silence. Progress comes from `sys.dm_exec_requests.percent_complete`, polled on a second
//! connection, because tiberius does not hand INFO messages to the caller.

use super::connstr::{Authentication, ConnectionString, Encrypt};
use super::tsql;
use crate::backupset::manifest::BackupSetRow;
use crate::secret::Secret;
use std::time::Duration;
use tiberius::{Client, ColumnData, Config, EncryptionLevel, FromSql, SqlBrowser};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error(
        "cannot connect to SQL Server {server}: {cause}. Check the Server in the connection string and that SQL Server accepts TCP connections there."
    )]
    Connect { server: String, cause: String },
    #[error(
        "SQL Server {server} refused the login for '{user}' (Msg 18456). Check the User ID and the SQL password source in the config."
    )]
    Login { server: String, user: String },
    #[error(
        "cannot connect to SQL Server {server}: {cause}. SQL Server's TCP/IP protocol may be disabled (SQL Server Express ships with it off): in SQL Server Configuration Manager, open SQL Server Network Configuration > Protocols for {instance} > TCP/IP, set Enabled to Yes and restart the SQL Server ({instance}) service{browser}. octobackup connects over TCP only."
    )]
    TcpDisabled {
        server: String,
        cause: String,
        instance: String,
        browser: &'static str,
    },
    #[error(
        "SQL Server {server}'s certificate failed validation: {cause}. The connection string asks for a validated certificate (Encrypt=True with TrustServerCertificate=False, or Encrypt=Strict), and SQL Server presents a certificate this machine does not trust or whose name is not the Server in the connection string (a server without a provisioned certificate uses a self-signed one). Install a certificate on SQL Server issued for that name by an authority this machine trusts, or, with Encrypt=True, set TrustServerCertificate=True (what Octopus does when the string does not say)."
    )]
    Tls { server: String, cause: String },
    #[error(
        "the TLS handshake with SQL Server {server} failed: {cause}. octobackup speaks TLS 1.2 and 1.3 with modern cipher suites; a server that offers only TLS 1.0/1.1 needs its Windows and SQL Server updated for TLS 1.2."
    )]
    TlsHandshake { server: String, cause: String },
    #[error(
        "{server} is Azure SQL Database, which has no BACKUP TO DISK. octobackup backs up SQL Server (including SQL Server on a VM); for Azure SQL Database use its automated backups and export."
    )]
    AzureSqlDatabase { server: String },
    #[error(
        "{server} is Azure SQL Managed Instance (EngineEdition 8), which backs up only TO URL (Azure Blob Storage) with COPY_ONLY: BACKUP TO DISK, which octobackup uses, is not available there. Use Managed Instance's automated backups, or a COPY_ONLY BACKUP TO URL of your own. Nothing was changed: maintenance mode was not touched."
    )]
    ManagedInstance { server: String },
    #[error(
        "{server} is Amazon RDS for SQL Server (it has the rdsadmin database): RDS takes native backups only through msdb.dbo.rds_backup_database to S3, not BACKUP TO DISK, which octobackup uses. Use RDS snapshots or rds_backup_database. Nothing was changed: maintenance mode was not touched."
    )]
    AmazonRds { server: String },
    #[error(
        "the database '{database}' does not exist on {server} (Msg 911). Check Database/Initial Catalog in the connection string."
    )]
    NoDatabase { server: String, database: String },
    #[error(
        "SQL Server cannot write the backup to '{path}' (Msg {number}: {message}). The SQL Server service account needs write access to staging.sql_path, as SQL Server sees it."
    )]
    StagingNotWritable {
        path: String,
        number: u32,
        message: String,
    },
    #[error(
        "the login lacks permission for {statement} (Msg {number}: {message}). BACKUP needs sysadmin, db_owner or db_backupoperator; RESTORE needs CREATE DATABASE (dbcreator)."
    )]
    Permission {
        statement: String,
        number: u32,
        message: String,
    },
    #[error("SQL Server reported Msg {number} during {statement}: {message}")]
    Server {
        statement: String,
        number: u32,
        message: String,
    },
    #[error(
        "SQL Server went silent for longer than {0:?} during {1}; raise sql.command_timeout if the server is just slow"
    )]
    Timeout(Duration, String),
    #[error("{0}")]
    Config(String),
}

impl SqlError {
    pub fn number(&self) -> Option<u32> {
        match self {
            SqlError::StagingNotWritable { number, .. }
            | SqlError::Permission { number, .. }
            | SqlError::Server { number, .. } => Some(*number),
            SqlError::Login { .. } => Some(18456),
            SqlError::NoDatabase { .. } => Some(911),
            _ => None,
        }
    }
}

/// What a failed DBCC CHECKDB says about the database it checked.
#[derive(Debug, PartialEq, Eq)]
pub enum CheckDbVerdict {
    /// Consistency errors: the database is damaged. Msg 8900-8999 (8928, 8939, 8989, ...), 2570
    /// (data purity) and 824 (a page's checksum or torn-page check failed on read): Microsoft
    /// Learn, "MSSQLSERVER_8928", "MSSQLSERVER_2570", "MSSQLSERVER_824".
    Damaged,
    /// CHECKDB stopped before it could check: nothing is known about the data. The text says why.
    NotChecked(&'static str),
}

impl SqlError {
    /// Tells corruption found by DBCC CHECKDB apart from a CHECKDB that could not run.
    pub fn checkdb_verdict(&self) -> CheckDbVerdict {
        match self.number() {
            Some(8900..=8999 | 2570 | 824) => CheckDbVerdict::Damaged,
            // 5030: "The database could not be exclusively locked to perform the operation."
            Some(5030) => CheckDbVerdict::NotChecked(
                "another session holds the database (Msg 5030), so CHECKDB could not lock it",
            ),
            // 7926: CHECKDB's internal database snapshot could not be created.
            Some(7926) => CheckDbVerdict::NotChecked(
                "CHECKDB could not create its internal database snapshot (Msg 7926): the volume of the restored files must support sparse files and have free space",
            ),
            Some(7983 | 229 | 262 | 916) => CheckDbVerdict::NotChecked(
                "the login lacks permission for DBCC CHECKDB (it needs sysadmin or db_owner of the restored copy)",
            ),
            _ if matches!(self, SqlError::Timeout(..)) => CheckDbVerdict::NotChecked(
                "the server went silent past the client timeout before CHECKDB finished",
            ),
            Some(0) => CheckDbVerdict::NotChecked("the connection failed before CHECKDB finished"),
            _ => CheckDbVerdict::NotChecked("CHECKDB ended with an error before it finished"),
        }
    }
}

/// Where and how to connect. Holds the password (zeroized) but never prints it.
#[derive(Clone)]
pub struct SqlServer {
    pub conn: ConnectionString,
    password: Option<Secret>,
    pub command_timeout: Duration,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct ServerInfo {
    pub product_version: String,
    pub edition: String,
    pub engine_edition: i64,
    pub server_name: String,
    pub spid: i64,
    pub is_sysadmin: bool,
    /// The `rdsadmin` database exists: Amazon RDS.
    pub is_amazon_rds: bool,
}

impl ServerInfo {
    /// Refuses the platforms where BACKUP TO DISK does not exist, before anything is touched.
    pub fn check_backup_to_disk(&self, server: &str) -> Result<(), SqlError> {
        let server = server.to_string();
        match self.engine_edition {
            5 => Err(SqlError::AzureSqlDatabase { server }),
            8 => Err(SqlError::ManagedInstance { server }),
            _ if self.is_amazon_rds => Err(SqlError::AmazonRds { server }),
            _ => Ok(()),
        }
    }
}

pub type Connection = Client<Compat<TcpStream>>;

/// Asked on every long statement's connection right after it opens: the session id a KILL
/// names when ATTENTION goes unanswered (`super::kill`).
const SESSION_ID: &str = "SELECT @@SPID AS Spid";

pub struct Session {
    pub client: Connection,
    server: String,
    timeout: Duration,
    /// For a long statement's connection (`connect_unbounded`): its session id (@@SPID) and
    /// where to open a second connection, to KILL it when ATTENTION goes unacknowledged.
    pub(super) kill_target: Option<(i64, SqlServer)>,
}

impl SqlServer {
    /// `password` overrides one in the connection string.
    pub fn new(
        conn: ConnectionString,
        password: Option<Secret>,
        command_timeout: Duration,
    ) -> Self {
        let password = password.or_else(|| conn.password.clone());
        SqlServer {
            conn,
            password,
            command_timeout,
        }
    }

    pub fn database(&self) -> &str {
        &self.conn.database
    }

    pub fn server_display(&self) -> String {
        self.conn.server_display()
    }

    fn tiberius_config(&self) -> Result<Config, SqlError> {
        let c = &self.conn;
        let mut config = Config::new();
        config.host(&c.host);
        if let Some(port) = c.port {
            config.port(port);
        }
        // Without a port, tiberius asks SQL Browser (UDP 1434 of the host) for the instance's port.
        if let Some(i) = &c.instance {
            config.instance_name(i);
        }
        config.database("master");
        config.application_name(
            c.application_name
                .clone()
                .unwrap_or_else(|| "octobackup".into()),
        );
        config.encryption(match c.encrypt {
            Encrypt::Optional => EncryptionLevel::Off,
            Encrypt::Mandatory => EncryptionLevel::Required,
            Encrypt::Strict => EncryptionLevel::Strict,
        });
        // tiberius validates even login-only TLS; SqlClient and Octopus do not (see connstr).
        if !c.validates_certificate() {
            config.trust_cert();
        } else if let Some(name) = &c.host_name_in_certificate {
            config.hostname_in_certificate(name);
        }
        config.command_timeout(Some(self.command_timeout));
        config.handshake_timeout(Some(Duration::from_secs(
            c.connect_timeout_secs.unwrap_or(15),
        )));
        match &c.auth {
            Authentication::SqlLogin { user } => {
                let pw = self
                    .password
                    .as_ref()
                    .map(|p| p.expose().to_string())
                    .unwrap_or_default();
                config.authentication(tiberius::AuthMethod::sql_server(user, pw));
            }
            Authentication::Integrated => {
                #[cfg(windows)]
                config.authentication(tiberius::AuthMethod::Integrated);
                #[cfg(not(windows))]
                return Err(SqlError::Config(
                    "Integrated Security/Trusted_Connection works when octobackup runs on Windows; on this system use a SQL login (User ID=...)".into(),
                ));
            }
        }
        Ok(config)
    }

    /// A connection whose statements time out after `sql.command_timeout` of silence: for the
    /// short queries (properties, lookups, msdb, progress).
    pub async fn connect(&self) -> Result<Session, SqlError> {
        self.connect_with(Some(self.command_timeout)).await
    }

    /// A connection without a client command timeout, for BACKUP, RESTORE, VERIFYONLY and CHECKDB:
    /// they can be silent for minutes on a big database (CHECKDB WITH NO_INFOMSGS, file
    /// zeroing), and a tiberius timeout leaves the connection unusable without stopping the
    /// server's work (no ATTENTION is sent).
    pub async fn connect_unbounded(&self) -> Result<Session, SqlError> {
        let mut session = self.connect_with(None).await?;
        // Recorded now: once ATTENTION goes unanswered this connection cannot ask any more.
        let spid = session.query_text("session id", SESSION_ID).await?;
        let spid = spid
            .first()
            .and_then(|r| r.get("Spid").cloned().flatten())
            .and_then(|v| v.parse().ok());
        session.kill_target = spid.map(|spid| (spid, self.clone()));
        Ok(session)
    }

    async fn connect_with(&self, command_timeout: Option<Duration>) -> Result<Session, SqlError> {
        let mut config = self.tiberius_config()?;
        config.command_timeout(command_timeout);
        let server = self.server_display();
        let addr = config.get_addr();
        let named = self.conn.instance.is_some() && self.conn.port.is_none();
        let connect = async {
            let tcp = if named {
                TcpStream::connect_named(&config)
                    .await
                    .map_err(|e| self.tcp_error(&e.to_string(), tcp_refused(&e), true))?
            } else {
                let tcp = if self.conn.multi_subnet_failover {
                    connect_first(&addr).await
                } else {
                    TcpStream::connect(&addr).await
                };
                tcp.map_err(|e| {
                    let refused = e.kind() == std::io::ErrorKind::ConnectionRefused;
                    self.tcp_error(&e.to_string(), refused, false)
                })?
            };
            tcp.set_nodelay(true).ok();
            Client::connect(config, tcp.compat_write())
                .await
                .map_err(|e| self.connect_error(e))
        };
        let client = tokio::time::timeout(
            Duration::from_secs(self.conn.connect_timeout_secs.unwrap_or(15) + 5),
            connect,
        )
        .await
        .map_err(|_| SqlError::Connect {
            server: server.clone(),
            cause: "timed out".into(),
        })??;
        Ok(Session {
            client,
            server,
            timeout: command_timeout.unwrap_or(Duration::MAX),
            kill_target: None,
        })
    }

    /// The TCP connect (or SQL Browser lookup) failed. A refusal on this machine or at a named
    /// instance, or a Browser that gives no port, is most often TCP/IP left disabled.
    fn tcp_error(&self, cause: &str, refused: bool, through_browser: bool) -> SqlError {
        tcp_failure(&self.conn, cause, refused, through_browser)
    }
    fn connect_error(&self, e: tiberius::error::Error) -> SqlError {
        let server = self.server_display();
        match e {
            tiberius::error::Error::Server(t) if t.code() == 18456 => SqlError::Login {
                server,
                user: match &self.conn.auth {
                    Authentication::SqlLogin { user } => user.clone(),
                    Authentication::Integrated => "(integrated security)".into(),
                },
            },
            // A certificate can only be the cause when it is validated.
            tiberius::error::Error::Tls(cause) if self.conn.validates_certificate() => {
                SqlError::Tls { server, cause }
            }
            tiberius::error::Error::Tls(cause) => SqlError::TlsHandshake { server, cause },
            tiberius::error::Error::Server(t) => SqlError::Server {
                statement: "login".into(),
                number: t.code(),
                message: t.message().to_string(),
            },
            other => SqlError::Connect {
                server,
                cause: other.to_string(),
            },
        }
    }
}

/// `MultiSubnetFailover=True`: an Availability Group listener's name resolves to one address per
/// subnet and only the primary's answers, so every address is tried at once and the first TCP
/// connection made wins; the others are dropped (Microsoft Learn,
/// SqlConnectionStringBuilder.MultiSubnetFailover: "faster detection of and connection to the
/// (currently) active server").
async fn connect_first(addr: &str) -> std::io::Result<TcpStream> {
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host(addr).await?.collect();
    connect_first_of(addrs).await
}

async fn connect_first_of(addrs: Vec<std::net::SocketAddr>) -> std::io::Result<TcpStream> {
    let mut attempts = tokio::task::JoinSet::new();
    for a in addrs {
        attempts.spawn(async move { TcpStream::connect(a).await });
    }
    let mut last = None;
    while let Some(attempt) = attempts.join_next().await {
        match attempt {
            // dropping the set aborts the attempts still running
            Ok(Ok(tcp)) => return Ok(tcp),
            Ok(Err(e)) => last = Some(e),
            Err(e) => last = Some(std::io::Error::other(e)),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the server name resolved to no address",
        )
    }))
}

fn tcp_refused(e: &tiberius::error::Error) -> bool {
    matches!(
        e,
        tiberius::error::Error::Io {
            kind: std::io::ErrorKind::ConnectionRefused,
            ..
        }
    )
}

/// What a failed TCP connect says. `through_browser`: the port was asked of SQL Browser, whose
/// "cannot resolve" means the instance lists no TCP port (TCP/IP disabled) or Browser is not running.
pub fn tcp_failure(
    conn: &ConnectionString,
    cause: &str,
    refused: bool,
    through_browser: bool,
) -> SqlError {
    let server = conn.server_display();
    if through_browser || (refused && (conn.instance.is_some() || conn.is_local())) {
        let instance = conn
            .instance
            .clone()
            .unwrap_or_else(|| "MSSQLSERVER".into());
        let browser = if conn.instance.is_some() && conn.port.is_none() {
            "; a named instance without a port in the connection string is found through the SQL Server Browser service, which must be running (UDP 1434 reachable)"
        } else {
            ""
        };
        return SqlError::TcpDisabled {
            server,
            cause: cause.to_string(),
            instance,
            browser,
        };
    }
    SqlError::Connect {
        server,
        cause: cause.to_string(),
    }
}

/// A cell as text, whatever its SQL type (msdb's LSNs are numeric(25,0), GUIDs uniqueidentifier...).
pub fn cell_text(data: &ColumnData<'static>) -> Option<String> {
    Some(match data {
        ColumnData::U8(v) => v.as_ref()?.to_string(),
        ColumnData::I16(v) => v.as_ref()?.to_string(),
        ColumnData::I32(v) => v.as_ref()?.to_string(),
        ColumnData::I64(v) => v.as_ref()?.to_string(),
        ColumnData::F32(v) => v.as_ref()?.to_string(),
        ColumnData::F64(v) => v.as_ref()?.to_string(),
        ColumnData::Bit(v) => (if (*v)? { "1" } else { "0" }).to_string(),
        ColumnData::String(v) => v.as_ref()?.to_string(),
        ColumnData::Guid(v) => v.as_ref()?.to_string().to_uppercase(),
        ColumnData::Binary(v) => hex::encode(v.as_ref()?),
        ColumnData::Numeric(v) => {
            let n = (*v)?;
            if n.scale() == 0 {
                n.value().to_string()
            } else {
                n.to_string()
            }
        }
        ColumnData::DateTime(_) | ColumnData::SmallDateTime(_) | ColumnData::DateTime2(_) => {
            chrono::NaiveDateTime::from_sql(data)
                .ok()??
                .format("%Y-%m-%dT%H:%M:%S%.3f")
                .to_string()
        }
        other => format!("{other:?}"),
    })
}

/// Rows as (column name -> text) maps, for the few small result sets octobackup reads.
pub type TextRow = std::collections::BTreeMap<String, Option<String>>;

impl Session {
    fn statement_error(
        &self,
        statement: &str,
        e: tiberius::error::Error,
        path_hint: Option<&str>,
    ) -> SqlError {
        match e {
            tiberius::error::Error::Server(t) => {
                let (number, message) = (t.code(), t.message().to_string());
                match number {
                    3201 | 3013 if path_hint.is_some() => SqlError::StagingNotWritable {
                        path: path_hint.unwrap().to_string(),
                        number,
                        message,
                    },
                    911 => SqlError::NoDatabase {
                        server: self.server.clone(),
                        database: path_hint.unwrap_or("?").to_string(),
                    },
                    229 | 262 | 916 | 3110 => SqlError::Permission {
                        statement: statement.into(),
                        number,
                        message,
                    },
                    40510 => SqlError::AzureSqlDatabase {
                        server: self.server.clone(),
                    },
                    _ => SqlError::Server {
                        statement: statement.into(),
                        number,
                        message,
                    },
                }
            }
            tiberius::error::Error::Io {
                kind: std::io::ErrorKind::TimedOut,
                ..
            } => SqlError::Timeout(self.timeout, statement.into()),
            other => SqlError::Server {
                statement: statement.into(),
                number: 0,
                message: other.to_string(),
            },
        }
    }

    /// Runs a batch and returns the rows of its first result set as text.
    pub async fn query_text(&mut self, what: &str, sql: &str) -> Result<Vec<TextRow>, SqlError> {
        tracing::debug!(target: "octobackup::sql", "{what}: {sql}");
        let results = run_batch(&mut self.client, sql).await;
        let results = results.map_err(|e| self.statement_error(what, e, None))?;
        Ok(results
            .into_iter()
            .next()
            .unwrap_or_default()
            .iter()
            .map(|row| {
                row.cells()
                    .map(|(c, d)| (c.name().to_string(), cell_text(d)))
                    .collect()
            })
            .collect())
    }

    /// ATTENTION only: true when SQL Server acknowledged it within `wait`. Otherwise the
    /// connection is unusable.
    pub(super) async fn attention(&mut self, wait: Duration) -> bool {
        matches!(
            tokio::time::timeout(wait, self.client.cancel_query()).await,
            Ok(Ok(()))
        )
    }

    /// Runs a batch that returns no rows; `path_hint` names the file a failure is about.
    pub async fn execute(
        &mut self,
        what: &str,
        sql: &str,
        path_hint: Option<&str>,
    ) -> Result<(), SqlError> {
        tracing::debug!(target: "octobackup::sql", "{what}: {sql}");
        let r = run_batch(&mut self.client, sql).await;
        r.map(|_| ())
            .map_err(|e| self.statement_error(what, e, path_hint))
    }

    pub async fn server_info(&mut self) -> Result<ServerInfo, SqlError> {
        let rows = self
            .query_text("server properties", tsql::SERVER_INFO)
            .await?;
        let row = rows.into_iter().next().ok_or_else(|| SqlError::Server {
            statement: "server properties".into(),
            number: 0,
            message: "no row".into(),
        })?;
        let get = |k: &str| row.get(k).cloned().flatten().unwrap_or_default();
        Ok(ServerInfo {
            product_version: get("ProductVersion"),
            edition: get("Edition"),
            engine_edition: get("EngineEdition").parse().unwrap_or(0),
            server_name: get("ServerName"),
            spid: get("Spid").parse().unwrap_or(0),
            is_sysadmin: get("IsSysadmin") == "1",
            is_amazon_rds: !get("RdsAdmin").is_empty(),
        })
    }

    pub async fn database_exists(&mut self, database: &str) -> Result<bool, SqlError> {
        let rows = self
            .query_text("database lookup", &tsql::database_id(database))
            .await?;
        Ok(rows
            .first()
            .and_then(|r| r.get("DatabaseId").cloned().flatten())
            .is_some())
    }

    pub async fn backupset_row(
        &mut self,
        database: &str,
        description: &str,
    ) -> Result<Option<BackupSetRow>, SqlError> {
        let rows = self
            .query_text(
                "msdb backup history",
                &tsql::backupset_row(database, description),
            )
            .await?;
        Ok(rows.into_iter().next().map(|r| {
            let s = |k: &str| r.get(k).cloned().flatten().unwrap_or_default();
            BackupSetRow {
                backup_set_uuid: s("backup_set_uuid"),
                database_guid: s("database_guid"),
                first_lsn: s("first_lsn"),
                last_lsn: s("last_lsn"),
                checkpoint_lsn: s("checkpoint_lsn"),
                database_backup_lsn: s("database_backup_lsn"),
                backup_start_date: s("backup_start_date"),
                backup_finish_date: s("backup_finish_date"),
                backup_type: s("type"),
                is_copy_only: s("is_copy_only") == "1",
                has_backup_checksums: s("has_backup_checksums") == "1",
                is_damaged: s("is_damaged") == "1",
                backup_size: s("backup_size").parse().unwrap_or(0),
                compressed_backup_size: s("compressed_backup_size").parse().unwrap_or(0),
                recovery_model: s("recovery_model"),
                physical_device_name: s("physical_device_name"),
            }
        }))
    }
}

/// Sends a plain batch and collects every result set.
async fn run_batch(
    client: &mut Connection,
    sql: &str,
) -> Result<Vec<Vec<tiberius::Row>>, tiberius::error::Error> {
    client.simple_query(sql).await?.into_results().await
}

/// Runs `statement` (a BACKUP or RESTORE) on `session` while a second connection polls its
/// progress every `poll` and hands the percentage to `progress`.
pub async fn run_with_progress(
    server: &SqlServer,
    session: &mut Session,
    spid: i64,
    what: &str,
    statement: &str,
    path_hint: Option<&str>,
    progress: &(dyn Fn(f64) + Sync),
) -> Result<(), SqlError> {
    let poller = async {
        // Progress is a nicety: a poller that cannot connect just stays quiet.
        let Ok(mut watcher) = server.connect().await else {
            return std::future::pending::<()>().await;
        };
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if let Ok(rows) = watcher
                .query_text("progress", &tsql::request_progress(spid as i32))
                .await
                && let Some(p) = rows
                    .first()
                    .and_then(|r| r.get("percent_complete").cloned().flatten())
                    .and_then(|p| p.parse::<f64>().ok())
            {
                progress(p);
            }
        }
    };
    tokio::select! {
        r = session.execute(what, statement, path_hint) => r,
        _ = poller => unreachable!("the poller never ends"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkdb_corruption_is_told_apart_from_checkdb_that_could_not_run() {
        let server = |number| SqlError::Server {
            statement: "DBCC CHECKDB".into(),
            number,
            message: "m".into(),
        };
        for n in [8928, 8939, 8989, 8958, 2570, 824] {
            assert_eq!(server(n).checkdb_verdict(), CheckDbVerdict::Damaged, "{n}");
        }
        for n in [5030, 7926, 7983, 0, 3013, 701] {
            assert!(
                matches!(server(n).checkdb_verdict(), CheckDbVerdict::NotChecked(_)),
                "{n}"
            );
        }
        let CheckDbVerdict::NotChecked(why) = server(5030).checkdb_verdict() else {
            unreachable!()
        };
        assert!(why.contains("5030"), "{why}");
        let timeout = SqlError::Timeout(Duration::from_secs(30), "DBCC CHECKDB".into());
        let CheckDbVerdict::NotChecked(why) = timeout.checkdb_verdict() else {
            panic!("a timeout is not corruption")
        };
        assert!(why.contains("timeout"), "{why}");
        let permission = SqlError::Permission {
            statement: "DBCC CHECKDB".into(),
            number: 7983,
            message: "m".into(),
        };
        assert!(matches!(
            permission.checkdb_verdict(),
            CheckDbVerdict::NotChecked(_)
        ));
    }

    /// An Availability Group listener's name: one address per subnet, only one answers.
    #[tokio::test]
    async fn multi_subnet_failover_keeps_the_address_that_answers() {
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = live.local_addr().unwrap().port();
        // 127.0.0.2 is loopback too, with nothing listening on the port: refused
        let dead: std::net::SocketAddr = format!("127.0.0.2:{port}").parse().unwrap();
        let tcp = connect_first_of(vec![dead, live.local_addr().unwrap()])
            .await
            .unwrap();
        assert_eq!(tcp.peer_addr().unwrap(), live.local_addr().unwrap());
        let (accepted, _) = live.accept().await.unwrap();
        assert_eq!(accepted.peer_addr().unwrap(), tcp.local_addr().unwrap());
        // through a name
        let tcp = connect_first(&format!("localhost:{port}")).await.unwrap();
        assert_eq!(tcp.peer_addr().unwrap().port(), port);
        // none answers: the failure of the last one
        drop(live);
        let e = connect_first_of(vec![dead, dead]).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
        let e = connect_first_of(Vec::new()).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    }

    fn conn(server: &str) -> ConnectionString {
        ConnectionString::parse(&format!(
            "Server={server};Database=OctopusDeploy;User ID=octo;Password=hunter2"
        ))
        .unwrap()
    }

    #[test]
    fn a_refused_local_or_named_instance_says_tcp_ip_may_be_off_and_how_to_enable_it() {
        let e = tcp_failure(
            &conn(r"(local)\SQLEXPRESS,1433"),
            "Connection refused",
            true,
            false,
        );
        let text = e.to_string();
        assert!(matches!(e, SqlError::TcpDisabled { .. }), "{text}");
        assert!(text.contains("TCP/IP protocol may be disabled"), "{text}");
        assert!(
            text.contains("SQL Server Configuration Manager")
                && text.contains("Protocols for SQLEXPRESS > TCP/IP")
                && text.contains("restart the SQL Server (SQLEXPRESS) service"),
            "{text}"
        );
        assert!(
            !text.contains("SQL Server Browser"),
            "a port was given: {text}"
        );
        assert!(!text.contains("hunter2"));
        // A default instance on this machine.
        let text = tcp_failure(&conn("localhost"), "Connection refused", true, false).to_string();
        assert!(text.contains("Protocols for MSSQLSERVER"), "{text}");
        // A named instance without a port: SQL Browser is named too.
        let text = tcp_failure(
            &conn(r"sql01\OCTOPUS"),
            "Could not resolve SQL browser instance OCTOPUS",
            false,
            true,
        )
        .to_string();
        assert!(
            text.contains("TCP/IP protocol may be disabled")
                && text.contains("SQL Server Browser service"),
            "{text}"
        );
    }

    #[test]
    fn a_remote_default_instance_that_refuses_is_a_plain_connect_error() {
        let e = tcp_failure(
            &conn("sql01.example.com"),
            "Connection refused",
            true,
            false,
        );
        assert!(matches!(e, SqlError::Connect { .. }), "{e}");
        let e = tcp_failure(&conn("localhost"), "timed out", false, false);
        assert!(matches!(e, SqlError::Connect { .. }), "{e}");
    }

    #[test]
    fn managed_instance_and_rds_are_refused_azure_sql_database_too() {
        let info = |engine_edition, is_amazon_rds| ServerInfo {
            product_version: "16.0.4135.4".into(),
            edition: String::new(),
            engine_edition,
            server_name: String::new(),
            spid: 52,
            is_sysadmin: true,
            is_amazon_rds,
        };
        assert!(matches!(
            info(8, false).check_backup_to_disk("s"),
            Err(SqlError::ManagedInstance { .. })
        ));
        assert!(matches!(
            info(2, true).check_backup_to_disk("s"),
            Err(SqlError::AmazonRds { .. })
        ));
        assert!(matches!(
            info(5, false).check_backup_to_disk("s"),
            Err(SqlError::AzureSqlDatabase { .. })
        ));
        for edition in [2, 3, 4] {
            assert!(info(edition, false).check_backup_to_disk("s").is_ok());
        }
    }

    #[test]
    fn a_tls_failure_is_blamed_on_the_certificate_only_when_it_was_validated() {
        let failure = |tail: &str| {
            let cs =
                ConnectionString::parse(&format!("Server=s;Database=D;User ID=u;{tail}")).unwrap();
            SqlServer::new(cs, None, Duration::from_secs(60))
                .connect_error(tiberius::error::Error::Tls("handshake failure".into()))
        };
        let e = failure("Encrypt=True;TrustServerCertificate=False");
        assert!(matches!(e, SqlError::Tls { .. }), "{e}");
        assert!(e.to_string().contains("TrustServerCertificate=True"), "{e}");
        assert!(matches!(failure("Encrypt=Strict"), SqlError::Tls { .. }));
        let e = failure("Encrypt=True");
        assert!(matches!(e, SqlError::TlsHandshake { .. }), "{e}");
        assert!(matches!(
            failure("Encrypt=False"),
            SqlError::TlsHandshake { .. }
        ));
    }

    #[test]
    fn strict_and_named_instances_reach_tiberius() {
        let server = |cs: &str| {
            SqlServer::new(
                ConnectionString::parse(cs).unwrap(),
                None,
                Duration::from_secs(60),
            )
        };
        // A named instance without a port asks SQL Browser on 1434; with a port, goes there.
        let c = server(r"Server=sql01\OCTOPUS;Database=D;User ID=u")
            .tiberius_config()
            .unwrap();
        assert_eq!(c.get_addr(), "sql01:1434");
        let c = server(r"Server=sql01\OCTOPUS,14330;Database=D;User ID=u")
            .tiberius_config()
            .unwrap();
        assert_eq!(c.get_addr(), "sql01:14330");
        let c = server(r"Server=.\SQLEXPRESS;Database=D;User ID=u")
            .tiberius_config()
            .unwrap();
        assert_eq!(c.get_addr(), "localhost:1434");
        // Encrypt=Strict is accepted (TDS 8.0) rather than refused.
        assert!(
            server("Server=s;Database=D;User ID=u;Encrypt=Strict")
                .tiberius_config()
                .is_ok()
        );
    }
}
