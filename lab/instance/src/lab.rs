//! A running lab: the instance on disk plus both stand-ins serving it on 127.0.0.1, and the event
//! log they share. Used by octobackup's tests, `octobackup-lab demo`, `octobackup-lab up` and the benchmark.

use crate::events::{EventLog, LabEvent};
use crate::fingerprint::Fingerprint;
use crate::folders::ServerFolders;
use crate::instance::{self, ChurnReport, InstanceOptions, InstancePaths, InstanceState};
use crate::secret_file;
use octopus_sim::{ApiKey, License, OctopusConfig, OctopusHandle};
use serde::{Deserialize, Serialize};
use sqlserver_sim::{
    BrowserHandle, BrowserInstance, Edition, Platform, ServerOptions, SqlLogin, SqlServerConfig,
    SqlServerHandle, TlsSupport, Volume,
};
use std::path::{Path, PathBuf};

/// What a client needs to reach the lab: written to `lab.json` (owner-only: it holds the lab's keys).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LabInfo {
    pub dir: PathBuf,
    pub octopus_url: String,
    pub octopus_version: String,
    pub admin_api_key: String,
    /// A valid key whose user lacks Administer System.
    pub reader_api_key: String,
    pub sql_address: String,
    /// SQL Server Browser (`ip:1434`, UDP) when the lab runs a named instance.
    #[serde(default)]
    pub sql_browser_address: Option<String>,
    /// The named instance SQL Browser resolves (`Server=IP\INSTANCE` without a port).
    #[serde(default)]
    pub sql_instance: Option<String>,
    pub sql_login: String,
    pub sql_password: String,
    /// A login without sysadmin, for permission failures.
    pub reader_sql_login: String,
    pub reader_sql_password: String,
    /// A sysadmin login a DBA would use (`sa`), for running grants against the lab. Its password
    /// is new at each start.
    #[serde(default)]
    pub admin_sql_login: String,
    #[serde(default)]
    pub admin_sql_password: String,
    pub database: String,
    pub folders: ServerFolders,
    /// The share as octobackup sees it (and as SQL Server does, unless `staging_sql_path`).
    pub staging_dir: PathBuf,
    /// The share as SQL Server sees it when that differs: SQL Server on Linux in its container
    /// sees the staging folder mounted at `/var/opt/mssql/backup/octobackup`.
    #[serde(default)]
    pub staging_sql_path: Option<String>,
    pub events_file: PathBuf,
    pub instance_name: String,
    pub day: u32,
}

impl LabInfo {
    pub fn read(dir: &Path) -> anyhow::Result<Self> {
        let path = InstancePaths::new(dir).lab_json();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e} (is a lab running there? start one with `octobackup-lab up --dir {}`)", path.display(), dir.display()))?;
        Ok(serde_json::from_str(&text)?)
    }
}

/// How to start a lab.
#[derive(Clone, Debug)]
pub struct LabOptions {
    pub dir: PathBuf,
    /// Used only when the folder holds no instance yet.
    pub instance: InstanceOptions,
    pub edition: Edition,
    pub tls: bool,
    /// SERVERPROPERTY('ProductVersion'): "16.0.4135.4" (2022); "12.0.6024.0" is SQL Server 2014.
    pub sql_product_version: String,
    /// Server settings (backup compression default, posing as Amazon RDS).
    pub sql_options: ServerOptions,
    /// Run as this named instance, found through SQL Server Browser on a loopback address of
    /// the lab's own (where the platform routes all of 127/8 to loopback: Linux).
    pub sql_instance: Option<String>,
    /// The TCP/IP protocol on (false: as SQL Express ships, SQL Browser lists no TCP port).
    pub sql_tcp: bool,
    /// octobackup's login (`sql_login`) gets only what a DBA gives by default: a user in the
    /// Octopus database, no roles, no server permissions. Off: it is sysadmin.
    pub sql_least_privilege: bool,
    /// SQL Server 2022 on Linux in its container (`sqlserver_sim::Platform::Linux`): its data
    /// folder is /var/opt/mssql/data and the staging folder is mounted at
    /// [`LINUX_STAGING`], as `docker run -v STAGING:/var/opt/mssql/backup/octobackup` does.
    pub sql_linux: bool,
}

/// Where SQL Server on Linux sees the lab's staging folder.
pub const LINUX_STAGING: &str = "/var/opt/mssql/backup/octobackup";

/// The lab's sysadmin login for a DBA's work (grants), beside octobackup's own.
pub const ADMIN_SQL_LOGIN: &str = "sa";

/// The instance name the lab gives SQL Server.
pub const LAB_SQL_INSTANCE: &str = "OCTOPUS";

impl LabOptions {
    pub fn new(dir: &Path) -> Self {
        LabOptions {
            dir: dir.to_path_buf(),
            instance: InstanceOptions::default(),
            edition: Edition::Developer,
            tls: true,
            sql_product_version: "16.0.4135.4".to_string(),
            sql_options: ServerOptions::default(),
            sql_instance: Some(LAB_SQL_INSTANCE.to_string()),
            sql_tcp: true,
            sql_least_privilege: false,
            sql_linux: false,
        }
    }
}

pub struct Lab {
    paths: InstancePaths,
    info: LabInfo,
    octopus: OctopusHandle,
    sql: SqlServerHandle,
    sql_browser: Option<BrowserHandle>,
    events: EventLog,
}

impl Lab {
    /// Starts both stand-ins over the instance in `opts.dir`, building the instance first if the
    /// folder has none.
    pub async fn start(opts: LabOptions) -> anyhow::Result<Lab> {
        let paths = InstancePaths::new(&opts.dir);
        std::fs::create_dir_all(&paths.root)?;
        let state = if paths.state_file().exists() {
            InstanceState::load(&paths)?
        } else {
            let p = paths.clone();
            let o = opts.instance.clone();
            tokio::task::spawn_blocking(move || instance::create(&p, &o)).await??
        };
        let events = EventLog::with_file(&paths.events())?;
        let folders = paths.folders();

        // A named instance gets a loopback address of its own, so its SQL Browser can own
        // UDP 1434 there while other labs run.
        let mut sql_browser = None;
        if opts.sql_instance.is_some() && cfg!(target_os = "linux") {
            for _ in 0..16 {
                let ip = sqlserver_sim::random_loopback();
                match sqlserver_sim::start_browser(ip, Vec::new()).await {
                    Ok(browser) => {
                        sql_browser = Some(browser);
                        break;
                    }
                    Err(e) => tracing::debug!("SQL Browser on {ip}: {e:#}"),
                }
            }
        }
        let listen = sql_browser.as_ref().map(|b| b.addr().ip());
        let admin_sql_password = format!("Lab;Sa!{}", uuid::Uuid::new_v4().simple());
        let sql = sqlserver_sim::start(SqlServerConfig {
            data_dir: paths.sql_data_dir(),
            logins: vec![
                SqlLogin {
                    name: state.sql_login.clone(),
                    password: state.sql_password.clone(),
                    sysadmin: !opts.sql_least_privilege,
                },
                SqlLogin {
                    name: ADMIN_SQL_LOGIN.to_string(),
                    password: admin_sql_password.clone(),
                    sysadmin: true,
                },
                SqlLogin {
                    name: state.reader_sql_login.clone(),
                    password: state.reader_sql_password.clone(),
                    sysadmin: false,
                },
            ],
            edition: opts.edition,
            product_version: opts.sql_product_version.clone(),
            tls: if opts.tls {
                TlsSupport::Supported
            } else {
                TlsSupport::NotSupported
            },
            events: Some(events.sink("sqlserver")),
            options: ServerOptions {
                listen,
                platform: if opts.sql_linux {
                    Platform::Linux {
                        volumes: vec![Volume {
                            container_path: LINUX_STAGING.to_string(),
                            host_path: paths.staging(),
                        }],
                    }
                } else {
                    opts.sql_options.platform.clone()
                },
                ..opts.sql_options.clone()
            },
        })
        .await?;
        if let (Some(browser), Some(instance)) = (&sql_browser, &opts.sql_instance) {
            browser.set_instances(vec![BrowserInstance {
                server_name: sqlserver_sim::SERVER_NAME.to_string(),
                instance_name: instance.clone(),
                version: opts.sql_product_version.clone(),
                tcp_port: opts.sql_tcp.then(|| sql.addr().port()),
            }]);
        }
        if !sql.databases().iter().any(|d| d == &state.database) {
            sql.attach_database(
                &state.database,
                &paths.data_file(&state.database),
                &paths.log_file(&state.database),
            )?;
        }

        // Each non-sysadmin login has a user (public only) in the Octopus database, as after
        // `CREATE USER ... FOR LOGIN ...`: it can log in there, and nothing more.
        for login in [&state.reader_sql_login, &state.sql_login] {
            sql.create_user(&state.database, login, login);
        }

        let mut config = OctopusConfig::new(paths.home());
        config.version = state.octopus_version.clone();
        config.installation_id = state.installation_id;
        config.api_keys = vec![
            ApiKey {
                key: state.admin_api_key.clone(),
                user: "octobackup-service".into(),
                administer_system: true,
            },
            ApiKey {
                key: state.reader_api_key.clone(),
                user: "release-manager".into(),
                administer_system: false,
            },
        ];
        config.license = License {
            text: state.license_xml.clone(),
            serial_number: state.license_serial.clone(),
            expiry: state.license_expiry,
            compliant: true,
        };
        config.nodes = state.node_names.clone();
        config.events = Some(events.sink("octopus"));
        let octopus = octopus_sim::start(config).await?;

        let info = LabInfo {
            dir: paths.root.clone(),
            octopus_url: octopus.url(),
            octopus_version: state.octopus_version.clone(),
            admin_api_key: state.admin_api_key.clone(),
            reader_api_key: state.reader_api_key.clone(),
            sql_address: sql.addr().to_string(),
            sql_browser_address: sql_browser.as_ref().map(|b| b.addr().to_string()),
            sql_instance: sql_browser.as_ref().and(opts.sql_instance.clone()),
            sql_login: state.sql_login.clone(),
            sql_password: state.sql_password.clone(),
            reader_sql_login: state.reader_sql_login.clone(),
            reader_sql_password: state.reader_sql_password.clone(),
            admin_sql_login: ADMIN_SQL_LOGIN.to_string(),
            admin_sql_password,
            database: state.database.clone(),
            folders,
            staging_dir: paths.staging(),
            staging_sql_path: opts.sql_linux.then(|| LINUX_STAGING.to_string()),
            events_file: paths.events(),
            instance_name: state.instance_name.clone(),
            day: state.day,
        };
        secret_file::write(
            &paths.lab_json(),
            serde_json::to_string_pretty(&info)?.as_bytes(),
        )?;
        Ok(Lab {
            paths,
            info,
            octopus,
            sql,
            sql_browser,
            events,
        })
    }

    pub fn info(&self) -> &LabInfo {
        &self.info
    }
    pub fn dir(&self) -> &Path {
        &self.paths.root
    }
    pub fn octopus(&self) -> &OctopusHandle {
        &self.octopus
    }
    pub fn sql(&self) -> &SqlServerHandle {
        &self.sql
    }
    pub fn events(&self) -> Vec<LabEvent> {
        self.events.events()
    }
    pub fn event_log(&self) -> &EventLog {
        &self.events
    }
    /// The host's view: master key, passwords. What `show-master-key` reads.
    pub fn state(&self) -> anyhow::Result<InstanceState> {
        InstanceState::load(&self.paths)
    }

    /// Simulated days of use (folders and database), while the stand-ins keep serving.
    pub async fn churn(&mut self, days: u32) -> anyhow::Result<ChurnReport> {
        let p = self.paths.clone();
        // The SQL stand-in serialises file work on a database with its own statements.
        let _files = self.sql.lock_database(&self.info.database).await;
        let report = tokio::task::spawn_blocking(move || instance::churn(&p, days)).await??;
        self.info.day = report.day_now;
        secret_file::write(
            &self.paths.lab_json(),
            serde_json::to_string_pretty(&self.info)?.as_bytes(),
        )?;
        Ok(report)
    }

    /// The instance's state now (database content and folder files).
    pub async fn fingerprint(&self) -> anyhow::Result<Fingerprint> {
        let p = self.paths.clone();
        let db = self.info.database.clone();
        tokio::task::spawn_blocking(move || instance::fingerprint(&p, &db)).await?
    }

    pub async fn shutdown(self) {
        if let Some(browser) = self.sql_browser {
            browser.shutdown();
        }
        self.octopus.shutdown().await;
        self.sql.shutdown().await;
    }
}
