//! What the simulated Octopus Server is set up with: its identity, users' API keys, license,
//! server folders and HA nodes.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Duration as ChronoDuration, FixedOffset, Utc};
use uuid::Uuid;

/// Receives every state change as it happens: a kind (`maintenance_changed`, `fault_served`,
/// `task_started`, `task_finished`, `node_maintenance_changed`) and a JSON detail. Called
/// synchronously, outside the simulator's lock, so the sink may call back into the handle.
pub type EventSink = Arc<dyn Fn(&'static str, serde_json::Value) + Send + Sync>;

/// The Octopus version of the swagger document the simulator is checked against.
pub const DEFAULT_VERSION: &str = "2021.2.4488";

/// Everything `start` needs. Build one with [`OctopusConfig::new`] and adjust the fields.
#[derive(Clone)]
pub struct OctopusConfig {
    /// Reported by `GET /api` and `/api/serverstatus`; also decides which server folders exist
    /// (Imports from 2021.1, EventExports from 2023.3).
    pub version: String,
    pub installation_id: Uuid,
    pub api_keys: Vec<ApiKey>,
    pub license: License,
    pub folders: ServerFolders,
    /// HA node names, in cluster order: the first is the leader. Never empty.
    pub nodes: Vec<String>,
    /// Maintenance mode at start.
    pub maintenance: bool,
    /// The offset dates are written with. Octopus writes the server's local offset, so a client
    /// must not assume `+00:00`.
    pub utc_offset: FixedOffset,
    pub events: Option<EventSink>,
}

impl OctopusConfig {
    /// A single-node server on the default version with one administrator key (user `admin`),
    /// a compliant license valid for a year and its folders under `home` (not created).
    pub fn new(home: impl AsRef<Path>) -> Self {
        OctopusConfig {
            version: DEFAULT_VERSION.to_string(),
            installation_id: Uuid::new_v4(),
            api_keys: vec![ApiKey::generate("admin", true)],
            license: License::default(),
            folders: ServerFolders::under(home),
            nodes: vec!["OCTOPUS-NODE-01".to_string()],
            maintenance: false,
            utc_offset: FixedOffset::east_opt(0).expect("zero offset is valid"),
            events: None,
        }
    }

    /// The first key that has Administer System, for tests and the lab's own use.
    pub fn admin_key(&self) -> Option<&ApiKey> {
        self.api_keys.iter().find(|key| key.administer_system)
    }
}

impl fmt::Debug for OctopusConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OctopusConfig")
            .field("version", &self.version)
            .field("installation_id", &self.installation_id)
            .field("api_keys", &self.api_keys)
            .field("license", &self.license)
            .field("folders", &self.folders)
            .field("nodes", &self.nodes)
            .field("maintenance", &self.maintenance)
            .field("utc_offset", &self.utc_offset)
            .field("events", &self.events.as_ref().map(|_| "EventSink"))
            .finish()
    }
}

/// One user's API key. Debug output never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// `API-` followed by 26 upper-case letters and digits, as Octopus issues them.
    pub key: String,
    /// The user name Octopus records as `LastModifiedBy`.
    pub user: String,
    /// Whether the user's teams grant the system permission `AdministerSystem`.
    pub administer_system: bool,
}

impl ApiKey {
    /// A fresh random key for `user`.
    pub fn generate(user: impl Into<String>, administer_system: bool) -> Self {
        const ALPHABET: &[u8; 36] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        // A v4 UUID carries 122 random bits; 26 base-36 digits hold them all.
        let mut value = Uuid::new_v4().as_u128();
        let mut key = String::with_capacity(30);
        key.push_str("API-");
        for _ in 0..26 {
            key.push(ALPHABET[(value % 36) as usize] as char);
            value /= 36;
        }
        ApiKey {
            key,
            user: user.into(),
            administer_system,
        }
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("key", &"API-<redacted>")
            .field("user", &self.user)
            .field("administer_system", &self.administer_system)
            .finish()
    }
}

/// The installed license, as `/api/licenses/licenses-current` returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct License {
    /// The license XML, stored by Octopus in its database.
    pub text: String,
    pub serial_number: String,
    /// The date maintenance (and upgrades) end: `EffectiveExpiryDate`.
    pub expiry: DateTime<Utc>,
    /// Whether usage is within the license's limits: `IsCompliant`.
    pub compliant: bool,
}

impl License {
    /// A license document shaped like Octopus's (XML with a signature attribute). The signature
    /// is not a real one: nothing in the lab verifies it.
    pub fn new(serial_number: impl Into<String>, expiry: DateTime<Utc>, compliant: bool) -> Self {
        let serial_number = serial_number.into();
        let valid_from = (expiry - ChronoDuration::days(365)).format("%Y-%m-%d");
        let text = format!(
            "<License Signature=\"{signature}\">\n  <LicensedTo>Octobackup Lab</LicensedTo>\n  \
             <LicenseKey>{serial_number}</LicenseKey>\n  <Version>2.0</Version>\n  \
             <ValidFrom>{valid_from}</ValidFrom>\n  <MaintenanceExpires>{expires}</MaintenanceExpires>\n  \
             <ProjectLimit>Unlimited</ProjectLimit>\n  <MachineLimit>Unlimited</MachineLimit>\n  \
             <UserLimit>Unlimited</UserLimit>\n</License>",
            signature = Uuid::new_v4().simple(),
            expires = expiry.format("%Y-%m-%d"),
        );
        License {
            text,
            serial_number,
            expiry,
            compliant,
        }
    }
}

impl Default for License {
    /// Compliant, expiring a year from now.
    fn default() -> Self {
        License::new(
            "87401-23456-71234-12345",
            Utc::now() + ChronoDuration::days(365),
            true,
        )
    }
}

/// Where the server keeps the folders its backup needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerFolders {
    /// The built-in package repository (`Packages`).
    pub packages: PathBuf,
    pub artifacts: PathBuf,
    pub task_logs: PathBuf,
    /// Audit event exports; Octopus 2023.3 and later.
    pub event_exports: PathBuf,
    /// Imported project zip files; Octopus 2021.1 and later.
    pub imports: PathBuf,
    pub telemetry: PathBuf,
}

impl ServerFolders {
    /// Octopus's default layout under a home folder (`C:\Octopus` on Windows).
    pub fn under(home: impl AsRef<Path>) -> Self {
        let home = home.as_ref();
        ServerFolders {
            packages: home.join("Packages"),
            artifacts: home.join("Artifacts"),
            task_logs: home.join("TaskLogs"),
            event_exports: home.join("EventExports"),
            imports: home.join("Imports"),
            telemetry: home.join("Telemetry"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_look_like_octopus_keys_and_differ() {
        let a = ApiKey::generate("a", true);
        let b = ApiKey::generate("b", false);
        for key in [&a.key, &b.key] {
            assert_eq!(key.len(), 30);
            assert!(key.starts_with("API-"));
            assert!(
                key[4..]
                    .bytes()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            );
        }
        assert_ne!(a.key, b.key);
    }

    #[test]
    fn debug_output_hides_keys() {
        let config = OctopusConfig::new("home");
        let key = config.admin_key().unwrap().key.clone();
        assert!(!format!("{config:?}").contains(&key));
    }
}
