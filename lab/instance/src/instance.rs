//! A lab Octopus instance on disk: its "host" secrets (what the real server keeps in its config and
//! DPAPI store), its server folders, its SQL Server data files and a staging share. Built
//! deterministically from a seed; each simulated day grows it.
//!
//! Layout under the lab folder:
//! ```text
//! instance/instance.json   the host's secrets and the instance's state (owner-only permissions)
//! instance/home/{Packages,Artifacts,TaskLogs,EventExports}
//! sqlserver/               the SQL Server stand-in's data folder (catalog.json, .mdf/.ldf)
//! staging/                 the share SQL Server writes backups to and octobackup reads them from
//! ```

use crate::database::{self, DatabaseInputs};
use crate::fingerprint::Fingerprint;
use crate::folders::{self, Counters, FolderChange, ServerFolders};
use crate::preset::Size;
use crate::{content, secret_file};
use base64::Engine;
use rand::RngExt;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use uuid::Uuid;

pub const DATABASE_NAME: &str = "OctopusDeploy";
/// A version recent enough to have every folder the procedure names (EventExports came in 2023.3).
pub const OCTOPUS_VERSION: &str = "2024.1.6928";

/// What the Octopus host knows: secrets included. Lives in `instance/instance.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InstanceState {
    pub seed: u64,
    pub size: Size,
    pub day: u32,
    pub octopus_version: String,
    pub installation_id: Uuid,
    pub instance_name: String,
    pub node_names: Vec<String>,
    /// base64 of 16 or 32 random bytes, as `Octopus.Server show-master-key` prints it.
    pub master_key: String,
    pub admin_api_key: String,
    pub reader_api_key: String,
    pub sql_login: String,
    pub sql_password: String,
    pub reader_sql_login: String,
    pub reader_sql_password: String,
    pub database: String,
    pub license_xml: String,
    pub license_serial: String,
    pub license_expiry: chrono::DateTime<chrono::Utc>,
    pub counters: Counters,
}

/// Options for building a new instance.
#[derive(Clone, Debug)]
pub struct InstanceOptions {
    pub size: Size,
    pub seed: u64,
    /// 16 (AES-128, the historical default) or 32 (AES-256, new instances since 2024.4).
    pub master_key_bytes: usize,
    pub nodes: u32,
}

impl Default for InstanceOptions {
    fn default() -> Self {
        InstanceOptions {
            size: Size::Small,
            seed: 1,
            master_key_bytes: 16,
            nodes: 1,
        }
    }
}

/// Paths of one lab folder.
#[derive(Clone, Debug)]
pub struct InstancePaths {
    pub root: PathBuf,
}

impl InstancePaths {
    pub fn new(root: &Path) -> Self {
        InstancePaths {
            root: root.to_path_buf(),
        }
    }
    pub fn state_file(&self) -> PathBuf {
        self.root.join("instance").join("instance.json")
    }
    pub fn home(&self) -> PathBuf {
        self.root.join("instance").join("home")
    }
    pub fn folders(&self) -> ServerFolders {
        ServerFolders::under(&self.home())
    }
    pub fn sql_data_dir(&self) -> PathBuf {
        self.root.join("sqlserver")
    }
    pub fn data_file(&self, database: &str) -> PathBuf {
        self.sql_data_dir().join(format!("{database}.mdf"))
    }
    pub fn log_file(&self, database: &str) -> PathBuf {
        self.sql_data_dir().join(format!("{database}_log.ldf"))
    }
    pub fn staging(&self) -> PathBuf {
        self.root.join("staging")
    }
    pub fn events(&self) -> PathBuf {
        self.root.join("events.jsonl")
    }
    pub fn lab_json(&self) -> PathBuf {
        self.root.join("lab.json")
    }
}

fn api_key(rng: &mut rand_chacha::ChaCha8Rng) -> String {
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let body: String = (0..26)
        .map(|_| ALNUM[rng.random_range(0..ALNUM.len())] as char)
        .collect();
    format!("API-{body}")
}

fn password(rng: &mut rand_chacha::ChaCha8Rng) -> String {
    // Includes ; and ' so connection-string and T-SQL quoting are exercised by every lab run.
    format!("Lab;P'w{}!", hex::encode(content::random_bytes(rng, 8)))
}

fn license_xml(serial: &str, expiry: &chrono::DateTime<chrono::Utc>) -> String {
    format!(
        "<License Signature=\"lab\"><LicensedTo>Octopus Lab</LicensedTo><LicenseKey>{serial}</LicenseKey><Version>2.0</Version><ValidFrom>2026-01-01</ValidFrom><MaintenanceExpires>{}</MaintenanceExpires><ProjectLimit>Unlimited</ProjectLimit><MachineLimit>100</MachineLimit><UserLimit>Unlimited</UserLimit></License>",
        expiry.format("%Y-%m-%d")
    )
}

impl InstanceState {
    pub fn load(paths: &InstancePaths) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(paths.state_file())?;
        Ok(serde_json::from_str(&text)?)
    }

    pub fn save(&self, paths: &InstancePaths) -> anyhow::Result<()> {
        secret_file::write(
            &paths.state_file(),
            serde_json::to_string_pretty(self)?.as_bytes(),
        )?;
        Ok(())
    }

    pub fn master_key_bytes(&self) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.master_key)
            .expect("lab master key is base64")
    }
}

/// Builds a new instance under `paths.root` (which must not hold one yet).
pub fn create(paths: &InstancePaths, opts: &InstanceOptions) -> anyhow::Result<InstanceState> {
    anyhow::ensure!(
        !paths.state_file().exists(),
        "{} already holds a lab instance",
        paths.root.display()
    );
    anyhow::ensure!(
        matches!(opts.master_key_bytes, 16 | 32),
        "a master key is 16 or 32 bytes"
    );
    let preset = opts.size.preset();
    let mut rng = content::stream(opts.seed, "instance");
    let master_key = base64::engine::general_purpose::STANDARD.encode(content::random_bytes(
        &mut rng,
        opts.master_key_bytes as u64,
    ));
    let serial = format!(
        "LAB-{}",
        hex::encode_upper(content::random_bytes(&mut rng, 6))
    );
    let expiry = chrono::DateTime::parse_from_rfc3339("2027-12-31T00:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let node_names: Vec<String> = (1..=opts.nodes.max(1))
        .map(|n| format!("OCTOPUS-NODE{n:02}"))
        .collect();
    let installation_id = Uuid::from_bytes(content::random_bytes(&mut rng, 16).try_into().unwrap());
    let database_guid = Uuid::from_bytes(content::random_bytes(&mut rng, 16).try_into().unwrap());
    let (counters, _) = {
        for dir in [paths.home(), paths.sql_data_dir(), paths.staging()] {
            std::fs::create_dir_all(dir)?;
        }
        folders::create(&paths.folders(), &preset, opts.seed)?
    };
    let state = InstanceState {
        seed: opts.seed,
        size: opts.size,
        day: 0,
        octopus_version: OCTOPUS_VERSION.to_string(),
        installation_id,
        instance_name: "OctopusServer".to_string(),
        node_names: node_names.clone(),
        master_key,
        admin_api_key: api_key(&mut rng),
        reader_api_key: api_key(&mut rng),
        sql_login: "octobackup".to_string(),
        sql_password: password(&mut rng),
        reader_sql_login: "octoreader".to_string(),
        reader_sql_password: password(&mut rng),
        database: DATABASE_NAME.to_string(),
        license_xml: license_xml(&serial, &expiry),
        license_serial: serial,
        license_expiry: expiry,
        counters,
    };
    database::create(
        &DatabaseInputs {
            name: DATABASE_NAME,
            database_guid,
            installation_id,
            master_key: &state.master_key_bytes(),
            filler_pages: preset.database_filler_pages,
            seed: opts.seed,
            node_names: &node_names,
        },
        &paths.data_file(DATABASE_NAME),
        &paths.log_file(DATABASE_NAME),
    )?;
    state.save(paths)?;
    Ok(state)
}

/// What simulated days changed.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ChurnReport {
    pub days: u32,
    pub day_now: u32,
    pub folders: FolderChange,
    pub database_pages_changed: u64,
    pub database_pages_added: u64,
    /// Bytes that really changed: new/removed file bytes plus changed and new database pages.
    pub bytes_changed: u64,
}

/// Runs `days` simulated days of use on the instance (folders and database file).
pub fn churn(paths: &InstancePaths, days: u32) -> anyhow::Result<ChurnReport> {
    let mut state = InstanceState::load(paths)?;
    let preset = state.size.preset();
    let mut report = ChurnReport {
        days,
        ..Default::default()
    };
    for _ in 0..days {
        let day = state.day + 1;
        let first_task = state.counters.next_task;
        let f = folders::day_of_activity(
            &paths.folders(),
            &preset,
            state.seed,
            day,
            &mut state.counters,
        )?;
        let db = database::day_of_activity(
            &paths.data_file(&state.database),
            state.seed,
            day,
            first_task,
            preset.day.new_task_logs as u64,
            preset.day.database_changed_fraction,
            preset.day.database_new_pages,
        )?;
        report.folders.files_added += f.files_added;
        report.folders.bytes_added += f.bytes_added;
        report.folders.files_removed += f.files_removed;
        report.folders.bytes_removed += f.bytes_removed;
        report.database_pages_changed += db.pages_changed as u64;
        report.database_pages_added += db.pages_added as u64;
        state.day = day;
        state.save(paths)?;
    }
    report.day_now = state.day;
    report.bytes_changed = report.folders.bytes_added
        + (report.database_pages_changed + report.database_pages_added) * 8192;
    Ok(report)
}

/// The instance's state now, to compare a restore against.
pub fn fingerprint(paths: &InstancePaths, database: &str) -> anyhow::Result<Fingerprint> {
    let folders = paths.folders();
    Fingerprint::take(&paths.data_file(database), &folders.named())
}
