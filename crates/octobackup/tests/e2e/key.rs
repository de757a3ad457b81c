//! `key`: repository passwords added, listed and removed, and a set's master key recovered from
//! escrow with an age identity and without the repository password.

use crate::common::*;
use octobackup::backupset::escrow;
use octobackup::secret::Secret;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_add_list_remove_round_trip() {
    let t = TestLab::start().await;
    t.ok(&["init"]).await; // the product's key, as users get it
    let new_pw = t.dir.path().join("second-password");
    std::fs::write(&new_pw, "correct horse battery staple\n").unwrap();
    t.ok(&[
        "key",
        "add",
        "--new-password-file",
        new_pw.to_str().unwrap(),
        "--host",
        "dr-site",
    ])
    .await;

    let with_new = |args: &[&str]| {
        let mut c = t.command(args);
        c.env("OCTOBACKUP_PASSWORD", "correct horse battery staple");
        c.output().unwrap()
    };
    let list = t.run(&["--json", "key", "list"]).await;
    let keys: Vec<serde_json::Value> = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(keys.len(), 2);
    // An added key costs the same as `init`'s.
    assert_eq!(
        crate::init::key_costs(&t.repo_dir()),
        vec![(1 << 16, 8, 2); 2]
    );
    let old = keys.iter().find(|k| k["current"] == true).unwrap();
    let old_id = old["id"].as_str().unwrap().to_string();
    assert!(keys.iter().any(|k| k["hostname"] == "dr-site"));
    // Both passwords open it, for stock restic too.
    let restic_new = std::process::Command::new("restic")
        .arg("-r")
        .arg(t.repo_dir())
        .args(["cat", "config"])
        .env("RESTIC_PASSWORD_FILE", &new_pw)
        .env("RESTIC_CACHE_DIR", t.dir.path().join("restic-cache"))
        .output()
        .expect("stock restic is needed: apt-get install restic");
    assert!(restic_new.status.success(), "{}", stderr(&restic_new));
    assert!(t.run(&["snapshots"]).await.status.success());
    assert!(with_new(&["snapshots"]).status.success());
    // The key in use cannot remove itself.
    let out = t.run(&["key", "remove", &old_id[..8]]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("use another key's password"),
        "{}",
        stderr(&out)
    );
    // With the new password the old key goes, and the old password stops working.
    let out = with_new(&["key", "remove", &old_id[..8]]);
    assert!(out.status.success(), "{}", stderr(&out));
    t.fails(&["snapshots"], 5, "wrong password").await;
    assert!(with_new(&["snapshots"]).status.success());
    // The last key stays.
    let list = with_new(&["--json", "key", "list"]);
    let keys: Vec<serde_json::Value> = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(keys.len(), 1);
    let out = with_new(&["key", "remove", keys[0]["id"].as_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("last key"), "{}", stderr(&out));
    // No password on the command line or in the output.
    assert!(!stdout(&out).contains("battery") && !stderr(&out).contains("battery"));
    // Without a source for the new password, a clear error.
    t.fails(&["key", "add"], 2, "OCTOBACKUP_NEW_PASSWORD").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escrowed_master_key_is_recovered_with_the_identity_and_without_the_password() {
    use age::secrecy::ExposeSecret;
    let t = TestLab::start().await;
    t.ok(&["init"]).await; // the product's key, as users get it
    let officer = age::x25519::Identity::generate();
    let id_file = t.dir.path().join("officer.age-identity");
    std::fs::write(
        &id_file,
        format!(
            "# public key: {}\n{}\n",
            officer.to_public(),
            officer.to_string().expose_secret()
        ),
    )
    .unwrap();
    let master_key = Secret::new("6c7mB2VbGJ1hUXt2ZkDqAw==");
    let license = Secret::new("<License Signature=\"x\">lab</License>");
    // What `backup` stores for a set when [escrow] age_recipients is set.
    let items = escrow::sealed_items(
        &[officer.to_public().to_string()],
        &master_key,
        Some(&license),
    )
    .unwrap();
    let set_id = "20260301T020000Z-abcdef";
    escrow::publish(t.repo_dir().to_str().unwrap(), set_id, &items).unwrap();
    // restic ignores the escrow folder.
    let check = t.restic(&["check"]);
    assert!(check.status.success(), "{}", stderr(&check));

    // No repository password anywhere.
    std::fs::remove_file(t.repo_password_file()).unwrap();
    let out = t
        .ok(&[
            "key",
            "recover",
            "--identity",
            id_file.to_str().unwrap(),
            "--show-secrets",
        ])
        .await;
    assert_eq!(stdout(&out), format!("{}\n", master_key.expose()));
    // Without --show-secrets nothing secret is printed.
    let out = t
        .ok(&[
            "key",
            "recover",
            "--identity",
            id_file.to_str().unwrap(),
            set_id,
        ])
        .await;
    assert!(
        !stdout(&out).contains(master_key.expose()),
        "{}",
        stdout(&out)
    );
    // --output writes an owner-only file; --license gives the license.
    let dest = t.dir.path().join("license.xml");
    t.ok(&[
        "key",
        "recover",
        "--identity",
        id_file.to_str().unwrap(),
        "--license",
        "--output",
        dest.to_str().unwrap(),
    ])
    .await;
    assert_eq!(
        std::fs::read_to_string(&dest).unwrap(),
        format!("{}\n", license.expose())
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    // Someone else's identity: a clear error, no secret.
    let stranger = age::x25519::Identity::generate();
    let other = t.dir.path().join("stranger.age-identity");
    std::fs::write(
        &other,
        format!("{}\n", stranger.to_string().expose_secret()),
    )
    .unwrap();
    let out = t
        .fails(
            &[
                "key",
                "recover",
                "--identity",
                other.to_str().unwrap(),
                "--show-secrets",
            ],
            2,
            "cannot open this set's escrow",
        )
        .await;
    assert!(!stdout(&out).contains(master_key.expose()));
    t.fails(
        &[
            "key",
            "recover",
            "--identity",
            id_file.to_str().unwrap(),
            "nosuchset",
        ],
        2,
        "no escrow copy for set 'nosuchset'",
    )
    .await;
}
