//! A large file (the .bak) is chunked in fixed-offset segments on several cores: stock restic
//! still restores it byte for byte, and the next night's .bak with a few changed pages adds
//! little to the repository.

use std::fs;

use crate::common::*;
use octobackup_repo::{NoProgress, SEGMENT_LEN, SetOptions, SourceItem};

const PAGE: usize = 8192;

fn bak_item(path: &std::path::Path) -> Vec<SourceItem> {
    vec![SourceItem::Path {
        source: path.to_path_buf(),
        target: "/database/OctopusDeploy.bak".into(),
    }]
}

#[test]
fn a_file_stored_in_segments_restores_through_restic_and_the_next_night_deduplicates() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path());
    let repo_path = dir.path().join("repo");
    let segment = usize::try_from(SEGMENT_LEN).unwrap();
    // Two whole segments and a short third one, of bytes that neither compress nor repeat.
    let len = 2 * segment + 3 * PAGE + 123;
    let bak = dir.path().join("staging/OctopusDeploy.bak");
    let mut night1 = noise(len, 41);
    write(&bak, &night1);

    let first = repo
        .backup(bak_item(&bak), &SetOptions::default(), &NoProgress)
        .unwrap();
    assert!(first.unreadable.is_empty(), "{:?}", first.unreadable);
    assert_eq!(first.total_bytes, len as u64);

    // The second segment stored on its own is a file of one segment, chunked from its start:
    // it adds nothing only if the big file's chunks were cut at the segment's offset too (read
    // as one stream, the chunk across that offset differs: at least restic's 512 KiB minimum).
    let second_segment = dir.path().join("staging/segment-2");
    write(&second_segment, &night1[segment..2 * segment]);
    let alone = repo
        .backup(
            vec![SourceItem::Path {
                source: second_segment.clone(),
                target: "/segment-2".into(),
            }],
            &SetOptions::default(),
            &NoProgress,
        )
        .unwrap();
    assert!(
        alone.data_added < 64 * 1024,
        "the segment was stored again ({} bytes): the file was not cut at {SEGMENT_LEN}",
        alone.data_added
    );

    // The next night: three pages changed, one in each segment.
    for at in [PAGE * 5, segment + PAGE * 700, 2 * segment + PAGE] {
        night1[at..at + PAGE].copy_from_slice(&noise(PAGE, at as u64));
    }
    let night2 = night1;
    write(&bak, &night2);
    let second = repo
        .backup(bak_item(&bak), &SetOptions::default(), &NoProgress)
        .unwrap();
    assert!(second.unreadable.is_empty(), "{:?}", second.unreadable);
    // At most the three chunks around the changed pages (restic's chunks are 8 MiB at most),
    // against the whole 64 MiB file without deduplication.
    assert!(
        second.data_added <= 3 * 8 * 1024 * 1024 && second.data_added < (len / 4) as u64,
        "three changed pages added {} bytes",
        second.data_added
    );

    // Stock restic checks every pack and restores both nights byte for byte.
    assert_restic_reads_every_pack(&repo_path);
    for (summary, want) in [(&first, None), (&second, Some(&night2))] {
        let target = dir
            .path()
            .join(format!("restore-{}", &summary.snapshot_id[..8]));
        restic_restore(&repo_path, &summary.snapshot_id, &target);
        let got = fs::read(target.join("database/OctopusDeploy.bak")).unwrap();
        assert_eq!(got.len(), len);
        match want {
            Some(want) => assert!(&got == want, "night 2's .bak differs after restore"),
            None => assert!(
                got == noise(len, 41),
                "night 1's .bak differs after restore"
            ),
        }
    }
}

/// Night 1 without a memory file, night 2 and 3 with one: unchanged chunks are taken from it
/// (not hashed again), the rest is chunked exactly as a full read would, and every night
/// restores byte for byte through stock restic.
#[test]
fn the_chunk_memory_takes_unchanged_chunks_and_cuts_the_rest_as_a_full_read_does() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path());
    let repo_path = dir.path().join("repo");
    let segment = usize::try_from(SEGMENT_LEN).unwrap();
    let memory = dir.path().join("state/OctopusServer.database-chunks");
    fs::create_dir_all(memory.parent().unwrap()).unwrap();
    let remembering = SetOptions {
        chunk_memory: Some(memory.clone()),
        ..SetOptions::default()
    };
    let len = 2 * segment + 5 * PAGE;
    let bak = dir.path().join("staging/OctopusDeploy.bak");
    let mut bytes = noise(len, 7);
    write(&bak, &bytes);

    let night1 = repo
        .backup(bak_item(&bak), &remembering, &NoProgress)
        .unwrap();
    assert_eq!(night1.remembered_bytes, 0, "nothing to remember yet");
    assert!(memory.is_file(), "the chunks were not kept");

    // Night 2: pages changed in the first two segments, and the database grew by 40 pages
    // (the last segment is longer).
    for at in [PAGE * 3, segment + PAGE * 1000] {
        bytes[at..at + PAGE].copy_from_slice(&noise(PAGE, at as u64 + 1));
    }
    bytes.extend_from_slice(&noise(40 * PAGE, 99));
    write(&bak, &bytes);
    let night2 = repo
        .backup(bak_item(&bak), &remembering, &NoProgress)
        .unwrap();
    // At most the changed pages' chunks and the last segment's are read afresh (chunks are
    // 8 MiB at most): most of the file came from the memory.
    assert!(
        night2.remembered_bytes >= (bytes.len() - 3 * 8 * 1024 * 1024) as u64,
        "only {} of {} bytes were taken from the memory",
        night2.remembered_bytes,
        bytes.len()
    );
    assert!(
        night2.data_added < (len / 4) as u64,
        "{}",
        night2.data_added
    );

    // The same bytes read whole, without the memory, find every chunk already stored: the
    // memory's boundaries and ids are the chunker's.
    let whole = repo
        .backup(bak_item(&bak), &SetOptions::default(), &NoProgress)
        .unwrap();
    assert_eq!(whole.remembered_bytes, 0);
    assert_eq!(
        whole.data_added, 0,
        "a full read of night 2 found chunks the memory did not store"
    );

    // Night 3 with a damaged memory file (a fingerprint changed): that chunk is hashed again,
    // nothing wrong is taken.
    let mut kept = fs::read(&memory).unwrap();
    let last = kept.len() - 1;
    kept[last] ^= 0xff;
    fs::write(&memory, &kept).unwrap();
    let night3 = repo
        .backup(bak_item(&bak), &remembering, &NoProgress)
        .unwrap();
    assert!(night3.remembered_bytes < bytes.len() as u64);
    assert!(night3.remembered_bytes > 0);

    assert_restic_reads_every_pack(&repo_path);
    for summary in [&night2, &night3] {
        let target = dir
            .path()
            .join(format!("restore-{}", &summary.snapshot_id[..8]));
        restic_restore(&repo_path, &summary.snapshot_id, &target);
        let got = fs::read(target.join("database/OctopusDeploy.bak")).unwrap();
        assert!(got == bytes, "the .bak differs after restore");
    }
}

/// A memory file another repository wrote takes nothing: that repository's blobs are not in
/// this one (and its fingerprints were keyed with another key: `chunk_memory.rs`'s unit test),
/// so every chunk is hashed and stored here.
#[test]
fn the_chunk_memory_of_another_repository_takes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let memory = dir.path().join("OctopusServer.database-chunks");
    let remembering = SetOptions {
        chunk_memory: Some(memory.clone()),
        ..SetOptions::default()
    };
    let bak = dir.path().join("staging/OctopusDeploy.bak");
    let segment = usize::try_from(SEGMENT_LEN).unwrap();
    write(&bak, &noise(segment + PAGE, 3));
    let one = new_repo(&dir.path().join("one"));
    one.backup(bak_item(&bak), &remembering, &NoProgress)
        .unwrap();
    let two = new_repo(&dir.path().join("two"));
    let stored = two
        .backup(bak_item(&bak), &remembering, &NoProgress)
        .unwrap();
    assert_eq!(stored.remembered_bytes, 0);
    assert_eq!(stored.total_bytes, (segment + PAGE) as u64);
}
