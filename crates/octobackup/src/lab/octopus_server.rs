//! `octobackup-lab octopus-server --dir DIR <command> ...`: the lab's stand-in for the
//! `Octopus.Server` executable on the Octopus host, so discovery can be tried and tested:
//! `show-configuration --instance X --format=json-hierarchical|json|xml` and
//! `show-master-key --instance X [--format=json|text]`, answering from the lab's files as the real
//! one answers from its instance config. `show-master-key` prints the text form unless asked for
//! JSON: the key alone on a line, as Octopus's docs show it. Failure modes a real host has: an
//! unknown instance, and `--not-admin` (the process is not elevated, so the DPAPI-protected config
//! cannot be read). `--old` answers as versions before 2018 did: banner lines around the output,
//! flat JSON only. `--pollute` adds what a real run can print around its output: log lines, a
//! structured log line in JSON and exception text with braces (OctopusDSC#179).
//! The messages' wording is the lab's (UNCONFIRMED against a real server); their gist is real.

use crate::error::{Exit, Failure};
use octobackup_lab::{InstancePaths, InstanceState, LabInfo};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct OctopusServerArgs {
    /// The lab folder.
    #[arg(long)]
    pub dir: PathBuf,
    /// Answer as a process without administrator rights does.
    #[arg(long)]
    pub not_admin: bool,
    /// Answer as older versions do (banner lines, flat JSON, key on the last line).
    #[arg(long)]
    pub old: bool,
    /// Print log lines and exception text before and after the output.
    #[arg(long)]
    pub pollute: bool,
    /// show-configuration or show-master-key.
    pub command: String,
    /// Octopus.Server's options: --instance X, --format=F, --console, --noconsolelogging, --nologo.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub options: Vec<String>,
}

fn option(options: &[String], name: &str) -> Option<String> {
    let flag = format!("--{name}");
    let eq = format!("--{name}=");
    let mut it = options.iter();
    while let Some(o) = it.next() {
        if let Some(v) = o.strip_prefix(&eq) {
            return Some(v.to_string());
        }
        if o.eq_ignore_ascii_case(&flag) {
            return it.next().cloned();
        }
    }
    None
}

/// Exit codes as Octopus.Server's: non-zero on any failure; the message on stderr.
fn fail(message: String) -> Failure {
    Failure::new(Exit::Failed, message)
}

pub fn run(a: OctopusServerArgs) -> Result<(), Failure> {
    let instance = option(&a.options, "instance").unwrap_or_else(|| "OctopusServer".into());
    let format = option(&a.options, "format");
    let state = InstanceState::load(&InstancePaths::new(&a.dir))
        .map_err(|e| fail(format!("no lab instance in {}: {e}", a.dir.display())))?;
    if a.old {
        println!("Octopus Deploy: Octopus Server version 3.17.1 (lab)");
    }
    if !matches!(a.command.as_str(), "show-configuration" | "show-master-key") {
        return Err(fail(format!(
            "Command '{}' is not supported by the lab's Octopus.Server stand-in (only show-configuration and show-master-key).",
            a.command
        )));
    }
    if a.not_admin {
        return Err(fail(format!(
            "Access to the path '{}' is denied. This command requires administrator privileges: run it from an elevated prompt (Run as Administrator).",
            InstancePaths::new(&a.dir)
                .home()
                .join("OctopusServer.config")
                .display()
        )));
    }
    if instance != state.instance_name {
        return Err(fail(format!(
            "Instance '{instance}' of Octopus Server was not found. Use list-instances to see the instances on this machine."
        )));
    }
    if a.pollute {
        print!("{}", noise_before());
    }
    match a.command.as_str() {
        "show-master-key" => {
            // The key goes to stdout only, as Octopus.Server prints it: this is the host's tool.
            if a.old {
                println!(
                    "Showing the master key for instance {}\n{}",
                    state.instance_name, state.master_key
                );
            } else if format
                .as_deref()
                .is_some_and(|f| f.eq_ignore_ascii_case("json"))
            {
                println!("{}", serde_json::json!({"MasterKey": state.master_key}));
            } else {
                println!("{}", state.master_key);
            }
        }
        _ => {
            let info = LabInfo::read(&a.dir).map_err(|e| fail(format!("{e:#}")))?;
            let settings = settings(&info, &state, &a.dir);
            let format = if a.old {
                "json".to_string()
            } else {
                format.unwrap_or_else(|| "xml".into()).to_ascii_lowercase()
            };
            match format.as_str() {
                "json" => println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::Value::Object(
                        settings
                            .iter()
                            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                            .collect()
                    ))
                    .expect("serializes")
                ),
                "json-hierarchical" => println!(
                    "{}",
                    serde_json::to_string_pretty(&hierarchical(&settings)).expect("serializes")
                ),
                "xml" => {
                    println!("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<octopus-settings>");
                    for (k, v) in &settings {
                        println!("  <set key=\"{k}\">{}</set>", escape_xml(v));
                    }
                    println!("</octopus-settings>");
                }
                other => {
                    return Err(fail(format!(
                        "The format '{other}' is not supported. Try XML, json or json-hierarchical."
                    )));
                }
            }
            if a.old {
                println!("Done.");
            }
        }
    }
    if a.pollute {
        print!("{}", noise_after());
    }
    Ok(())
}

/// What a run without `--noconsolelogging`, or one that hit a warning, prints before its output.
/// The lab's wording; the shape (timestamped log lines, braces in messages) is real.
pub fn noise_before() -> String {
    let now = chrono::Utc::now()
        .format("%Y-%m-%d %H:%M:%S%.3f")
        .to_string();
    format!(
        "{now}   4312      1  INFO  Octopus Deploy: Octopus Server version 2024.1.6928 (lab)\n\
         {now}   4312      1  WARN  Could not load {{TelemetrySettings}} from the database: System.TimeoutException\n\
         {{\"@t\":\"{now}\",\"@l\":\"Information\",\"@m\":\"Checking instance\"}}\n"
    )
}

/// ... and after it: an exception's text with its stack, braces included.
pub fn noise_after() -> String {
    "System.InvalidOperationException: Sequence contains no elements {0}\n   \
     at Octopus.Server.Web.Startup.<Configure>b__4_0() {\n   \
     at Octopus.Shared.Startup.OctopusProgram.Run()\n"
        .to_string()
}

fn escape_xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The instance's settings, keyed as Octopus keys them (the connection string with its password,
/// as Octopus stores it).
fn settings(info: &LabInfo, state: &InstanceState, dir: &Path) -> Vec<(String, String)> {
    let (host, port) = info
        .sql_address
        .rsplit_once(':')
        .unwrap_or((&info.sql_address, "1433"));
    // Octopus's installer writes a named instance without a port (`(local)\SQLEXPRESS`) and no
    // TrustServerCertificate (Octopus adds it itself: OctopusDeploy/Issues#6899).
    let server = match &info.sql_instance {
        Some(instance) if info.sql_browser_address.is_some() => format!("{host}\\{instance}"),
        _ => format!("{host},{port}"),
    };
    let quoted_password = format!("'{}'", state.sql_password.replace('\'', "''"));
    let home = InstancePaths::new(dir).home();
    vec![
        ("Octopus.Home".into(), home.display().to_string()),
        (
            "Octopus.Storage.ExternalDatabaseConnectionString".into(),
            format!(
                "Server={server};Database={};User ID={};Password={quoted_password}",
                info.database, state.sql_login
            ),
        ),
        (
            "Octopus.Storage.NodeName".into(),
            state
                .node_names
                .first()
                .cloned()
                .unwrap_or_else(|| "OCTOPUS-LAB".into()),
        ),
        (
            "Octopus.Folders.PackagesDirectory".into(),
            info.folders.packages.display().to_string(),
        ),
        (
            "Octopus.Folders.ArtifactsDirectory".into(),
            info.folders.artifacts.display().to_string(),
        ),
        (
            "Octopus.Folders.LogDirectory".into(),
            info.folders.task_logs.display().to_string(),
        ),
        (
            "Octopus.Folders.EventExportsDirectory".into(),
            info.folders.event_exports.display().to_string(),
        ),
        (
            "Octopus.Folders.ServerLogsDirectory".into(),
            home.join("Logs").display().to_string(),
        ),
        (
            "Octopus.WebPortal.ListenPrefixes".into(),
            format!("{}/", info.octopus_url.trim_end_matches('/')),
        ),
        ("Octopus.Communications.ServicesPort".into(), "10943".into()),
    ]
}

fn hierarchical(settings: &[(String, String)]) -> serde_json::Value {
    let mut root = serde_json::Map::new();
    for (k, v) in settings {
        let parts: Vec<&str> = k.split('.').collect();
        let mut node = &mut root;
        for p in &parts[..parts.len() - 1] {
            node = node
                .entry(p.to_string())
                .or_insert_with(|| serde_json::Value::Object(Default::default()))
                .as_object_mut()
                .expect("settings nest");
        }
        node.insert(
            parts[parts.len() - 1].to_string(),
            serde_json::Value::String(v.clone()),
        );
    }
    serde_json::Value::Object(root)
}
