//! Backup files: round trips, stripes, appends, damage detection, deduplication.

use std::collections::HashSet;
use std::fs;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use crate::common::create_db;
use sqlserver_files::bak::{self, BackupOptions, BakError};
use sqlserver_files::image::{self, PAGE_SIZE};

fn no_progress() -> impl FnMut(u64, u64) -> ControlFlow<()> {
    |_, _| ControlFlow::Continue(())
}

fn nightly() -> BackupOptions {
    BackupOptions {
        copy_only: true,
        checksum: true,
        init: true,
        name: "octobackup".into(),
        ..BackupOptions::default()
    }
}

fn backup(
    data: &Path,
    log: &Path,
    stripes: &[PathBuf],
    opts: &BackupOptions,
) -> bak::BackupSetHeader {
    bak::write_backup(data, log, stripes, opts, &mut no_progress()).unwrap()
}

fn restore_to(
    stripes: &[PathBuf],
    position: u32,
    dir: &Path,
    name: &str,
) -> (PathBuf, bak::RestoreSummary) {
    let data = dir.join(format!("{name}.mdf"));
    let log = dir.join(format!("{name}_log.ldf"));
    let summary = bak::restore(stripes, position, &data, &log, name, &mut no_progress()).unwrap();
    (data, summary)
}

#[test]
fn backup_and_restore_under_a_new_name_and_path_keep_the_content() {
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = create_db(dir.path(), "octo", 300, 5);
    let stripe = dir.path().join("octo.bak");
    let mut calls = Vec::new();
    let header = bak::write_backup(
        &data,
        &log,
        std::slice::from_ref(&stripe),
        &nightly(),
        &mut |done, total| {
            calls.push((done, total));
            ControlFlow::Continue(())
        },
    )
    .unwrap();
    assert!(
        calls.windows(2).all(|w| w[0].0 < w[1].0),
        "progress only grows"
    );
    let (done, total) = *calls.last().unwrap();
    assert_eq!(done, total);

    let original = image::read_header(&data).unwrap();
    assert_eq!(header.position, 1);
    assert_eq!(header.backup_type, 1);
    assert_eq!(header.database_name, "OctopusDeploy");
    assert_eq!(header.database_guid, original.database_guid);
    assert!(header.is_copy_only && header.has_backup_checksums && !header.is_compressed);
    assert!(header.first_lsn <= header.checkpoint_lsn && header.checkpoint_lsn < header.last_lsn);
    assert_eq!(header.database_backup_lsn, 0, "no full backup yet");
    assert_eq!(header.software_version, "16.0.4135.4");
    assert_eq!(header.stripe_count, 1);
    assert_eq!(header.files.len(), 2);
    assert_eq!(
        (
            header.files[0].logical_name.as_str(),
            header.files[0].file_type
        ),
        ("OctopusDeploy", 'D')
    );
    assert_eq!(
        (
            header.files[1].logical_name.as_str(),
            header.files[1].file_type
        ),
        ("OctopusDeploy_log", 'L')
    );
    assert_eq!(header.files[0].physical_name, data.display().to_string());
    assert_eq!(
        header.page_count() * PAGE_SIZE as u64,
        header.files[0].size + header.files[1].size
    );
    assert!(header.backup_size >= header.page_count() * PAGE_SIZE as u64);
    assert_eq!(header.backup_size, header.compressed_backup_size);
    assert!(header.backup_start_date <= header.backup_finish_date);
    assert_eq!(
        bak::read_headers(std::slice::from_ref(&stripe)).unwrap(),
        vec![header.clone()]
    );
    bak::verify(std::slice::from_ref(&stripe), 1, true).unwrap();
    bak::verify(std::slice::from_ref(&stripe), 1, false).unwrap();

    let restore_dir = dir.path().join("restored");
    fs::create_dir(&restore_dir).unwrap();
    let (restored, summary) = restore_to(
        std::slice::from_ref(&stripe),
        1,
        &restore_dir,
        "OctopusDeploy_Drill",
    );
    assert_eq!(summary.data_pages, original.page_count);
    assert_eq!(summary.database.name, "OctopusDeploy_Drill");
    assert_ne!(
        summary.database.database_guid, original.database_guid,
        "a restored copy gets its own GUID"
    );
    assert_eq!(summary.database.family_guid, original.family_guid);
    assert_eq!(image::read_header(&restored).unwrap(), summary.database);
    let restored_log =
        image::read_log_header(&restore_dir.join("OctopusDeploy_Drill_log.ldf")).unwrap();
    assert_eq!(restored_log.database_guid, summary.database.database_guid);
    assert_eq!(
        image::content_digest(&restored).unwrap(),
        image::content_digest(&data).unwrap()
    );
    assert_eq!(
        image::read_table(&restored, "dbo", "VariableSet").unwrap(),
        image::read_table(&data, "dbo", "VariableSet").unwrap()
    );
    assert!(image::check(&restored).unwrap().is_clean());
}

#[test]
fn striped_backup_needs_every_stripe_in_any_order() {
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = create_db(dir.path(), "octo", 500, 5);
    let stripes: Vec<PathBuf> = (1..=3)
        .map(|i| dir.path().join(format!("octo_{i}.bak")))
        .collect();
    let opts = BackupOptions {
        max_transfer_size: 64 * 1024,
        ..nightly()
    };
    let header = backup(&data, &log, &stripes, &opts);
    assert_eq!(header.stripe_count, 3);
    let sizes: Vec<u64> = stripes
        .iter()
        .map(|s| fs::metadata(s).unwrap().len())
        .collect();
    assert!(
        sizes.iter().all(|s| *s > 1024 * 1024),
        "pages spread over all stripes: {sizes:?}"
    );

    let shuffled = vec![stripes[2].clone(), stripes[0].clone(), stripes[1].clone()];
    bak::verify(&shuffled, 1, true).unwrap();
    let (restored, _) = restore_to(&shuffled, 1, dir.path(), "Copy");
    assert_eq!(
        image::content_digest(&restored).unwrap(),
        image::content_digest(&data).unwrap()
    );

    match bak::verify(&stripes[..2], 1, true) {
        Err(BakError::MissingStripe {
            expected: 3,
            found: 2,
        }) => {}
        other => panic!("expected MissingStripe, got {other:?}"),
    }
    assert!(matches!(
        bak::read_headers(&stripes[1..]),
        Err(BakError::MissingStripe {
            expected: 3,
            found: 2
        })
    ));
    let duplicated = vec![stripes[0].clone(), stripes[1].clone(), stripes[1].clone()];
    assert!(matches!(
        bak::verify(&duplicated, 1, true),
        Err(BakError::MismatchedStripes { .. })
    ));

    // A stripe of another backup does not belong to this media set.
    let other: Vec<PathBuf> = (1..=3)
        .map(|i| dir.path().join(format!("other_{i}.bak")))
        .collect();
    backup(&data, &log, &other, &opts);
    let mixed = vec![stripes[0].clone(), other[1].clone(), stripes[2].clone()];
    assert!(matches!(
        bak::verify(&mixed, 1, true),
        Err(BakError::MismatchedStripes { .. })
    ));
    assert!(matches!(
        bak::restore(
            &mixed,
            1,
            &dir.path().join("x.mdf"),
            &dir.path().join("x.ldf"),
            "X",
            &mut no_progress()
        ),
        Err(BakError::MismatchedStripes { .. })
    ));
    assert!(!dir.path().join("x.mdf").exists());
}

#[test]
fn appending_adds_a_set_and_each_restores_its_own_state() {
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = create_db(dir.path(), "octo", 400, 5);
    let stripes = vec![dir.path().join("a.bak"), dir.path().join("b.bak")];
    let first = backup(&data, &log, &stripes, &nightly());
    let day0 = image::content_digest(&data).unwrap();
    image::churn(&data, 1, 0.02, 10, 5).unwrap();
    let day1 = image::content_digest(&data).unwrap();
    let append = BackupOptions {
        init: false,
        ..nightly()
    };
    let second = backup(&data, &log, &stripes, &append);
    assert_eq!(second.position, 2);
    assert_eq!(second.media_set_id, first.media_set_id);
    assert!(second.checkpoint_lsn > first.last_lsn);

    let headers = bak::read_headers(&stripes).unwrap();
    assert_eq!(
        headers.iter().map(|h| h.position).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(headers, vec![first, second]);
    let (old, _) = restore_to(&stripes, 1, dir.path(), "Old");
    let (new, _) = restore_to(&stripes, 2, dir.path(), "New");
    assert_eq!(image::content_digest(&old).unwrap(), day0);
    assert_eq!(image::content_digest(&new).unwrap(), day1);
    assert!(matches!(
        bak::verify(&stripes, 3, false),
        Err(BakError::NoSuchPosition {
            position: 3,
            available: 2
        })
    ));

    // INIT starts over.
    let third = backup(&data, &log, &stripes, &nightly());
    assert_eq!(third.position, 1);
    assert_eq!(bak::read_headers(&stripes).unwrap().len(), 1);
    // Appending with a different number of devices is refused, and the media is left as it was.
    let before = fs::read(&stripes[0]).unwrap();
    assert!(matches!(
        bak::write_backup(&data, &log, &stripes[..1], &append, &mut no_progress()),
        Err(BakError::MismatchedStripes { .. })
    ));
    assert_eq!(fs::read(&stripes[0]).unwrap(), before);
}

#[test]
fn verify_catches_a_flipped_byte_and_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = create_db(dir.path(), "octo", 300, 5);
    let stripe = vec![dir.path().join("octo.bak")];
    backup(&data, &log, &stripe, &nightly());
    let pristine = fs::read(&stripe[0]).unwrap();

    bak::corrupt_one_page(&stripe[0]).unwrap();
    match bak::verify(&stripe, 1, true) {
        Err(BakError::PageChecksum { file_id: 1, .. }) => {}
        other => panic!("expected a page checksum error, got {other:?}"),
    }
    assert!(
        bak::verify(&stripe, 1, false).is_err(),
        "checksums present are checked by default"
    );
    let target = dir.path().join("r.mdf");
    assert!(
        bak::restore(
            &stripe,
            1,
            &target,
            &dir.path().join("r.ldf"),
            "R",
            &mut no_progress()
        )
        .is_err()
    );
    assert!(!target.exists(), "a failed restore leaves no files");

    for cut in [1u64, 100, PAGE_SIZE as u64 * 3, pristine.len() as u64 / 2] {
        fs::write(&stripe[0], &pristine[..pristine.len() - cut as usize]).unwrap();
        assert!(
            matches!(
                bak::verify(&stripe, 1, false),
                Err(BakError::Damaged { .. })
            ),
            "cut {cut}"
        );
        assert!(bak::read_headers(&stripe).is_err(), "cut {cut}");
    }
    fs::write(&stripe[0], &pristine).unwrap();
    bak::verify(&stripe, 1, true).unwrap();
}

#[test]
fn a_backup_without_checksum_hides_page_damage_until_checkdb() {
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = create_db(dir.path(), "octo", 300, 5);
    let stripe = vec![dir.path().join("octo.bak")];
    let plain = BackupOptions {
        checksum: false,
        ..nightly()
    };
    backup(&data, &log, &stripe, &plain);
    assert!(matches!(
        bak::verify(&stripe, 1, true),
        Err(BakError::NoChecksums)
    ));
    bak::corrupt_one_page(&stripe[0]).unwrap();
    bak::verify(&stripe, 1, false).unwrap();
    let (restored, _) = restore_to(&stripe, 1, dir.path(), "Restored");
    assert_eq!(image::check(&restored).unwrap().problems.len(), 1);
}

#[test]
fn backup_with_checksum_fails_on_a_corrupt_database_page() {
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = create_db(dir.path(), "octo", 300, 5);
    let page = image::corrupt_one_page(&data).unwrap();
    let stripe = vec![dir.path().join("octo.bak")];
    match bak::write_backup(&data, &log, &stripe, &nightly(), &mut no_progress()) {
        Err(BakError::PageChecksum {
            path,
            file_id: 1,
            page: bad,
            ..
        }) => {
            assert_eq!(bad, page);
            assert_eq!(path, data);
        }
        other => panic!("expected Msg 3043, got {other:?}"),
    }
    assert!(!stripe[0].exists(), "a failed backup leaves no file behind");
    // Without CHECKSUM, SQL Server copies the bad page without noticing.
    backup(
        &data,
        &log,
        &stripe,
        &BackupOptions {
            checksum: false,
            ..nightly()
        },
    );
}

#[test]
fn cancelling_puts_the_media_back_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = create_db(dir.path(), "octo", 300, 5);
    let stripe = vec![dir.path().join("octo.bak")];
    let mut stop = |done: u64, _| {
        if done > 0 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    assert!(matches!(
        bak::write_backup(&data, &log, &stripe, &nightly(), &mut stop),
        Err(BakError::Cancelled)
    ));
    assert!(!stripe[0].exists());

    backup(&data, &log, &stripe, &nightly());
    let before = fs::read(&stripe[0]).unwrap();
    let append = BackupOptions {
        init: false,
        ..nightly()
    };
    assert!(matches!(
        bak::write_backup(&data, &log, &stripe, &append, &mut stop),
        Err(BakError::Cancelled)
    ));
    assert_eq!(fs::read(&stripe[0]).unwrap(), before);
    assert_eq!(bak::read_headers(&stripe).unwrap().len(), 1);

    let target = dir.path().join("r.mdf");
    assert!(matches!(
        bak::restore(
            &stripe,
            1,
            &target,
            &dir.path().join("r.ldf"),
            "R",
            &mut stop
        ),
        Err(BakError::Cancelled)
    ));
    assert!(!target.exists());
}

#[test]
fn device_errors_carry_windows_error_codes() {
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = create_db(dir.path(), "octo", 10, 5);
    let missing_file = vec![dir.path().join("none.bak")];
    let missing_dir = vec![dir.path().join("no_such_dir").join("x.bak")];
    assert!(matches!(
        bak::read_headers(&missing_file),
        Err(BakError::CannotOpen {
            os_error_code: 2,
            ..
        })
    ));
    assert!(matches!(
        bak::verify(&missing_dir, 1, false),
        Err(BakError::CannotOpen {
            os_error_code: 3,
            ..
        })
    ));
    match bak::write_backup(&data, &log, &missing_dir, &nightly(), &mut no_progress()) {
        Err(BakError::CannotOpen {
            os_error_code: 3,
            os_message,
            ..
        }) => {
            assert_eq!(os_message, "The system cannot find the path specified.");
        }
        other => panic!("expected CannotOpen 3, got {other:?}"),
    }
    let not_a_backup = dir.path().join("notes.txt");
    fs::write(&not_a_backup, vec![b'x'; 20_000]).unwrap();
    assert!(matches!(
        bak::read_headers(&[not_a_backup]),
        Err(BakError::NotABackup { .. })
    ));
    assert!(
        matches!(
            bak::read_headers(std::slice::from_ref(&data)),
            Err(BakError::NotABackup { .. })
        ),
        "a data file is not a backup"
    );
    let bad_transfer = BackupOptions {
        max_transfer_size: 1000,
        ..nightly()
    };
    assert!(matches!(
        bak::write_backup(
            &data,
            &log,
            &missing_file,
            &bad_transfer,
            &mut no_progress()
        ),
        Err(BakError::InvalidRequest(_))
    ));
}

#[test]
fn a_full_backup_sets_the_differential_base_and_copy_only_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = create_db(dir.path(), "octo", 10, 5);
    let stripe = vec![dir.path().join("octo.bak")];
    let copy = backup(&data, &log, &stripe, &nightly());
    assert_eq!(copy.database_backup_lsn, 0);
    assert_eq!(image::read_header(&data).unwrap().differential_base_lsn, 0);
    let full = backup(
        &data,
        &log,
        &stripe,
        &BackupOptions {
            copy_only: false,
            ..nightly()
        },
    );
    let base = image::read_header(&data).unwrap();
    assert_eq!(base.differential_base_guid, Some(full.backup_set_uuid));
    let next = backup(&data, &log, &stripe, &nightly());
    assert_eq!(next.database_backup_lsn, full.checkpoint_lsn);
}

#[test]
fn compressed_backups_are_smaller_and_restore_the_same_content() {
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = create_db(dir.path(), "octo", 1_000, 5);
    let plain = vec![dir.path().join("plain.bak")];
    let packed = vec![
        dir.path().join("packed_1.bak"),
        dir.path().join("packed_2.bak"),
    ];
    backup(&data, &log, &plain, &nightly());
    let header = backup(
        &data,
        &log,
        &packed,
        &BackupOptions {
            compression: true,
            ..nightly()
        },
    );
    assert!(header.is_compressed);
    let packed_size: u64 = packed.iter().map(|p| fs::metadata(p).unwrap().len()).sum();
    let plain_size = fs::metadata(&plain[0]).unwrap().len();
    assert!(
        packed_size * 2 < plain_size,
        "filler compresses at least 2x: {packed_size} vs {plain_size}"
    );
    assert!(header.compressed_backup_size < header.backup_size);
    bak::verify(&packed, 1, true).unwrap();
    let (restored, _) = restore_to(&packed, 1, dir.path(), "Unpacked");
    assert_eq!(
        image::content_digest(&restored).unwrap(),
        image::content_digest(&data).unwrap()
    );
    bak::corrupt_one_page(&packed[1]).unwrap();
    assert!(bak::verify(&packed, 1, false).is_err());
}

/// Two nightly backups of a database where 1% of pages changed share about 99% of their 8 KiB
/// blocks, at the same offsets: what lets a deduplicating repository store the second cheaply.
#[test]
fn nightly_backups_share_almost_all_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = create_db(dir.path(), "octo", 3_000, 5);
    let monday = vec![dir.path().join("monday.bak")];
    let tuesday = vec![dir.path().join("tuesday.bak")];
    backup(&data, &log, &monday, &nightly());
    image::churn(&data, 1, 0.01, 0, 5).unwrap();
    backup(&data, &log, &tuesday, &nightly());

    let a = fs::read(&monday[0]).unwrap();
    let b = fs::read(&tuesday[0]).unwrap();
    assert_eq!(a.len(), b.len());
    let blocks = a.len() / PAGE_SIZE;
    let same_offset = (0..blocks)
        .filter(|i| a[i * PAGE_SIZE..(i + 1) * PAGE_SIZE] == b[i * PAGE_SIZE..(i + 1) * PAGE_SIZE])
        .count();
    let ratio = same_offset as f64 / blocks as f64;
    assert!(
        ratio > 0.98 && ratio < 1.0,
        "identical aligned blocks: {ratio:.4}"
    );

    // Appended pages do not disturb the rest either (content-addressed view).
    image::churn(&data, 2, 0.01, 100, 5).unwrap();
    let wednesday = vec![dir.path().join("wednesday.bak")];
    backup(&data, &log, &wednesday, &nightly());
    let known: HashSet<&[u8]> = b.chunks(PAGE_SIZE).collect();
    let c = fs::read(&wednesday[0]).unwrap();
    let shared = c
        .chunks(PAGE_SIZE)
        .filter(|block| known.contains(block))
        .count();
    let ratio = shared as f64 / (c.len() / PAGE_SIZE) as f64;
    assert!(ratio > 0.94, "blocks already known: {ratio:.4}");
}

fn full(copy_only: bool) -> BackupOptions {
    BackupOptions {
        copy_only,
        ..nightly()
    }
}

fn differential() -> BackupOptions {
    BackupOptions {
        copy_only: false,
        differential: true,
        ..nightly()
    }
}

#[test]
fn a_differential_needs_a_base_that_is_not_copy_only() {
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = create_db(dir.path(), "octo", 400, 8);
    let diff = dir.path().join("diff.bak");
    let err = bak::write_backup(
        &data,
        &log,
        std::slice::from_ref(&diff),
        &differential(),
        &mut no_progress(),
    )
    .unwrap_err();
    assert!(matches!(err, bak::BakError::NoDifferentialBase), "{err}");
    assert!(!diff.exists(), "a refused differential leaves no file");
    backup(&data, &log, &[dir.path().join("copy.bak")], &full(true));
    let err = bak::write_backup(
        &data,
        &log,
        std::slice::from_ref(&diff),
        &differential(),
        &mut no_progress(),
    )
    .unwrap_err();
    assert!(
        matches!(err, bak::BakError::NoDifferentialBase),
        "a COPY_ONLY full is no base: {err}"
    );
}

#[test]
fn a_differential_holds_the_changed_extents_and_restores_onto_its_base() {
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = create_db(dir.path(), "octo", 4000, 9);
    let base_file = dir.path().join("base.bak");
    let base = backup(&data, &log, std::slice::from_ref(&base_file), &full(false));
    assert!(!base.is_copy_only && base.backup_type == 1);
    assert_eq!(base.differential_base_guid, None);
    let after_base = image::read_header(&data).unwrap();
    assert_eq!(
        after_base.differential_base_guid,
        Some(base.backup_set_uuid)
    );
    assert_eq!(image::changed_extent_count(&data).unwrap(), 0);

    // a copy-only full in between does not move the base
    backup(&data, &log, &[dir.path().join("copy.bak")], &full(true));
    let day = image::churn(&data, 1, 0.01, 8, 9).unwrap();
    assert!(day.pages_changed > 0);
    let changed = image::changed_extent_count(&data).unwrap();
    assert!(changed > 0 && changed < 4000 / 8 / 10, "{changed} extents");

    let diff_file = dir.path().join("diff.bak");
    let diff = backup(
        &data,
        &log,
        std::slice::from_ref(&diff_file),
        &differential(),
    );
    assert_eq!(diff.backup_type, 5);
    assert!(diff.is_differential() && !diff.is_copy_only);
    assert_eq!(diff.differential_base_guid, Some(base.backup_set_uuid));
    assert_eq!(diff.differential_base_lsn, base.checkpoint_lsn);
    assert!(
        diff.backup_size * 10 < base.backup_size,
        "differential {} vs full {}",
        diff.backup_size,
        base.backup_size
    );
    assert_eq!(
        image::read_header(&data).unwrap().differential_base_guid,
        Some(base.backup_set_uuid),
        "a differential leaves the base alone"
    );
    bak::verify(std::slice::from_ref(&diff_file), 1, true).unwrap();

    let (copy, _) = restore_to(std::slice::from_ref(&base_file), 1, dir.path(), "Copy");
    assert_ne!(
        image::content_digest(&copy).unwrap(),
        image::content_digest(&data).unwrap()
    );
    let copy_log = dir.path().join("Copy_log.ldf");
    let before = image::read_header(&copy).unwrap();
    bak::restore_differential(
        std::slice::from_ref(&diff_file),
        1,
        &copy,
        &copy_log,
        &mut no_progress(),
    )
    .unwrap();
    assert_eq!(
        image::content_digest(&copy).unwrap(),
        image::content_digest(&data).unwrap(),
        "base + differential is the database as the differential saw it"
    );
    let after = image::read_header(&copy).unwrap();
    assert_eq!(
        (after.name.as_str(), after.database_guid),
        ("Copy", before.database_guid)
    );
    assert!(image::check(&copy).unwrap().is_clean());
}
