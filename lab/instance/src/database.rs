//! The Octopus database as the lab's SQL Server stand-in holds it: the tables a restore check needs,
//! sensitive values encrypted with the instance's master key exactly as Octopus encrypts them, and
//! filler pages that make the file as large as a real Octopus database and change a little each day.
//!
//! UNCONFIRMED against a real Octopus schema: which row holds the server certificate and the
//! InstallationId. The lab keeps both in `dbo.Configuration` (ids `servercertificate` and
//! `installation`); the encryption itself follows Octopus's open-source code.

use crate::content;
use crate::crypto;
use base64::Engine;
use rand::{Rng, RngExt};
use sqlserver_files::image::{self, ColumnType, DatabaseSpec, Table, Value};
use std::path::Path;
use uuid::Uuid;

/// The plaintext behind the encrypted server certificate: base64 of a DER structure shaped like a
/// certificate (a SEQUENCE holding a serial, a subject and key bytes), deterministic from the seed.
/// A key check can parse it, which a wrong key's garbage does not (a padding check alone accepts
/// about 0.3% of wrong keys). Not a signed X.509 certificate: nothing in the lab verifies one.
pub fn server_certificate_der(seed: u64) -> Vec<u8> {
    fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match body.len() {
            n if n < 0x80 => out.push(n as u8),
            n if n < 0x100 => out.extend([0x81, n as u8]),
            n => out.extend([0x82, (n >> 8) as u8, n as u8]),
        }
        out.extend_from_slice(body);
        out
    }
    let mut rng = content::stream(seed, "database/certificate");
    let serial = content::random_bytes(&mut rng, 16);
    let key = content::random_bytes(&mut rng, 270);
    let mut tbs = tlv(0x02, &serial);
    tbs.extend(tlv(0x0c, b"CN=Octopus Portal"));
    tbs.extend(tlv(0x04, &key));
    tlv(0x30, &tlv(0x30, &tbs))
}

fn iv(rng: &mut impl Rng) -> [u8; 16] {
    let mut iv = [0u8; 16];
    rng.fill_bytes(&mut iv);
    iv
}

fn text(s: impl Into<String>) -> Value {
    Value::Text(s.into())
}

pub struct DatabaseInputs<'a> {
    pub name: &'a str,
    pub database_guid: Uuid,
    pub installation_id: Uuid,
    pub master_key: &'a [u8],
    pub filler_pages: u32,
    pub seed: u64,
    pub node_names: &'a [String],
}

/// Builds the day-0 Octopus database and writes its data and log files.
pub fn create(inputs: &DatabaseInputs, data_file: &Path, log_file: &Path) -> anyhow::Result<()> {
    let mut rng = content::stream(inputs.seed, "database/secrets");
    let cert =
        base64::engine::general_purpose::STANDARD.encode(server_certificate_der(inputs.seed));
    let cert_thumbprint = hex::encode_upper(content::random_bytes(&mut rng, 20));
    let encrypted_cert = crypto::encrypt(inputs.master_key, cert.as_bytes(), iv(&mut rng))?;

    let configuration = Table {
        schema: "dbo".into(),
        name: "Configuration".into(),
        columns: vec![("Id".into(), ColumnType::NVarChar), ("JSON".into(), ColumnType::NVarChar)],
        rows: vec![
            vec![
                text("installation"),
                text(serde_json::json!({"Id": "installation", "InstallationId": inputs.installation_id}).to_string()),
            ],
            vec![
                text("servercertificate"),
                text(
                    serde_json::json!({
                        "Id": "servercertificate",
                        "Thumbprint": cert_thumbprint,
                        "Subject": "CN=Octopus Portal",
                        "CertificateData": encrypted_cert,
                    })
                    .to_string(),
                ),
            ],
            vec![
                text("upgradeavailability"),
                text(r#"{"Id":"upgradeavailability","UpgradeAvailable":false,"HasLongTermSupport":false}"#),
            ],
        ],
    };

    let mut variable_sets = Vec::new();
    for n in 1..=12u32 {
        let mut vars = Vec::new();
        for v in 0..6u32 {
            let name = format!("Var{n}.{v}");
            if v % 3 == 0 {
                let secret = format!("s3cret-{n}-{v}-{:08x}", rng.next_u32());
                vars.push(serde_json::json!({
                    "Name": name, "Type": "Sensitive", "IsSensitive": true,
                    "Value": crypto::encrypt(inputs.master_key, secret.as_bytes(), iv(&mut rng))?,
                }));
            } else {
                vars.push(serde_json::json!({"Name": name, "Type": "String", "Value": format!("value-{n}-{v}")}));
            }
        }
        variable_sets.push(vec![
            text(format!("variableset-Projects-{n}")),
            text(format!("Projects-{n}")),
            text(serde_json::json!({"Variables": vars}).to_string()),
        ]);
    }
    let variable_set = Table {
        schema: "dbo".into(),
        name: "VariableSet".into(),
        columns: vec![
            ("Id".into(), ColumnType::NVarChar),
            ("OwnerId".into(), ColumnType::NVarChar),
            ("JSON".into(), ColumnType::NVarChar),
        ],
        rows: variable_sets,
    };

    let nodes = Table {
        schema: "dbo".into(),
        name: "OctopusServerNode".into(),
        columns: vec![
            ("Id".into(), ColumnType::NVarChar),
            ("Name".into(), ColumnType::NVarChar),
            ("MaxConcurrentTasks".into(), ColumnType::Int),
            ("IsInMaintenanceMode".into(), ColumnType::Bit),
        ],
        rows: inputs
            .node_names
            .iter()
            .map(|n| {
                vec![
                    text(n.clone()),
                    text(n.clone()),
                    Value::Int(5),
                    Value::Bit(false),
                ]
            })
            .collect(),
    };

    let spec = DatabaseSpec {
        name: inputs.name.to_string(),
        database_guid: inputs.database_guid,
        tables: vec![
            configuration,
            variable_set,
            nodes,
            server_task_table(Vec::new()),
        ],
        filler_pages: inputs.filler_pages,
        seed: inputs.seed,
    };
    image::create(&spec, data_file, log_file)?;
    Ok(())
}

fn server_task_table(rows: Vec<Vec<Value>>) -> Table {
    Table {
        schema: "dbo".into(),
        name: "ServerTask".into(),
        columns: vec![
            ("Id".into(), ColumnType::NVarChar),
            ("Name".into(), ColumnType::NVarChar),
            ("State".into(), ColumnType::NVarChar),
            ("QueueTime".into(), ColumnType::DateTime2),
        ],
        rows,
    }
}

/// One simulated day in the database: the day's tasks recorded, a few pages rewritten, a few added.
pub fn day_of_activity(
    data_file: &Path,
    seed: u64,
    day: u32,
    first_task: u64,
    tasks: u64,
    changed_fraction: f64,
    new_pages: u32,
) -> anyhow::Result<image::ChurnStats> {
    let mut rng = content::stream(seed, &format!("database/day/{day}"));
    let base = chrono::NaiveDate::from_ymd_opt(2026, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    let rows = (first_task..first_task + tasks)
        .map(|t| {
            vec![
                text(format!("ServerTasks-{t}")),
                text("Deploy"),
                text(if rng.random_bool(0.9) {
                    "Success"
                } else {
                    "Failed"
                }),
                Value::DateTime(
                    base + chrono::Duration::days(day as i64)
                        + chrono::Duration::seconds(rng.random_range(0..86_400)),
                ),
            ]
        })
        .collect();
    image::insert_rows(data_file, "dbo", "ServerTask", rows)?;
    image::churn(data_file, day, changed_fraction, new_pages, seed)
}
