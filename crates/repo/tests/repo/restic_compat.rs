//! The promise: stock restic lists, checks and restores what we write, byte for byte.

use std::fs;

use crate::common::*;
use octobackup_repo::{EntryKind, NoProgress, SetOptions};

#[test]
fn stock_restic_lists_checks_and_restores_a_set_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let inst = instance(dir.path(), 24 * 1024 * 1024 + 123);
    let repo = new_repo(dir.path());
    let repo_path = dir.path().join("repo");
    let tags = vec![
        "octobackup".to_string(),
        "set:20240601-0200".to_string(),
        "instance:OctopusServer".to_string(),
        "complete".to_string(),
    ];
    let opts = SetOptions {
        tags: tags.clone(),
        hostname: "octo-host".into(),
        ..SetOptions::default()
    };
    let summary = repo
        .backup(items(&inst, MANIFEST), &opts, &NoProgress)
        .unwrap();
    assert!(summary.unreadable.is_empty(), "{:?}", summary.unreadable);
    assert_eq!(summary.total_files, 40 + 6 + 1 + 2);

    // restic snapshots --json lists it with our tags, host and paths.
    let out = restic(&repo_path, &["snapshots", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1);
    let snap = &listed[0];
    assert_eq!(snap["id"], summary.snapshot_id);
    assert_eq!(snap["hostname"], "octo-host");
    let mut restic_tags: Vec<String> = snap["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    restic_tags.sort();
    let mut want_tags = tags.clone();
    want_tags.sort();
    assert_eq!(restic_tags, want_tags);
    let paths: Vec<&str> = snap["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "/database/OctopusDeploy.bak",
            "/folders/Packages",
            "/folders/TaskLogs",
            "/octobackup/manifest.json",
            "/octobackup/secrets/master-key"
        ]
    );

    // restic check --read-data finds nothing wrong.
    assert_restic_reads_every_pack(&repo_path);

    // restic restore gives everything back: folders with modes, mtimes and links, the big
    // file, and the memory items with their bytes and modes.
    let target = dir.path().join("restic-restore");
    restic_restore(&repo_path, &summary.snapshot_id, &target);
    assert_same_tree(&inst.packages, &target.join("folders/Packages"));
    assert_same_tree(&inst.task_logs, &target.join("folders/TaskLogs"));
    assert_eq!(
        fs::read(target.join("database/OctopusDeploy.bak")).unwrap(),
        fs::read(&inst.bak).unwrap()
    );
    let manifest = target.join("octobackup/manifest.json");
    let master_key = target.join("octobackup/secrets/master-key");
    assert_eq!(fs::read(&manifest).unwrap(), MANIFEST);
    assert_eq!(fs::read(&master_key).unwrap(), MASTER_KEY);
    #[cfg(unix)]
    {
        assert_eq!(mode(&fs::metadata(&manifest).unwrap()), 0o644);
        assert_eq!(mode(&fs::metadata(&master_key).unwrap()), 0o600);
        // The mapped folder keeps its own mode instead of a made-up 0755.
        assert_eq!(
            mode(&fs::metadata(target.join("folders/Packages")).unwrap()),
            0o750
        );
    }

    // Our own check agrees.
    let report = repo.check(true).unwrap();
    assert!(report.is_ok(), "{report:?}");
}

#[test]
fn files_folders_and_memory_items_read_back_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let inst = instance(dir.path(), 3 * 1024 * 1024);
    let repo = new_repo(dir.path());
    let summary = repo
        .backup(items(&inst, MANIFEST), &SetOptions::default(), &NoProgress)
        .unwrap();
    let id = &summary.snapshot_id;

    // read_file, by full id and by prefix.
    assert_eq!(
        *repo.read_file(id, "/octobackup/manifest.json").unwrap(),
        MANIFEST
    );
    assert_eq!(
        *repo
            .read_file(&id[..8], "/octobackup/secrets/master-key")
            .unwrap(),
        MASTER_KEY
    );

    // list_files of a subtree: every entry with its full snapshot path.
    let listed = repo.list_files(id, "/folders/Packages").unwrap();
    let paths: Vec<&str> = listed.iter().map(|e| e.path.as_str()).collect();
    assert!(
        paths.contains(&"/folders/Packages/feeds-builtin/Acme.Web/Acme.Web.1.0.1.nupkg"),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"/folders/Packages/empty-folder"),
        "{paths:?}"
    );
    let zip = listed
        .iter()
        .find(|e| e.path.ends_with("Acme.Api.2.0.0.zip"))
        .unwrap();
    assert_eq!(zip.kind, EntryKind::File);
    assert_eq!(zip.size, 40_000);
    #[cfg(unix)]
    {
        assert_eq!(zip.mode, Some(0o640));
        let link = listed
            .iter()
            .find(|e| e.path.ends_with("latest-web"))
            .unwrap();
        assert_eq!(link.kind, EntryKind::Symlink);
    }
    assert_eq!(listed.len(), crate::common::tree(&inst.packages).len());
    let one = repo.list_files(id, "/octobackup/manifest.json").unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].size, MANIFEST.len() as u64);
    let top: Vec<String> = repo
        .list_files(id, "/")
        .unwrap()
        .into_iter()
        .filter(|e| e.path.matches('/').count() == 1)
        .map(|e| e.path)
        .collect();
    assert_eq!(top, ["/database", "/folders", "/octobackup"]);

    // restore of a subtree into a new folder, and of one file to a chosen file name.
    let out = dir.path().join("restored-logs");
    let restored = repo
        .restore(id, "/folders/TaskLogs", &out, &NoProgress)
        .unwrap();
    assert_eq!(restored.files_restored, 40);
    assert_same_tree(&inst.task_logs, &out);
    let bak = dir.path().join("restore-here/Renamed.bak");
    repo.restore(id, "/database/OctopusDeploy.bak", &bak, &NoProgress)
        .unwrap();
    assert_eq!(fs::read(&bak).unwrap(), fs::read(&inst.bak).unwrap());

    // Restoring again over identical content rewrites nothing.
    let again = repo
        .restore(id, "/folders/TaskLogs", &out, &NoProgress)
        .unwrap();
    assert_eq!(again.files_restored, 0);
    assert_eq!(again.files_unchanged, 40);

    // Paths that are not there say so.
    let err = repo.read_file(id, "/octobackup/nope.json").unwrap_err();
    assert!(
        matches!(err, octobackup_repo::RepoError::PathNotFound { .. }),
        "{err:?}"
    );
    let err = repo.read_file(id, "/folders").unwrap_err();
    assert!(err.to_string().contains("not a file"), "{err}");
}

#[test]
fn tags_survive_restic_tag_and_the_rewritten_snapshot_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let inst = instance(dir.path(), 4096);
    let repo = new_repo(dir.path());
    let opts = SetOptions {
        tags: vec!["set:7".into(), "incomplete".into()],
        ..SetOptions::default()
    };
    let summary = repo
        .backup(items(&inst, MANIFEST), &opts, &NoProgress)
        .unwrap();
    restic(
        &dir.path().join("repo"),
        &[
            "tag",
            "--add",
            "verified",
            "--remove",
            "incomplete",
            &summary.snapshot_id,
        ],
    );
    let all = repo.snapshots().unwrap();
    assert_eq!(all.len(), 1);
    let rewritten = &all[0];
    assert_ne!(
        rewritten.id, summary.snapshot_id,
        "restic writes a new snapshot"
    );
    assert_eq!(rewritten.tags, ["set:7", "verified"]);
    assert_eq!(
        *repo
            .read_file(&rewritten.id, "/octobackup/manifest.json")
            .unwrap(),
        MANIFEST
    );
}

/// Trees' nodes are read field by field as restic writes them (rustic_core change 13 reads
/// them without `serde(flatten)`): every type, every metadata field, nulls, absent fields,
/// fields this version does not know, and the refusals (no `type`, an unknown one, a symlink
/// without its target). Each node read is written and read again unchanged.
#[test]
fn tree_nodes_are_read_as_restic_writes_them() {
    use rustic_core::repofile::{Node, NodeType};
    let read = |json: &str| serde_json::from_str::<Node>(json);
    let id = "aa".repeat(32);
    let file = read(&format!(
        r#"{{"name":"Octopus.Server.1.nupkg","type":"file","mode":420,
            "mtime":"2024-06-01T02:00:00.123456789+02:00","atime":"2024-06-01T02:00:01Z",
            "ctime":"2024-06-01T02:00:02Z","uid":1000,"gid":1001,"user":"octo","group":"staff",
            "inode":77,"device_id":2049,"size":12345,"links":2,"content":["{id}"],
            "extended_attributes":[{{"name":"user.x","value":"AAE="}}],
            "generic_attributes":{{"windows.creation_time":"AA=="}},"path":"/ignored"}}"#
    ))
    .unwrap();
    assert_eq!(file.name, "Octopus.Server.1.nupkg");
    assert_eq!(file.node_type, NodeType::File);
    let m = &file.meta;
    assert_eq!((m.mode, m.uid, m.gid), (Some(420), Some(1000), Some(1001)));
    assert_eq!(
        (m.user.as_deref(), m.group.as_deref()),
        (Some("octo"), Some("staff"))
    );
    assert_eq!(
        (m.inode, m.device_id, m.size, m.links),
        (77, 2049, 12345, 2)
    );
    assert_eq!(
        m.mtime.unwrap().to_string(),
        "2024-06-01T00:00:00.123456789Z"
    );
    assert_eq!(m.atime.unwrap().to_string(), "2024-06-01T02:00:01Z");
    assert_eq!(m.ctime.unwrap().to_string(), "2024-06-01T02:00:02Z");
    assert_eq!(m.extended_attributes.len(), 1);
    assert_eq!(
        m.extended_attributes[0].value.as_deref(),
        Some(&[0u8, 1][..])
    );
    assert_eq!(
        file.content.as_ref().map(|c| c[0].to_hex().to_string()),
        Some(id.clone())
    );
    assert_eq!(file.subtree, None);

    let dir = read(&format!(
        r#"{{"name":"TaskLogs","type":"dir","mode":2147484141,"content":null,"subtree":"{id}"}}"#
    ))
    .unwrap();
    assert_eq!(dir.node_type, NodeType::Dir);
    assert_eq!(dir.content, None);
    assert_eq!(dir.subtree.map(|t| t.to_hex().to_string()), Some(id));
    assert_eq!(
        (dir.meta.size, dir.meta.uid, dir.meta.mtime),
        (0, None, None)
    );

    let link = read(r#"{"name":"l","type":"symlink","linktarget":"../x","linktarget_raw":"/w=="}"#)
        .unwrap();
    assert_eq!(
        link.node_type,
        NodeType::Symlink {
            linktarget: "../x".into(),
            linktarget_raw: Some(vec![0xff]),
        }
    );
    let plain_link =
        read(r#"{"name":"l","type":"symlink","linktarget":"a","linktarget_raw":null}"#).unwrap();
    assert_eq!(
        plain_link.node_type,
        NodeType::Symlink {
            linktarget: "a".into(),
            linktarget_raw: None,
        }
    );
    let dev = read(r#"{"name":"sda","type":"dev","device":2048}"#).unwrap();
    assert_eq!(dev.node_type, NodeType::Dev { device: 2048 });
    let chardev = read(r#"{"name":"tty","type":"chardev"}"#).unwrap();
    assert_eq!(chardev.node_type, NodeType::Chardev { device: 0 });
    assert_eq!(
        read(r#"{"name":"p","type":"fifo"}"#).unwrap().node_type,
        NodeType::Fifo
    );
    assert_eq!(
        read(r#"{"name":"s","type":"socket"}"#).unwrap().node_type,
        NodeType::Socket
    );

    for (bad, says) in [
        (r#"{"name":"x"}"#, "missing field `type`"),
        (r#"{"type":"file"}"#, "missing field `name`"),
        (
            r#"{"name":"x","type":"irregular"}"#,
            "unknown variant `irregular`",
        ),
        (
            r#"{"name":"l","type":"symlink"}"#,
            "missing field `linktarget`",
        ),
        (
            r#"{"name":"x","type":"file","size":null}"#,
            "invalid type: null",
        ),
    ] {
        let e = read(bad).unwrap_err().to_string();
        assert!(e.contains(says), "{bad}: {e}");
    }

    for node in [file, dir, link, plain_link, dev, chardev] {
        let again = read(&serde_json::to_string(&node).unwrap()).unwrap();
        assert_eq!(again, node);
    }
}

/// The data blobs `restic list blobs` finds in `repo`.
fn data_blob_count(repo: &std::path::Path) -> usize {
    let out = restic(repo, &["list", "blobs"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| line.starts_with("data "))
        .count()
}

#[test]
fn stock_restic_cuts_files_where_octobackup_did_and_stores_no_data_again() {
    // Files under the segment length (32 MiB) are cut by the repository's chunker as restic's
    // chunker cuts them (rustic_cdc's patch hashes several positions side by side; the cuts
    // must not move): stock restic, backing up the same files into the same repository with
    // its own chunker, finds every chunk stored already.
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    fs::create_dir_all(&source).unwrap();
    write(&source.join("small.nupkg"), &noise(300 * 1024, 1));
    write(&source.join("three.zip"), &noise(3 * 1024 * 1024 + 17, 2));
    write(&source.join("nine.zip"), &noise(9 * 1024 * 1024 + 4099, 3));
    write(&source.join("twenty.bin"), &noise(20 * 1024 * 1024 + 5, 4));
    // A run of one byte (its window hashes alike everywhere: cuts at the minimum size) between
    // noise.
    let mut runs = noise(2 * 1024 * 1024, 5);
    runs.extend(std::iter::repeat_n(0u8, 3 * 1024 * 1024));
    runs.extend(noise(2 * 1024 * 1024 + 1, 6));
    write(&source.join("runs.bin"), &runs);
    let (_repo, set) = repo_with_set(dir.path(), &source, "/source");
    assert!(set.unreadable.is_empty(), "{:?}", set.unreadable);
    let repo_path = dir.path().join("repo");
    let ours = data_blob_count(&repo_path);
    // Cut, not stored whole (5 blobs): the repository's chunker polynomial is random, so
    // the count varies (about 30 on average, 24 seen), but chunks are at most 8 MiB and the
    // run of zeros is cut at every 512 KiB, so a working chunker always gives more than 12.
    assert!(
        ours > 12,
        "only {ours} data blobs: the files were hardly cut"
    );

    restic(
        &repo_path,
        &["backup", "--host", "restic", source.to_str().unwrap()],
    );
    assert_eq!(
        data_blob_count(&repo_path),
        ours,
        "restic cut the same files elsewhere and stored new data"
    );
}

/// Ids are written as restic writes them, 64 lowercase hexadecimal digits, and read in either
/// case (rustic_core change 18 reads and writes them through tables); a wrong digit anywhere,
/// a short or long id, or a value that is not a string is refused, naming what was expected.
#[test]
fn ids_are_written_and_read_as_restic_writes_them() {
    use rustic_core::Id;
    let bytes: Vec<[u8; 32]> = vec![
        [0; 32],
        [0xff; 32],
        std::array::from_fn(|i| (i * 37 + 11) as u8),
        std::array::from_fn(|i| (255 - i * 7) as u8),
    ];
    for b in bytes {
        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
        let id = Id::new(b);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{hex}\""));
        assert_eq!(serde_json::from_str::<Id>(&json).unwrap(), id);
        let upper = format!("\"{}\"", hex.to_uppercase());
        assert_eq!(serde_json::from_str::<Id>(&upper).unwrap(), id);
        assert_eq!(id.to_hex().as_str(), hex);
    }
    let good = "0123456789abcdef".repeat(4);
    for at in [0, 1, 31, 62, 63] {
        for wrong in ['g', 'G', ' ', '-', 'é'] {
            let mut bad: Vec<char> = good.chars().collect();
            bad[at] = wrong;
            let bad: String = bad.into_iter().collect();
            let err = serde_json::from_str::<Id>(&format!("\"{bad}\"")).unwrap_err();
            assert!(
                err.to_string().contains("expected 64 hexadecimal digits"),
                "{bad}: {err}"
            );
        }
    }
    for bad in [
        String::new(),
        good[..63].to_string(),
        good[..62].to_string(),
        format!("{good}0"),
        format!("{good}00"),
    ] {
        let err = serde_json::from_str::<Id>(&format!("\"{bad}\"")).unwrap_err();
        assert!(
            err.to_string().contains("expected 64 hexadecimal digits"),
            "{bad}: {err}"
        );
    }
    assert!(serde_json::from_str::<Id>("12").is_err());
    assert!(serde_json::from_str::<Id>("null").is_err());
}
