//! `octobackup report` and `backup --report`, rendered by a real browser: headless Chromium
//! (Debian's `chromium`) driven through the DevTools protocol over `--remote-debugging-pipe`
//! (NUL-separated JSON on file descriptors 3 and 4: no port, no websocket, no extra crate). The
//! page must render without a console error, fetch nothing but itself, and show the repository's
//! numbers; a screenshot is kept under target/test-artifacts/report/.

use crate::common::*;
use crate::sets::*;
use octobackup::backupset::check::{Check, Status};
use octobackup::backupset::manifest::{FolderInfo, Manifest, WindowInfo};
use octobackup::backupset::{TAG, TAG_COMPLETE, tag_instance, tag_set};
use octobackup::report::html;
use octobackup_repo::{Repo, SourceItem, Zeroizing};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A complete set of an earlier night, written straight into the repository with its manifest.
fn add_night(repo: &Repo, set_id: &str, time: chrono::DateTime<chrono::Local>, window: f64) {
    let start = time.with_timezone(&chrono::Utc);
    let manifest = Manifest {
        format: 1,
        set_id: set_id.into(),
        instance: "OctopusServer".into(),
        hostname: "octopus-node-a".into(),
        started: Some(start),
        finished: Some(start + chrono::Duration::seconds(95)),
        window: WindowInfo {
            seconds: window,
            changed_by_octobackup: true,
            ..Default::default()
        },
        steps: vec![Check {
            name: "BACKUP DATABASE".into(),
            status: Status::Pass,
            started: None,
            seconds: Some(30.0),
            detail: None,
            fix: None,
        }],
        folders: vec![FolderInfo {
            name: "Packages".into(),
            source_path: "/octopus/Packages".into(),
            files: 3,
            bytes: 4096,
        }],
        complete: true,
        ..Default::default()
    };
    let tags = vec![
        TAG.to_string(),
        tag_set(set_id),
        tag_instance("OctopusServer"),
        TAG_COMPLETE.to_string(),
    ];
    let items = vec![
        SourceItem::Memory {
            target: octobackup::backupset::MANIFEST_PATH.into(),
            bytes: Zeroizing::new(serde_json::to_vec(&manifest).unwrap()),
            mode: 0o644,
        },
        SourceItem::Memory {
            target: "/database/OctopusDeploy.bak".into(),
            bytes: Zeroizing::new(noise(64 * 1024, window as u64)),
            mode: 0o644,
        },
    ];
    repo.backup(items, &opts(tags, time), &octobackup_repo::NoProgress)
        .unwrap();
}

/// Where test artifacts go: target/test-artifacts/<what> (beside target/debug).
fn artifacts(what: &str) -> PathBuf {
    let target = exe()
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    let dir = target.join("test-artifacts").join(what);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_renders_in_chromium_with_the_repositorys_numbers_and_fetches_nothing() {
    let t = TestLab::start().await;
    t.init().await;
    t.edit_config(|c| {
        let mut r = toml::Table::new();
        r.insert("keep_last".into(), 2.into());
        c.insert("retention".into(), r.into());
    });
    // Three earlier nights: two complete sets and a run that did not finish.
    let now = chrono::Local::now();
    let (old, older) = ("20200101T020000Z-aaaaaa", "20200102T020000Z-bbbbbb");
    let broken = "20200103T020000Z-cccccc";
    {
        let repo = open_repo(&t);
        add_night(&repo, old, now - chrono::Duration::days(3), 11.0);
        add_night(&repo, older, now - chrono::Duration::days(2), 14.5);
        add_part(
            &repo,
            broken,
            now - chrono::Duration::days(1),
            b"half a night",
        );
    }
    // Tonight, for real: the backup writes the report, the drill is recorded, the report again.
    let dir = artifacts("report");
    let after_backup = dir.join("after-backup.html");
    t.ok(&["backup", "--report", after_backup.to_str().unwrap()])
        .await;
    let first = std::fs::read_to_string(&after_backup).unwrap();
    assert!(first.contains("Never drilled"), "before the drill");
    t.ok(&["drill"]).await;
    let page = dir.join("report.html");
    let out = t
        .ok(&["--json", "report", "--out", page.to_str().unwrap()])
        .await;
    let written: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(written["instances"][0]["sets"], 4, "{written}");

    // The drill is kept in the repository in restic's own format.
    let restic = t.restic(&["snapshots", "--json", "--tag", "octobackup-drill"]);
    let drills: Value = serde_json::from_slice(&restic.stdout).unwrap();
    assert_eq!(drills.as_array().unwrap().len(), 1, "{drills}");

    // What the page must say, from the repository itself.
    let show = t.ok(&["--json", "show", "latest"]).await;
    let manifest: Value = serde_json::from_slice(&show.stdout).unwrap();
    let tonight = manifest["set_id"].as_str().unwrap().to_string();
    let window = manifest["window"]["seconds"].as_f64().unwrap();
    let sets = t.ok(&["--json", "snapshots"]).await;
    let sets: Value = serde_json::from_slice(&sets.stdout).unwrap();
    let tonight_time = sets
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["set_id"] == tonight.as_str())
        .unwrap()["time"]
        .as_str()
        .unwrap()
        .to_string();

    let html_text = std::fs::read_to_string(&page).unwrap();
    let mut browser = cdp::Browser::launch();
    let seen = browser.open(&page);
    let dom = browser.eval(
        r#"(() => {
        const q = (s) => document.querySelector(s);
        const inst = 'section[data-instance="OctopusServer"] ';
        return {
          generated: q('#generated').getAttribute('datetime'),
          total: q(inst + '.sets-total').textContent,
          complete: q(inst + '.sets-complete').textContent,
          setAge: q(inst + '.newest-set-age').textContent,
          setAgeSeconds: q(inst + '.newest-set-age').dataset.seconds,
          drillAge: q(inst + '.newest-drill-age').dataset.seconds,
          windows: Object.fromEntries([...document.querySelectorAll(inst + 'tr.set')].map(
              (r) => [r.dataset.set, r.querySelector('td.window').textContent])),
          drillCell: [...document.querySelectorAll(inst + 'tr.set')].map((r) => r.textContent).join('\n'),
          dropNow: [...document.querySelectorAll(inst + '.drop-now li')].map((l) => l.textContent),
          dropNext: [...document.querySelectorAll(inst + '.drop-next li')].map((l) => l.textContent),
          charts: document.querySelectorAll(inst + 'svg rect').length,
          width: document.documentElement.scrollWidth,
        };
      })()"#,
    );
    let png = browser.screenshot();
    browser.close();
    let shot = dir.join("report.png");
    std::fs::write(&shot, png).unwrap();
    eprintln!("screenshot: {}", shot.display());

    // It rendered cleanly and fetched nothing but itself.
    assert!(seen.errors.is_empty(), "console errors: {:?}", seen.errors);
    let file_url = format!("file://{}", page.display());
    assert_eq!(seen.requests, [file_url], "requests other than the page");

    // The numbers.
    assert_eq!(dom["total"], "4", "{dom}");
    assert_eq!(dom["complete"], "3", "{dom}");
    let generated =
        chrono::DateTime::parse_from_rfc3339(dom["generated"].as_str().unwrap()).unwrap();
    let taken = chrono::DateTime::parse_from_rfc3339(&tonight_time).unwrap();
    let age = (generated - taken).num_seconds();
    assert_eq!(dom["setAgeSeconds"], age.to_string(), "{dom}");
    assert_eq!(dom["setAge"], html::age(age), "{dom}");
    assert_ne!(dom["drillAge"], "", "the drill is on the page: {dom}");
    assert_eq!(dom["windows"][older], "14.5 s", "{dom}");
    assert_eq!(
        dom["windows"][tonight.as_str()],
        html::duration(window),
        "{dom}"
    );
    assert_eq!(dom["windows"][broken], "-", "{dom}");
    assert!(
        dom["drillCell"].as_str().unwrap().contains("passed"),
        "{dom}"
    );
    // keep-last 2: the oldest set and the broken night go now, the next night pushes out the other.
    let drop_now = dom["dropNow"].to_string();
    assert!(drop_now.contains(old) && drop_now.contains(broken), "{dom}");
    assert!(dom["dropNext"].to_string().contains(older), "{dom}");
    assert_eq!(
        dom["charts"],
        3 + 3 + 4,
        "one bar per set in each chart: {dom}"
    );

    // No secret of the lab in the page.
    let state = t.lab.state().unwrap();
    let password = std::fs::read_to_string(t.repo_password_file()).unwrap();
    for secret in [state.master_key.as_str(), password.trim()] {
        assert!(!html_text.contains(secret), "a secret in the page");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_that_cannot_be_written_leaves_the_backup_complete() {
    let t = TestLab::start().await;
    t.init().await;
    let nowhere = t.dir.path().join("no-such-folder").join("report.html");
    let out = t
        .ok(&["backup", "--report", nowhere.to_str().unwrap()])
        .await;
    assert!(
        stderr(&out)
            .contains("warning: the backup's outcome stands, but the report was not written"),
        "{}",
        stderr(&out)
    );
    let sets = t.ok(&["--json", "snapshots"]).await;
    let sets: Value = serde_json::from_slice(&sets.stdout).unwrap();
    assert_eq!(sets[0]["complete"], true);
    // `report` itself fails on it, with the cause and the fix.
    let out = t.run(&["report", "--out", nowhere.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot write the report to")
            && stderr(&out).contains("does the folder exist"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_backup_writes_the_report_and_keeps_its_exit_code() {
    use octobackup_lab::sqlserver_sim::SqlFault;
    let t = TestLab::start().await;
    t.init().await;
    t.lab.sql().inject(SqlFault::FailNextBackup {
        number: 3201,
        message: "Cannot open backup device 'X:\\missing\\OctopusDeploy.bak'. Operating system error 3(The system cannot find the path specified.).".into(),
    });
    let page = t.dir.path().join("report.html");
    let out = t.run(&["backup", "--report", page.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(!t.lab.octopus().maintenance(), "maintenance mode left on");
    let html_text = std::fs::read_to_string(&page).expect("the report was written");
    assert!(
        html_text.contains("No complete set: everything would be lost."),
        "{html_text}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&page).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644, "the page is for others to read");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_record_goes_with_its_set_when_retention_drops_it() {
    let t = TestLab::start().await;
    t.init().await;
    t.ok(&["backup"]).await;
    t.ok(&["drill"]).await;
    t.ok(&["backup"]).await;
    let drills = |t: &TestLab| {
        let out = t.restic(&["snapshots", "--json", "--tag", "octobackup-drill"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v.as_array().unwrap().len()
    };
    assert_eq!(drills(&t), 1);
    let out = t.ok(&["--json", "forget", "--keep-last", "1"]).await;
    let forget: Value = serde_json::from_slice(&out.stdout).unwrap();
    let dropped = forget["instances"][0]["dropped"].as_array().unwrap();
    assert_eq!(dropped.len(), 1, "{forget}");
    assert_eq!(
        dropped[0]["snapshots"].as_array().unwrap().len(),
        2,
        "the set and its drill: {forget}"
    );
    assert_eq!(drills(&t), 0);
    let check = t.restic(&["check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

/// The DevTools protocol over Chromium's --remote-debugging-pipe.
// Linux only (file descriptors 3 and 4); on Windows the test says so.
#[cfg_attr(not(unix), allow(unused_imports, dead_code))]
mod cdp {
    use serde_json::{Value, json};
    use std::io::{BufRead, BufReader, Write};
    use std::path::Path;
    use std::process::{Child, Command, Stdio};
    use std::sync::mpsc::{Receiver, channel};
    use std::time::Duration;

    /// Long enough for a cold start of Chromium on a busy CI machine; only a hang reaches it.
    const WAIT: Duration = Duration::from_secs(120);

    pub struct Browser {
        child: Child,
        to: std::io::PipeWriter,
        from: Receiver<Value>,
        next: u64,
        session: String,
        events: Vec<Value>,
        _profile: tempfile::TempDir,
    }

    #[derive(Debug, Default)]
    pub struct Seen {
        pub errors: Vec<String>,
        pub requests: Vec<String>,
    }

    fn chromium() -> String {
        if let Ok(c) = std::env::var("CHROMIUM") {
            return c;
        }
        for c in ["chromium", "chromium-browser", "google-chrome"] {
            if Command::new(c)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
            {
                return c.to_string();
            }
        }
        panic!(
            "Chromium is missing: this test renders the report in headless Chromium. Install Debian's \
             `chromium` (apt-get install chromium; scripts/test.sh does it) or set CHROMIUM to a Chrome/Chromium binary"
        );
    }

    impl Browser {
        #[cfg(unix)]
        pub fn launch() -> Browser {
            use std::os::fd::AsRawFd;
            use std::os::unix::process::CommandExt;
            let (cmd_r, cmd_w) = std::io::pipe().unwrap();
            let (resp_r, resp_w) = std::io::pipe().unwrap();
            let profile = tempfile::tempdir().unwrap();
            let mut c = Command::new(chromium());
            c.args([
                "--headless",
                // Root in a container has no user namespace for the sandbox.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--window-size=1280,1600",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
            let (r, w) = (cmd_r.as_raw_fd(), resp_w.as_raw_fd());
            // SAFETY: only async-signal-safe calls between fork and exec. The pipe ends become
            // fds 3 (commands in) and 4 (replies out), where --remote-debugging-pipe expects them;
            // dup'ing above 10 first keeps one from overwriting the other.
            unsafe {
                c.pre_exec(move || {
                    let r2 = libc::fcntl(r, libc::F_DUPFD, 10);
                    let w2 = libc::fcntl(w, libc::F_DUPFD, 10);
                    if r2 < 0 || w2 < 0 || libc::dup2(r2, 3) < 0 || libc::dup2(w2, 4) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            let child = c.spawn().expect("chromium starts");
            drop((cmd_r, resp_w));
            let (tx, rx) = channel();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(resp_r);
                loop {
                    let mut buf = Vec::new();
                    match reader.read_until(0, &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            buf.pop();
                            if let Ok(v) = serde_json::from_slice::<Value>(&buf)
                                && tx.send(v).is_err()
                            {
                                break;
                            }
                        }
                    }
                }
            });
            let mut b = Browser {
                child,
                to: cmd_w,
                from: rx,
                next: 0,
                session: String::new(),
                events: Vec::new(),
                _profile: profile,
            };
            let target = b.call("Target.createTarget", json!({"url": "about:blank"}));
            let target = target["targetId"].as_str().unwrap().to_string();
            let attached = b.call(
                "Target.attachToTarget",
                json!({"targetId": target, "flatten": true}),
            );
            b.session = attached["sessionId"].as_str().unwrap().to_string();
            for domain in ["Runtime", "Log", "Network", "Page"] {
                b.call(&format!("{domain}.enable"), json!({}));
            }
            b
        }

        #[cfg(not(unix))]
        pub fn launch() -> Browser {
            panic!("the report's browser test drives Chromium through a pipe on Linux only")
        }

        /// Sends a command (to the page once attached) and waits for its reply.
        fn call(&mut self, method: &str, params: Value) -> Value {
            self.next += 1;
            let id = self.next;
            let mut msg = json!({"id": id, "method": method, "params": params});
            if !self.session.is_empty() {
                msg["sessionId"] = json!(self.session);
            }
            let mut bytes = serde_json::to_vec(&msg).unwrap();
            bytes.push(0);
            self.to.write_all(&bytes).unwrap();
            loop {
                let v = self
                    .from
                    .recv_timeout(WAIT)
                    .unwrap_or_else(|_| panic!("Chromium did not answer {method}"));
                if v["id"] == json!(id) {
                    assert!(v.get("error").is_none(), "{method} failed: {v}");
                    return v["result"].clone();
                }
                self.events.push(v);
            }
        }

        fn wait_event(&mut self, method: &str) {
            if self.events.iter().any(|e| e["method"] == method) {
                return;
            }
            loop {
                let v = self
                    .from
                    .recv_timeout(WAIT)
                    .unwrap_or_else(|_| panic!("Chromium never sent {method}"));
                let done = v["method"] == method;
                self.events.push(v);
                if done {
                    return;
                }
            }
        }

        /// Opens the file and returns what the page logged and requested.
        pub fn open(&mut self, file: &Path) -> Seen {
            self.events.clear();
            let url = format!("file://{}", file.display());
            self.call("Page.navigate", json!({"url": url}));
            self.wait_event("Page.loadEventFired");
            // Anything logged after load (a late script, a lazy image) arrives before this reply.
            self.call("Runtime.evaluate", json!({"expression": "1"}));
            let mut seen = Seen::default();
            for e in &self.events {
                let p = &e["params"];
                match e["method"].as_str().unwrap_or_default() {
                    "Runtime.consoleAPICalled" if p["type"] == "error" || p["type"] == "assert" => {
                        seen.errors.push(p["args"].to_string())
                    }
                    "Runtime.exceptionThrown" => {
                        seen.errors.push(p["exceptionDetails"].to_string())
                    }
                    "Log.entryAdded" if p["entry"]["level"] == "error" => {
                        seen.errors.push(p["entry"]["text"].to_string())
                    }
                    "Network.requestWillBeSent" => seen
                        .requests
                        .push(p["request"]["url"].as_str().unwrap_or_default().to_string()),
                    _ => {}
                }
            }
            seen
        }

        pub fn eval(&mut self, expression: &str) -> Value {
            let r = self.call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true}),
            );
            assert!(
                r.get("exceptionDetails").is_none(),
                "the script failed: {r}"
            );
            r["result"]["value"].clone()
        }

        pub fn screenshot(&mut self) -> Vec<u8> {
            use base64::Engine;
            let r = self.call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true}),
            );
            base64::engine::general_purpose::STANDARD
                .decode(r["data"].as_str().unwrap())
                .unwrap()
        }

        pub fn close(mut self) {
            // No reply to wait for: the browser goes.
            let mut bytes =
                serde_json::to_vec(&json!({"id": 0, "method": "Browser.close"})).unwrap();
            bytes.push(0);
            let _ = self.to.write_all(&bytes);
            let _ = self.child.wait();
        }
    }

    impl Drop for Browser {
        fn drop(&mut self) {
            // A failed assertion must not leave Chromium running.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
