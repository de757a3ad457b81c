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
    let out = restic(&repo_path, &["check", "--read-data"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("no errors were found"), "{text}");
    for (summary, want) in [(&first, None), (&second, Some(&night2))] {
        let target = dir
            .path()
            .join(format!("restore-{}", &summary.snapshot_id[..8]));
        restic(
            &repo_path,
            &[
                "restore",
                &summary.snapshot_id,
                "--target",
                target.to_str().unwrap(),
            ],
        );
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
