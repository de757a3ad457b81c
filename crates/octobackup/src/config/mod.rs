//! The config file (TOML): the repository and one or more Octopus instances. Secrets are named by
//! source (environment variable, file, command), never required inline. `octobackup init` writes a
//! commented template; `octobackup-lab up` writes a ready one for the lab. The schema is a leaf: it
//! imports nothing of the modules that act on it.

pub mod copy;
pub mod metrics;
pub mod notify;
pub mod retention;
mod template;

pub use template::template;

use crate::secret::SecretSource;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The folders Octopus's procedure says to back up, in its order.
pub const FOLDER_NAMES: &[&str] = &["Packages", "Artifacts", "TaskLogs", "EventExports"];

/// `[escrow]` in the config.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EscrowConfig {
    /// age public keys (`age1...`, from `age-keygen -y`) that can recover each set's master
    /// key and license.
    #[serde(default)]
    pub age_recipients: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub repository: RepositoryConfig,
    /// Where octobackup keeps its run journal (maintenance changes to undo after a crash) and locks.
    /// Default: a `state` folder beside the config file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
    #[serde(default, rename = "instance")]
    pub instances: BTreeMap<String, InstanceConfig>,
    /// The default retention policy (`forget`); an instance's own `retention` replaces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<retention::Policy>,
    /// age public keys each set's master key and license are also sealed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escrow: Option<EscrowConfig>,
    /// Who is told about backups (`[notify]`): webhooks, Microsoft Teams, Slack, e-mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<notify::NotifyConfig>,
    /// Prometheus metrics (`[metrics]`): a textfile for node_exporter, a Pushgateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<metrics::MetricsConfig>,
    /// Second repositories the sets are copied to (`[[copy]]`).
    #[serde(default, rename = "copy", skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<copy::CopyConfig>,
}

#[derive(Clone, Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RepositoryConfig {
    /// A local folder; `s3://HOST/BUCKET[/PATH]`, `azure://CONTAINER[/PATH]`, `sftp://USER@HOST/PATH`
    /// (or restic's `s3:`, `azure:`, `sftp:` forms); or a backend rustic understands (`opendal:s3`, `rest:...`).
    pub location: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// Backend options (bucket, endpoint, ...), passed to the backend as they are.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// zstd level for new data (restic's range -131072..=22); default: the repository's (1 for
    /// repositories octobackup creates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<i32>,
    /// How long a run keeps retrying a storage server that does not answer, added up over the
    /// run (not per request); past it the run stops with one line. Default 2m.
    #[serde(
        default,
        with = "humantime_serde_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub retry_budget: Option<Duration>,
}

#[derive(Clone, Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct InstanceConfig {
    /// The Octopus Server's URL, e.g. `https://octopus.example.com`. May be left out with
    /// `[instance.NAME.discover]` (then taken from `Octopus.WebPortal.ListenPrefixes`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_file: Option<PathBuf>,
    #[serde(default)]
    pub sql: SqlConfig,
    #[serde(default)]
    pub master_key: MasterKeySource,
    /// Read what the config leaves out (url, SQL connection string, folders, master key) from the
    /// instance itself: `Octopus.Server show-configuration` and `show-master-key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discover: Option<DiscoverConfig>,
    /// Server folders by name (Packages, Artifacts, TaskLogs, EventExports). Default: read from
    /// `/api/configuration/server-folders/values`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub folders: BTreeMap<String, PathBuf>,
    pub staging: StagingConfig,
    #[serde(default)]
    pub wait: WaitConfig,
    /// This instance's retention policy (`forget`), replacing the top-level `[retention]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<retention::Policy>,
    /// Back up the folders once before maintenance mode goes on, so that inside the window only what
    /// changed since is copied onto staging. Default true; false copies them all onto staging
    /// inside the window, as the manual procedure does (the repository is never used inside it).
    #[serde(default = "yes")]
    pub folders_before_window: bool,
    /// How long octobackup waits for one answer from the Octopus API. Default 60s. A request to
    /// turn maintenance mode on that got no answer is watched for twice this long after it was
    /// sent, in case the server applies it late.
    #[serde(
        default,
        with = "humantime_serde_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub api_timeout: Option<Duration>,
}

fn yes() -> bool {
    true
}

#[derive(Clone, Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SqlConfig {
    /// The ADO.NET connection string, as Octopus stores it. A password may be left out of it and
    /// given by `password_env`/`password_file`; or the whole string may come from a file or variable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_string: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_string_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_string_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// Longest silence allowed from SQL Server during BACKUP/RESTORE. Default 10m.
    #[serde(
        default,
        with = "humantime_serde_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub command_timeout: Option<Duration>,
    /// Stripe the backup over this many files (SQL Server reads and writes them in parallel). Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripes: Option<u8>,
    /// Who owns the database's backup chain: `copy_only` (default: octobackup's backups are
    /// COPY_ONLY and never touch a DBA's differential base) or `owned` (octobackup takes the
    /// full backups that are the differential base, before the window, and only a differential
    /// inside it).
    #[serde(default, skip_serializing_if = "SqlChain::is_default")]
    pub chain: SqlChain,
    /// With `chain = "owned"`: take a new base when the last one is this old. Default 7 days.
    #[serde(
        default,
        with = "humantime_serde_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub base_every: Option<Duration>,
    /// With `chain = "owned"`: take a new base when the last differential was larger than this
    /// share of the base (0 < share <= 1). Default 0.5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_max_share: Option<f64>,
}

/// `sql.chain`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SqlChain {
    #[default]
    CopyOnly,
    Owned,
}

impl SqlChain {
    fn is_default(&self) -> bool {
        *self == SqlChain::CopyOnly
    }
}

impl SqlConfig {
    /// `sql.base_every`, or its default (7 days).
    pub fn base_every(&self) -> Duration {
        self.base_every
            .unwrap_or(Duration::from_secs(7 * 24 * 3600))
    }

    /// `sql.base_max_share`, or its default (0.5).
    pub fn base_max_share(&self) -> f64 {
        self.base_max_share.unwrap_or(0.5)
    }
}

/// Where the master key comes from: `Octopus.Server show-master-key` on the host (or through
/// `docker exec`/`kubectl exec`), an environment variable or a file.
#[derive(Clone, Debug, Deserialize, Serialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MasterKeySource {
    /// Program and arguments; its output is Octopus's JSON (`{"MasterKey": ...}`) or the older
    /// banner lines with the key last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

/// How to run `Octopus.Server` on the Octopus host for discovery.
#[derive(Clone, Debug, Deserialize, Serialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DiscoverConfig {
    /// Octopus.Server's program and any prefix, e.g. `['C:\Program Files\Octopus Deploy\Octopus\Octopus.Server.exe']`
    /// or `["docker", "exec", "octopus", "/Octopus/Octopus.Server"]`. Default: the Windows
    /// installer's path on Windows, `/Octopus/Octopus.Server` (the container's) elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// The Octopus instance name. Default: OctopusServer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StagingConfig {
    /// The staging folder as SQL Server sees it (BACKUP writes here), e.g. `D:\Backups` or `\\nas\octo`.
    pub sql_path: String,
    /// The same folder as octobackup sees it. Default: `sql_path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_path: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum OnWaitTimeout {
    /// Stop the backup cleanly, naming the tasks that blocked it (default).
    #[default]
    Abort,
    /// Back up anyway; the set records which tasks were still running.
    Continue,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WaitConfig {
    /// How long to wait for running tasks once maintenance mode is on. Default 30m.
    #[serde(default = "default_wait_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default)]
    pub on_timeout: OnWaitTimeout,
    /// Also wait for Queued tasks (they still start in maintenance mode). Default false.
    #[serde(default)]
    pub include_queued: bool,
    #[serde(default = "default_poll", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// The longest octobackup keeps maintenance mode on: past it, maintenance mode is put back
    /// as found and the run fails (exit 1), the set incomplete. Default: `timeout` + 10m (the
    /// task wait, then ten minutes for BACKUP DATABASE and the folder copy). Must be longer than
    /// `timeout`, which it includes.
    #[serde(
        default,
        with = "humantime_serde_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_window: Option<Duration>,
}

/// What the window may take beyond the task wait by default.
pub const WINDOW_MARGIN: Duration = Duration::from_secs(10 * 60);

impl WaitConfig {
    /// `max_window`, or the task wait plus [`WINDOW_MARGIN`].
    pub fn window_budget(&self) -> Duration {
        self.max_window
            .unwrap_or_else(|| self.timeout.saturating_add(WINDOW_MARGIN))
    }
}

fn default_wait_timeout() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_poll() -> Duration {
    Duration::from_secs(5)
}

impl Default for WaitConfig {
    fn default() -> Self {
        WaitConfig {
            timeout: default_wait_timeout(),
            on_timeout: OnWaitTimeout::Abort,
            include_queued: false,
            poll_interval: default_poll(),
            max_window: None,
        }
    }
}

mod humantime_serde {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!("'{s}' is not a duration like 30s, 5m or 1h: {e}"))
        })
    }
}

mod humantime_serde_opt {
    use serde::{Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::humantime_serde::serialize(d, s),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        super::humantime_serde::deserialize(d).map(Some)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {cause} (create one with `octobackup init`)")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("the config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("the config file {path} has no instance named '{name}' (it has: {known})")]
    UnknownInstance {
        path: PathBuf,
        name: String,
        known: String,
    },
    #[error("the config file {path} defines no [instance.NAME] section")]
    NoInstances { path: PathBuf },
    #[error(
        "the config file {path} defines several instances ({known}): choose one with --instance"
    )]
    AmbiguousInstance { path: PathBuf, known: String },
    #[error("instance '{instance}': {message}")]
    Invalid { instance: String, message: String },
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
            path: path.to_path_buf(),
            cause,
        })?;
        let config: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        // zstd's levels as restic takes them; the repository would refuse any other only later.
        if let Some(level) = config.repository.compression
            && !(-131072..=22).contains(&level)
        {
            return Err(ConfigError::Parse {
                path: path.to_path_buf(),
                message: format!(
                    "repository.compression must be a zstd level from -131072 to 22 (1 is the default, 19 or more is slow), not {level}"
                ),
            });
        }
        for (name, inst) in &config.instances {
            inst.validate(name)?;
        }
        let checks = [
            config.notify.as_ref().map(|n| n.validate()),
            config.metrics.as_ref().map(|m| m.validate()),
            Some(copy::validate(&config.copies, &config.repository)),
        ];
        if let Some(Err(message)) = checks.into_iter().flatten().find(|r| r.is_err()) {
            return Err(ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            });
        }
        Ok(config)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serializes")
    }

    /// The state folder: configured, or `state` beside the config file.
    pub fn state_dir(&self, config_path: &Path) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| config_path.parent().unwrap_or(Path::new(".")).join("state"))
    }

    /// The named instance, or the only one.
    pub fn instance<'a>(
        &'a self,
        path: &Path,
        name: Option<&str>,
    ) -> Result<(&'a str, &'a InstanceConfig), ConfigError> {
        let known = || {
            self.instances
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        };
        match name {
            Some(n) => self
                .instances
                .get_key_value(n)
                .map(|(k, v)| (k.as_str(), v))
                .ok_or_else(|| ConfigError::UnknownInstance {
                    path: path.to_path_buf(),
                    name: n.to_string(),
                    known: known(),
                }),
            None => match self.instances.len() {
                0 => Err(ConfigError::NoInstances {
                    path: path.to_path_buf(),
                }),
                1 => Ok(self
                    .instances
                    .iter()
                    .next()
                    .map(|(k, v)| (k.as_str(), v))
                    .unwrap()),
                _ => Err(ConfigError::AmbiguousInstance {
                    path: path.to_path_buf(),
                    known: known(),
                }),
            },
        }
    }

    pub fn repository_password_source(&self) -> Option<SecretSource> {
        if let Some(f) = &self.repository.password_file {
            return Some(SecretSource::File(f.clone()));
        }
        self.repository
            .password_env
            .as_ref()
            .map(|e| SecretSource::Env(e.clone()))
    }
}

impl SqlConfig {
    pub fn has_connection_string(&self) -> bool {
        self.connection_string.is_some()
            || self.connection_string_env.is_some()
            || self.connection_string_file.is_some()
    }
}

impl InstanceConfig {
    pub(crate) fn validate(&self, name: &str) -> Result<(), ConfigError> {
        let bad = |message: String| {
            Err(ConfigError::Invalid {
                instance: name.to_string(),
                message,
            })
        };
        // With discovery, url, the connection string and the master key may come from the instance.
        let discover = self.discover.is_some();
        if let Some(d) = &self.discover
            && d.command.as_ref().is_some_and(|c| c.is_empty())
        {
            return bad("discover.command is empty: give Octopus.Server's path (and any docker/kubectl exec prefix)".into());
        }
        let url_given_or_discovered = self.url.starts_with("http://")
            || self.url.starts_with("https://")
            || (discover && self.url.is_empty());
        if !url_given_or_discovered {
            return bad(format!(
                "url '{}' must start with http:// or https://",
                self.url
            ));
        }
        if self.api_key_env.is_some() == self.api_key_file.is_some() {
            return bad("set exactly one of api_key_env or api_key_file".into());
        }
        let cs = [
            self.sql.connection_string.is_some(),
            self.sql.connection_string_env.is_some(),
            self.sql.connection_string_file.is_some(),
        ];
        let n = cs.iter().filter(|x| **x).count();
        if n > 1 || (n == 0 && !discover) {
            return bad("set exactly one of sql.connection_string, sql.connection_string_env or sql.connection_string_file (or leave all out with [instance.NAME.discover])".into());
        }
        if self.sql.password_env.is_some() && self.sql.password_file.is_some() {
            return bad("set at most one of sql.password_env or sql.password_file".into());
        }
        if let Some(s) = self.sql.stripes
            && !(1..=64).contains(&s)
        {
            return bad(format!(
                "sql.stripes must be 1 to 64 (SQL Server's limit), not {s}"
            ));
        }
        if let Some(share) = self.sql.base_max_share
            && !(share > 0.0 && share <= 1.0)
        {
            return bad(format!(
                "sql.base_max_share must be above 0 and at most 1 (a share of the database), not {share}"
            ));
        }
        if self.sql.base_every.is_some_and(|d| d.is_zero()) {
            return bad("sql.base_every must be longer than 0 (e.g. \"7d\")".into());
        }
        let mk = &self.master_key;
        let sources = [mk.command.is_some(), mk.env.is_some(), mk.file.is_some()];
        let n = sources.iter().filter(|x| **x).count();
        if n > 1 || (n == 0 && !discover) {
            return bad(
                "set exactly one of master_key.command, master_key.env or master_key.file (or leave all out with [instance.NAME.discover])".into(),
            );
        }
        if mk.command.as_ref().is_some_and(|c| c.is_empty()) {
            return bad("master_key.command is empty: give the program and its arguments".into());
        }
        if let Some(max) = self.wait.max_window
            && max <= self.wait.timeout
        {
            return bad(format!(
                "wait.max_window ({}) must be longer than wait.timeout ({}): the wait for running tasks is part of the window. Raise wait.max_window or lower wait.timeout.",
                humantime::format_duration(max),
                humantime::format_duration(self.wait.timeout)
            ));
        }
        if self.staging.sql_path.trim().is_empty() {
            return bad("staging.sql_path is empty: name a folder SQL Server can write and octobackup can read".into());
        }
        for folder in self.folders.keys() {
            if !FOLDER_NAMES.contains(&folder.as_str()) {
                return bad(format!(
                    "unknown folder '{folder}' (known: {})",
                    FOLDER_NAMES.join(", ")
                ));
            }
        }
        Ok(())
    }

    pub fn api_key_source(&self) -> SecretSource {
        match (&self.api_key_env, &self.api_key_file) {
            (Some(e), _) => SecretSource::Env(e.clone()),
            (_, Some(f)) => SecretSource::File(f.clone()),
            _ => unreachable!("validated"),
        }
    }

    pub fn staging_local(&self) -> PathBuf {
        self.staging
            .local_path
            .clone()
            .unwrap_or_else(|| PathBuf::from(&self.staging.sql_path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("octobackup.toml");
        std::fs::write(&p, text).unwrap();
        (dir, p)
    }

    const GOOD: &str = r#"
[repository]
location = "/backups/octo"
password_file = "/etc/octobackup/password"

[instance.OctopusServer]
url = "https://octopus.example.com"
api_key_env = "OCTOPUS_API_KEY"
sql = { connection_string = "Server=sql01;Database=OctopusDeploy;User ID=octobackup", password_env = "OCTOBACKUP_SQL_PASSWORD", stripes = 2 }
master_key = { command = ["Octopus.Server.exe", "show-master-key", "--format=json"] }
staging = { sql_path = 'D:\Backups', local_path = '\\sql01\Backups' }
wait = { timeout = "10m", on_timeout = "continue" }
"#;

    #[test]
    fn the_template_parses_and_a_full_config_round_trips() {
        let (_d, p) = write(GOOD);
        let c = Config::load(&p).unwrap();
        let (name, i) = c.instance(&p, None).unwrap();
        assert_eq!(name, "OctopusServer");
        assert_eq!(i.sql.stripes, Some(2));
        assert_eq!(i.sql.chain, SqlChain::CopyOnly, "copy_only unless asked");
        assert_eq!(i.sql.base_every(), Duration::from_secs(7 * 24 * 3600));
        assert_eq!(i.sql.base_max_share(), 0.5);
        assert_eq!(i.wait.timeout, Duration::from_secs(600));
        assert_eq!(i.wait.on_timeout, OnWaitTimeout::Continue);
        // The window's budget: the task wait plus ten minutes unless set.
        assert_eq!(i.wait.window_budget(), Duration::from_secs(1200));
        assert_eq!(i.staging_local(), PathBuf::from(r"\\sql01\Backups"));
        assert_eq!(c.state_dir(&p), p.parent().unwrap().join("state"));
        let (_d2, p2) = write(&c.to_toml());
        assert_eq!(Config::load(&p2).unwrap().to_toml(), c.to_toml());
        let (_d3, p3) = write(&template("/backups/octo"));
        Config::load(&p3).unwrap();
        for remote in [
            "s3://s3.eu-west-1.amazonaws.com/octo-backups/prod",
            "azure://octobackup/prod",
            "sftp://backup@nas.example.com/srv/octobackup",
        ] {
            let (_d, p) = write(&template(remote));
            assert_eq!(Config::load(&p).unwrap().repository.location, remote);
        }
        // Every commented option line of the template is valid TOML once uncommented.
        let text = template("/backups/octo");
        let start = text.find("# [repository.options]").unwrap();
        let end = text.find("# Retention").unwrap();
        let options: Vec<&str> = text[start..end]
            .lines()
            .filter(|l| l.contains(" = "))
            .map(|l| l.trim_start_matches("# "))
            .collect();
        assert!(options.len() >= 8, "{options:?}");
        for line in options {
            toml::from_str::<toml::Table>(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        }
    }

    #[test]
    fn bad_configs_name_the_problem() {
        let cases = [
            (GOOD.replace("https://octopus", "octopus"), "must start with http"),
            (GOOD.replace("api_key_env = \"OCTOPUS_API_KEY\"", ""), "exactly one of api_key_env or api_key_file"),
            (GOOD.replace("stripes = 2", "stripes = 65"), "1 to 64"),
            (GOOD.replace("stripes = 2", "stripes = 2, chain = \"mine\""), "unknown variant"),
            (GOOD.replace("stripes = 2", "stripes = 2, chain = \"owned\", base_max_share = 1.5"), "base_max_share must be above 0"),
            (GOOD.replace("stripes = 2", "stripes = 2, chain = \"owned\", base_every = \"0s\""), "base_every must be longer"),
            (GOOD.replace("timeout = \"10m\"", "timeout = \"soon\""), "not a duration"),
            (GOOD.replace("timeout = \"10m\"", "timeout = \"10m\", max_window = \"5m\""), "wait.max_window (5m) must be longer than wait.timeout (10m)"),
            (GOOD.replace("password_file = \"/etc/octobackup/password\"", "password_file = \"/etc/octobackup/password\"\ncompression = 99"), "from -131072 to 22"),
            (GOOD.replace("[instance.OctopusServer]", "[instance.OctopusServer]\nbogus = 1"), "unknown field"),
            (GOOD.replace("master_key = { command = [\"Octopus.Server.exe\", \"show-master-key\", \"--format=json\"] }", "master_key = { command = [] }"), "master_key.command is empty"),
        ];
        for (text, expect) in cases {
            let (_d, p) = write(&text);
            let e = Config::load(&p).unwrap_err().to_string();
            assert!(e.contains(expect), "{e}");
        }
        let (_d, p) = write(GOOD);
        let c = Config::load(&p).unwrap();
        assert!(
            c.instance(&p, Some("Other"))
                .unwrap_err()
                .to_string()
                .contains("it has: OctopusServer")
        );
        let e = Config::load(Path::new("/nonexistent/octobackup.toml")).unwrap_err();
        assert!(e.to_string().contains("octobackup init"));
    }
}
