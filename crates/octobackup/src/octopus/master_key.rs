//! The master key, read where Octopus keeps it: `Octopus.Server show-master-key` on the host (also
//! through `docker exec`/`kubectl exec`), an environment variable or a file. The key is checked for
//! form (base64 of 16 or 32 bytes) before anything depends on it; its value never reaches a log,
//! an error message or a process argument.

use crate::config::MasterKeySource;
use crate::secret::{Secret, SecretSource};
use base64::Engine;
use std::process::Stdio;

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error(
        "cannot run the master key command '{program}': {cause}. Check master_key.command in the config."
    )]
    Spawn { program: String, cause: String },
    #[error(
        "the master key command '{program}' failed ({status}): {stderr}. It needs local administrator rights on the Octopus host (or the right container/instance name)."
    )]
    Failed {
        program: String,
        status: String,
        stderr: String,
    },
    #[error(
        "the master key command '{program}' printed no master key (expected the key alone on a line, as Octopus.Server show-master-key prints it, or JSON holding it)"
    )]
    NotFound { program: String },
    #[error("{0}")]
    Source(#[from] crate::secret::SecretError),
    #[error(
        "the master key from {source_name} is not base64 of 16 or 32 bytes ({detail}); Octopus master keys are"
    )]
    Malformed { source_name: String, detail: String },
}

pub struct MasterKey {
    pub key: Secret,
    pub bytes: usize,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({} bytes, ***)", self.bytes)
    }
}

/// Checks a master key's form: base64 of 16 (AES-128) or 32 (AES-256) bytes.
pub fn validate(key: &str) -> Result<usize, String> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(key.trim())
        .map_err(|_| "not valid base64".to_string())?;
    match decoded.len() {
        16 | 32 => Ok(decoded.len()),
        n => Err(format!("{n} bytes")),
    }
}

/// Finds the key in `show-master-key` output. The text form is the one Octopus documents (the
/// container docs show `show-master-key --console --instance OctopusServer` printing the key alone,
/// and OctopusDSC uses that output as the key): the last line that is nothing but a key, so banner
/// or log lines around it do not matter. JSON output (`--format=json`) is still read: any string
/// in a `{...}` block that is a key, whatever its property is called (the name is unconfirmed).
pub fn parse_command_output(stdout: &str) -> Option<String> {
    let from_text = stdout
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.contains(char::is_whitespace) && validate(l).is_ok());
    if let Some(key) = from_text {
        return Some(key.to_string());
    }
    json_objects(stdout).find_map(|v| key_in_json(&v))
}

/// Every JSON object in a text that may carry other lines around it (log lines, exception text
/// with braces of its own), in order: each `{` is tried as the start of one.
pub fn json_objects(
    text: &str,
) -> impl Iterator<Item = serde_json::Map<String, serde_json::Value>> + '_ {
    let mut from = 0;
    std::iter::from_fn(move || {
        while let Some(i) = text[from..].find('{').map(|i| from + i) {
            let mut values =
                serde_json::Deserializer::from_str(&text[i..]).into_iter::<serde_json::Value>();
            if let Some(Ok(serde_json::Value::Object(map))) = values.next() {
                // Go on after this object, not inside it.
                from = i + values.byte_offset();
                return Some(map);
            }
            from = i + 1;
        }
        None
    })
}

/// A string anywhere in the JSON that is a master key (`MasterKey` first).
fn key_in_json(map: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    let is_key = |v: &serde_json::Value| {
        v.as_str()
            .filter(|s| validate(s).is_ok())
            .map(str::to_string)
    };
    if let Some(k) = map.get("MasterKey").and_then(is_key) {
        return Some(k);
    }
    map.values().find_map(|v| match v {
        serde_json::Value::Object(inner) => key_in_json(inner),
        other => is_key(other),
    })
}

/// The environment variables a child (Octopus.Server, `docker exec`, `kubectl exec`) is given;
/// everything else is withheld, so the API key, the SQL and repository passwords and any
/// `*_env` secret octobackup was started with never reach it. Each is here because:
const CHILD_ENV: &[&str] = &[
    // finding the program (and, on Windows, the system folder and how to run .cmd/.bat files)
    "PATH",
    "PATHEXT",
    "SystemRoot",
    "windir",
    "SystemDrive",
    "ComSpec",
    // .NET (Octopus.Server) and other tools write temporary files and read per-user settings
    "TEMP",
    "TMP",
    "TMPDIR",
    "HOME",
    "USERPROFILE",
    "APPDATA",
    "LOCALAPPDATA",
    "ProgramData",
    "ProgramFiles",
    "ProgramFiles(x86)",
    "ProgramW6432",
    "CommonProgramFiles",
    "USER",
    "USERNAME",
    "LOGNAME",
    // messages in the operator's language and encoding
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    // `docker exec`: which daemon, context and TLS material (no registry credentials)
    "DOCKER_HOST",
    "DOCKER_CONTEXT",
    "DOCKER_CONFIG",
    "DOCKER_CERT_PATH",
    "DOCKER_TLS_VERIFY",
    "DOCKER_API_VERSION",
    // rootless docker and podman find their socket here
    "XDG_RUNTIME_DIR",
    // `kubectl exec`: which cluster and credentials file (a path, not a secret itself)
    "KUBECONFIG",
];

/// A command for a helper program with a cleared environment plus [`CHILD_ENV`].
pub(crate) fn child_command(program: &str) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(program);
    c.env_clear();
    // Windows variable names are case-insensitive; match them so.
    for (name, value) in std::env::vars_os() {
        if let Some(n) = name.to_str()
            && CHILD_ENV.iter().any(|k| {
                if cfg!(windows) {
                    k.eq_ignore_ascii_case(n)
                } else {
                    *k == n
                }
            })
        {
            c.env(&name, value);
        }
    }
    c
}

pub async fn read(source: &MasterKeySource) -> Result<MasterKey, MasterKeyError> {
    let (key, source_name) = if let Some(cmd) = &source.command {
        let program = cmd[0].clone();
        let out = child_command(&cmd[0])
            .args(&cmd[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| MasterKeyError::Spawn {
                program: program.clone(),
                cause: e.to_string(),
            })?;
        let stdout = zeroize::Zeroizing::new(String::from_utf8_lossy(&out.stdout).into_owned());
        if !out.status.success() {
            // stderr of a failed run may still echo the key on some versions: keep only lines without base64-looking words.
            let stderr: String = String::from_utf8_lossy(&out.stderr)
                .lines()
                .filter(|l| parse_command_output(l).is_none())
                .take(3)
                .collect::<Vec<_>>()
                .join(" ");
            return Err(MasterKeyError::Failed {
                program,
                status: out.status.to_string(),
                stderr,
            });
        }
        let key = parse_command_output(&stdout).ok_or_else(|| MasterKeyError::NotFound {
            program: program.clone(),
        })?;
        (Secret::new(key), format!("command '{program}'"))
    } else if let Some(env) = &source.env {
        (
            SecretSource::Env(env.clone()).read("Octopus master key")?,
            format!("environment variable {env}"),
        )
    } else if let Some(file) = &source.file {
        (
            SecretSource::File(file.clone()).read("Octopus master key")?,
            format!("file {}", file.display()),
        )
    } else {
        unreachable!("config validation requires one master key source")
    };
    let bytes = validate(key.expose()).map_err(|detail| MasterKeyError::Malformed {
        source_name,
        detail,
    })?;
    Ok(MasterKey {
        key: Secret::new(key.expose().trim()),
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const K16: &str = "AAECAwQFBgcICQoLDA0ODw==";

    #[test]
    fn json_output() {
        assert_eq!(
            parse_command_output(&format!("{{\"MasterKey\": \"{K16}\"}}\n")).as_deref(),
            Some(K16)
        );
        let noisy = format!("Checking instance...\n{{\n  \"MasterKey\": \"{K16}\"\n}}\n");
        assert_eq!(parse_command_output(&noisy).as_deref(), Some(K16));
    }

    #[test]
    fn text_output_is_the_key_alone() {
        // As Octopus's container docs show it, and as OctopusDSC reads it.
        assert_eq!(
            parse_command_output(&format!("{K16}\n")).as_deref(),
            Some(K16)
        );
        let k32 = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        let logged = format!(
            "2026-11-29 18:00:00.1234  1 INFO  Octopus Deploy: Octopus Server version 2024.1.6928\n{k32}\n2026-11-29 18:00:00.2000  1 INFO  Done {{0}}\n"
        );
        assert_eq!(parse_command_output(&logged).as_deref(), Some(k32.as_str()));
        // Any property name in JSON output, and JSON among log lines with braces.
        let other_name = format!("log {{not json}}\n{{\"Key\": \"{K16}\", \"Instance\": \"X\"}}\n");
        assert_eq!(parse_command_output(&other_name).as_deref(), Some(K16));
        assert_eq!(parse_command_output("{\"MasterKey\": \"short\"}"), None);
    }

    #[test]
    fn json_objects_are_found_among_other_text() {
        let text = "INFO starting {Component}\n{\"a\": {\"b\": 1}}\nERROR at Main() {\n{\"c\": 2}";
        let found: Vec<_> = json_objects(text).collect();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains_key("a") && found[1].contains_key("c"));
    }

    #[test]
    fn banner_output_of_older_versions() {
        let out = format!(
            "Octopus Deploy: Octopus Server version 3.17.1\nRunning as administrator\nMaster key:\n{K16}\n\n"
        );
        assert_eq!(parse_command_output(&out).as_deref(), Some(K16));
        assert_eq!(
            parse_command_output("Access denied: run as administrator\n"),
            None
        );
    }

    #[test]
    fn a_child_gets_none_of_octobackups_secrets() {
        let c = child_command("true");
        let envs: Vec<String> = c
            .as_std()
            .get_envs()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        assert!(
            envs.iter()
                .all(|k| CHILD_ENV.iter().any(|a| a.eq_ignore_ascii_case(k))),
            "{envs:?}"
        );
        for secret in [
            "OCTOPUS_API_KEY",
            "OCTOBACKUP_SQL_PASSWORD",
            "OCTOBACKUP_PASSWORD",
        ] {
            assert!(!CHILD_ENV.contains(&secret));
        }
    }

    #[test]
    fn key_form() {
        assert_eq!(validate(K16), Ok(16));
        assert_eq!(
            validate(&base64::engine::general_purpose::STANDARD.encode([1u8; 32])),
            Ok(32)
        );
        assert_eq!(
            validate(&base64::engine::general_purpose::STANDARD.encode([1u8; 24])),
            Err("24 bytes".into())
        );
        assert!(validate("not base64!").is_err());
    }
}
