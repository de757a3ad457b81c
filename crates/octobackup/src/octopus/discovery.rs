//! Discovery from the instance itself: `Octopus.Server show-configuration` on the Octopus host (or
//! through a `docker exec`/`kubectl exec` prefix) tells where the database is, where the server
//! folders are, the node name and home, and the URL the server listens on; `show-master-key` gives
//! the master key. So a config can name only the instance and how to run Octopus.Server, and
//! cannot drift from what the server really uses.
//!
//! Output forms handled: `--format=json-hierarchical` (current), the flat `--format=json`, either
//! one with banner lines around it (older versions print them even with `--noconsolelogging`), and
//! the XML form of `OctopusServer.config` (`<octopus-settings><set key="...">value</set>`).
//! The connection string may hold the SQL password: it stays in memory, never in an error or log.

use crate::config::{DiscoverConfig, InstanceConfig, MasterKeySource};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;

/// Where Octopus.Server is when the config does not say: the Windows installer's default path, or
/// the Linux container's.
pub fn default_program() -> &'static str {
    if cfg!(windows) {
        r"C:\Program Files\Octopus Deploy\Octopus\Octopus.Server.exe"
    } else {
        "/Octopus/Octopus.Server"
    }
}

/// Some Linux images ship only `Octopus.Server.dll`: Octopus's own Kubernetes manifests run
/// `[[ -f /Octopus/Octopus.Server ]] && /Octopus/Octopus.Server ... || dotnet /Octopus/Octopus.Server.dll ...`.
/// - A local `Octopus.Server` (no prefix) that is absent, with the `.dll` beside it: the command
///   runs as `dotnet .../Octopus.Server.dll`.
/// - Behind a prefix (`docker exec NAME`, `kubectl exec POD --`) the file cannot be looked at from
///   here: the container's shell makes the same choice, as Octopus's manifests do.
pub fn with_dotnet_fallback(cmd: Vec<String>) -> Vec<String> {
    let Some(last) = cmd.last() else {
        return cmd;
    };
    // The container's path, whatever this host's separator.
    let is_server = |p: &str| p == "Octopus.Server" || p.ends_with("/Octopus.Server");
    if !is_server(last) {
        return cmd;
    }
    if cmd.len() > 1 {
        let mut out = cmd;
        let program = out.pop().expect("not empty");
        out.extend([
            "sh".to_string(),
            "-c".to_string(),
            CONTAINER_FALLBACK.to_string(),
            program,
        ]);
        return out;
    }
    let program = std::path::Path::new(last);
    let dll = program.with_file_name("Octopus.Server.dll");
    if program.exists() || !dll.is_file() {
        return cmd;
    }
    vec!["dotnet".to_string(), dll.display().to_string()]
}

/// Run inside the container with the program as `$0` and Octopus.Server's arguments as `$@`.
const CONTAINER_FALLBACK: &str =
    r#"if [ -e "$0" ]; then exec "$0" "$@"; else exec dotnet "$0.dll" "$@"; fi"#;

pub const DEFAULT_INSTANCE: &str = "OctopusServer";

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error(
        "cannot run '{program}' to discover the Octopus instance: {cause}. Set discover.command to Octopus.Server's path (with a `docker exec NAME` or `kubectl exec POD --` prefix for a container)."
    )]
    Spawn { program: String, cause: String },
    #[error(
        "'{program} {command}' needs administrator rights: {detail}. Run octobackup as a local administrator (an elevated prompt, or a scheduled task with \"Run with highest privileges\"), or as root in the container."
    )]
    NeedsAdmin {
        program: String,
        command: String,
        detail: String,
    },
    #[error(
        "the Octopus instance '{instance}' was not found by '{program}'. List the instances with `Octopus.Server list-instances` and set discover.instance."
    )]
    UnknownInstance { program: String, instance: String },
    #[error("'{program} {command}' failed ({status}): {detail}")]
    Failed {
        program: String,
        command: String,
        status: String,
        detail: String,
    },
    #[error(
        "'{program} show-configuration' printed nothing octobackup understands (expected JSON or the XML settings); first line: {first_line:?}"
    )]
    Unparsable { program: String, first_line: String },
    #[error(
        "the instance configuration has no {what} ({keys}): give it in the config ({config_key})"
    )]
    Missing {
        what: &'static str,
        keys: &'static str,
        config_key: &'static str,
    },
}

/// What show-configuration told about an instance. `connection_string` may hold a password.
#[derive(Clone, Default)]
pub struct Discovered {
    pub instance: String,
    pub connection_string: Option<String>,
    pub folders: BTreeMap<String, PathBuf>,
    pub node_name: Option<String>,
    pub home: Option<PathBuf>,
    pub url: Option<String>,
    /// Every setting, flat (`Octopus.Home` ...), except the connection string.
    pub settings: BTreeMap<String, String>,
}

impl std::fmt::Debug for Discovered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovered")
            .field("instance", &self.instance)
            .field(
                "connection_string",
                &self.connection_string.as_ref().map(|_| "***"),
            )
            .field("folders", &self.folders)
            .field("node_name", &self.node_name)
            .field("home", &self.home)
            .field("url", &self.url)
            .finish()
    }
}

/// The folder keys of show-configuration, by octobackup's folder names. `LogDirectory` is the task
/// log folder (`Octopus.Server path --taskLogs` sets it); EventExports' key is UNCONFIRMED.
const FOLDER_KEYS: &[(&str, &[&str])] = &[
    ("Packages", &["Octopus.Folders.PackagesDirectory"]),
    ("Artifacts", &["Octopus.Folders.ArtifactsDirectory"]),
    (
        "TaskLogs",
        &[
            "Octopus.Folders.LogDirectory",
            "Octopus.Folders.TaskLogsDirectory",
        ],
    ),
    ("EventExports", &["Octopus.Folders.EventExportsDirectory"]),
];
const CONNECTION_STRING_KEY: &str = "Octopus.Storage.ExternalDatabaseConnectionString";

/// Parses show-configuration's output into flat settings. The output may carry log lines and
/// exception text (with braces of their own) before or after the JSON (OctopusDSC#179): each
/// `{...}` block is tried in turn, and the first that holds `Octopus.*` settings is taken.
pub fn parse_settings(stdout: &str) -> Option<BTreeMap<String, String>> {
    let trimmed = stdout.trim();
    for map in super::master_key::json_objects(trimmed) {
        let mut out = BTreeMap::new();
        flatten("", &serde_json::Value::Object(map), &mut out);
        if out.keys().any(|k| k.starts_with("Octopus.")) {
            return Some(out);
        }
    }
    parse_xml_settings(trimmed)
}

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    let key = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                flatten(&key(k), v, out);
            }
        }
        serde_json::Value::Null => {}
        serde_json::Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// `<octopus-settings><set key="K">V</set>...`: the default XML format and the config file itself.
fn parse_xml_settings(text: &str) -> Option<BTreeMap<String, String>> {
    if !text.contains("<octopus-settings") {
        return None;
    }
    let mut out = BTreeMap::new();
    let mut rest = text;
    while let Some(i) = rest.find("<set ") {
        rest = &rest[i + 5..];
        let end_tag = rest.find('>')?;
        let attrs = &rest[..end_tag];
        let key = attr(attrs, "key")?;
        if attrs.trim_end().ends_with('/') {
            rest = &rest[end_tag + 1..];
            continue;
        }
        let body = &rest[end_tag + 1..];
        let close = body.find("</set>")?;
        out.insert(unescape_xml(&key), unescape_xml(body[..close].trim()));
        rest = &body[close + 6..];
    }
    Some(out)
}

fn attr(attrs: &str, name: &str) -> Option<String> {
    let i = attrs.find(&format!("{name}="))?;
    let rest = &attrs[i + name.len() + 1..];
    let q = rest.chars().next()?;
    let rest = &rest[1..];
    let end = rest.find(q)?;
    Some(rest[..end].to_string())
}

fn unescape_xml(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// What the settings say, by meaning.
pub fn interpret(instance: &str, mut settings: BTreeMap<String, String>) -> Discovered {
    let non_empty = |v: Option<&String>| v.filter(|s| !s.trim().is_empty()).cloned();
    let connection_string = settings
        .remove(CONNECTION_STRING_KEY)
        .filter(|s| !s.trim().is_empty());
    let mut folders = BTreeMap::new();
    for (name, keys) in FOLDER_KEYS {
        if let Some(v) = keys.iter().find_map(|k| non_empty(settings.get(*k))) {
            folders.insert(name.to_string(), PathBuf::from(v));
        }
    }
    let node_name = ["Octopus.Storage.NodeName", "Octopus.Node.Name"]
        .iter()
        .find_map(|k| non_empty(settings.get(*k)));
    let home = non_empty(settings.get("Octopus.Home")).map(PathBuf::from);
    let url = non_empty(settings.get("Octopus.WebPortal.ListenPrefixes")).and_then(|p| {
        p.split([',', ';'])
            .map(str::trim)
            .find(|p| p.starts_with("http://") || p.starts_with("https://"))
            .map(listen_prefix_to_url)
    });
    Discovered {
        instance: instance.to_string(),
        connection_string,
        folders,
        node_name,
        home,
        url,
        settings,
    }
}

/// `http://+:80/` (a listen prefix with a wildcard host) as a URL this host can call.
fn listen_prefix_to_url(prefix: &str) -> String {
    let (scheme, rest) = prefix.split_once("://").unwrap_or(("http", prefix));
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = match host.split_once(':') {
        Some(("+" | "*" | "0.0.0.0", port)) => format!("localhost:{port}"),
        None if matches!(host, "+" | "*" | "0.0.0.0") => "localhost".to_string(),
        _ => host.to_string(),
    };
    let path = path.trim_end_matches('/');
    if path.is_empty() {
        format!("{scheme}://{host}")
    } else {
        format!("{scheme}://{host}/{path}")
    }
}

/// The program and prefix of the configured discovery, and the instance name.
fn program_and_instance(d: &DiscoverConfig) -> (Vec<String>, String) {
    let cmd = d
        .command
        .clone()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| vec![default_program().to_string()]);
    let cmd = with_dotnet_fallback(cmd);
    let instance = d
        .instance
        .clone()
        .unwrap_or_else(|| DEFAULT_INSTANCE.to_string());
    (cmd, instance)
}

/// The master key command for a discovered instance. Text output (the default) is asked for: it is
/// the documented form, the key alone (see [`super::master_key::parse_command_output`]).
pub fn master_key_command(d: &DiscoverConfig) -> Vec<String> {
    let (mut cmd, instance) = program_and_instance(d);
    cmd.extend(
        [
            "show-master-key",
            "--instance",
            &instance,
            "--console",
            "--noconsolelogging",
        ]
        .map(String::from),
    );
    cmd
}

/// Classifies a failed Octopus.Server run by what it printed.
fn failure(
    program: &str,
    command: &str,
    instance: &str,
    status: String,
    text: &str,
) -> DiscoveryError {
    let lower = text.to_ascii_lowercase();
    let detail: String = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(3)
        .map(safe_line)
        .collect::<Vec<_>>()
        .join(" ");
    if lower.contains("administrator")
        || lower.contains("access is denied")
        || lower.contains("access to the path")
        || lower.contains("elevat")
    {
        DiscoveryError::NeedsAdmin {
            program: program.to_string(),
            command: command.to_string(),
            detail,
        }
    } else if lower.contains("instance")
        && (lower.contains("not found")
            || lower.contains("does not exist")
            || lower.contains("no instance"))
    {
        DiscoveryError::UnknownInstance {
            program: program.to_string(),
            instance: instance.to_string(),
        }
    } else {
        DiscoveryError::Failed {
            program: program.to_string(),
            command: command.to_string(),
            status,
            detail,
        }
    }
}

/// A line of output fit for an error message: cut short, and hidden when it may hold a secret.
fn safe_line(line: &str) -> String {
    let lower = line.to_ascii_lowercase();
    if lower.contains("password") || lower.contains("pwd") || lower.contains("key") {
        return "(hidden: it may hold a secret)".into();
    }
    line.chars().take(80).collect()
}

/// Runs `show-configuration --instance X --format=json-hierarchical` and interprets it.
pub async fn show_configuration(d: &DiscoverConfig) -> Result<Discovered, DiscoveryError> {
    let (cmd, instance) = program_and_instance(d);
    let program = cmd[0].clone();
    let out = super::master_key::child_command(&cmd[0])
        .args(&cmd[1..])
        .args([
            "show-configuration",
            "--instance",
            &instance,
            "--format=json-hierarchical",
            "--console",
            "--noconsolelogging",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| DiscoveryError::Spawn {
            program: program.clone(),
            cause: e.to_string(),
        })?;
    // The output holds the connection string (maybe with a password): zeroized when dropped, and
    // never quoted in an error (only the first line of stderr, or of an unparsable stdout, which
    // cannot be the connection string's line in JSON form).
    let stdout = zeroize::Zeroizing::new(String::from_utf8_lossy(&out.stdout).into_owned());
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        let text = if stderr.trim().is_empty() {
            // Octopus.Server prints its errors on stdout; keep lines that carry no setting.
            stdout
                .lines()
                .filter(|l| !l.contains("ConnectionString") && !l.contains('{') && !l.contains('"'))
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            stderr
        };
        return Err(failure(
            &program,
            "show-configuration",
            &instance,
            out.status.to_string(),
            &text,
        ));
    }
    let settings = parse_settings(&stdout).ok_or_else(|| DiscoveryError::Unparsable {
        program: program.clone(),
        first_line: safe_line(stdout.lines().next().unwrap_or("")),
    })?;
    Ok(interpret(&instance, settings))
}

/// The instance's config with whatever it leaves out filled from discovery: url, the SQL
/// connection string, the folders and the master key command. Given values always win.
pub async fn resolve(
    name: &str,
    inst: &InstanceConfig,
) -> Result<InstanceConfig, crate::error::Failure> {
    use crate::error::Failure;
    let Some(d) = &inst.discover else {
        return Ok(inst.clone());
    };
    let mut out = inst.clone();
    let needs_show =
        out.url.is_empty() || !out.sql.has_connection_string() || out.folders.is_empty();
    if needs_show {
        let found = show_configuration(d).await?;
        if out.url.is_empty() {
            out.url = found.url.clone().ok_or_else(|| {
                Failure::from(DiscoveryError::Missing {
                    what: "web portal URL",
                    keys: "Octopus.WebPortal.ListenPrefixes",
                    config_key: "url",
                })
            })?;
        }
        if !out.sql.has_connection_string() {
            out.sql.connection_string = Some(found.connection_string.clone().ok_or_else(|| {
                Failure::from(DiscoveryError::Missing {
                    what: "database connection string",
                    keys: CONNECTION_STRING_KEY,
                    config_key: "sql.connection_string",
                })
            })?);
        }
        if out.folders.is_empty() {
            out.folders = found.folders.clone();
        }
    }
    if out.master_key == MasterKeySource::default() {
        out.master_key = MasterKeySource {
            command: Some(master_key_command(d)),
            ..Default::default()
        };
    }
    out.validate(name)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HIERARCHICAL: &str = r#"{
  "Octopus": {
    "Home": "C:\\Octopus",
    "Folders": {
      "ArtifactsDirectory": "C:\\Octopus\\Artifacts",
      "LogDirectory": "C:\\Octopus\\TaskLogs",
      "PackagesDirectory": "C:\\Octopus\\Packages",
      "EventExportsDirectory": "C:\\Octopus\\EventExports",
      "ServerLogsDirectory": "C:\\Octopus\\Logs"
    },
    "Storage": {
      "ExternalDatabaseConnectionString": "Data Source=(local)\\SQLEXPRESS;Initial Catalog=OctopusDeploy;Integrated Security=True",
      "NodeName": "OCTO01"
    },
    "WebPortal": { "ListenPrefixes": "http://+:80/", "ForceSSL": "False" },
    "Communications": { "ServicesPort": "10943" }
  }
}"#;

    #[test]
    fn hierarchical_json() {
        let d = interpret("OctopusServer", parse_settings(HIERARCHICAL).unwrap());
        assert_eq!(
            d.connection_string.as_deref(),
            Some(
                r"Data Source=(local)\SQLEXPRESS;Initial Catalog=OctopusDeploy;Integrated Security=True"
            )
        );
        assert_eq!(d.folders["Packages"], PathBuf::from(r"C:\Octopus\Packages"));
        assert_eq!(d.folders["TaskLogs"], PathBuf::from(r"C:\Octopus\TaskLogs"));
        assert_eq!(d.folders.len(), 4);
        assert_eq!(d.node_name.as_deref(), Some("OCTO01"));
        assert_eq!(d.home, Some(PathBuf::from(r"C:\Octopus")));
        assert_eq!(d.url.as_deref(), Some("http://localhost:80"));
        assert!(!format!("{d:?}").contains("Catalog"));
        assert_eq!(d.settings["Octopus.Communications.ServicesPort"], "10943");
    }

    #[test]
    fn flat_json_with_banner_lines() {
        let out = "Octopus Deploy: Octopus Server version 3.17.1\nInstance: OctopusServer\n{\n \"Octopus.Home\": \"/home/octopus\",\n \"Octopus.Storage.ExternalDatabaseConnectionString\": \"Server=db,1433;Database=Octopus;User ID=sa;Password=x;y\",\n \"Octopus.Folders.PackagesDirectory\": \"/repository\",\n \"Octopus.Storage.NodeName\": \"node-a\",\n \"Octopus.WebPortal.ListenPrefixes\": \"https://octo.example.com/octopus/,http://localhost:8080/\"\n}\nDone.\n";
        let d = interpret("OctopusServer", parse_settings(out).unwrap());
        assert_eq!(
            d.connection_string.as_deref(),
            Some("Server=db,1433;Database=Octopus;User ID=sa;Password=x;y")
        );
        assert_eq!(d.folders.len(), 1);
        assert_eq!(d.url.as_deref(), Some("https://octo.example.com/octopus"));
        assert_eq!(d.node_name.as_deref(), Some("node-a"));
    }

    /// Log lines and exception text around the JSON, with braces of their own (OctopusDSC#179).
    #[test]
    fn json_among_log_lines_and_exception_text() {
        let out = format!(
            "2026-11-29 18:00:00.1234  1 INFO  Octopus Deploy: Octopus Server version 2024.1.6928\n\
             2026-11-29 18:00:00.2000  1 WARN  Could not read {{TelemetrySettings}}: System.IO.IOException\n\
             {{\"Level\": \"Info\", \"Message\": \"structured log line\"}}\n\
             {HIERARCHICAL}\n\
             System.InvalidOperationException: Sequence contains no elements {{0}}\n   at Octopus.Server.Program.Main() {{\n"
        );
        let d = interpret("OctopusServer", parse_settings(&out).unwrap());
        assert_eq!(d.folders.len(), 4);
        assert_eq!(d.node_name.as_deref(), Some("OCTO01"));
        assert!(d.connection_string.is_some());
        assert!(parse_settings("{\"Level\": \"Info\"}\nno settings here").is_none());
    }

    #[test]
    fn a_missing_octopus_server_falls_back_to_its_dll_through_dotnet() {
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("Octopus.Server").display().to_string();
        // The configured program, before Octopus.Server's arguments are added.
        let cmd = vec![program.clone()];
        // Neither there: unchanged (the spawn error names the program).
        assert_eq!(with_dotnet_fallback(cmd.clone()), cmd);
        std::fs::write(dir.path().join("Octopus.Server.dll"), b"").unwrap();
        let dll = dir.path().join("Octopus.Server.dll").display().to_string();
        assert_eq!(with_dotnet_fallback(cmd.clone()), ["dotnet", dll.as_str()]);
        // The program there: it is used.
        std::fs::write(&program, b"").unwrap();
        assert_eq!(with_dotnet_fallback(cmd.clone()), cmd);
        // Behind a prefix the container's shell chooses; other programs are left alone.
        let docker: Vec<String> = ["docker", "exec", "octo", "/Octopus/Octopus.Server"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            with_dotnet_fallback(docker),
            [
                "docker",
                "exec",
                "octo",
                "sh",
                "-c",
                CONTAINER_FALLBACK,
                "/Octopus/Octopus.Server"
            ]
        );
        let windows =
            vec![r"C:\Program Files\Octopus Deploy\Octopus\Octopus.Server.exe".to_string()];
        assert_eq!(with_dotnet_fallback(windows.clone()), windows);
        let other: Vec<String> = ["docker", "exec", "octo", "/opt/other"]
            .map(String::from)
            .to_vec();
        assert_eq!(with_dotnet_fallback(other.clone()), other);
    }

    #[test]
    fn xml_settings() {
        let out = r#"<?xml version="1.0" encoding="utf-8"?>
<octopus-settings xmlns:xsd="http://www.w3.org/2001/XMLSchema">
  <set key="Octopus.Home">C:\Octopus</set>
  <set key="Octopus.Storage.ExternalDatabaseConnectionString">Server=sql01;Database=Octo&amp;Deploy;Trusted_Connection=True</set>
  <set key="Octopus.Folders.ArtifactsDirectory">D:\Artifacts</set>
  <set key="Octopus.Storage.MasterKey" />
</octopus-settings>"#;
        let d = interpret("OctopusServer", parse_settings(out).unwrap());
        assert_eq!(
            d.connection_string.as_deref(),
            Some("Server=sql01;Database=Octo&Deploy;Trusted_Connection=True")
        );
        assert_eq!(d.folders["Artifacts"], PathBuf::from(r"D:\Artifacts"));
        assert!(parse_settings("Access denied").is_none());
    }

    #[test]
    fn listen_prefixes() {
        assert_eq!(
            listen_prefix_to_url("http://*:8080/"),
            "http://localhost:8080"
        );
        assert_eq!(
            listen_prefix_to_url("https://octo.local/"),
            "https://octo.local"
        );
        assert_eq!(listen_prefix_to_url("http://+/"), "http://localhost");
    }

    #[test]
    fn failures_are_classified() {
        let e = failure(
            "o",
            "show-configuration",
            "X",
            "exit 1".into(),
            "This command requires administrator rights",
        );
        assert!(matches!(e, DiscoveryError::NeedsAdmin { .. }), "{e}");
        let e = failure(
            "o",
            "show-configuration",
            "X",
            "exit 1".into(),
            "Instance 'X' was not found.",
        );
        assert!(matches!(e, DiscoveryError::UnknownInstance { .. }), "{e}");
        assert!(e.to_string().contains("list-instances"));
        let e = failure("o", "show-configuration", "X", "exit 1".into(), "boom");
        assert!(matches!(e, DiscoveryError::Failed { .. }), "{e}");
    }

    #[test]
    fn master_key_command_follows_the_discovery_command() {
        let d = DiscoverConfig {
            command: Some(vec![
                "docker".into(),
                "exec".into(),
                "octo".into(),
                "/Octopus/Octopus.Server".into(),
            ]),
            instance: Some("Second".into()),
        };
        assert_eq!(
            master_key_command(&d),
            [
                "docker",
                "exec",
                "octo",
                "sh",
                "-c",
                CONTAINER_FALLBACK,
                "/Octopus/Octopus.Server",
                "show-master-key",
                "--instance",
                "Second",
                "--console",
                "--noconsolelogging"
            ]
        );
    }
}
