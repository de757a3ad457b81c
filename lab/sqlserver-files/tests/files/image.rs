//! The database image: tables, updates, churn, digests, checks.

use std::fs;

use crate::common::{create_db, project_row, spec, task_row};
use sqlserver_files::image::{self, CorruptPage, PAGE_SIZE, Value};

fn pages_of(path: &std::path::Path) -> Vec<Vec<u8>> {
    fs::read(path)
        .unwrap()
        .chunks(PAGE_SIZE)
        .map(<[u8]>::to_vec)
        .collect()
}

#[test]
fn created_database_has_its_header_tables_and_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = create_db(dir.path(), "octo", 100, 1);
    let header = image::read_header(&data).unwrap();
    assert_eq!(header.name, "OctopusDeploy");
    assert_eq!(header.logical_data_name, "OctopusDeploy");
    assert_eq!(header.logical_log_name, "OctopusDeploy_log");
    assert_eq!(header.database_guid, header.family_guid);
    assert_eq!(
        header.page_count as u64 * PAGE_SIZE as u64,
        fs::metadata(&data).unwrap().len()
    );
    assert!(header.page_count > 100, "tables plus filler");
    let log_header = image::read_log_header(&log).unwrap();
    assert_eq!(log_header.logical_name, "OctopusDeploy_log");
    assert_eq!(log_header.database_guid, header.database_guid);

    let tables = image::list_tables(&data).unwrap();
    let expected: Vec<(String, String)> = ["Project", "ServerTask", "VariableSet"]
        .iter()
        .map(|t| ("dbo".to_string(), t.to_string()))
        .collect();
    assert_eq!(tables, expected);
    for table in spec(0, 0).tables {
        let read = image::read_table(&data, "dbo", &table.name).unwrap();
        assert_eq!(read, table, "table {}", table.name);
    }
    let by_other_case = image::read_table(&data, "DBO", "servertask").unwrap();
    assert_eq!(by_other_case.rows.len(), 800);
    assert!(image::read_table(&data, "dbo", "Nope").is_err());
    assert!(image::check(&data).unwrap().is_clean());
}

#[test]
fn bad_rows_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = create_db(dir.path(), "octo", 0, 1);
    let before = image::content_digest(&data).unwrap();
    let bad = vec![task_row(900), vec![Value::Int(1)]];
    assert!(image::insert_rows(&data, "dbo", "ServerTask", bad).is_err());
    let mut wrong_type = task_row(901);
    wrong_type[3] = Value::Text("long".into());
    assert!(image::insert_rows(&data, "dbo", "ServerTask", vec![wrong_type]).is_err());
    assert_eq!(image::content_digest(&data).unwrap(), before);
}

#[test]
fn inserts_and_updates_read_back_and_keep_the_file_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = create_db(dir.path(), "octo", 10, 1);
    image::insert_rows(
        &data,
        "dbo",
        "ServerTask",
        (801..=2000).map(task_row).collect(),
    )
    .unwrap();
    let tasks = image::read_table(&data, "dbo", "ServerTask").unwrap();
    assert_eq!(tasks.rows.len(), 2000);
    assert_eq!(tasks.rows[1999], task_row(2000));

    let affected = image::update_rows(
        &data,
        "dbo",
        "ServerTask",
        "State",
        &Value::Text("Canceled".into()),
        "Id",
        &Value::Text("ServerTasks-1500".into()),
    )
    .unwrap();
    assert_eq!(affected, 1);
    let failed = image::update_rows(
        &data,
        "dbo",
        "ServerTask",
        "DurationSeconds",
        &Value::Int(0),
        "State",
        &Value::Text("Failed".into()),
    )
    .unwrap();
    assert_eq!(failed, (1..=2000).filter(|i| i % 9 == 0).count() as u64);
    let none = image::update_rows(
        &data,
        "dbo",
        "ServerTask",
        "State",
        &Value::Null,
        "Id",
        &Value::Text("ServerTasks-99999".into()),
    )
    .unwrap();
    assert_eq!(none, 0);
    let null_where = image::update_rows(
        &data,
        "dbo",
        "ServerTask",
        "State",
        &Value::Null,
        "SpaceId",
        &Value::Null,
    )
    .unwrap();
    assert_eq!(null_where, 0, "WHERE x = NULL matches nothing");
    assert!(
        image::update_rows(
            &data,
            "dbo",
            "ServerTask",
            "Nope",
            &Value::Null,
            "Id",
            &Value::Null
        )
        .is_err()
    );
    assert!(
        image::update_rows(
            &data,
            "dbo",
            "ServerTask",
            "State",
            &Value::Int(3),
            "Id",
            &Value::Null
        )
        .is_err()
    );

    let tasks = image::read_table(&data, "dbo", "ServerTask").unwrap();
    assert_eq!(tasks.rows[1499][1], Value::Text("Canceled".into()));
    assert_eq!(tasks.rows[8][3], Value::Int(0));
    assert_eq!(tasks.rows[9], task_row(10));

    // Grow a row past the page (moves to LOB pages, pages split), then shrink it (LOB freed).
    let big = Value::Text("x".repeat(30_000));
    let id = Value::Text("Projects-3".into());
    assert_eq!(
        image::update_rows(&data, "dbo", "Project", "JSON", &big, "Id", &id).unwrap(),
        1
    );
    let projects = image::read_table(&data, "dbo", "Project").unwrap();
    assert_eq!(projects.rows[2][3], big);
    let pages_with_lob = image::read_header(&data).unwrap().page_count;
    assert_eq!(
        image::update_rows(
            &data,
            "dbo",
            "Project",
            "JSON",
            &Value::Text("{}".into()),
            "Id",
            &id
        )
        .unwrap(),
        1
    );
    let mut expected = project_row(3);
    expected[3] = Value::Text("{}".into());
    assert_eq!(
        image::read_table(&data, "dbo", "Project").unwrap().rows[2],
        expected
    );
    // Freed pages are reused rather than the file growing.
    assert_eq!(
        image::update_rows(&data, "dbo", "Project", "JSON", &big, "Id", &id).unwrap(),
        1
    );
    assert_eq!(
        image::read_header(&data).unwrap().page_count,
        pages_with_lob
    );

    // Many rows growing at once split pages; everything still reads back in order.
    let long_name =
        Value::Text("A much longer name than before, repeated to fill pages ".repeat(4));
    assert_eq!(
        image::update_rows(
            &data,
            "dbo",
            "ServerTask",
            "State",
            &long_name,
            "DurationSeconds",
            &Value::Int(0)
        )
        .unwrap(),
        failed
    );
    let tasks = image::read_table(&data, "dbo", "ServerTask").unwrap();
    assert_eq!(tasks.rows.len(), 2000);
    assert_eq!(tasks.rows[17][1], long_name);
    assert_eq!(tasks.rows[18][0], Value::Text("ServerTasks-19".into()));
    let report = image::check(&data).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
}

#[test]
fn an_update_touches_only_the_page_holding_the_row() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = create_db(dir.path(), "octo", 50, 1);
    let before = pages_of(&data);
    image::update_rows(
        &data,
        "dbo",
        "ServerTask",
        "DurationSeconds",
        &Value::Int(7),
        "Id",
        &Value::Text("ServerTasks-400".into()),
    )
    .unwrap();
    let after = pages_of(&data);
    let changed: Vec<usize> = (0..before.len())
        .filter(|i| before[*i] != after[*i])
        .collect();
    // The header page and the one data page (the catalog does not change).
    assert_eq!(changed.len(), 2, "changed pages: {changed:?}");
    assert_eq!(changed[0], 0);
}

#[test]
fn churn_is_deterministic_and_changes_the_requested_fraction() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = create_db(dir.path(), "a", 2_000, 7);
    let (b, _) = create_db(dir.path(), "b", 2_000, 7);
    let (c, _) = create_db(dir.path(), "c", 2_000, 7);
    assert_eq!(
        image::content_digest(&a).unwrap(),
        image::content_digest(&b).unwrap()
    );
    let before = pages_of(&a);

    let stats = image::churn(&a, 1, 0.05, 30, 99).unwrap();
    assert_eq!(stats.pages_changed, 100);
    assert_eq!(stats.pages_added, 30);
    assert_eq!(stats.corrupt_pages_skipped, 0);
    assert_eq!(image::churn(&b, 1, 0.05, 30, 99).unwrap(), stats);
    assert_eq!(
        image::content_digest(&a).unwrap(),
        image::content_digest(&b).unwrap(),
        "same seed and day, same pages"
    );
    image::churn(&c, 2, 0.05, 30, 99).unwrap();
    assert_ne!(
        image::content_digest(&a).unwrap(),
        image::content_digest(&c).unwrap(),
        "another day, other pages"
    );

    let after = pages_of(&a);
    assert_eq!(after.len(), before.len() + 30);
    assert_eq!(stats.page_count as usize, after.len());
    let changed = (1..before.len())
        .filter(|i| before[*i] != after[*i])
        .count();
    // The changed filler pages plus the catalog (which lists the new pages).
    assert_eq!(changed, 101);
    // Changes are small edits inside the page, as row updates do.
    let (i, _) = (1..before.len())
        .map(|i| (i, &before[i]))
        .find(|(i, p)| **p != after[*i] && p[0] == 5)
        .unwrap();
    let bytes_changed = before[i]
        .iter()
        .zip(&after[i])
        .filter(|(x, y)| x != y)
        .count();
    assert!(
        bytes_changed < 200,
        "{bytes_changed} bytes changed in page {i}"
    );
    assert!(image::check(&a).unwrap().is_clean());
}

#[test]
fn digest_ignores_name_and_guid_but_not_content() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = create_db(dir.path(), "octo", 100, 3);
    let original = image::content_digest(&data).unwrap();
    image::set_database_name(&data, "OctopusDeploy_Drill").unwrap();
    image::set_database_guid(&data, uuid::Uuid::from_u128(42)).unwrap();
    let header = image::read_header(&data).unwrap();
    assert_eq!(header.name, "OctopusDeploy_Drill");
    assert_eq!(
        header.logical_data_name, "OctopusDeploy",
        "logical names stay"
    );
    assert_eq!(image::content_digest(&data).unwrap(), original);

    image::insert_rows(&data, "dbo", "Project", vec![project_row(41)]).unwrap();
    let after_insert = image::content_digest(&data).unwrap();
    assert_ne!(after_insert, original);
    image::churn(&data, 1, 0.01, 0, 3).unwrap();
    assert_ne!(image::content_digest(&data).unwrap(), after_insert);
}

#[test]
fn check_reports_a_corrupted_page_and_reads_fail_like_msg_824() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = create_db(dir.path(), "octo", 200, 3);
    let page = image::corrupt_one_page(&data).unwrap();
    let report = image::check(&data).unwrap();
    assert_eq!(report.database_name, "OctopusDeploy");
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(report.problems[0].page, page);
    assert!(report.problems[0].problem.contains("checksum"));

    // Churn leaves a corrupt page alone, so the corruption stays visible.
    let stats = image::churn(&data, 1, 1.0, 0, 3).unwrap();
    assert_eq!(stats.corrupt_pages_skipped, 1);
    assert_eq!(image::check(&data).unwrap().problems.len(), 1);

    // A corrupted table page fails the read with the page named.
    let (other, _) = create_db(dir.path(), "other", 0, 3);
    let tables_first_data_page = 2;
    image::corrupt_page(&other, tables_first_data_page).unwrap();
    let err = image::read_table(&other, "dbo", "Project").unwrap_err();
    let corrupt = err
        .downcast_ref::<CorruptPage>()
        .expect("a CorruptPage error");
    assert_eq!(corrupt.page, tables_first_data_page);
    assert!(!image::check(&other).unwrap().is_clean());
}

#[test]
fn check_reports_a_truncated_file() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = create_db(dir.path(), "octo", 20, 3);
    let len = fs::metadata(&data).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&data)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    let report = image::check(&data).unwrap();
    assert!(!report.is_clean());
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.problem.contains("truncated")),
        "{:?}",
        report.problems
    );
    assert!(
        image::read_table(&data, "dbo", "Project").is_err(),
        "size no longer matches the header"
    );
}

/// 200 MB: written with big buffered writes and cheap filler, so this stays quick even unoptimised.
#[test]
fn a_200_mb_image_is_written_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = create_db(dir.path(), "big", 25_600, 11);
    let len = fs::metadata(&data).unwrap().len();
    assert!(len >= 200 * 1024 * 1024, "{len} bytes");
    assert!(fs::metadata(&log).unwrap().len() < 2 * 1024 * 1024);
    let stats = image::churn(&data, 1, 0.01, 128, 11).unwrap();
    assert_eq!(stats.pages_changed, 256);
    let report = image::check(&data).unwrap();
    assert!(report.is_clean());
    assert_eq!(report.pages_checked, stats.page_count as u64);
}
