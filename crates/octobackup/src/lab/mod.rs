//! `octobackup-lab`: the bundled lab (a simulated Octopus Server and SQL Server with an instance
//! that grows day by day), the demo and the benchmark. Built only with the `lab` feature, as a binary
//! of its own: the shipped `octobackup` holds none of it.

mod bench;
mod demo;
mod octopus_server;
mod scale;

use crate::cli::{emit, ui::Ui};
use crate::config::{
    Config, InstanceConfig, MasterKeySource, RepositoryConfig, SqlConfig, StagingConfig, WaitConfig,
};
use crate::error::{Exit, Failure};
use octobackup_lab::{
    InstanceOptions, InstancePaths, InstanceState, Lab, LabInfo, LabOptions, Size,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(clap::Parser, Debug)]
#[command(
    name = "octobackup-lab",
    version,
    about = "The lab: a simulated Octopus Server and SQL Server to try, test and measure octobackup against."
)]
pub struct LabCli {
    /// The config file (for restore-set).
    #[arg(
        long,
        short,
        global = true,
        env = "OCTOBACKUP_CONFIG",
        default_value = "octobackup.toml"
    )]
    pub config: PathBuf,
    /// Print the result as JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// More detail on stderr.
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: LabCommand,
}

/// The `octobackup-lab` binary's entry point.
pub fn main() -> std::process::ExitCode {
    let cli = <LabCli as clap::Parser>::parse();
    crate::cli::run_main(cli.verbose, cli.json, async move {
        let ui = Ui::new(cli.json);
        run(cli.command, &cli.config, cli.json, &ui).await
    })
}

/// The product binary beside this one (`octobackup`, `octobackup.exe`): the demo's and the
/// benchmark's backups run the binary an administrator runs.
pub fn product_exe() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let dir = me
        .parent()
        .ok_or_else(|| anyhow::anyhow!("{} has no folder", me.display()))?;
    let exe = dir.join(format!("octobackup{}", std::env::consts::EXE_SUFFIX));
    anyhow::ensure!(
        exe.is_file(),
        "{} is missing: build both binaries (cargo build --features lab)",
        exe.display()
    );
    Ok(exe)
}

#[derive(clap::Subcommand, Debug)]
pub enum LabCommand {
    /// See octobackup work end to end against the bundled lab, in under a minute.
    Demo(demo::Args),
    /// Build (first time) and start the lab in DIR; writes DIR/lab.json and DIR/octobackup.toml. Runs until Ctrl-C.
    Up(UpArgs),
    /// Simulate days of use: new packages, task logs, artifacts, database changes.
    Churn {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 1)]
        days: u32,
    },
    /// Print a fingerprint of the instance (database content and every folder file) as JSON.
    Fingerprint {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Measure octobackup against the manual procedure and stock restic on a lab instance.
    Bench(bench::Args),
    /// Restore a set's folders and database file to a folder (the benchmark's restore).
    #[command(hide = true)]
    RestoreSet {
        #[arg(long)]
        target: PathBuf,
        #[arg(long, default_value = "latest")]
        set: String,
    },
    /// The lab's stand-in for `Octopus.Server show-master-key`.
    ShowMasterKey {
        #[arg(long)]
        dir: PathBuf,
        /// text (the key alone, as Octopus's docs show it) or json.
        #[arg(long, default_value = "text")]
        format: String,
        /// Print log lines and exception text around the key.
        #[arg(long)]
        pollute: bool,
        /// Accepted for compatibility with Octopus.Server's arguments.
        #[arg(long)]
        instance: Option<String>,
    },
    /// The lab's stand-in for the `Octopus.Server` executable on the host (show-configuration,
    /// show-master-key), for discovery: `octobackup-lab octopus-server --dir DIR show-configuration --instance X --format=json-hierarchical`.
    OctopusServer(octopus_server::OctopusServerArgs),
}

#[derive(clap::Args, Debug)]
pub struct UpArgs {
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long, default_value = "small")]
    pub size: Size,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Master key length: 16 (AES-128) or 32 (AES-256).
    #[arg(long, default_value_t = 16)]
    pub key_bytes: usize,
    /// Serve SQL without TLS (the connection string then says Encrypt=False).
    #[arg(long)]
    pub no_tls: bool,
    #[command(flatten)]
    pub sql: SqlFieldArgs,
}

/// SQL Server as some real installs are: for trying octobackup against them by hand.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct SqlFieldArgs {
    /// SERVERPROPERTY('ProductVersion'), e.g. 12.0.6024.0 for SQL Server 2014.
    #[arg(long)]
    pub sql_version: Option<String>,
    /// Start with `backup compression default` on (sp_configure ... 1; RECONFIGURE).
    #[arg(long)]
    pub backup_compression_default: bool,
    /// Pose as another platform: Managed Instance or RDS (no BACKUP TO DISK), or SQL Server on
    /// Linux in its container.
    #[arg(long, value_enum)]
    pub sql_platform: Option<SqlPlatform>,
    /// TCP/IP disabled, as SQL Express ships (SQL Browser lists no TCP port).
    #[arg(long)]
    pub sql_tcp_off: bool,
    /// octobackup's SQL login gets only a user in the Octopus database (no roles, no server
    /// permissions), as a DBA creates a login; `doctor` then names the grants it needs.
    #[arg(long)]
    pub sql_least_privilege: bool,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum SqlPlatform {
    ManagedInstance,
    Rds,
    /// SQL Server 2022 on Linux in its container (paths under /var/opt/mssql).
    Linux,
}

async fn run(cmd: LabCommand, config_path: &Path, json: bool, ui: &Ui) -> Result<(), Failure> {
    let fail = |e: anyhow::Error| Failure::new(Exit::Failed, format!("{e:#}"));
    match cmd {
        LabCommand::Demo(a) => demo::run(a, json, ui).await,
        LabCommand::Bench(a) => match a.scale.clone() {
            Some(points) => scale::run(a, points, json).await,
            None => bench::run(a, json).await,
        },
        LabCommand::RestoreSet { target, set } => {
            let config = Config::load(config_path)?;
            let repo = crate::cli::repository::open(&config).await?;
            tokio::task::spawn_blocking(move || {
                let sets = crate::backupset::list::list(&repo, None)?;
                let found = crate::backupset::list::find(&sets, &set)?.ok_or_else(|| {
                    Failure::new(Exit::Usage, format!("no backup set matches '{set}'"))
                })?;
                // Both parts in one restore: the repository is opened and its packs read once.
                let dests: Vec<_> = [
                    crate::backupset::FOLDERS_DIR,
                    crate::backupset::DATABASE_DIR,
                ]
                .map(|part| (part, target.join(part.trim_start_matches('/'))))
                .into();
                let parts: Vec<_> = dests.iter().map(|(p, d)| (*p, d.as_path())).collect();
                repo.restore_parts(
                    &found.snapshot_id,
                    &parts,
                    &octobackup_repo::NoProgress,
                    &|_| true,
                )?;
                Ok::<_, Failure>(())
            })
            .await
            .map_err(|e| fail(e.into()))?
        }
        LabCommand::OctopusServer(a) => octopus_server::run(a),
        LabCommand::Up(a) => {
            let lab = start_field(&a.dir, a.size, a.seed, a.key_bytes, !a.no_tls, &a.sql).await?;
            let config = write_config(lab.info(), !a.no_tls).map_err(fail)?;
            emit(json, &lab.info_public(), || {
                format!(
                    "lab running in {}\n  Octopus API  {}\n  SQL Server   {}{}\n  config       {}\n  events       {}\nTry: octobackup --config {} backup\nCtrl-C stops the lab.\n",
                    a.dir.display(),
                    lab.info().octopus_url,
                    lab.info().sql_address,
                    match (&lab.info().sql_instance, &lab.info().sql_browser_address) {
                        (Some(i), Some(b)) => format!(
                            " (named instance {}\\{i}, SQL Browser on {b}/udp)",
                            b.rsplit_once(':').map(|(h, _)| h).unwrap_or(b)
                        ),
                        _ => String::new(),
                    },
                    config.display(),
                    lab.info().events_file.display(),
                    config.display()
                )
            });
            let _ = tokio::signal::ctrl_c().await;
            lab.shutdown().await;
            Ok(())
        }
        LabCommand::Churn { dir, days } => {
            let paths = InstancePaths::new(&dir);
            let report =
                tokio::task::spawn_blocking(move || octobackup_lab::instance::churn(&paths, days))
                    .await
                    .map_err(|e| fail(e.into()))?
                    .map_err(fail)?;
            emit(json, &report, || {
                format!(
                    "{} day(s) simulated, now day {}: {} files added, {} removed, {} database pages changed, {} added\n",
                    report.days,
                    report.day_now,
                    report.folders.files_added,
                    report.folders.files_removed,
                    report.database_pages_changed,
                    report.database_pages_added
                )
            });
            Ok(())
        }
        LabCommand::Fingerprint { dir } => {
            let paths = InstancePaths::new(&dir);
            let fp = tokio::task::spawn_blocking(move || {
                let state = InstanceState::load(&paths)?;
                octobackup_lab::instance::fingerprint(&paths, &state.database)
            })
            .await
            .map_err(|e| fail(e.into()))?
            .map_err(fail)?;
            println!("{}", serde_json::to_string_pretty(&fp).expect("serializes"));
            Ok(())
        }
        LabCommand::ShowMasterKey {
            dir,
            format,
            pollute,
            instance,
        } => {
            let state = InstanceState::load(&InstancePaths::new(&dir)).map_err(|e| {
                Failure::new(
                    Exit::Failed,
                    format!("no lab instance in {}: {e}", dir.display()),
                )
            })?;
            if let Some(i) = instance
                && i != state.instance_name
            {
                return Err(Failure::new(
                    Exit::Failed,
                    format!("Instance '{i}' was not found."),
                ));
            }
            // The key goes to stdout only, as Octopus.Server prints it: this is the host's tool.
            if pollute {
                print!("{}", octopus_server::noise_before());
            }
            if format.eq_ignore_ascii_case("json") {
                println!("{}", serde_json::json!({"MasterKey": state.master_key}));
            } else {
                println!("{}", state.master_key);
            }
            if pollute {
                print!("{}", octopus_server::noise_after());
            }
            Ok(())
        }
    }
}

pub async fn start(
    dir: &Path,
    size: Size,
    seed: u64,
    key_bytes: usize,
    tls: bool,
) -> Result<Lab, Failure> {
    start_field(dir, size, seed, key_bytes, tls, &SqlFieldArgs::default()).await
}

pub async fn start_field(
    dir: &Path,
    size: Size,
    seed: u64,
    key_bytes: usize,
    tls: bool,
    sql: &SqlFieldArgs,
) -> Result<Lab, Failure> {
    let mut opts = LabOptions::new(dir);
    if let Some(v) = &sql.sql_version {
        opts.sql_product_version = v.clone();
    }
    opts.sql_options.backup_compression_default = sql.backup_compression_default;
    match sql.sql_platform {
        Some(SqlPlatform::ManagedInstance) => {
            opts.edition = octobackup_lab::sqlserver_sim::Edition::AzureSqlManagedInstance
        }
        Some(SqlPlatform::Rds) => opts.sql_options.amazon_rds = true,
        Some(SqlPlatform::Linux) => opts.sql_linux = true,
        None => {}
    }
    opts.sql_tcp = !sql.sql_tcp_off;
    opts.sql_least_privilege = sql.sql_least_privilege;
    opts.instance = InstanceOptions {
        size,
        seed,
        master_key_bytes: key_bytes,
        ..InstanceOptions::default()
    };
    opts.tls = tls;
    Lab::start(opts)
        .await
        .map_err(|e| Failure::new(Exit::Failed, format!("the lab did not start: {e:#}")))
}

trait PublicInfo {
    fn info_public(&self) -> serde_json::Value;
}

impl PublicInfo for Lab {
    /// What `lab up --json` prints: where things are, without the lab's keys (they are in lab.json).
    fn info_public(&self) -> serde_json::Value {
        let i = self.info();
        serde_json::json!({
            "dir": i.dir, "octopus_url": i.octopus_url, "sql_address": i.sql_address, "database": i.database,
            "sql_browser_address": i.sql_browser_address, "sql_instance": i.sql_instance,
            "folders": i.folders, "staging_dir": i.staging_dir, "events_file": i.events_file,
            "config": i.dir.join("octobackup.toml"), "lab_json": i.dir.join("lab.json"),
        })
    }
}

/// The lab's secret files, rewritten on each `up`: owner-only, replaced whole (the lab crate's
/// writer; the product's own, `secret::write_new_private`, never replaces a file).
fn write_secret(path: &Path, value: &str) -> anyhow::Result<()> {
    Ok(octobackup_lab::secret_file::write(path, value.as_bytes())?)
}

/// Creates the repository the config at `config_path` names, as `octobackup init` does for a local
/// folder, but with a key that is cheap to open (`Repo::init_for_tests`): the tests run hundreds
/// of commands, each of which would otherwise spend 0.3 s of CPU on scrypt opening the repository.
/// Stock restic reads it as any other. Returns `false`, creating nothing, when the repository is
/// not a local folder (the caller runs `octobackup init`, which also creates buckets).
pub fn init_test_repository(config_path: &Path) -> anyhow::Result<bool> {
    let config = Config::load(config_path)?;
    if octobackup_repo::local_folder(&config.repository.location).is_none() {
        return Ok(false);
    }
    let source = config
        .repository_password_source()
        .ok_or_else(|| anyhow::anyhow!("the config names no repository password"))?;
    let password = source.read("repository password")?;
    let cfg = crate::cli::repository::repo_config(&config, &password);
    octobackup_repo::Repo::init_for_tests(&cfg)?;
    Ok(true)
}

/// The config octobackup needs for the lab instance, as an administrator would write it: secrets in
/// owner-only files under DIR/secrets, the master key read through the lab's `show-master-key`
/// (`lab_exe` is the `octobackup-lab` binary).
pub fn lab_config(info: &LabInfo, tls: bool, lab_exe: &Path) -> anyhow::Result<Config> {
    let secrets = info.dir.join("secrets");
    write_secret(&secrets.join("octopus-api-key"), &info.admin_api_key)?;
    write_secret(&secrets.join("sql-password"), &info.sql_password)?;
    let repo_password = secrets.join("repository-password");
    if !repo_password.exists() {
        write_secret(
            &repo_password,
            &format!("lab-{}", uuid::Uuid::new_v4().simple()),
        )?;
    }
    let (host, port) = info
        .sql_address
        .rsplit_once(':')
        .unwrap_or((&info.sql_address, "1433"));
    // As Octopus's own strings: no TrustServerCertificate. The lab's certificate is SQL Server's
    // self-signed fallback, which octobackup then trusts as Octopus does.
    let encrypt = if tls { "Encrypt=True" } else { "Encrypt=False" };
    let instance = InstanceConfig {
        url: info.octopus_url.clone(),
        api_key_file: Some(secrets.join("octopus-api-key")),
        api_key_env: None,
        sql: SqlConfig {
            connection_string: Some(format!(
                "Server={host},{port};Database={};User ID={};{encrypt}",
                info.database, info.sql_login
            )),
            password_file: Some(secrets.join("sql-password")),
            command_timeout: Some(Duration::from_secs(120)),
            ..Default::default()
        },
        master_key: MasterKeySource {
            command: Some(vec![
                lab_exe.display().to_string(),
                "show-master-key".into(),
                "--dir".into(),
                info.dir.display().to_string(),
            ]),
            ..Default::default()
        },
        folders: BTreeMap::new(),
        discover: None,
        // SQL Server on Linux sees the share at its container path, octobackup at the host's
        staging: StagingConfig {
            sql_path: info
                .staging_sql_path
                .clone()
                .unwrap_or_else(|| info.staging_dir.display().to_string()),
            local_path: info
                .staging_sql_path
                .as_ref()
                .map(|_| info.staging_dir.clone()),
        },
        folders_before_window: true,
        wait: WaitConfig {
            timeout: Duration::from_secs(120),
            poll_interval: Duration::from_millis(200),
            ..WaitConfig::default()
        },
        retention: None,
        api_timeout: None,
    };
    let mut instances = BTreeMap::new();
    instances.insert(info.instance_name.clone(), instance);
    Ok(Config {
        repository: RepositoryConfig {
            location: info.dir.join("repository").display().to_string(),
            password_file: Some(repo_password),
            ..Default::default()
        },
        state_dir: Some(info.dir.join("state")),
        instances,
        retention: None,
        escrow: None,
        notify: None,
        metrics: None,
        copies: Vec::new(),
    })
}

/// Writes DIR/octobackup.toml for the running lab; returns its path.
pub fn write_config(info: &LabInfo, tls: bool) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let config = lab_config(info, tls, &exe)?; // this binary: octobackup-lab
    let path = info.dir.join("octobackup.toml");
    std::fs::write(
        &path,
        format!(
            "# Written by `octobackup-lab up` for the lab in {}.\n{}",
            info.dir.display(),
            config.to_toml()
        ),
    )?;
    Ok(path)
}
