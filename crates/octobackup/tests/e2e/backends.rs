//! The backend conformance suite: the same cases for every kind of repository, each against a
//! real server (see `servers.rs`), started once for all of that backend's cases.
//!
//! Stock restic 0.14 checks the sets on the local folder, S3 (moto and Ceph RGW) and SFTP. It cannot reach Azurite on
//! a free port: its Azure client has no endpoint setting and sends the development account
//! `devstoreaccount1` to 127.0.0.1:10000 only, so on Azure the suite checks with octobackup alone.

use crate::common::*;
use crate::servers::{self, BUCKET};
use octobackup_lab::fingerprint::hash_tree;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Kind {
    Local,
    S3,
    /// S3 on Ceph RGW (one cluster for the whole test binary, see `servers::ceph`).
    Ceph,
    Azure,
    Sftp,
}

/// One backend: its server, and how octobackup and restic reach it.
pub(crate) struct Backend {
    pub(crate) kind: Kind,
    s3: Option<Arc<servers::S3>>,
    pub(crate) ceph: Option<Arc<servers::Ceph>>,
    azure: Option<Arc<servers::Server>>,
    sftp: Option<Arc<servers::Sftp>>,
    /// A gate the clients go through, to stop the server as they see it (fault cases).
    gate: Option<servers::Gate>,
}

/// How a config names a repository on this backend.
pub(crate) struct Place {
    pub(crate) location: String,
    pub(crate) options: Vec<(String, String)>,
    pub(crate) env: Vec<(String, String)>,
}

impl Backend {
    pub(crate) fn start(kind: Kind) -> Backend {
        let mut b = Backend {
            kind,
            s3: None,
            ceph: None,
            azure: None,
            sftp: None,
            gate: None,
        };
        match kind {
            Kind::Local => {}
            Kind::S3 => b.s3 = Some(Arc::new(servers::start_s3())),
            Kind::Ceph => b.ceph = Some(servers::ceph()),
            Kind::Azure => b.azure = Some(Arc::new(servers::start_azurite())),
            Kind::Sftp => b.sftp = Some(Arc::new(servers::start_sftp())),
        }
        b
    }

    /// The same server, with the clients going through a gate of their own (none for a local
    /// folder): each fault case stops its own gate, the server behind goes on for the next.
    pub(crate) fn gated(&self) -> Backend {
        let mut b = Backend {
            kind: self.kind,
            s3: self.s3.clone(),
            ceph: self.ceph.clone(),
            azure: self.azure.clone(),
            sftp: self.sftp.clone(),
            gate: None,
        };
        let server = match self.kind {
            Kind::Local => return b,
            Kind::S3 => b.s3.as_ref().unwrap().server.addr(),
            Kind::Ceph => b.ceph.as_ref().unwrap().server().addr(),
            Kind::Azure => b.azure.as_ref().unwrap().addr(),
            Kind::Sftp => b.sftp.as_ref().unwrap().server.addr(),
        };
        b.gate = Some(servers::Gate::new(&server));
        b
    }

    /// The address octobackup is given: the gate's, or the server's own.
    fn front(&self, server: &servers::Server) -> String {
        self.gate
            .as_ref()
            .map_or_else(|| server.addr(), servers::Gate::addr)
    }

    /// A repository under `path` (a prefix in the bucket, a folder on the server); `None` for
    /// the local backend, which keeps the lab's own repository folder.
    pub(crate) fn place(&self, bucket: &str, path: &str) -> Option<Place> {
        let env = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        match self.kind {
            Kind::Local => None,
            Kind::S3 => {
                let s3 = self.s3.as_ref().unwrap();
                Some(Place {
                    location: format!("s3:http://{}/{bucket}/{path}", self.front(&s3.server)),
                    options: Vec::new(),
                    env: env(&[
                        ("AWS_ACCESS_KEY_ID", "octobackup-test"),
                        ("AWS_SECRET_ACCESS_KEY", "octobackup-test-secret"),
                    ]),
                })
            }
            Kind::Ceph => {
                let ceph = self.ceph.as_ref().unwrap();
                Some(Place {
                    location: format!("s3:http://{}/{bucket}/{path}", self.front(ceph.server())),
                    options: Vec::new(),
                    env: env(&[
                        ("AWS_ACCESS_KEY_ID", &ceph.access_key),
                        ("AWS_SECRET_ACCESS_KEY", &ceph.secret_key),
                    ]),
                })
            }
            Kind::Azure => {
                let az = self.azure.as_ref().unwrap();
                Some(Place {
                    location: format!("azure://{bucket}/{path}"),
                    options: vec![(
                        "endpoint".into(),
                        format!("http://{}/{}", self.front(az), servers::AZURITE_ACCOUNT),
                    )],
                    env: env(&[
                        ("AZURE_STORAGE_ACCOUNT", servers::AZURITE_ACCOUNT),
                        ("AZURE_STORAGE_KEY", servers::AZURITE_KEY),
                    ]),
                })
            }
            Kind::Sftp => {
                let sftp = self.sftp.as_ref().unwrap();
                let root = sftp.root().join(bucket).join(path);
                Some(Place {
                    location: format!(
                        "sftp://{}@{}{}",
                        sftp.user,
                        self.front(&sftp.server),
                        root.display()
                    ),
                    options: vec![
                        ("key".into(), sftp.key.display().to_string()),
                        // The test server's host key is new each run.
                        ("known_hosts_strategy".into(), "accept".into()),
                    ],
                    // octobackup keeps its ssh control sockets under $TMPDIR/octobackup-ssh
                    // (OpenDAL's default would be XDG_STATE_HOME): both in the server's temp
                    // folder, where the tests look for leftovers.
                    env: vec![
                        (
                            "XDG_STATE_HOME".into(),
                            sftp.client_state().display().to_string(),
                        ),
                        ("TMPDIR".into(), sftp.client_tmp().display().to_string()),
                    ],
                })
            }
        }
    }

    /// What the runs left of ssh (processes, control folders) on an SFTP backend; nothing on
    /// the others.
    pub(crate) fn ssh_leftovers(&self) -> Vec<String> {
        self.sftp
            .as_ref()
            .map(|s| s.leftovers(self.gate.as_ref().map(|g| g.port)))
            .unwrap_or_default()
    }

    /// Stock restic on the repository at `place` (`None`: the lab's local one), or `None` where
    /// restic 0.14 cannot reach this server.
    pub(crate) fn restic(
        &self,
        t: &TestLab,
        place: Option<&Place>,
        args: &[&str],
    ) -> Option<Output> {
        let mut cmd = std::process::Command::new("restic");
        cmd.env("RESTIC_PASSWORD_FILE", t.repo_password_file())
            .env("RESTIC_CACHE_DIR", t.dir.path().join("restic-cache"))
            .env_remove("RESTIC_PASSWORD");
        match self.kind {
            Kind::Local => {
                cmd.arg("-r").arg(t.repo_dir());
            }
            Kind::S3 | Kind::Ceph => {
                let p = place.unwrap();
                cmd.arg("-r")
                    .arg(format!("s3:{}", p.location.trim_start_matches("s3:")));
                cmd.envs(p.env.iter().cloned());
            }
            Kind::Sftp => {
                let sftp = self.sftp.as_ref().unwrap();
                let root = place
                    .unwrap()
                    .location
                    .split_once(&self.front(&sftp.server))
                    .unwrap()
                    .1
                    .to_string();
                cmd.arg("-r")
                    .arg(format!("sftp:{}@127.0.0.1:{root}", sftp.user))
                    .arg("-o")
                    .arg(format!(
                        "sftp.command=ssh {}@127.0.0.1 -p {} -i {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -s sftp",
                        sftp.user,
                        sftp.server.port,
                        sftp.key.display()
                    ));
            }
            Kind::Azure => return None,
        }
        let out = cmd.args(args).output().unwrap_or_else(|e| {
            panic!("stock restic is needed ({e}): apt-get install restic (scripts/test.sh does)")
        });
        Some(out)
    }
}

/// Points the lab's config at `place` (the local backend keeps its own).
pub(crate) fn use_place(t: &TestLab, place: Option<&Place>) {
    let Some(place) = place else { return };
    t.edit_config(|c| {
        let repo = c["repository"].as_table_mut().unwrap();
        repo.insert("location".into(), place.location.clone().into());
        let mut options = toml::Table::new();
        for (k, v) in &place.options {
            options.insert(k.clone(), v.clone().into());
        }
        repo.insert("options".into(), options.into());
    });
}

pub(crate) async fn obk(t: &TestLab, place: Option<&Place>, args: &[&str]) -> Output {
    t.run_env(args, place.map_or(&[][..], |p| &p.env)).await
}

pub(crate) async fn obk_ok(t: &TestLab, place: Option<&Place>, args: &[&str]) -> Output {
    t.ok_env(args, place.map_or(&[][..], |p| &p.env)).await
}

/// A storage error is one line, without the backend's internals.
pub(crate) fn assert_one_clear_line(out: &Output, expect: &[&str]) {
    let err = stderr(out);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "not one line: {err}");
    for e in expect {
        assert!(err.contains(e), "`{e}` missing from: {err}");
    }
    for internal in [
        "x-amz",
        "x-ms-",
        "RequestId",
        "request_id",
        "Parts {",
        "uri:",
        "response:",
        "WARN",
        "Backtrace",
        "opendal",
    ] {
        assert!(!err.contains(internal), "`{internal}` shown: {err}");
    }
}

/// init, backup, churn, backup, snapshots, check --read-data, drill, restore of the folders
/// byte-identical; stock restic lists and checks the sets; escrow recovers the master key from
/// the storage alone.
async fn full_cycle(b: Arc<Backend>) {
    let mut t = TestLab::start().await;
    let place = b.place(BUCKET, "lab");
    let place = place.as_ref();
    use_place(&t, place);
    let identity = age::x25519::Identity::generate();
    t.edit_config(|c| {
        let mut escrow = toml::Table::new();
        escrow.insert(
            "age_recipients".into(),
            vec![toml::Value::from(identity.to_public().to_string())].into(),
        );
        c.insert("escrow".into(), escrow.into());
    });

    let out = obk_ok(&t, place, &["init"]).await;
    let err = stderr(&out);
    assert!(
        !err.contains("WARN") && !err.contains("stat failed"),
        "init printed backend noise: {err}"
    );
    obk_ok(&t, place, &["backup"]).await;
    t.lab.churn(1).await.unwrap();
    obk_ok(&t, place, &["backup"]).await;
    let fp = t.lab.fingerprint().await.unwrap();

    let out = obk_ok(&t, place, &["--json", "snapshots"]).await;
    let sets: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sets.len(), 2, "{sets:#?}");
    obk_ok(&t, place, &["check", "--read-data"]).await;
    obk_ok(&t, place, &["drill"]).await;

    let folders = t.dir.path().join("restored-folders");
    obk_ok(
        &t,
        place,
        &[
            "restore",
            "--folders",
            "--folders-to",
            folders.to_str().unwrap(),
        ],
    )
    .await;
    for (name, files) in &fp.folders {
        assert_eq!(
            &hash_tree(&folders.join(name)).unwrap(),
            files,
            "folder {name} restored from {:?}",
            b.kind
        );
    }

    // Stock restic reads the same repository.
    if let Some(out) = b.restic(&t, place, &["snapshots", "--json"]) {
        assert!(out.status.success(), "restic snapshots: {}", stderr(&out));
        let snaps: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        let complete = snaps
            .iter()
            .filter(|s| {
                s["tags"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t == "complete"))
            })
            .count();
        assert_eq!(complete, 2, "{snaps:#?}");
        let out = b.restic(&t, place, &["check", "--read-data"]).unwrap();
        assert!(
            out.status.success(),
            "restic check: {}{}",
            stdout(&out),
            stderr(&out)
        );
    }

    // forget drops the older set's escrow copy with it, on every backend.
    let older = sets[0]["set_id"].as_str().unwrap().to_string();
    obk_ok(&t, place, &["forget", "--keep-last", "1"]).await;

    // The escrow copy is readable from the storage alone: no repository password.
    let id_file = t.dir.path().join("escrow-identity.txt");
    {
        use age::secrecy::ExposeSecret;
        std::fs::write(&id_file, identity.to_string().expose_secret()).unwrap();
    }
    t.edit_config(|c| {
        c["repository"]
            .as_table_mut()
            .unwrap()
            .remove("password_file");
    });
    std::fs::remove_file(t.repo_password_file()).unwrap();
    let out = obk_ok(
        &t,
        place,
        &[
            "--json",
            "key",
            "recover",
            "--identity",
            id_file.to_str().unwrap(),
            "--show-secrets",
        ],
    )
    .await;
    let state = t.lab.state().unwrap();
    assert!(
        stdout(&out).contains(&state.master_key),
        "the recovered key is not the instance's: {}",
        stderr(&out)
    );
    let out = obk(
        &t,
        place,
        &[
            "key",
            "recover",
            "--identity",
            id_file.to_str().unwrap(),
            &older,
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no escrow copy for set"),
        "{}",
        stderr(&out)
    );
}

/// A minimal config for the error cases: only the repository.
fn bare_config(dir: &Path, place: &Place) -> PathBuf {
    let pw = dir.join("password");
    std::fs::write(&pw, "correct horse battery staple\n").unwrap();
    let mut repo = toml::Table::new();
    repo.insert("location".into(), place.location.clone().into());
    repo.insert("password_file".into(), pw.display().to_string().into());
    let mut options = toml::Table::new();
    for (k, v) in &place.options {
        options.insert(k.clone(), v.clone().into());
    }
    repo.insert("options".into(), options.into());
    let mut c = toml::Table::new();
    c.insert("repository".into(), repo.into());
    let path = dir.join("octobackup.toml");
    std::fs::write(&path, toml::to_string(&c).unwrap()).unwrap();
    path
}

fn run_bare(config: &Path, place: &Place, args: &[&str]) -> Output {
    std::process::Command::new(exe())
        .arg("--config")
        .arg(config)
        .args(args)
        .envs(place.env.iter().cloned())
        .env_remove("OCTOBACKUP_PASSWORD")
        .output()
        .unwrap()
}

/// Wrong credentials: one line with the cause and what to check; the details with -v.
async fn wrong_credentials(b: Arc<Backend>) {
    let Some(mut place) = b.place(BUCKET, "wrong-credentials") else {
        return; // a local folder has no credentials
    };
    let expect: &[&str] = match b.kind {
        Kind::S3 => {
            let s3 = b.s3.as_ref().unwrap();
            place.location = format!("s3:http://{}/{BUCKET}/lab", s3.strict().server.addr());
            place.env = vec![
                ("AWS_ACCESS_KEY_ID".into(), s3.strict().access_key.clone()),
                ("AWS_SECRET_ACCESS_KEY".into(), "not-the-secret-key".into()),
            ];
            &["refused the credentials", "AWS_SECRET_ACCESS_KEY"]
        }
        Kind::Ceph => {
            for (k, v) in &mut place.env {
                if k == "AWS_SECRET_ACCESS_KEY" {
                    *v = "not-the-secret-key".into();
                }
            }
            &["refused the credentials", "AWS_SECRET_ACCESS_KEY"]
        }
        Kind::Azure => {
            for (k, v) in &mut place.env {
                if k == "AZURE_STORAGE_KEY" {
                    *v = "bm90IHRoZSBrZXk=".into();
                }
            }
            &["refused the credentials", "AZURE_STORAGE_KEY"]
        }
        Kind::Sftp => {
            let wrong = b.sftp.as_ref().unwrap().wrong_key.display().to_string();
            for (k, v) in &mut place.options {
                if k == "key" {
                    *v = wrong.clone();
                }
            }
            &["SSH login failed", "key"]
        }
        Kind::Local => unreachable!(),
    };
    let dir = tempfile::tempdir().unwrap();
    let config = bare_config(dir.path(), &place);
    for args in [&["snapshots"][..], &["init"]] {
        let out = run_bare(&config, &place, args);
        assert_eq!(out.status.code(), Some(5), "{args:?}: {}", stderr(&out));
        assert_one_clear_line(&out, expect);
        assert!(!stderr(&out).contains("not-the-secret-key"));
    }
    // The backend's own context is there for whoever asks.
    let out = run_bare(&config, &place, &["-v", "snapshots"]);
    assert!(stderr(&out).lines().count() > 1, "{}", stderr(&out));
}

/// A missing bucket or container: one line saying so and how to create it; `init` creates it
/// (as restic's does) and the repository in it. A missing folder is simply no repository.
async fn missing_bucket(b: Arc<Backend>) {
    let dir = tempfile::tempdir().unwrap();
    let Some(place) = b.place("no-such-bucket", "repo") else {
        let place = Place {
            location: dir.path().join("nothing-here").display().to_string(),
            options: Vec::new(),
            env: Vec::new(),
        };
        let config = bare_config(dir.path(), &place);
        let out = run_bare(&config, &place, &["snapshots"]);
        assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
        assert_one_clear_line(&out, &["no repository found"]);
        return;
    };
    let config = bare_config(dir.path(), &place);
    let expect: &[&str] = match b.kind {
        Kind::S3 | Kind::Ceph => &["bucket does not exist", "create it first", "no-such-bucket"],
        Kind::Azure => &[
            "container does not exist",
            "create it first",
            "no-such-bucket",
        ],
        _ => &["no repository found"],
    };
    let out = run_bare(&config, &place, &["snapshots"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert_one_clear_line(&out, expect);
    let out = run_bare(&config, &place, &["init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    if b.kind != Kind::Sftp {
        assert!(
            stdout(&out).contains("created S3 bucket `no-such-bucket`")
                || stdout(&out).contains("created Azure container `no-such-bucket`"),
            "{}",
            stdout(&out)
        );
    }
    let out = run_bare(&config, &place, &["--json", "snapshots"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // The CreateBucket request is signed right: a server that checks SigV4 accepts it, and
    // refuses it with a wrong secret. (Through the library: moto's check then refuses OpenDAL's
    // listings, see servers.rs, so `init` could not get further there.)
    if let Some(s3) = &b.s3 {
        let storage = |secret: &str| {
            octobackup_repo::Storage::new(
                format!("s3:http://{}/signed-bucket", s3.strict().server.addr()),
                [
                    ("access_key_id".to_string(), s3.strict().access_key.clone()),
                    ("secret_access_key".to_string(), secret.to_string()),
                ]
                .into(),
            )
        };
        let e = storage("not-the-secret").create_bucket().unwrap_err();
        assert!(e.to_string().contains("refused the credentials"), "{e}");
        assert!(storage(&s3.strict().secret_key).create_bucket().unwrap());
        assert!(
            s3.strict_log()
                .contains("\"PUT /signed-bucket HTTP/1.1\" 200"),
            "{}",
            s3.strict_log()
        );
    }
}

/// `init --repository LOCATION` with no config: the repository is made and the template written
/// with that location, as a restic user would start. S3 and a local folder need nothing else (the
/// keys come from the environment); the test Azure and SFTP servers also need an option (the
/// emulator's endpoint, the key file), which a location cannot carry.
async fn init_from_the_command_line(b: Arc<Backend>) {
    let dir = tempfile::tempdir().unwrap();
    let (location, env) = match b.kind {
        Kind::Local => (dir.path().join("repo").display().to_string(), Vec::new()),
        Kind::S3 | Kind::Ceph => {
            let p = b.place(BUCKET, "from-the-command-line").unwrap();
            (p.location, p.env)
        }
        Kind::Azure | Kind::Sftp => return,
    };
    let config = dir.path().join("octobackup.toml");
    let run = |args: &[&str]| {
        std::process::Command::new(exe())
            .arg("--config")
            .arg(&config)
            .args(args)
            .envs(env.iter().cloned())
            .env("OCTOBACKUP_PASSWORD", "correct horse battery staple")
            .output()
            .unwrap()
    };
    let out = run(&["init", "--repository", &location]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        text.contains(&format!("location = \"{location}\"")),
        "{text}"
    );
    let out = run(&["--json", "snapshots"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&["init", "--repository", &location]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
}

// ---- The storage server stopped: the run ends within the retry budget ----

/// The retry budget of the fault cases: small, so the runs end soon (no timing is asserted).
const TEST_BUDGET: &str = "3s";

/// A lab whose repository is on `b`, initialised, with a small retry budget.
async fn lab_on(b: &Backend, path: &str) -> (TestLab, Option<Place>) {
    let t = TestLab::start().await;
    // A server serves several cases (Ceph the whole test binary, the others each fault case of
    // their kind): each case's repository gets a prefix of its own.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let path = format!("{path}-{n}");
    let place = b.place(BUCKET, &path);
    use_place(&t, place.as_ref());
    t.edit_config(|c| {
        c["repository"]
            .as_table_mut()
            .unwrap()
            .insert("retry_budget".into(), TEST_BUDGET.into());
    });
    obk_ok(&t, place.as_ref(), &["init"]).await;
    (t, place)
}

/// Stops the storage as octobackup sees it: the gate closes (a local repository's folder is
/// moved away, as a disk or share that went away).
fn stop_storage(b: &Backend, t: &TestLab) {
    match &b.gate {
        Some(g) => g.close(),
        None => std::fs::rename(t.repo_dir(), t.dir.path().join("repository-away")).unwrap(),
    }
}

/// How a stopped storage server looks to the client.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Outage {
    /// Connections refused, open ones cut.
    Refused,
    /// Connections accepted and never answered.
    Hangs,
    /// Response headers sent, then the body stalls (HTTP servers).
    StallsBodies,
}

/// As [`stop_storage`], the way `how` says (a local folder can only go away).
fn stop_storage_as(b: &Backend, t: &TestLab, how: Outage) {
    match (&b.gate, how) {
        (Some(g), Outage::Hangs) => g.hang(),
        (Some(g), Outage::StallsBodies) => g.stall_bodies(),
        _ => stop_storage(b, t),
    }
}

fn start_storage(b: &Backend, t: &TestLab) {
    match &b.gate {
        Some(g) => {
            g.close();
            g.open();
        }
        None if b.kind == Kind::Local => {
            std::fs::rename(t.dir.path().join("repository-away"), t.repo_dir()).unwrap()
        }
        None => {}
    }
}

/// The run's error: one `error:` line naming the storage's endpoint, the budget and what
/// became of the staging copy; no panic and no backend internals anywhere on stderr.
fn assert_storage_gone(b: &Backend, out: &Output, staged: bool, case: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(5), "{case}: exit code; {err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{case}: not one error line: {err}");
    let line = errors[0];
    for internal in [
        "panicked",
        "Backtrace",
        "RUST_BACKTRACE",
        "WARN",
        "x-amz",
        "x-ms-",
    ] {
        assert!(!err.contains(internal), "{case}: `{internal}` shown: {err}");
    }
    match &b.gate {
        Some(g) => {
            for part in [
                "the repository storage did not answer",
                g.addr().as_str(),
                "retry_budget = 3s",
            ] {
                assert!(line.contains(part), "{case}: `{part}` missing: {line}");
            }
            if staged {
                assert!(
                    line.contains(
                        "was kept: the next backup of this instance within 24 h stores it"
                    ),
                    "{case}: staging not said: {line}"
                );
            }
        }
        // A folder that is gone is not retried: it says which file it could not write.
        None => assert!(line.contains("repository"), "{case}: {line}"),
    }
}

/// Maintenance mode as found (off), no set complete beyond `complete_before`, and for SFTP no
/// ssh process or control folder left.
async fn assert_as_found(
    b: &Backend,
    t: &TestLab,
    place: Option<&Place>,
    complete_before: usize,
    case: &str,
) {
    assert!(
        !t.lab.octopus().maintenance(),
        "{case}: maintenance mode left on: {:?}",
        maintenance_changes(&t.events())
    );
    start_storage(b, t);
    let out = obk_ok(t, place, &["--json", "snapshots"]).await;
    let sets: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let complete = sets.iter().filter(|s| s["complete"] == true).count();
    assert_eq!(
        complete, complete_before,
        "{case}: complete sets: {sets:#?}"
    );
    if let Some(sftp) = &b.sftp {
        let left = ssh_leftovers(sftp, b.gate.as_ref().map(|g| g.port)).await;
        assert!(left.is_empty(), "{case}: ssh leftovers: {left:#?}");
    }
}

/// What the runs left of ssh: processes and control folders. An `ssh -O exit` that OpenDAL's
/// session sends while the run ends may still be finishing as it exits: allow it a moment
/// (bounded; the masters themselves end with the run).
async fn ssh_leftovers(sftp: &servers::Sftp, gate_port: Option<u16>) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let left = sftp.leftovers(gate_port);
        if left.is_empty() || std::time::Instant::now() > deadline {
            return left;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The storage stopped before the run: the run ends at the retry budget with one line, before
/// maintenance mode is touched; the earlier set stays the only complete one.
/// A server that hangs (or stalls mid-body) fails each request at its timeout, which counts
/// against the same budget: the run still ends with one line, naming the timeout.
async fn stopped_before_the_run(server: Arc<Backend>, how: Outage) {
    let b = server.gated();
    let kind = b.kind;
    let (t, place) = lab_on(&b, "stopped-before").await;
    let place = place.as_ref();
    obk_ok(&t, place, &["backup"]).await;
    let changes = maintenance_changes(&t.events()).len();

    stop_storage_as(&b, &t, how);
    let out = obk(&t, place, &["backup"]).await;
    let case = format!("{kind:?} stopped before the run ({how:?})");
    assert_storage_gone(&b, &out, false, &case);
    if how != Outage::Refused {
        assert!(
            stderr(&out).contains("failed with timeout"),
            "{case}: the timeout not named: {}",
            stderr(&out)
        );
    }
    assert_eq!(
        maintenance_changes(&t.events()).len(),
        changes,
        "{case}: maintenance mode was touched"
    );
    // Restore and drill say the same, without a panic, and restore writes nothing.
    let target = t.dir.path().join("restore-while-stopped");
    let restore = [
        "restore",
        "--folders",
        "--folders-to",
        target.to_str().unwrap(),
    ];
    for args in [&restore[..], &["drill"]] {
        let out = obk(&t, place, args).await;
        let err = stderr(&out);
        assert!(!out.status.success(), "{case}: {args:?} succeeded");
        assert!(!err.contains("panicked"), "{case}: {args:?}: {err}");
        if b.gate.is_some() {
            assert!(err.contains("did not answer"), "{case}: {args:?}: {err}");
        }
    }
    assert!(!target.exists(), "{case}: restore wrote something");
    assert_as_found(&b, &t, place, 1, &case).await;
}

/// The storage stopped while the run is under way (during the window's BACKUP DATABASE, so the
/// run meets it after the window, while it stores the set): the run ends within the retry budget
/// with one line, maintenance mode is put back, no set is complete.
async fn stopped_during_the_run(server: Arc<Backend>, how: Outage) {
    let b = server.gated();
    let kind = b.kind;
    let (t, place) = lab_on(&b, "stopped-during").await;
    let place = place.as_ref();

    t.lab.sql().set_backup_rate(Some(256 * 1024));
    let mut c = t.command(&["backup"]);
    if let Some(p) = place {
        c.envs(p.env.iter().cloned());
    }
    let child = c
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    t.wait_for_event("backup_started").await;
    stop_storage_as(&b, &t, how);
    t.lab.sql().set_backup_rate(None);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let case = format!("{kind:?} stopped during the run ({how:?})");
    assert_storage_gone(&b, &out, true, &case);
    let changes = maintenance_changes(&t.events());
    assert!(
        changes.first().is_some_and(|c| c.1),
        "{case}: the window never opened: {changes:?}"
    );
    assert_as_found(&b, &t, place, 0, &case).await;

    // The window's work was kept on staging: with the storage back, the next run stores it as
    // its set (complete, with its own time) without a new BACKUP DATABASE, then makes its own.
    // (A local folder gone is not retried, so not kept: that run discarded its staging.)
    if b.gate.is_none() {
        assert!(
            t.staging_files().is_empty(),
            "{case}: {:?}",
            t.staging_files()
        );
        return;
    }
    let kept = t.staging_files();
    assert_eq!(kept.len(), 1, "{case}: staging holds {kept:?}");
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(kept[0].join("octobackup-kept.json")).unwrap())
            .unwrap();
    let kept_set = record["manifest"]["set_id"].as_str().unwrap().to_string();
    let backups_before = seqs(&t.events(), "backup_started").len();
    if how == Outage::Hangs {
        // A kept set older than a day is no longer wanted: removed, said, and the run makes its own.
        let mut old = record.clone();
        old["manifest"]["started"] = (chrono::Utc::now() - chrono::TimeDelta::days(2))
            .to_rfc3339()
            .into();
        std::fs::write(
            kept[0].join("octobackup-kept.json"),
            serde_json::to_vec(&old).unwrap(),
        )
        .unwrap();
        let out = obk_ok(&t, place, &["backup"]).await;
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "the staging folder of set {kept_set} kept when the storage stopped"
            )) && err.contains("more than 24 h ago"),
            "{case}: {err}"
        );
        let out = obk_ok(&t, place, &["--json", "snapshots"]).await;
        let sets: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        let complete: Vec<_> = sets.iter().filter(|s| s["complete"] == true).collect();
        assert_eq!(complete.len(), 1, "{case}: {sets:#?}");
        assert_ne!(complete[0]["set_id"], kept_set.as_str(), "{case}");
        assert!(
            t.staging_files().is_empty(),
            "{case}: {:?}",
            t.staging_files()
        );
        return;
    }
    let out = obk_ok(&t, place, &["backup"]).await;
    assert!(
        stderr(&out).contains(&format!("stored set {kept_set}, kept on staging")),
        "{case}: {}",
        stderr(&out)
    );
    assert_eq!(
        seqs(&t.events(), "backup_started").len(),
        backups_before + 1,
        "{case}: the kept set took a BACKUP DATABASE of its own"
    );
    let out = obk_ok(&t, place, &["--json", "snapshots"]).await;
    let sets: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let complete: Vec<&serde_json::Value> = sets.iter().filter(|s| s["complete"] == true).collect();
    assert_eq!(complete.len(), 2, "{case}: {sets:#?}");
    assert_eq!(
        complete[0]["set_id"],
        kept_set.as_str(),
        "{case}: {sets:#?}"
    );
    let started =
        chrono::DateTime::parse_from_rfc3339(record["manifest"]["started"].as_str().unwrap())
            .unwrap();
    let stored =
        chrono::DateTime::parse_from_rfc3339(complete[0]["time"].as_str().unwrap()).unwrap();
    assert_eq!(
        stored.timestamp(),
        started.timestamp(),
        "{case}: the kept set's time"
    );
    assert!(
        t.staging_files().is_empty(),
        "{case}: {:?}",
        t.staging_files()
    );
}

/// The storage stopped the moment maintenance mode goes on (a lab hook, before the stand-in
/// answers): nothing inside the window touches the repository, so the window is as long as with
/// the storage up. The gate records every connection it accepts in the lab's event log: none
/// between maintenance on and off, while the run's later tries (after the window) are there. The
/// window's recorded length is within `wait.max_window` (no overrun); the run ends with one line,
/// exit 5, the set kept on staging (remote storage), none complete, maintenance mode as found,
/// no ssh process or control folder left.
async fn stopped_inside_the_window(server: Arc<Backend>, how: Outage) {
    let b = server.gated();
    let kind = b.kind;
    let (t, place) = lab_on(&b, "stopped-inside").await;
    let place = place.as_ref();
    t.set_wait("1m", "2m");
    let log = t.lab.event_log().clone();
    let stop: Box<dyn Fn() + Send + Sync> = match &b.gate {
        Some(g) => {
            let seen = log.clone();
            g.on_connection(std::sync::Arc::new(move || {
                seen.record("storage", "storage_connection", serde_json::json!({}))
            }));
            match how {
                Outage::Hangs => Box::new(g.hang_switch()),
                _ => Box::new(g.close_switch()),
            }
        }
        None => {
            let (from, to) = (t.repo_dir(), t.dir.path().join("repository-away"));
            Box::new(move || std::fs::rename(&from, &to).unwrap())
        }
    };
    let fired = std::sync::atomic::AtomicBool::new(false);
    log.on("maintenance_changed", move |e| {
        if e.detail["on"] == true && !fired.swap(true, std::sync::atomic::Ordering::SeqCst) {
            stop();
        }
    });

    let out = obk(&t, place, &["backup"]).await;
    let case = format!("{kind:?} stopped inside the window ({how:?})");
    assert_storage_gone(&b, &out, b.gate.is_some(), &case);
    let events = t.events();
    let changes = maintenance_changes(&events);
    let (on, off) = match changes.as_slice() {
        [(on, true), (off, false), ..] => (*on, *off),
        _ => panic!("{case}: the window: {changes:?}"),
    };
    if b.gate.is_some() {
        let conns = seqs(&events, "storage_connection");
        assert!(
            conns.iter().any(|s| *s < on),
            "{case}: no storage connection seen before the window: {conns:?}"
        );
        let inside: Vec<&u64> = conns.iter().filter(|s| **s > on && **s < off).collect();
        assert!(
            inside.is_empty(),
            "{case}: the window touched the storage (events {inside:?} between {on} and {off})"
        );
        if how == Outage::Hangs {
            assert!(
                conns.iter().any(|s| *s > off),
                "{case}: the run's tries after the window not seen: {conns:?}"
            );
        }
        let kept = t.staging_files();
        assert_eq!(kept.len(), 1, "{case}: staging holds {kept:?}");
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(kept[0].join("octobackup-kept.json")).unwrap())
                .unwrap();
        let window = record["manifest"]["window"]["seconds"].as_f64().unwrap();
        assert!(
            window > 0.0 && window <= 120.0,
            "{case}: the window's recorded length {window}s against wait.max_window = 2m"
        );
    }
    assert_as_found(&b, &t, place, 0, &case).await;
}

/// SIGTERM (a service manager's stop) during an SFTP backup: maintenance mode is put back, exit
/// 130, and the run's ssh masters and control folder go with it.
async fn sftp_stopped_by_sigterm() {
    let b = tokio::task::spawn_blocking(|| Backend::start(Kind::Sftp))
        .await
        .unwrap();
    let (t, place) = lab_on(&b, "sigterm").await;
    let place = place.as_ref();
    t.lab.sql().set_backup_rate(Some(256 * 1024));
    let mut c = t.command(&["backup"]);
    c.envs(place.unwrap().env.iter().cloned());
    let child = c
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    t.wait_for_event("backup_started").await;
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    t.lab.sql().set_backup_rate(None);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    assert_as_found(&b, &t, place, 0, "SFTP stopped by SIGTERM").await;
}

/// SFTP restore and drill of a set with many packs against an sshd with its default
/// `MaxStartups 10:30:100`, with more connections than sshd lets log in at once: the logins are
/// queued, nothing is dropped, and no ssh process or control folder is left.
/// Files added to the lab's server folders for the SFTP restore cases.
struct ExtraFiles {
    /// Incompressible 256 KiB artifacts: a few dozen packs at 240.
    artifacts: usize,
    /// Small task logs (1 to 16 KiB) spread over folders, as a real server has thousands of.
    task_logs: usize,
    /// `connections` set in the repository options (`None`: octobackup's default).
    connections: Option<&'static str>,
}

async fn sftp_restore_of_many_packs() {
    sftp_restore_and_drill(ExtraFiles {
        artifacts: 240,
        task_logs: 0,
        connections: Some("32"),
    })
    .await;
}

/// A realistic set: a few thousand files (task logs in many folders, some artifacts), with
/// octobackup's default connections, restored and drilled against the stock sshd.
async fn sftp_restore_of_a_realistic_set() {
    sftp_restore_and_drill(ExtraFiles {
        artifacts: 40,
        task_logs: 4000,
        connections: None,
    })
    .await;
}

fn noise(seed: &mut u64, len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    for chunk in data.chunks_mut(8) {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        chunk.copy_from_slice(&seed.to_le_bytes()[..chunk.len()]);
    }
    data
}

async fn sftp_restore_and_drill(extra_files: ExtraFiles) {
    let b = tokio::task::spawn_blocking(|| Backend::start(Kind::Sftp))
        .await
        .unwrap();
    let (t, place) = lab_on(&b, "many-packs").await;
    let place = place.as_ref();
    if let Some(n) = extra_files.connections {
        t.edit_config(|c| {
            c["repository"]["options"]
                .as_table_mut()
                .unwrap()
                .insert("connections".into(), n.into());
        });
    }
    let extra = t.lab.info().folders.artifacts.join("many-packs");
    std::fs::create_dir_all(&extra).unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for i in 0..extra_files.artifacts {
        let data = noise(&mut seed, 256 * 1024);
        std::fs::write(extra.join(format!("artifact-{i:03}.bin")), data).unwrap();
    }
    let logs = t.lab.info().folders.task_logs.join("many-files");
    for i in 0..extra_files.task_logs {
        let dir = logs.join(format!("ServerTasks-{:03}", i / 50));
        std::fs::create_dir_all(&dir).unwrap();
        let len = 1024 + (seed % (15 * 1024)) as usize;
        let mut text = format!("ServerTasks-{i}: deployment log\n").into_bytes();
        text.extend(noise(&mut seed, len));
        std::fs::write(dir.join(format!("servertasks-{i:05}.log.txt")), text).unwrap();
    }
    obk_ok(&t, place, &["backup"]).await;
    let fp = t.lab.fingerprint().await.unwrap();
    let folders = t.dir.path().join("restored");
    let out = obk_ok(
        &t,
        place,
        &[
            "restore",
            "--folders",
            "--folders-to",
            folders.to_str().unwrap(),
        ],
    )
    .await;
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    for (name, files) in &fp.folders {
        assert_eq!(
            &hash_tree(&folders.join(name)).unwrap(),
            files,
            "folder {name}"
        );
    }
    obk_ok(&t, place, &["drill"]).await;
    let sftp = b.sftp.as_ref().unwrap();

    // Many connections of one process at once (on this 2-core machine the engine's own
    // parallelism stays below sshd's limit): each plain-object read logs in on its own, and
    // the logins are queued process-wide below `MaxStartups`, so none is dropped.
    let p = place.unwrap();
    let options: std::collections::BTreeMap<String, String> = p.options.iter().cloned().collect();
    let reads: Vec<_> = (0..24)
        .map(|_| {
            let storage = octobackup_repo::Storage::new(p.location.clone(), options.clone());
            std::thread::spawn(move || storage.get("config"))
        })
        .collect();
    for r in reads {
        let got = r.join().unwrap();
        assert!(matches!(got, Ok(Some(_))), "a read failed: {got:?}");
    }
    octobackup_repo::close_ssh_connections();
    let log = std::fs::read_to_string(sftp.server.dir.path().join("sshd.log")).unwrap();
    assert!(!log.contains("MaxStartups"), "sshd dropped logins: {log}");
    let left = ssh_leftovers(sftp, None).await;
    assert!(left.is_empty(), "ssh leftovers: {left:#?}");
}

/// Runs each case on its own task, so that one failing case does not hide the others.
async fn case<F, Fut>(b: &Arc<Backend>, name: &str, f: F, failures: &mut Vec<String>)
where
    F: FnOnce(Arc<Backend>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    if let Err(e) = tokio::spawn(f(b.clone())).await {
        let why = match e.try_into_panic() {
            Ok(p) => p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default(),
            Err(e) => e.to_string(),
        };
        failures.push(format!("{:?} / {name}: {why}", b.kind));
    }
}

async fn suite(kind: Kind) {
    let b = Arc::new(
        tokio::task::spawn_blocking(move || {
            let b = Backend::start(kind);
            // The wrong-credentials cases need moto's strict twin: started here, off the
            // runtime's threads.
            if let Some(s3) = &b.s3 {
                s3.strict();
            }
            b
        })
        .await
        .unwrap(),
    );
    let mut failures = Vec::new();
    case(&b, "full cycle", full_cycle, &mut failures).await;
    case(&b, "wrong credentials", wrong_credentials, &mut failures).await;
    case(&b, "missing bucket", missing_bucket, &mut failures).await;
    case(
        &b,
        "init from the command line",
        init_from_the_command_line,
        &mut failures,
    )
    .await;
    drop(b); // the server stops here (and on any panic above)
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A server for one fault case of `kind`: the shared one (S3, Azure: moto and Azurite take
/// seconds to start), or for SFTP a fresh sshd per case as before (it starts in well under a
/// second, and each case's ssh sessions and control folders then stay its own).
async fn server_for_case(kind: Kind, shared: &Arc<Backend>) -> Arc<Backend> {
    if kind != Kind::Sftp {
        return shared.clone();
    }
    Arc::new(
        tokio::task::spawn_blocking(move || Backend::start(kind))
            .await
            .unwrap(),
    )
}

/// The fault cases of one backend: each case behind a gate of its own, in front of one server
/// for all of them (see [`server_for_case`]).
async fn storage_stopped(kind: Kind) {
    let shared = Arc::new(
        tokio::task::spawn_blocking(move || Backend::start(kind))
            .await
            .unwrap(),
    );
    let mut failures = Vec::new();
    // Hanging and stalling need a gate (a remote server); stalled bodies an HTTP one.
    let outages: &[Outage] = match kind {
        Kind::Local => &[Outage::Refused],
        Kind::Sftp => &[Outage::Refused, Outage::Hangs],
        _ => &[Outage::Refused, Outage::Hangs, Outage::StallsBodies],
    };
    for &how in outages {
        if let Err(e) = tokio::spawn(stopped_before_the_run(
            server_for_case(kind, &shared).await,
            how,
        ))
        .await
        {
            failures.push(format!("{kind:?} / stopped before the run ({how:?}): {e}"));
        }
        if how == Outage::StallsBodies {
            continue;
        }
        if let Err(e) = tokio::spawn(stopped_during_the_run(
            server_for_case(kind, &shared).await,
            how,
        ))
        .await
        {
            failures.push(format!("{kind:?} / stopped during the run ({how:?}): {e}"));
        }
        if let Err(e) = tokio::spawn(stopped_inside_the_window(
            server_for_case(kind, &shared).await,
            how,
        ))
        .await
        {
            failures.push(format!(
                "{kind:?} / stopped inside the window ({how:?}): {e}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_folder_stopped() {
    storage_stopped(Kind::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_on_moto_stopped() {
    storage_stopped(Kind::S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_on_ceph_rgw_stopped() {
    storage_stopped(Kind::Ceph).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_blob_on_azurite_stopped() {
    storage_stopped(Kind::Azure).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sftp_on_openssh_stopped() {
    storage_stopped(Kind::Sftp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sftp_backup_stopped_by_sigterm_leaves_no_ssh() {
    sftp_stopped_by_sigterm().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sftp_restore_and_drill_of_many_packs_on_a_stock_sshd() {
    sftp_restore_of_many_packs().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sftp_restore_and_drill_of_a_realistic_set_on_a_stock_sshd() {
    sftp_restore_of_a_realistic_set().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_folder_conforms() {
    suite(Kind::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_on_moto_conforms() {
    suite(Kind::S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_on_ceph_rgw_conforms() {
    suite(Kind::Ceph).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_blob_on_azurite_conforms() {
    suite(Kind::Azure).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sftp_on_openssh_conforms() {
    suite(Kind::Sftp).await;
}

// ---- Copies the backup host cannot delete: S3 Object Lock and append-only credentials ----

/// The `snapshots/` objects of the repository at `prefix` in `bucket`, through the owner's key.
fn snapshot_objects(ceph: &servers::Ceph, bucket: &str, prefix: &str) -> Vec<String> {
    let storage = octobackup_repo::Storage::new(
        format!("s3:{}/{bucket}/{prefix}", ceph.endpoint()),
        [
            ("access_key_id".to_string(), ceph.access_key.clone()),
            ("secret_access_key".to_string(), ceph.secret_key.clone()),
        ]
        .into(),
    );
    storage.list("snapshots").unwrap()
}

/// Delete markers under `prefix` in a versioned bucket (ListObjectVersions).
async fn delete_markers(ceph: &Arc<servers::Ceph>, bucket: &str, prefix: &str) -> usize {
    let (ceph, bucket, prefix) = (ceph.clone(), bucket.to_string(), prefix.to_string());
    let r = tokio::task::spawn_blocking(move || {
        ceph.owner(&bucket)
            .send(
                "GET",
                "",
                &[("versions", ""), ("prefix", &prefix)],
                &[],
                Vec::new(),
            )
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let body = &r.body;
    assert!(!body.contains("<IsTruncated>true"), "{body}");
    body.matches("<DeleteMarker>").count()
}

/// Two sets in a bucket created with Object Lock (governance mode, 3 days' default retention):
/// doctor reports the lock; `forget --set` of the older set is refused with the date and
/// nothing is removed; a policy that would drop it leaves it alone and says until when; the
/// set still restores byte-identical and stock restic checks the repository. Ceph itself
/// refuses to delete a locked version: the lock is real.
async fn object_lock_on_ceph() {
    let b = tokio::task::spawn_blocking(|| Backend::start(Kind::Ceph))
        .await
        .unwrap();
    let ceph = b.ceph.clone().unwrap();
    let bucket = "object-locked";
    let lock = octobackup_repo::ObjectLock {
        mode: "GOVERNANCE".into(),
        days: Some(3),
    };
    {
        let ceph = ceph.clone();
        tokio::task::spawn_blocking(move || ceph.owner(bucket).create_bucket(Some(&lock)))
            .await
            .unwrap()
            .unwrap();
    }
    let mut t = TestLab::start().await;
    let place = b.place(bucket, "lab");
    let place = place.as_ref();
    use_place(&t, place);
    let out = obk_ok(&t, place, &["init"]).await;
    assert!(
        stdout(&out).contains(
            "the bucket has Object Lock (GOVERNANCE mode, 3 day(s) default retention): recorded"
        ),
        "{}",
        stdout(&out)
    );
    obk_ok(&t, place, &["backup"]).await;
    let first = t.lab.fingerprint().await.unwrap();
    t.lab.churn(1).await.unwrap();
    obk_ok(&t, place, &["backup"]).await;

    let out = obk(&t, place, &["doctor"]).await;
    assert!(
        stdout(&out).contains("object-lock")
            && stdout(&out).contains("GOVERNANCE mode, 3 day(s) default retention"),
        "doctor does not report the lock: {}{}",
        stdout(&out),
        stderr(&out)
    );

    let out = obk_ok(&t, place, &["--json", "snapshots"]).await;
    let sets: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sets.len(), 2, "{sets:#?}");
    let older = sets[0]["set_id"].as_str().unwrap().to_string();
    let snapshots_before = snapshot_objects(&ceph, bucket, "lab");

    // Named: refused as a whole, before anything is removed.
    let out = obk(&t, place, &["forget", "--set", &older, "--prune"]).await;
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert_one_clear_line(
        &out,
        &[
            &format!("cannot forget set {older}"),
            "Object Lock",
            "GOVERNANCE mode",
            "until",
            "nothing was removed",
        ],
    );
    // By policy: left alone, with the date; the prune keeps the young packs.
    let out = obk_ok(
        &t,
        place,
        &["--json", "forget", "--keep-last", "1", "--prune"],
    )
    .await;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let inst = &report["instances"][0];
    assert_eq!(inst["dropped"].as_array().unwrap().len(), 0, "{report:#}");
    let held = &inst["left_alone"][0];
    assert_eq!(held["set_id"], older.as_str(), "{report:#}");
    assert!(
        held["reasons"]
            .to_string()
            .contains("Object Lock (GOVERNANCE mode) until"),
        "{report:#}"
    );
    assert_eq!(report["prune"]["locked_days"], 3, "{report:#}");
    // The packs the seal of each set left unused (its parts' trees) are younger than the lock:
    // kept, counted as kept, none counted removed, and no delete marker hides one.
    assert_eq!(report["prune"]["packs_removed"], 0, "{report:#}");
    assert_eq!(report["prune"]["packs_repacked"], 0, "{report:#}");
    assert!(
        report["prune"]["packs_kept_locked"].as_u64() >= Some(1),
        "{report:#}"
    );
    assert_eq!(delete_markers(&ceph, bucket, "lab/data/").await, 0);
    // doctor, forget and prune each asked whether deleting is allowed: the probe left nothing.
    assert_eq!(
        delete_markers(&ceph, bucket, "lab/octobackup-delete-probe").await,
        0
    );

    // Nothing was lost.
    assert_eq!(snapshot_objects(&ceph, bucket, "lab"), snapshots_before);
    let out = obk_ok(&t, place, &["--json", "snapshots"]).await;
    let after: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(after.len(), 2, "{after:#?}");
    let folders = t.dir.path().join("restored-older");
    obk_ok(
        &t,
        place,
        &[
            "restore",
            &older,
            "--folders",
            "--folders-to",
            folders.to_str().unwrap(),
        ],
    )
    .await;
    for (name, files) in &first.folders {
        assert_eq!(
            &hash_tree(&folders.join(name)).unwrap(),
            files,
            "folder {name}"
        );
    }
    let out = b.restic(&t, place, &["check", "--read-data"]).unwrap();
    assert!(
        out.status.success(),
        "restic check: {}{}",
        stdout(&out),
        stderr(&out)
    );

    // Ceph refuses to delete a locked version outright, whoever asks.
    let key = format!("lab/snapshots/{}", snapshots_before[0]);
    let (head, delete) = tokio::task::spawn_blocking(move || {
        let s3 = ceph.owner(bucket);
        let head = s3.send("HEAD", &key, &[], &[], Vec::new()).unwrap();
        let version = head.header("x-amz-version-id").unwrap().to_string();
        let delete = s3
            .send("DELETE", &key, &[("versionId", &version)], &[], Vec::new())
            .unwrap();
        (head, delete)
    })
    .await
    .unwrap();
    assert_eq!(
        head.header("x-amz-object-lock-mode"),
        Some("GOVERNANCE"),
        "{head:?}"
    );
    assert_eq!(
        delete.status, 403,
        "a locked version was deleted: {delete:?}"
    );
    assert_eq!(delete.code(), Some("AccessDenied"), "{delete:?}");

    // The bucket's owner shortens the default retention: doctor fails, naming what was recorded.
    let ceph = b.ceph.clone().unwrap();
    tokio::task::spawn_blocking(move || {
        let shorter = octobackup_repo::ObjectLock {
            mode: "GOVERNANCE".into(),
            days: Some(1),
        };
        ceph.owner(bucket).create_bucket(Some(&shorter)).unwrap();
    })
    .await
    .unwrap();
    let out = obk(&t, place, &["doctor"]).await;
    assert_eq!(out.status.code(), Some(8), "{}", stdout(&out));
    for part in [
        "the bucket's Object Lock is now GOVERNANCE mode, 1 day(s) default retention",
        "it had GOVERNANCE mode, 3 day(s) default retention when the repository was made",
        "someone changed the bucket's settings",
    ] {
        assert!(
            stdout(&out).contains(part),
            "`{part}` missing: {}",
            stdout(&out)
        );
    }
}

/// The bucket policy of an append-only repository (README, "Copies the backup host cannot
/// delete"): `user` may read, list and add, and is denied every delete; `admin` (the bucket's
/// owner, kept off the backup host) may do everything, also with the objects `user` wrote
/// (RGW, as S3 without "bucket owner enforced", leaves them owned by their writer).
pub(crate) fn append_only_policy(bucket: &str, user: &str, admin: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"AdminDoesAll","Effect":"Allow","Principal":{{"AWS":["arn:aws:iam:::user/{admin}"]}},"Action":["s3:*"],"Resource":["arn:aws:s3:::{bucket}","arn:aws:s3:::{bucket}/*"]}},{{"Sid":"BackupHostAdds","Effect":"Allow","Principal":{{"AWS":["arn:aws:iam:::user/{user}"]}},"Action":["s3:ListBucket","s3:GetObject","s3:PutObject","s3:GetBucketObjectLockConfiguration"],"Resource":["arn:aws:s3:::{bucket}","arn:aws:s3:::{bucket}/*"]}},{{"Sid":"BackupHostNeverDeletes","Effect":"Deny","Principal":{{"AWS":["arn:aws:iam:::user/{user}"]}},"Action":["s3:DeleteObject","s3:DeleteObjectVersion"],"Resource":["arn:aws:s3:::{bucket}/*"]}}]}}"#
    )
}

/// Credentials that may add but not delete (a user of its own, a bucket policy denying
/// s3:DeleteObject): backups work; forget and prune are refused with one line saying the
/// credentials cannot delete, exit 5, and nothing is lost; the owner's credentials can.
async fn append_only_on_ceph() {
    let b = tokio::task::spawn_blocking(|| Backend::start(Kind::Ceph))
        .await
        .unwrap();
    let ceph = b.ceph.clone().unwrap();
    let bucket = "append-only";
    let (key, secret) = {
        let ceph = ceph.clone();
        tokio::task::spawn_blocking(move || {
            let owner = ceph.owner(bucket);
            owner.create_bucket(None).unwrap();
            let user = ceph.add_user("backup-host");
            let policy = append_only_policy(bucket, "backup-host", "octobackup");
            let r = owner
                .send("PUT", "", &[("policy", "")], &[], policy.into_bytes())
                .unwrap();
            assert!(r.status < 300, "PutBucketPolicy: {r:?}");
            user
        })
        .await
        .unwrap()
    };
    let mut t = TestLab::start().await;
    let mut place = b.place(bucket, "lab").unwrap();
    place.env = vec![
        ("AWS_ACCESS_KEY_ID".into(), key),
        ("AWS_SECRET_ACCESS_KEY".into(), secret),
    ];
    let place = Some(&place);
    use_place(&t, place);
    obk_ok(&t, place, &["init"]).await;
    obk_ok(&t, place, &["backup"]).await;
    t.lab.churn(1).await.unwrap();
    let out = obk_ok(&t, place, &["backup"]).await;
    assert!(
        stderr(&out).contains("the credentials may add but not delete"),
        "{}",
        stderr(&out)
    );
    let out = obk(&t, place, &["doctor"]).await;
    assert!(
        stdout(&out).contains("append-only"),
        "doctor does not say append-only: {}{}",
        stdout(&out),
        stderr(&out)
    );
    let before = snapshot_objects(&ceph, bucket, "lab");
    assert!(!before.is_empty());

    // A backup here cannot remove its set's part snapshots once the set is complete: they stay
    // as leftovers, young for a day, which forget would leave alone (a run may be going).
    for args in [
        &[
            "forget",
            "--keep-last",
            "1",
            "--incomplete-grace",
            "1s",
            "--prune",
        ][..],
        &["prune"],
        &["prune", "--instant"],
    ] {
        let out = obk(&t, place, args).await;
        assert_eq!(out.status.code(), Some(5), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).is_empty(), "{args:?}: {}", stdout(&out));
        assert_one_clear_line(
            &out,
            &[
                &format!("{} refused", args[0]),
                "may add but not delete",
                "s3:DeleteObject",
                "nothing was removed",
            ],
        );
    }
    assert_eq!(snapshot_objects(&ceph, bucket, "lab"), before);
    let owner = b.place(bucket, "lab");
    let out = b.restic(&t, owner.as_ref(), &["check"]).unwrap();
    assert!(out.status.success(), "restic check: {}", stderr(&out));

    // Where the deleting credentials are kept, retention works.
    let out = obk_ok(
        &t,
        owner.as_ref(),
        &[
            "forget",
            "--keep-last",
            "1",
            "--incomplete-grace",
            "1s",
            "--prune",
        ],
    )
    .await;
    assert!(
        stdout(&out).contains("dropped 1 set(s)"),
        "{}",
        stdout(&out)
    );
    assert!(snapshot_objects(&ceph, bucket, "lab").len() < before.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_object_lock_on_ceph_rgw_keeps_sets_until_their_date() {
    object_lock_on_ceph().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_append_only_credentials_on_ceph_rgw_cannot_forget_or_prune() {
    append_only_on_ceph().await;
}

// ---- Throughput: each real server against the local folder, in the same run ----

/// Backup and restore wall times of the same lab (the small lab plus 48 MiB of incompressible
/// artifacts, in a few dozen packs) on each backend, as ratios to the local folder measured in
/// the same run. A measurement, not a test: nothing is asserted on the times. Run it with
/// `cargo test -p octobackup --test e2e backends::throughput -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement (prints a table), run on demand"]
async fn throughput_against_the_local_folder() {
    let mut rows: Vec<(String, f64, f64)> = Vec::new();
    for kind in [Kind::Local, Kind::S3, Kind::Ceph, Kind::Azure, Kind::Sftp] {
        let b = tokio::task::spawn_blocking(move || Backend::start(kind))
            .await
            .unwrap();
        let t = TestLab::start().await;
        let place = b.place(BUCKET, "throughput");
        let place = place.as_ref();
        use_place(&t, place);
        let extra = t.lab.info().folders.artifacts.join("throughput");
        std::fs::create_dir_all(&extra).unwrap();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for i in 0..192 {
            let mut data = vec![0u8; 256 * 1024];
            for chunk in data.chunks_mut(8) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                chunk.copy_from_slice(&seed.to_le_bytes()[..chunk.len()]);
            }
            std::fs::write(extra.join(format!("artifact-{i:03}.bin")), data).unwrap();
        }
        obk_ok(&t, place, &["init"]).await;
        let start = std::time::Instant::now();
        obk_ok(&t, place, &["backup"]).await;
        let backup = start.elapsed().as_secs_f64();
        let folders = t.dir.path().join("restored");
        let start = std::time::Instant::now();
        obk_ok(
            &t,
            place,
            &[
                "restore",
                "--folders",
                "--folders-to",
                folders.to_str().unwrap(),
            ],
        )
        .await;
        let restore = start.elapsed().as_secs_f64();
        rows.push((format!("{kind:?}"), backup, restore));
    }
    let (lb, lr) = (rows[0].1, rows[0].2);
    eprintln!("| backend | backup (s) | x local | restore --folders (s) | x local |");
    eprintln!("|---|---|---|---|---|");
    for (name, b, r) in &rows {
        eprintln!(
            "| {name} | {b:.2} | {:.2} | {r:.2} | {:.2} |",
            b / lb,
            r / lr
        );
    }
}
