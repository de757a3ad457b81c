//! The Octopus database as the lab's SQL Server stand-in holds it: the tables a restore check needs,
//! sensitive values of the kinds real instances hold (Azure keys, JSON, passwords, PEM keys, PFX
//! certificates) encrypted with the instance's master key exactly as Octopus encrypts them, a
//! `VariableSet` with a snapshot row per release (hundreds of rows), and filler pages that make the
//! file as large as a real Octopus database and change a little each day.
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
    let mut rng = content::stream(seed, "database/certificate");
    let serial = content::random_bytes(&mut rng, 16);
    let key = content::random_bytes(&mut rng, 270);
    let mut tbs = tlv(0x02, &serial);
    tbs.extend(tlv(0x0c, b"CN=Octopus Portal"));
    tbs.extend(tlv(0x04, &key));
    tlv(0x30, &tlv(0x30, &tbs))
}

/// Projects in the lab's database, and releases each has taken a variable snapshot for: enough
/// rows that a reader must page through `dbo.VariableSet` (about 600), small enough for tests.
pub const PROJECTS: u32 = 12;
pub const RELEASES_PER_PROJECT: u32 = 48;

/// A project's variables with sensitive values of the kinds real instances hold, each encrypted
/// with the master key as Octopus encrypts them:
/// - an Azure storage account key: base64 of 64 random bytes (88 characters), not DER;
/// - a JWT signing key: base64 of 32 random bytes;
/// - a service principal's JSON;
/// - passwords, one with non-ASCII characters;
/// - an SSH private key in PEM (several lines);
/// - on some projects, a PFX certificate as base64 (a DER SEQUENCE shaped like PKCS#12, a few KB).
fn project_variables(
    inputs: &DatabaseInputs,
    rng: &mut rand_chacha::ChaCha8Rng,
    n: u32,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let b64 = &base64::engine::general_purpose::STANDARD;
    let mut secrets: Vec<(&str, String)> = vec![
        ("Azure.StorageAccountKey", b64.encode(content::random_bytes(rng, 64))),
        ("Jwt.SigningKey", b64.encode(content::random_bytes(rng, 32))),
        (
            "Azure.ServicePrincipal",
            serde_json::json!({
                "tenantId": Uuid::from_bytes(content::random_bytes(rng, 16).try_into().unwrap()),
                "clientId": Uuid::from_bytes(content::random_bytes(rng, 16).try_into().unwrap()),
                "clientSecret": format!("{}~{}", hex::encode(content::random_bytes(rng, 6)), b64.encode(content::random_bytes(rng, 24))),
            })
            .to_string(),
        ),
        ("Database.Password", format!("s3cret-{n}-{:08x}", rng.next_u32())),
        ("Smtp.Password", format!("Pässwörd-€{}-{:04x}!", n, rng.next_u32() & 0xffff)),
        ("Deploy.SshKey", ssh_key_pem(rng)),
    ];
    if n % 4 == 1 {
        secrets.push(("Web.Certificate", b64.encode(pfx_like(rng))));
    }
    let mut vars = Vec::new();
    for (name, secret) in &secrets {
        vars.push(serde_json::json!({
            "Name": name, "Type": "Sensitive", "IsSensitive": true,
            "Value": crypto::encrypt(inputs.master_key, secret.as_bytes(), iv(rng))?,
        }));
    }
    for v in 0..4u32 {
        vars.push(serde_json::json!({"Name": format!("Var{n}.{v}"), "Type": "String", "Value": format!("value-{n}-{v}")}));
    }
    Ok(vars)
}

/// An OpenSSH-style private key block: 64-character base64 lines between PEM armour.
fn ssh_key_pem(rng: &mut rand_chacha::ChaCha8Rng) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(content::random_bytes(rng, 300));
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    format!(
        "-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n-----END OPENSSH PRIVATE KEY-----\n",
        lines.join("\n")
    )
}

/// Bytes shaped like a PKCS#12 (PFX) file: a DER SEQUENCE holding version 3 and opaque content.
fn pfx_like(rng: &mut rand_chacha::ChaCha8Rng) -> Vec<u8> {
    let mut body = tlv(0x02, &[3]);
    body.extend(tlv(0x30, &content::random_bytes(rng, 2400)));
    tlv(0x30, &body)
}

/// One DER tag-length-value.
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

    // Each project's variables, then the snapshots its releases took of them: Octopus copies a
    // project's variable set into every release, ciphertext and all, so VariableSet grows by a
    // row per release and holds most of a real database's sensitive values.
    let mut variable_sets = Vec::new();
    for n in 1..=PROJECTS {
        let vars = project_variables(inputs, &mut rng, n)?;
        let json = serde_json::json!({"Variables": vars}).to_string();
        for release in 1..=RELEASES_PER_PROJECT {
            variable_sets.push(vec![
                text(format!(
                    "variableset-Projects-{n}-s-{release}-{:05X}",
                    rng.next_u32() & 0xFFFFF
                )),
                text(format!("Projects-{n}")),
                text(json.clone()),
            ]);
        }
        variable_sets.push(vec![
            text(format!("variableset-Projects-{n}")),
            text(format!("Projects-{n}")),
            text(json),
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
