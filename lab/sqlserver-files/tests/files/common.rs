//! Shared fixtures: a small Octopus-like database.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use sqlserver_files::image::{self, ColumnType, DatabaseSpec, Table, Value};
use uuid::Uuid;

pub fn columns(spec: &[(&str, ColumnType)]) -> Vec<(String, ColumnType)> {
    spec.iter().map(|(n, t)| (n.to_string(), *t)).collect()
}

pub fn project_row(i: i64) -> Vec<Value> {
    let json = format!(
        "{{\"Id\":\"Projects-{i}\",\"Steps\":[{}]}}",
        "{\"Name\":\"Deploy a package\"},".repeat(i as usize % 7)
    );
    vec![
        Value::Text(format!("Projects-{i}")),
        Value::Text(format!("Project number {i}")),
        Value::Bit(i % 5 == 0),
        Value::Text(json),
    ]
}

pub fn project_table(rows: i64) -> Table {
    Table {
        schema: "dbo".into(),
        name: "Project".into(),
        columns: columns(&[
            ("Id", ColumnType::NVarChar),
            ("Name", ColumnType::NVarChar),
            ("IsDisabled", ColumnType::Bit),
            ("JSON", ColumnType::NVarChar),
        ]),
        rows: (1..=rows).map(project_row).collect(),
    }
}

pub fn task_row(i: i64) -> Vec<Value> {
    let queued = NaiveDate::from_ymd_opt(2025, 3, 1)
        .unwrap()
        .and_hms_opt(2, 0, 0)
        .unwrap()
        + chrono::Duration::minutes(i);
    vec![
        Value::Text(format!("ServerTasks-{i}")),
        Value::Text(if i % 9 == 0 { "Failed" } else { "Success" }.into()),
        Value::DateTime(queued),
        Value::Int(i * 3),
        Value::Int(i << 33),
        if i % 4 == 0 {
            Value::Null
        } else {
            Value::Guid(Uuid::from_u128(i as u128))
        },
    ]
}

pub fn task_table(rows: i64) -> Table {
    Table {
        schema: "dbo".into(),
        name: "ServerTask".into(),
        columns: columns(&[
            ("Id", ColumnType::NVarChar),
            ("State", ColumnType::NVarChar),
            ("QueueTime", ColumnType::DateTime2),
            ("DurationSeconds", ColumnType::Int),
            ("Sequence", ColumnType::BigInt),
            ("SpaceId", ColumnType::UniqueIdentifier),
        ]),
        rows: (1..=rows).map(task_row).collect(),
    }
}

pub fn secret_table() -> Table {
    Table {
        schema: "dbo".into(),
        name: "VariableSet".into(),
        columns: columns(&[
            ("Id", ColumnType::NVarChar),
            ("EncryptedBlob", ColumnType::VarBinary),
        ]),
        rows: vec![
            vec![
                Value::Text("variableset-Projects-1".into()),
                Value::Binary((0..40_000u32).map(|i| (i * 7 % 251) as u8).collect()),
            ],
            vec![
                Value::Text("variableset-Projects-2".into()),
                Value::Binary(vec![1, 2, 3]),
            ],
            vec![Value::Text("variableset-Projects-3".into()), Value::Null],
        ],
    }
}

pub fn spec(filler_pages: u32, seed: u64) -> DatabaseSpec {
    DatabaseSpec {
        name: "OctopusDeploy".into(),
        database_guid: Uuid::from_u128(0x0C70_9005),
        tables: vec![project_table(40), task_table(800), secret_table()],
        filler_pages,
        seed,
    }
}

/// A created database in `dir`: (data file, log file).
pub fn create_db(dir: &Path, stem: &str, filler_pages: u32, seed: u64) -> (PathBuf, PathBuf) {
    let data = dir.join(format!("{stem}.mdf"));
    let log = dir.join(format!("{stem}_log.ldf"));
    image::create(&spec(filler_pages, seed), &data, &log).unwrap();
    (data, log)
}
