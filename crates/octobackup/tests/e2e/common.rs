//! A lab per test and the real octobackup binary run against it.

use octobackup_lab::{Lab, LabEvent, LabOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct TestLab {
    pub lab: Lab,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

/// The product binary, `octobackup`.
pub fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_octobackup"))
}

/// The lab binary, `octobackup-lab` (demo, bench, the stand-ins for `Octopus.Server`).
pub fn lab_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_octobackup-lab"))
}

impl TestLab {
    pub async fn start() -> TestLab {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut LabOptions)) -> TestLab {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = LabOptions::new(dir.path());
        tweak(&mut opts);
        let tls = opts.tls;
        let lab = Lab::start(opts).await.expect("lab starts");
        let config = octobackup::lab::lab_config(lab.info(), tls, &lab_exe()).unwrap();
        let path = dir.path().join("octobackup.toml");
        std::fs::write(&path, config.to_toml()).unwrap();
        TestLab {
            lab,
            dir,
            config: path,
        }
    }

    /// Rewrites the config through a closure over its TOML value.
    pub fn edit_config(&self, f: impl FnOnce(&mut toml::Table)) {
        let mut t: toml::Table =
            toml::from_str(&std::fs::read_to_string(&self.config).unwrap()).unwrap();
        f(&mut t);
        std::fs::write(&self.config, toml::to_string(&t).unwrap()).unwrap();
    }

    pub fn instance_table(t: &mut toml::Table) -> &mut toml::Table {
        t["instance"].as_table_mut().unwrap()["OctopusServer"]
            .as_table_mut()
            .unwrap()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(exe());
        c.arg("--config").arg(&self.config).args(args);
        c.env_remove("OCTOBACKUP_PASSWORD");
        c
    }

    /// Runs octobackup to completion on a blocking thread (the lab keeps serving meanwhile).
    pub async fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[]).await
    }

    /// As [`TestLab::run`], with these variables in its environment (a storage's keys).
    pub async fn run_env(&self, args: &[&str], env: &[(String, String)]) -> Output {
        let mut c = self.command(args);
        c.envs(env.iter().cloned());
        tokio::task::spawn_blocking(move || c.output().unwrap())
            .await
            .unwrap()
    }

    /// Runs octobackup and asserts it succeeded (its output in the failure message).
    pub async fn ok(&self, args: &[&str]) -> Output {
        self.ok_env(args, &[]).await
    }

    /// As [`TestLab::ok`], with these variables in its environment (a storage's keys).
    pub async fn ok_env(&self, args: &[&str], env: &[(String, String)]) -> Output {
        let out = self.run_env(args, env).await;
        assert!(
            out.status.success(),
            "octobackup {} failed ({}): {}{}",
            args.join(" "),
            out.status,
            stdout(&out),
            stderr(&out)
        );
        out
    }

    /// Runs octobackup and asserts it failed with exit code `code`, saying `says` on stderr.
    pub async fn fails(&self, args: &[&str], code: i32, says: &str) -> Output {
        let out = self.run(args).await;
        // stderr only: a run that wrongly succeeded may have printed a secret on stdout.
        assert_eq!(
            out.status.code(),
            Some(code),
            "octobackup {}: {}",
            args.join(" "),
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(says),
            "octobackup {} does not say `{says}`: {}",
            args.join(" "),
            stderr(&out)
        );
        out
    }

    /// Runs octobackup (give it `--json`), asserts it succeeded and reads what it printed.
    pub async fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.ok(args).await;
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "octobackup {} printed no JSON ({e}): {}",
                args.join(" "),
                stdout(&out)
            )
        })
    }

    /// Creates the test's repository with a key that is cheap to open (the lab's
    /// `init_test_repository`): every later command opens it in about a millisecond instead of
    /// 0.3 s of scrypt. A repository that is not a local folder, and the tests of `init` and of
    /// keys, go through `octobackup init` (`t.ok(&["init"])`), whose key has scrypt's recommended
    /// cost.
    pub async fn init(&self) {
        let config = self.config.clone();
        let made = tokio::task::spawn_blocking(move || {
            octobackup::lab::init_test_repository(&config).expect("the test repository is created")
        })
        .await
        .unwrap();
        if !made {
            let out = self.run(&["init"]).await;
            assert!(
                out.status.success(),
                "init failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    pub fn repo_dir(&self) -> PathBuf {
        self.dir.path().join("repository")
    }

    pub fn repo_password_file(&self) -> PathBuf {
        self.dir.path().join("secrets").join("repository-password")
    }

    pub fn events(&self) -> Vec<LabEvent> {
        self.lab.events()
    }

    /// The stock restic CLI on our repository (password through a file, never argv).
    pub fn restic(&self, args: &[&str]) -> Output {
        let out = Command::new("restic")
            .arg("-r")
            .arg(self.repo_dir())
            .args(args)
            .env("RESTIC_PASSWORD_FILE", self.repo_password_file())
            .env("RESTIC_CACHE_DIR", self.dir.path().join("restic-cache"))
            .output();
        match out {
            Ok(o) => o,
            Err(e) => panic!(
                "stock restic is needed for this test ({e}): apt-get install restic (scripts/test.sh does)"
            ),
        }
    }

    pub async fn sets(&self) -> Vec<serde_json::Value> {
        let out = self.run(&["--json", "snapshots"]).await;
        assert!(
            out.status.success(),
            "snapshots failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap()
    }

    /// Waits (bounded) until the lab's event log shows an event of this kind.
    pub async fn wait_for_event(&self, kind: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while seqs(&self.events(), kind).is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "no {kind} event within a minute"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Starts `backup` with SQL Server slowed down and returns once the database backup has begun,
    /// so a test can interrupt the run inside the window.
    pub async fn spawn_slow_backup(&self, stderr: std::process::Stdio) -> std::process::Child {
        self.lab.sql().set_backup_rate(Some(256 * 1024));
        let child = self
            .command(&["backup"])
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        self.wait_for_event("backup_started").await;
        child
    }

    /// Sets the instance's `[wait]` budgets: the wait for running tasks and the whole window's.
    pub fn set_wait(&self, timeout: &str, max_window: &str) {
        self.edit_config(|c| {
            let w = Self::instance_table(c)
                .entry("wait")
                .or_insert_with(|| toml::Value::Table(Default::default()))
                .as_table_mut()
                .unwrap();
            w.insert("timeout".into(), timeout.into());
            w.insert("max_window".into(), max_window.into());
        });
    }

    /// Points the config at another repository (a folder and its password file).
    pub fn use_repository(&self, location: &Path, password_file: &Path) {
        self.edit_config(|c| {
            let r = c["repository"].as_table_mut().unwrap();
            r.insert("location".into(), location.display().to_string().into());
            r.insert(
                "password_file".into(),
                password_file.display().to_string().into(),
            );
        });
    }

    /// The run journal of the lab's instance (what a killed run left for `recover`).
    pub fn journal_path(&self) -> PathBuf {
        self.dir
            .path()
            .join("state")
            .join("OctopusServer.maintenance.json")
    }

    /// Runs a batch as the lab's sysadmin (`sa`), as a DBA or a maintenance plan would.
    pub async fn as_dba(&self, sql: &str) {
        use tokio_util::compat::TokioAsyncWriteCompatExt;
        let info = self.lab.info();
        let addr: std::net::SocketAddr = info.sql_address.parse().unwrap();
        let mut config = tiberius::Config::new();
        config.host(addr.ip().to_string());
        config.port(addr.port());
        config.authentication(tiberius::AuthMethod::sql_server(
            &info.admin_sql_login,
            &info.admin_sql_password,
        ));
        config.trust_cert();
        config.encryption(tiberius::EncryptionLevel::NotSupported);
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut client = tiberius::Client::connect(config, tcp.compat_write())
            .await
            .unwrap();
        client
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .into_results()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Plants a staging folder for `set_id` as a run leaves it: its marker
    /// (`octobackup-run.json`, here `marker`) and a `.bak`. Returns the folder.
    pub fn plant_staging_folder(
        &self,
        set_id: &str,
        marker: &serde_json::Value,
        bak_name: &str,
        bak: &[u8],
    ) -> PathBuf {
        let dir = self
            .lab
            .info()
            .staging_dir
            .join(format!("octobackup-{set_id}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("octobackup-run.json"), marker.to_string()).unwrap();
        std::fs::write(dir.join(bak_name), bak).unwrap();
        dir
    }

    /// Maintenance mode off as found (the last change put it off, and it is off now) and no set
    /// complete: what every stopped or failed run must leave.
    pub async fn assert_off_and_no_set_complete(&self) {
        let changes = maintenance_changes(&self.events());
        assert_eq!(changes.last().map(|c| c.1), Some(false), "{changes:?}");
        assert!(!self.lab.octopus().maintenance());
        let sets = self.sets().await;
        assert!(sets.iter().all(|s| s["complete"] != true), "{sets:#?}");
    }

    /// The content digest of one of the lab's databases (its data file), `None` when SQL Server
    /// has no such database.
    pub fn database_digest_if_there(&self, database: &str) -> Option<String> {
        let (data, _) = self.lab.sql().database_files(database)?;
        Some(hex::encode(
            octobackup_lab::sqlserver_files::image::content_digest(&data).unwrap(),
        ))
    }

    /// As [`TestLab::database_digest_if_there`], for a database that must be there.
    pub fn database_digest(&self, database: &str) -> String {
        self.database_digest_if_there(database)
            .unwrap_or_else(|| panic!("no database {database}: {:?}", self.lab.sql().databases()))
    }

    pub fn staging_files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.lab.info().staging_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }
}

/// Sends `signal` (`TERM`, `INT`, `KILL`) to a running octobackup and waits for its output.
pub async fn signal_and_wait(child: std::process::Child, signal: &str) -> Output {
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal} {}", child.id());
    tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap()
}

/// Sends SIGTERM (a service manager's stop) to a running octobackup and waits for its output.
pub async fn sigterm(child: std::process::Child) -> Output {
    signal_and_wait(child, "TERM").await
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// (seq of first event of kind, seq of last) helpers for ordering assertions.
pub fn seqs(events: &[LabEvent], kind: &str) -> Vec<u64> {
    events
        .iter()
        .filter(|e| e.kind == kind)
        .map(|e| e.seq)
        .collect()
}

pub fn maintenance_changes(events: &[LabEvent]) -> Vec<(u64, bool)> {
    events
        .iter()
        .filter(|e| e.kind == "maintenance_changed")
        .map(|e| (e.seq, e.detail["on"].as_bool().unwrap()))
        .collect()
}

/// Asserts every database backup in the log ran entirely inside a maintenance window and that
/// maintenance mode ended off.
pub fn assert_backups_inside_window(events: &[LabEvent]) {
    let changes = maintenance_changes(events);
    assert!(
        !changes.is_empty(),
        "maintenance mode never changed: {events:#?}"
    );
    assert!(
        !changes.last().unwrap().1,
        "maintenance mode left on: {changes:?}"
    );
    for started in seqs(events, "backup_started") {
        let finished = seqs(events, "backup_finished")
            .into_iter()
            .find(|s| *s > started)
            .expect("backup finished");
        let on_before = changes
            .iter()
            .rev()
            .find(|(s, _)| *s < started)
            .map(|c| c.1);
        assert_eq!(
            on_before,
            Some(true),
            "backup {started} started outside the window: {changes:?}"
        );
        let off_between = changes
            .iter()
            .any(|(s, on)| *s > started && *s < finished && !on);
        assert!(
            !off_between,
            "maintenance went off during backup {started}..{finished}"
        );
    }
}

pub fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}
