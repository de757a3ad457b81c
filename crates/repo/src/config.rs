//! Where the repository lives and how to open it: the one place that turns a [`RepoConfig`]
//! into rustic backends, so S3/Azure/SFTP (through OpenDAL) only ever change this file.

use std::collections::BTreeMap;
use std::fmt;

use rustic_backend::BackendOptions;
use rustic_core::{RepositoryBackends, RepositoryOptions};
use zeroize::Zeroizing;

use crate::budget::{Budgeted, Health};
use crate::error::{RepoError, from_rustic};
use std::sync::Arc;

/// The repository password. Zeroized on drop; `Debug` prints `***` so it cannot leak into logs.
#[derive(Clone)]
pub struct Password(Zeroizing<String>);

impl Password {
    pub fn new(password: impl Into<String>) -> Self {
        Self(Zeroizing::new(password.into()))
    }

    /// The clear text, for handing to the key derivation only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Password {
    fn from(password: String) -> Self {
        Self::new(password)
    }
}

impl From<&str> for Password {
    fn from(password: &str) -> Self {
        Self::new(password)
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How to reach a repository.
#[derive(Clone)]
pub struct RepoConfig {
    /// A local path, or what rustic_backend understands: `opendal:<service>`, `rest:<url>`,
    /// `rclone:<remote>` (`local:<path>` is accepted too).
    pub repository: String,
    /// Backend options (OpenDAL settings such as `bucket`, `endpoint`, keys).
    pub options: BTreeMap<String, String>,
    pub password: Password,
    /// How long the run keeps retrying a storage server that does not answer, added up over
    /// the run (`None`: [`crate::DEFAULT_RETRY_BUDGET`]).
    pub retry_budget: Option<std::time::Duration>,
}

impl fmt::Debug for RepoConfig {
    /// Option values may be cloud credentials: only their names are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let options: BTreeMap<&str, &str> =
            self.options.keys().map(|k| (k.as_str(), "***")).collect();
        f.debug_struct("RepoConfig")
            .field("repository", &self.repository)
            .field("options", &options)
            .field("password", &self.password)
            .field("retry_budget", &self.retry_budget)
            .finish()
    }
}

/// Backend schemes rustic_backend is built with.
const SCHEMES: [&str; 4] = ["local", "rest", "rclone", "opendal"];

/// What the repository string turned into.
pub(crate) struct Location {
    /// The string handed to rustic_backend.
    pub(crate) backend: String,
    pub(crate) is_local: bool,
    /// Backend options the location itself says (bucket, endpoint, root, user...).
    pub(crate) options: BTreeMap<String, String>,
}

impl Location {
    fn remote(backend: &str, options: BTreeMap<String, String>) -> Self {
        Location {
            backend: backend.to_string(),
            is_local: false,
            options,
        }
    }

    /// The OpenDAL service (`s3`, `azblob`, `sftp`), if this is an `opendal:` backend.
    pub(crate) fn service(&self) -> Option<&str> {
        self.backend.strip_prefix("opendal:")
    }
}

/// Reads the repository string the way a user means it: a path is local even when it has a
/// colon in it (`/srv/a:b`, `C:/Backups`); the URL forms restic users know (`s3://`, `s3:http://`,
/// `azure://`, `azure:C:/path`, `sftp://`, `sftp:user@host:/path`) become OpenDAL options; other
/// restic-style schemes get a clear error instead of silently becoming a local folder.
pub(crate) fn location(repository: &str) -> Result<Location, RepoError> {
    let repository = repository.trim();
    if repository.is_empty() {
        return Err(RepoError::InvalidInput(
            "the repository location is empty: give a folder path, s3://HOST/BUCKET, azure://CONTAINER or sftp://USER@HOST/PATH".into(),
        ));
    }
    let local = |path: &str| Location {
        backend: local_backend_string(path),
        is_local: true,
        options: BTreeMap::new(),
    };
    let Some((scheme, rest)) = repository.split_once(':') else {
        return Ok(local(repository));
    };
    match scheme {
        "local" => return Ok(local(rest)),
        "s3" => return s3_location(repository, rest),
        "azure" => return azure_location(repository, rest),
        "sftp" => return sftp_location(repository, rest),
        _ => {}
    }
    if SCHEMES.contains(&scheme) {
        return Ok(Location {
            backend: repository.to_string(),
            is_local: false,
            options: BTreeMap::new(),
        });
    }
    let drive_letter = scheme.len() == 1 && scheme.chars().all(|c| c.is_ascii_alphabetic());
    let colon_inside_path = scheme.contains(['/', '\\']) || scheme.starts_with('.');
    if drive_letter || colon_inside_path {
        return Ok(local(repository));
    }
    let repository = crate::error::redact_url_secrets(repository);
    Err(RepoError::InvalidInput(format!(
        "unsupported repository location `{repository}`: use a folder path, s3://HOST[:PORT]/BUCKET[/PATH], \
         azure://CONTAINER[/PATH], sftp://USER@HOST[:PORT]/PATH, or `opendal:<service>` with backend options"
    )))
}

fn bad_location(repository: &str, form: &str) -> RepoError {
    RepoError::InvalidInput(format!(
        "the repository location `{}` is not understood: write it as {form}",
        crate::error::redact_url_secrets(repository)
    ))
}

fn root_of(path: &str) -> String {
    format!("/{}", path.trim_matches('/'))
}

/// `s3://HOST[:PORT]/BUCKET[/PATH]` (https), or restic's `s3:http[s]://HOST[:PORT]/BUCKET[/PATH]`
/// and `s3:HOST/BUCKET[/PATH]`. Path-style addressing (OpenDAL's default) works with AWS and
/// with MinIO, Ceph RGW and other S3 servers.
fn s3_location(repository: &str, rest: &str) -> Result<Location, RepoError> {
    let form = "s3://HOST[:PORT]/BUCKET[/PATH] or s3:http://HOST:PORT/BUCKET[/PATH]";
    let (scheme, rest) = if let Some(r) = rest.strip_prefix("//") {
        ("https", r)
    } else if let Some(r) = rest.strip_prefix("http://") {
        ("http", r)
    } else if let Some(r) = rest.strip_prefix("https://") {
        ("https", r)
    } else {
        ("https", rest)
    };
    let mut parts = rest.splitn(3, '/');
    let host = parts.next().unwrap_or_default();
    let bucket = parts.next().unwrap_or_default();
    let path = parts.next().unwrap_or_default();
    if host.is_empty() || bucket.is_empty() || host.contains('@') {
        return Err(bad_location(repository, form));
    }
    Ok(Location::remote(
        "opendal:s3",
        BTreeMap::from([
            ("endpoint".into(), format!("{scheme}://{host}")),
            ("bucket".into(), bucket.into()),
            ("root".into(), root_of(path)),
        ]),
    ))
}

/// `azure://CONTAINER[/PATH]`, or restic's `azure:CONTAINER:/PATH`.
fn azure_location(repository: &str, rest: &str) -> Result<Location, RepoError> {
    let form = "azure://CONTAINER[/PATH] (account and key from AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY)";
    let (container, path) = if let Some(r) = rest.strip_prefix("//") {
        r.split_once('/').unwrap_or((r, ""))
    } else {
        rest.split_once(':').unwrap_or((rest, ""))
    };
    let valid = !container.is_empty()
        && container
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        return Err(bad_location(
            repository,
            &format!("{form}; a container name has only lowercase letters, digits and dashes"),
        ));
    }
    Ok(Location::remote(
        "opendal:azblob",
        BTreeMap::from([
            ("container".into(), container.into()),
            ("root".into(), root_of(path)),
        ]),
    ))
}

/// `sftp://[USER@]HOST[:PORT]/PATH`, or restic's `sftp:[USER@]HOST:/PATH`. The path is absolute.
fn sftp_location(repository: &str, rest: &str) -> Result<Location, RepoError> {
    let form = "sftp://USER@HOST[:PORT]/PATH or sftp:USER@HOST:/PATH";
    let (authority, path) = if let Some(r) = rest.strip_prefix("//") {
        r.split_once('/').unwrap_or((r, ""))
    } else {
        rest.split_once(':').unwrap_or((rest, ""))
    };
    let (user, host_port) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if host_port.is_empty() || path.trim_matches('/').is_empty() || user == Some("") {
        return Err(bad_location(repository, form));
    }
    if let Some((_, port)) = host_port.rsplit_once(':')
        && port.parse::<u16>().is_err()
    {
        return Err(bad_location(repository, form));
    }
    let mut options = BTreeMap::from([
        ("endpoint".into(), format!("ssh://{host_port}")),
        ("root".into(), root_of(path)),
    ]);
    if let Some(user) = user {
        options.insert("user".into(), user.into());
    }
    Ok(Location::remote("opendal:sftp", options))
}

/// Options whose values are credentials: each may also be given as `NAME_env` (the variable
/// holding it) or `NAME_file` (a file holding it), so the config's plain text never needs it.
const SECRET_OPTIONS: [&str; 5] = [
    "access_key_id",
    "secret_access_key",
    "session_token",
    "account_key",
    "sas_token",
];

/// Whether `name` is a credential given as plain text (not as `NAME_env` or `NAME_file`).
pub fn is_literal_secret_option(name: &str) -> bool {
    SECRET_OPTIONS.contains(&name)
}

/// The options handed to OpenDAL: the location's own, then the config's (which win), with
/// `*_env`/`*_file` credentials read, then the credentials and defaults each service's users
/// expect from the environment (`AWS_*`, `AZURE_STORAGE_*`).
pub(crate) fn resolve_options(
    location: &Location,
    configured: &BTreeMap<String, String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, RepoError> {
    let mut options = location.options.clone();
    for (name, value) in configured {
        let indirect = SECRET_OPTIONS.iter().find_map(|secret| {
            name.strip_prefix(secret)
                .map(|suffix| (*secret, suffix))
                .filter(|(_, s)| *s == "_env" || *s == "_file")
        });
        match indirect {
            Some((secret, "_env")) => {
                let v = env(value).filter(|v| !v.is_empty()).ok_or_else(|| {
                    RepoError::InvalidInput(format!(
                        "repository option {name} names the environment variable {value}, which is not set: set it, or fix the option"
                    ))
                })?;
                options.insert(secret.into(), v);
            }
            Some((secret, _)) => {
                let v = std::fs::read_to_string(value).map_err(|e| {
                    RepoError::InvalidInput(format!(
                        "repository option {name}: cannot read {value} ({e}): check the path and that this account may read it"
                    ))
                })?;
                options.insert(secret.into(), v.trim().to_string());
            }
            None => {
                options.insert(name.clone(), value.clone());
            }
        }
    }
    let mut fallback = |name: &str, vars: &[&str]| {
        if !options.contains_key(name)
            && let Some(v) = vars.iter().find_map(|v| env(v).filter(|v| !v.is_empty()))
        {
            options.insert(name.into(), v);
        }
    };
    match location.service() {
        Some("s3") => {
            fallback("access_key_id", &["AWS_ACCESS_KEY_ID"]);
            fallback("secret_access_key", &["AWS_SECRET_ACCESS_KEY"]);
            fallback("session_token", &["AWS_SESSION_TOKEN"]);
            fallback("region", &["AWS_REGION", "AWS_DEFAULT_REGION"]);
            // Any region signs for S3 servers other than AWS; AWS's own default is us-east-1.
            options
                .entry("region".into())
                .or_insert_with(|| "us-east-1".into());
        }
        Some("azblob") => {
            // The names the az CLI uses, then restic's.
            fallback(
                "account_name",
                &["AZURE_STORAGE_ACCOUNT", "AZURE_ACCOUNT_NAME"],
            );
            fallback("account_key", &["AZURE_STORAGE_KEY", "AZURE_ACCOUNT_KEY"]);
            fallback(
                "sas_token",
                &["AZURE_STORAGE_SAS_TOKEN", "AZURE_ACCOUNT_SAS"],
            );
            if !options.contains_key("endpoint")
                && let Some(account) = options.get("account_name")
            {
                let endpoint = format!("https://{account}.blob.core.windows.net");
                options.insert("endpoint".into(), endpoint);
            }
            if !options.contains_key("endpoint") {
                return Err(RepoError::InvalidInput(
                    "the Azure storage account is not known: set AZURE_STORAGE_ACCOUNT (and AZURE_STORAGE_KEY), or repository.options endpoint and account_name".into(),
                ));
            }
        }
        Some("sftp") => crate::ssh::sftp_defaults(&mut options),
        _ => {}
    }
    Ok(options)
}

/// A short description of where a remote repository is, for messages: the bucket or container
/// and the endpoint (never a credential).
pub(crate) fn describe(location: &Location, options: &BTreeMap<String, String>) -> String {
    let get = |k: &str| options.get(k).map(String::as_str).unwrap_or("?");
    match location.service() {
        Some("s3") => format!("S3 bucket `{}` at {}", get("bucket"), get("endpoint")),
        Some("azblob") => format!(
            "Azure container `{}` at {}",
            get("container"),
            get("endpoint")
        ),
        Some("sftp") => format!("SFTP folder {} on {}", get("root"), get("endpoint")),
        _ => crate::error::redact_url_secrets(&location.backend),
    }
}

/// The folder of a local repository location (a plain path or `local:<path>`); `None` for a
/// remote backend or a location that is not valid. The one answer to "is this repository local?".
pub fn local_folder(repository: &str) -> Option<std::path::PathBuf> {
    let location = location(repository).ok()?;
    if !location.is_local {
        return None;
    }
    let repository = repository.trim();
    Some(std::path::PathBuf::from(
        repository.strip_prefix("local:").unwrap_or(repository),
    ))
}

/// rustic_backend parses `scheme:path` itself; local paths are passed so that it reads them as
/// local on every platform (on Windows it only recognises drive paths written with backslashes).
fn local_backend_string(path: &str) -> String {
    if cfg!(windows) {
        path.replace('/', "\\")
    } else if path.contains(':') {
        format!("local:{path}")
    } else {
        path.to_string()
    }
}

/// OpenDAL's SFTP drives the system `ssh` through OpenSSH's ControlMaster sockets, which the
/// Windows port of OpenSSH does not have: rustic_backend and OpenDAL build it only outside Windows.
pub(crate) fn refuse_sftp_on_windows(
    location: &Location,
    repository: &str,
) -> Result<(), RepoError> {
    if cfg!(windows) && location.service() == Some("sftp") {
        return Err(RepoError::InvalidInput(format!(
            "`{repository}`: SFTP repositories are not available in the Windows build (OpenSSH for Windows has no ControlMaster connection sharing, which it needs); use S3, Azure Blob, or a network share (\\\\server\\share\\folder)"
        )));
    }
    Ok(())
}

/// Every request to a remote repository ends within the backend option `timeout` (seconds; the
/// patched rustic_backend reads it): the configured one, else one derived from the retry budget.
/// A bad value is refused here, with the option named.
pub(crate) fn set_request_timeout(
    options: &mut BTreeMap<String, String>,
    budget: std::time::Duration,
) -> Result<std::time::Duration, RepoError> {
    match options.get("timeout") {
        Some(t) => t
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|t| t.is_finite() && *t > 0.0)
            .map(std::time::Duration::from_secs_f64)
            .ok_or_else(|| {
                RepoError::InvalidInput(format!(
                    "repository option timeout = \"{t}\" is not a number of seconds: give how long one storage request may take, e.g. timeout = \"120\""
                ))
            }),
        None => {
            let t = crate::budget::request_timeout(budget);
            options.insert("timeout".into(), format!("{}", t.as_secs_f64()));
            Ok(t)
        }
    }
}

/// Uploading a pack is one request that rightly takes longer than the retry budget (8 MiB through
/// a slow link): the backend option `upload_timeout` (seconds) bounds it, by default at least
/// [`crate::budget::MAX_REQUEST_TIMEOUT`] and never less than `timeout`. A bad value is refused.
pub(crate) fn set_upload_timeout(
    options: &mut BTreeMap<String, String>,
    timeout: std::time::Duration,
) -> Result<std::time::Duration, RepoError> {
    match options.get("upload_timeout") {
        Some(t) => t
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|t| t.is_finite() && *t > 0.0)
            .map(std::time::Duration::from_secs_f64)
            .ok_or_else(|| {
                RepoError::InvalidInput(format!(
                    "repository option upload_timeout = \"{t}\" is not a number of seconds: give how long uploading one pack may take, e.g. upload_timeout = \"300\""
                ))
            }),
        None => {
            let t = timeout.max(crate::budget::MAX_REQUEST_TIMEOUT);
            options.insert("upload_timeout".into(), format!("{}", t.as_secs_f64()));
            Ok(t)
        }
    }
}

/// The backends and repository options for `cfg`. Local repositories get no cache (it would
/// only duplicate the repository on the same disk); remote ones use rustic's default cache.
pub(crate) fn backends(
    cfg: &RepoConfig,
) -> Result<(RepositoryBackends, RepositoryOptions, Arc<Health>), RepoError> {
    let location = location(&cfg.repository)?;
    refuse_sftp_on_windows(&location, &cfg.repository)?;
    let mut options = resolve_options(&location, &cfg.options, &|v| std::env::var(v).ok())?;
    let place = if location.is_local {
        cfg.repository.trim().to_string()
    } else {
        describe(&location, &options)
    };
    let budget = cfg
        .retry_budget
        .unwrap_or(crate::budget::DEFAULT_RETRY_BUDGET);
    if location.service().is_some() {
        // Retries are the budget's (budget.rs): OpenDAL's own would try each call 5 times over
        // about 45 s, whatever the run has already spent.
        options.insert("retry".into(), "off".into());
        let timeout = set_request_timeout(&mut options, budget)?;
        set_upload_timeout(&mut options, timeout)?;
    }
    let backend_opts = BackendOptions::default()
        .repository(location.backend)
        .options(options);
    let backends = backend_opts
        .to_backends()
        .map_err(|err| from_rustic("cannot reach the repository", &err))?;
    let health = crate::budget::health(&cfg.repository, &place, budget);
    let backends = RepositoryBackends::new(
        Budgeted::wrap(backends.repository(), health.clone()),
        backends
            .repo_hot()
            .map(|hot| Budgeted::wrap(hot, health.clone())),
    );
    let repo_opts = RepositoryOptions::default().no_cache(location.is_local);
    Ok((backends, repo_opts, health))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upload_may_take_longer_than_a_short_budget() {
        use std::time::Duration;
        let mut o = BTreeMap::new();
        let t = set_request_timeout(&mut o, Duration::from_secs(1)).unwrap();
        assert_eq!(t, Duration::from_secs(1));
        let up = set_upload_timeout(&mut o, t).unwrap();
        assert_eq!(up, crate::budget::MAX_REQUEST_TIMEOUT);
        assert_eq!(o["upload_timeout"], "60");
        let mut o = BTreeMap::new();
        assert_eq!(
            set_upload_timeout(&mut o, Duration::from_secs(300)).unwrap(),
            Duration::from_secs(300)
        );
        let mut o = BTreeMap::from([("upload_timeout".to_string(), "5".to_string())]);
        assert_eq!(
            set_upload_timeout(&mut o, Duration::from_secs(1)).unwrap(),
            Duration::from_secs(5)
        );
        let mut o = BTreeMap::from([("upload_timeout".to_string(), "soon".to_string())]);
        let e = set_upload_timeout(&mut o, Duration::from_secs(1)).unwrap_err();
        assert!(e.to_string().contains("upload_timeout"), "{e}");
    }

    #[test]
    fn every_remote_request_gets_a_timeout_and_a_bad_one_is_refused() {
        use std::time::Duration;
        let mut o = BTreeMap::new();
        let t = set_request_timeout(&mut o, Duration::from_secs(3)).unwrap();
        assert_eq!(t, Duration::from_secs(3));
        assert_eq!(o["timeout"], "3");
        let mut o = BTreeMap::from([("timeout".to_string(), "300".to_string())]);
        let t = set_request_timeout(&mut o, Duration::from_secs(120)).unwrap();
        assert_eq!(t, Duration::from_secs(300));
        for bad in ["0", "-1", "2m", ""] {
            let mut o = BTreeMap::from([("timeout".to_string(), bad.to_string())]);
            let e = set_request_timeout(&mut o, Duration::from_secs(120)).unwrap_err();
            assert!(e.to_string().contains("timeout"), "{bad}: {e}");
        }
    }

    #[test]
    fn password_is_hidden_from_debug() {
        let cfg = RepoConfig {
            repository: "/r".into(),
            options: BTreeMap::from([("secret-access-key".into(), "AKIA-SECRET".into())]),
            password: Password::new("hunter2"),
            retry_budget: None,
        };
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("AKIA-SECRET"), "{shown}");
        assert!(shown.contains("secret-access-key"), "{shown}");
    }

    #[test]
    fn local_folders_are_told_from_backends() {
        use std::path::PathBuf;
        assert_eq!(
            local_folder("/backups/octo"),
            Some(PathBuf::from("/backups/octo"))
        );
        assert_eq!(local_folder("local:/r"), Some(PathBuf::from("/r")));
        assert_eq!(
            local_folder("C:/Backups"),
            Some(PathBuf::from("C:/Backups"))
        );
        assert_eq!(local_folder("/srv/a:b"), Some(PathBuf::from("/srv/a:b")));
        for remote in [
            "opendal:s3",
            "rest:http://x",
            "rclone:r",
            "s3://h/b",
            "gs:bucket",
            "",
        ] {
            assert_eq!(local_folder(remote), None, "{remote}");
        }
    }

    #[test]
    fn locations_are_read_as_users_mean_them() {
        let l = location("/srv/backups").unwrap();
        assert!(l.is_local);
        let l = location("opendal:s3").unwrap();
        assert!(!l.is_local);
        assert_eq!(l.backend, "opendal:s3");
        assert!(location("rest:http://host:8000/").is_ok_and(|l| !l.is_local));
        assert!(location("local:/srv/x").unwrap().is_local);
        assert!(location("C:/Backups").unwrap().is_local);
        assert!(location("/srv/a:b").unwrap().is_local);
        assert!(location("gs:bucket/x").is_err());
        assert!(location("  ").is_err());
    }

    fn opts(location: &str) -> (String, BTreeMap<String, String>) {
        let l = super::location(location).unwrap();
        assert!(!l.is_local, "{location}");
        (l.backend, l.options)
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn s3_urls_become_opendal_options() {
        let (backend, o) = opts("s3://s3.eu-west-1.amazonaws.com/octo-backups/prod/octopus");
        assert_eq!(backend, "opendal:s3");
        assert_eq!(
            o,
            map(&[
                ("endpoint", "https://s3.eu-west-1.amazonaws.com"),
                ("bucket", "octo-backups"),
                ("root", "/prod/octopus"),
            ])
        );
        let (_, o) = opts("s3:http://127.0.0.1:9000/bucket");
        assert_eq!(
            o,
            map(&[
                ("endpoint", "http://127.0.0.1:9000"),
                ("bucket", "bucket"),
                ("root", "/"),
            ])
        );
        let (_, o) = opts("s3:minio.local:9000/b/p/");
        assert_eq!(o["endpoint"], "https://minio.local:9000");
        assert_eq!(o["root"], "/p");
        for bad in ["s3://host", "s3://", "s3:http://h/", "s3://user@h/b"] {
            let e = location(bad).err().unwrap().to_string();
            assert!(e.contains("s3://HOST[:PORT]/BUCKET"), "{bad}: {e}");
        }
    }

    #[test]
    fn azure_and_sftp_urls_become_opendal_options() {
        let (backend, o) = opts("azure://octobackup/prod");
        assert_eq!(backend, "opendal:azblob");
        assert_eq!(o, map(&[("container", "octobackup"), ("root", "/prod")]));
        let (_, o) = opts("azure:octobackup:/");
        assert_eq!(o, map(&[("container", "octobackup"), ("root", "/")]));
        assert!(location("azure://Octo_Backups").is_err());

        let (backend, o) = opts("sftp://backup@nas.example.com:2222/srv/octobackup");
        assert_eq!(backend, "opendal:sftp");
        assert_eq!(
            o,
            map(&[
                ("endpoint", "ssh://nas.example.com:2222"),
                ("user", "backup"),
                ("root", "/srv/octobackup"),
            ])
        );
        let (_, o) = opts("sftp:backup@nas:/srv/repo");
        assert_eq!(o["endpoint"], "ssh://nas");
        assert_eq!(o["root"], "/srv/repo");
        for bad in [
            "sftp://nas",
            "sftp://@nas/x",
            "sftp://u@nas:port/x",
            "sftp:nas",
        ] {
            let e = location(bad).err().unwrap().to_string();
            assert!(e.contains("sftp://USER@HOST"), "{bad}: {e}");
        }
    }

    #[test]
    fn credentials_come_from_the_environment_or_files_and_the_config_wins() {
        let env = |name: &str| -> Option<String> {
            match name {
                "AWS_ACCESS_KEY_ID" => Some("AKIAENV".into()),
                "AWS_SECRET_ACCESS_KEY" => Some("env-secret".into()),
                "AZURE_STORAGE_ACCOUNT" => Some("octostore".into()),
                "AZURE_ACCOUNT_KEY" => Some("restic-style-key".into()),
                "MY_SECRET" => Some("from-my-var".into()),
                _ => None,
            }
        };
        let s3 = location("s3://h/b").unwrap();
        let o = resolve_options(&s3, &BTreeMap::new(), &env).unwrap();
        assert_eq!(o["access_key_id"], "AKIAENV");
        assert_eq!(o["secret_access_key"], "env-secret");
        assert_eq!(o["region"], "us-east-1");
        assert!(!o.contains_key("session_token"));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "from-file\n").unwrap();
        let configured = map(&[
            ("access_key_id", "AKIACONFIG"),
            ("secret_access_key_file", file.to_str().unwrap()),
            ("session_token_env", "MY_SECRET"),
            ("region", "eu-west-1"),
        ]);
        let o = resolve_options(&s3, &configured, &env).unwrap();
        assert_eq!(o["access_key_id"], "AKIACONFIG");
        assert_eq!(o["secret_access_key"], "from-file");
        assert_eq!(o["session_token"], "from-my-var");
        assert_eq!(o["region"], "eu-west-1");
        assert!(!o.contains_key("secret_access_key_file"));

        let e = resolve_options(&s3, &map(&[("secret_access_key_env", "NOPE")]), &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("NOPE, which is not set"), "{e}");

        let az = location("azure://c").unwrap();
        let o = resolve_options(&az, &BTreeMap::new(), &env).unwrap();
        assert_eq!(o["account_name"], "octostore");
        assert_eq!(o["account_key"], "restic-style-key");
        assert_eq!(o["endpoint"], "https://octostore.blob.core.windows.net");
        let o =
            resolve_options(&az, &map(&[("endpoint", "http://127.0.0.1:1/dev")]), &env).unwrap();
        assert_eq!(o["endpoint"], "http://127.0.0.1:1/dev");

        let e = resolve_options(&az, &BTreeMap::new(), &|_| None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("AZURE_STORAGE_ACCOUNT"), "{e}");

        let sftp = location("sftp://u@h/r").unwrap();
        let o = resolve_options(&sftp, &map(&[("key", "/k")]), &env).unwrap();
        assert_eq!(o["connections"], "8");
        assert_eq!(o["key"], "/k");
        assert_eq!(describe(&sftp, &o), "SFTP folder /r on ssh://h");
    }

    #[cfg(not(windows))]
    #[test]
    fn local_paths_with_colons_are_marked_local() {
        assert_eq!(location("/srv/a:b").unwrap().backend, "local:/srv/a:b");
        assert_eq!(location("/srv/ab").unwrap().backend, "/srv/ab");
    }
}
