//! What a restore prints at the end: the `Octopus.Server` commands that finish the job, per
//! Octopus's "restore, move, clone" procedure, with the connection string and the login to grant.

use crate::backupset::Manifest;
use crate::sqlserver::SqlServer;
use crate::sqlserver::connstr::Authentication;

/// The connection string Octopus should use for the restored database, with the password left
/// out (a placeholder the user fills in).
pub fn octopus_connection_string(server: &SqlServer, database: &str) -> String {
    let c = &server.conn;
    let mut s = format!("Server={};Database={database};", c.server_display());
    match &c.auth {
        Authentication::SqlLogin { user } => {
            s.push_str(&format!("User ID={user};Password=<SQL password>;"))
        }
        Authentication::Integrated => s.push_str("Trusted_Connection=True;"),
    }
    match c.encrypt {
        crate::sqlserver::connstr::Encrypt::Optional => s.push_str("Encrypt=False;"),
        crate::sqlserver::connstr::Encrypt::Mandatory => s.push_str("Encrypt=True;"),
        crate::sqlserver::connstr::Encrypt::Strict => s.push_str("Encrypt=Strict;"),
    }
    if c.trust_server_certificate == Some(true) {
        s.push_str("TrustServerCertificate=True;");
    }
    s
}

/// What a restore of a TDE-encrypted database needs on the target server. SQL Server refuses to
/// restore such a backup without the certificate (Msg 33111, "Cannot find server certificate with
/// thumbprint"), and the certificate lives in the source server's [master], not in the backup.
pub fn tde_note(manifest: &Manifest) -> Option<String> {
    (manifest.database.tde_encrypted == Some(true)).then(|| format!(
        "[{db}] was encrypted with Transparent Data Encryption when it was backed up: the certificate that protects its database encryption key (with its private key) must exist in [master] on the target server before the restore, or SQL Server refuses it (Msg 33111). On {server}: BACKUP CERTIFICATE <name> TO FILE = '...' WITH PRIVATE KEY (FILE = '...', ENCRYPTION BY PASSWORD = '...'); on the target: CREATE CERTIFICATE <name> FROM FILE = '...' WITH PRIVATE KEY (FILE = '...', DECRYPTION BY PASSWORD = '...').",
        db = manifest.database.name,
        server = manifest.database.server
    ))
}

/// The login Octopus connects as, for `database --grant`: the SQL login of the connection string,
/// or, with Windows authentication, the Octopus service's account, which only the user knows.
pub fn octopus_grant_login(server: &SqlServer) -> String {
    match &server.conn.auth {
        Authentication::SqlLogin { user } => user.clone(),
        Authentication::Integrated => {
            "<the Octopus service account, e.g. NT AUTHORITY\\SYSTEM>".to_string()
        }
    }
}

pub const KEY_PLACEHOLDER: &str = "<master key: see the secrets file>";
pub const LICENSE_PLACEHOLDER: &str = "<license, base64: see the secrets file>";

/// The commands that finish a restore, per Octopus's "restore, move, clone" procedure.
pub fn next_steps(
    octopus_version: &str,
    octopus_instance: &str,
    connection_string: &str,
    grant_login: &str,
    folders: &[(String, String)],
    master_key: &str,
    license_b64: Option<&str>,
) -> (Vec<String>, Vec<String>) {
    let folder = |name: &str| {
        folders
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.clone())
            .unwrap_or_else(|| format!("<{name} folder>"))
    };
    let q = |s: &str| format!("\"{}\"", s.replace('"', "\\\""));
    let mut windows = vec![
        format!(
            "Octopus.Server.exe database --instance {} --connectionString {} --masterKey {}",
            q(octopus_instance),
            q(connection_string),
            q(master_key)
        ),
        // A database restored on another SQL Server keeps its users, but they are orphaned: their
        // logins' SIDs differ there. `--grant` gives the login db_owner on the database (Octopus
        // docs, *database* command); a SQL login must exist on the server first.
        format!(
            "Octopus.Server.exe database --instance {} --grant {}",
            q(octopus_instance),
            q(grant_login)
        ),
        format!(
            "Octopus.Server.exe path --instance {} --nugetRepository {} --artifacts {} --taskLogs {} --eventExports {}",
            q(octopus_instance),
            q(&folder("Packages")),
            q(&folder("Artifacts")),
            q(&folder("TaskLogs")),
            q(&folder("EventExports"))
        ),
    ];
    if let Some(l) = license_b64 {
        windows.push(format!(
            "Octopus.Server.exe license --instance {} --licenseBase64 {}",
            q(octopus_instance),
            q(l)
        ));
    }
    windows.push(format!(
        "Octopus.Server.exe service --instance {} --stop --start",
        q(octopus_instance)
    ));
    let mut linux = vec![
        "docker run --detach --name octopus --publish 8080:8080 \\".to_string(),
        "  --env ACCEPT_EULA=Y \\".to_string(),
        format!("  --env DB_CONNECTION_STRING={} \\", q(connection_string)),
        format!("  --env MASTER_KEY={} \\", q(master_key)),
    ];
    if let Some(l) = license_b64 {
        linux.push(format!("  --env OCTOPUS_SERVER_BASE64_LICENSE={} \\", q(l)));
    }
    for (name, mount) in [
        ("Packages", "/repository"),
        ("Artifacts", "/artifacts"),
        ("TaskLogs", "/taskLogs"),
        ("EventExports", "/eventExports"),
    ] {
        linux.push(format!("  --volume {}:{mount} \\", q(&folder(name))));
    }
    linux.push(format!("  octopusdeploy/octopusdeploy:{octopus_version}"));
    (windows, linux)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backupset::Manifest;

    #[test]
    fn next_steps_name_every_folder_and_hide_placeholders() {
        let folders = vec![
            ("Packages".to_string(), "/n/Packages".to_string()),
            ("Artifacts".to_string(), "/n/Artifacts".to_string()),
            ("TaskLogs".to_string(), "/n/TaskLogs".to_string()),
            ("EventExports".to_string(), "/n/EventExports".to_string()),
        ];
        let (w, l) = next_steps(
            "2024.1.6928",
            "OctopusServer",
            "Server=s;Database=d;",
            "octopus",
            &folders,
            KEY_PLACEHOLDER,
            Some(LICENSE_PLACEHOLDER),
        );
        assert!(w[0].starts_with("Octopus.Server.exe database --instance \"OctopusServer\" --connectionString \"Server=s;Database=d;\" --masterKey"));
        assert_eq!(
            w[1],
            "Octopus.Server.exe database --instance \"OctopusServer\" --grant \"octopus\""
        );
        assert_eq!(
            w[2],
            "Octopus.Server.exe path --instance \"OctopusServer\" --nugetRepository \"/n/Packages\" --artifacts \"/n/Artifacts\" --taskLogs \"/n/TaskLogs\" --eventExports \"/n/EventExports\""
        );
        assert!(w[3].starts_with(
            "Octopus.Server.exe license --instance \"OctopusServer\" --licenseBase64"
        ));
        assert!(l.iter().any(|x| x.contains("MASTER_KEY=")));
        assert!(l.iter().any(|x| x.contains("\"/n/Packages\":/repository")));
    }
    #[test]
    fn a_tde_set_names_the_certificate_and_others_say_nothing() {
        let mut m = Manifest::default();
        m.database.name = "OctopusDeploy".into();
        m.database.server = "SQL01".into();
        assert_eq!(tde_note(&m), None);
        m.database.tde_encrypted = Some(false);
        assert_eq!(tde_note(&m), None);
        m.database.tde_encrypted = Some(true);
        let note = tde_note(&m).unwrap();
        assert!(note.contains("[OctopusDeploy]") && note.contains("On SQL01: BACKUP CERTIFICATE"));
        // Older manifests without the field read as unknown.
        let old: crate::backupset::manifest::DatabaseInfo =
            serde_json::from_str(r#"{"name":"d","server":"s","product_version":"16","edition":"e","files":[],"bytes":0,"verified":true,"backupset":null}"#).unwrap();
        assert_eq!(old.tde_encrypted, None);
    }
}
