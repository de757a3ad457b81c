//! `[notify]` and `[metrics]` against real receivers: a local HTTP receiver for the webhooks
//! (JSON, Teams, Slack), Python's aiosmtpd with STARTTLS and AUTH for e-mail, Debian's
//! prometheus-pushgateway, and prometheus_client's parser reading the textfile and the
//! Pushgateway's /metrics. scripts/test.sh installs aiosmtpd, prometheus_client and the Pushgateway.

use crate::common::{TestLab, stderr, stdout};
use octobackup_lab::octopus_sim::{Fault, FaultKind, Method};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The token the chat webhooks carry in their URL, as Teams and Slack do.
const TOKEN: &str = "T0KEN-in-the-url-7f3a9";
const SMTP_USER: &str = "octobackup";
const SMTP_PASSWORD: &str = "Smtp-Passw0rd-9c41";

/// A tiny HTTP/1.1 receiver: records each request's path and body, answers 200.
/// What a test looks at the moment a call arrives (the receiver answers only after it).
type Probe = Arc<dyn Fn() -> usize + Send + Sync>;

#[derive(Clone)]
pub(crate) struct Receiver {
    port: u16,
    calls: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
    probed: Arc<Mutex<Vec<usize>>>,
}

impl Receiver {
    pub(crate) fn start() -> Receiver {
        Self::start_probing(Arc::new(|| 0))
    }

    fn start_probing(probe: Probe) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let probed = Arc::new(Mutex::new(Vec::new()));
        let (rec, seen) = (calls.clone(), probed.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let (rec, seen, probe) = (rec.clone(), seen.clone(), probe.clone());
                std::thread::spawn(move || serve(stream, rec, seen, probe));
            }
        });
        Receiver {
            port,
            calls,
            probed,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn calls(&self) -> Vec<(String, serde_json::Value)> {
        self.calls.lock().unwrap().clone()
    }

    pub(crate) fn to(&self, prefix: &str) -> Vec<serde_json::Value> {
        self.calls()
            .into_iter()
            .filter(|(p, _)| p.starts_with(prefix))
            .map(|(_, b)| b)
            .collect()
    }
}

fn serve(
    mut s: TcpStream,
    rec: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
    seen: Arc<Mutex<Vec<usize>>>,
    probe: Probe,
) {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let (head_end, len) = loop {
        let n = match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse::<usize>().unwrap())
                .unwrap_or(0);
            break (i + 4, len);
        }
    };
    while buf.len() < head_end + len {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
    let body =
        serde_json::from_slice(&buf[head_end..head_end + len]).unwrap_or(serde_json::Value::Null);
    seen.lock().unwrap().push(probe());
    rec.lock().unwrap().push((path, body));
    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    for _ in 0..300 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!("{what} exited ({st}) before listening on {port}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not listen on {port}");
}

/// Ends a server started by a test (its own child process) when the test ends.
struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// aiosmtpd: STARTTLS required, AUTH required (only over TLS), each message kept as JSON with
/// whether TLS and AUTH were used.
const SMTP_SERVER: &str = r#"
import email, email.policy, json, os, ssl, sys
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
port, outdir, cert, key, user, password = sys.argv[1:7]
class Handler:
    async def handle_DATA(self, server, session, envelope):
        n = len([f for f in os.listdir(outdir) if f.endswith(".json")])
        rec = {"tls": session.ssl is not None, "authenticated": bool(session.authenticated),
               "mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos,
               "subject": "", "body": ""}
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        rec["subject"] = str(msg["subject"])
        rec["body"] = msg.get_content()
        tmp = os.path.join(outdir, "%03d.tmp" % n)
        with open(tmp, "w") as f:
            json.dump(rec, f)
        os.rename(tmp, os.path.join(outdir, "%03d.json" % n))
        return "250 OK"
def auth(server, session, envelope, mechanism, data):
    ok = isinstance(data, LoginPassword) and data.login == user.encode() and data.password == password.encode()
    return AuthResult(success=ok)
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
c = Controller(Handler(), hostname="127.0.0.1", port=int(port), tls_context=ctx,
               require_starttls=True, authenticator=auth, auth_required=True, auth_require_tls=True)
c.start()
print("ready", flush=True)
sys.stdin.read()
c.stop()
"#;

struct Smtp {
    _server: Server,
    port: u16,
    dir: PathBuf,
    ca: PathBuf,
}

impl Smtp {
    fn start(root: &Path) -> Smtp {
        let dir = root.join("smtp");
        let mail = dir.join("mail");
        std::fs::create_dir_all(&mail).unwrap();
        // A certificate for 127.0.0.1, trusted by octobackup through ca_file.
        let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        let (cert, key, ca) = (
            dir.join("cert.pem"),
            dir.join("key.pem"),
            dir.join("ca.pem"),
        );
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&ca, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
        let script = dir.join("smtp_server.py");
        std::fs::write(&script, SMTP_SERVER).unwrap();
        let port = free_port();
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(port.to_string())
            .arg(&mail)
            .arg(&cert)
            .arg(&key)
            .arg(SMTP_USER)
            .arg(SMTP_PASSWORD)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            // aiosmtpd warns about its own use of a deprecated attribute.
            .env("PYTHONWARNINGS", "ignore::DeprecationWarning")
            .spawn()
            .expect("python3 with aiosmtpd (scripts/test.sh installs it)");
        wait_for_port(port, &mut child, "aiosmtpd");
        Smtp {
            _server: Server(child),
            port,
            dir: mail,
            ca,
        }
    }

    fn messages(&self) -> Vec<serde_json::Value> {
        let mut files: Vec<_> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
            .collect()
    }
}

fn pushgateway() -> (Server, u16) {
    let port = free_port();
    let mut child = Command::new("prometheus-pushgateway")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus-pushgateway (scripts/test.sh installs Debian's package)");
    wait_for_port(port, &mut child, "prometheus-pushgateway");
    (Server(child), port)
}

/// Samples as prometheus_client's parser reads them: (name, labels, value).
pub(crate) fn parse_metrics(
    source: &str,
) -> Vec<(String, serde_json::Map<String, serde_json::Value>, f64)> {
    let script = r#"
import json, sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families
src = sys.argv[1]
text = urllib.request.urlopen(src).read().decode() if src.startswith("http") else open(src).read()
out = []
for fam in text_string_to_metric_families(text):
    for s in fam.samples:
        out.append([s.name, s.labels, s.value])
print(json.dumps(out))
"#;
    let out = Command::new("python3")
        .args(["-c", script, source])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "prometheus_client could not parse {source}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Vec<(String, serde_json::Map<String, serde_json::Value>, f64)> =
        serde_json::from_slice(&out.stdout).unwrap();
    v
}

pub(crate) fn sample(
    samples: &[(String, serde_json::Map<String, serde_json::Value>, f64)],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).and_then(|x| x.as_str()) == Some(*v))
        })
        .map(|s| s.2)
}

/// Every secret the lab has, plus the webhook token and the SMTP password.
fn secrets(t: &TestLab) -> Vec<String> {
    let state = t.lab.state().unwrap();
    vec![
        state.master_key.clone(),
        state.admin_api_key.clone(),
        state.sql_password.clone(),
        state.license_xml.clone(),
        state.license_serial.clone(),
        std::fs::read_to_string(t.repo_password_file())
            .unwrap()
            .trim()
            .to_string(),
        TOKEN.to_string(),
        SMTP_PASSWORD.to_string(),
    ]
}

fn assert_no_secret(what: &str, text: &str, secrets: &[String]) {
    for s in secrets {
        assert!(!text.contains(s.as_str()), "{what} contains a secret");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_backup_is_told_to_every_target_and_the_metrics_say_failed() {
    let t = TestLab::start().await;
    t.init().await;
    let hooks = Receiver::start();
    let smtp = Smtp::start(t.dir.path());
    let (_pg, pg_port) = pushgateway();
    let secrets_dir = t.dir.path().join("secrets");
    std::fs::write(
        secrets_dir.join("teams-url"),
        hooks.url(&format!("/teams/{TOKEN}")),
    )
    .unwrap();
    std::fs::write(secrets_dir.join("smtp-password"), SMTP_PASSWORD).unwrap();
    let textfile = t.dir.path().join("textfile").join("octobackup.prom");
    std::fs::create_dir_all(textfile.parent().unwrap()).unwrap();
    let (teams_file, smtp_password, ca) = (
        secrets_dir.join("teams-url"),
        secrets_dir.join("smtp-password"),
        smtp.ca.clone(),
    );
    let (generic, tf) = (hooks.url("/generic"), textfile.clone());
    t.edit_config(move |c| {
        let notify: toml::Table = toml::from_str(&format!(
            r#"
on = "failure"
[[webhook]]
url = "{generic}"
[[webhook]]
format = "teams"
url_file = '{teams}'
[[webhook]]
format = "slack"
url_env = "OCTOBACKUP_TEST_SLACK_URL"
on = "recovery"
[[email]]
server = "127.0.0.1"
port = {port}
username = "{SMTP_USER}"
password_file = '{pw}'
ca_file = '{ca}'
from = "octobackup <octobackup@example.com>"
to = ["ops@example.com"]
"#,
            teams = teams_file.display(),
            port = smtp.port,
            pw = smtp_password.display(),
            ca = ca.display(),
        ))
        .unwrap();
        c.insert("notify".into(), notify.into());
        let metrics: toml::Table = toml::from_str(&format!(
            "textfile = '{}'\npushgateway = \"http://127.0.0.1:{pg_port}\"",
            tf.display()
        ))
        .unwrap();
        c.insert("metrics".into(), metrics.into());
    });
    let slack_url = hooks.url(&format!("/slack/services/{TOKEN}"));
    let run = |args: &'static [&'static str]| {
        let mut c = t.command(args);
        c.env("OCTOBACKUP_TEST_SLACK_URL", &slack_url);
        tokio::task::spawn_blocking(move || c.output().unwrap())
    };
    let secrets = secrets(&t);
    let instance = [("octopus_instance", "OctopusServer")];

    // 1. A passing backup: on = "failure" tells no one; the metrics say success.
    let out = run(&["-v", "backup"]).await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(hooks.calls().is_empty(), "{:?}", hooks.calls());
    assert!(smtp.messages().is_empty());
    let m = parse_metrics(textfile.to_str().unwrap());
    assert_eq!(
        sample(&m, "octobackup_last_run_success", &instance),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "octobackup_last_run_exit_code", &instance),
        Some(0.0)
    );
    let first_success = sample(&m, "octobackup_last_success_timestamp_seconds", &instance).unwrap();
    assert!(sample(&m, "octobackup_maintenance_window_seconds", &instance).unwrap() > 0.0);
    assert!(sample(&m, "octobackup_database_bytes", &instance).unwrap() > 0.0);
    assert!(sample(&m, "octobackup_new_bytes", &instance).unwrap() > 0.0);
    assert!(sample(&m, "octobackup_repository_bytes", &instance).unwrap() > 0.0);
    assert!(
        m.iter()
            .any(|s| s.0 == "octobackup_folder_bytes" && s.1.contains_key("folder")),
        "{m:?}"
    );
    assert!(
        sample(
            &m,
            "octobackup_step_seconds",
            &[("step", "maintenance mode on")]
        )
        .is_some(),
        "{m:?}"
    );
    assert_eq!(
        sample(&m, "octobackup_runs_total", &[("result", "success")]),
        Some(1.0)
    );

    // 2. A failing one (the SQL password is wrong: exit 4).
    std::fs::write(secrets_dir.join("sql-password"), "Wrong-Passw0rd-x").unwrap();
    let out = run(&["-v", "backup"]).await.unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert_no_secret(
        "the failed run's output",
        &(stdout(&out) + &stderr(&out)),
        &secrets,
    );
    let generic = hooks.to("/generic");
    assert_eq!(generic.len(), 1, "{:?}", hooks.calls());
    let g = &generic[0];
    assert_eq!(g["instance"], "OctopusServer");
    assert_eq!(g["status"], "failed");
    assert_eq!(g["exit_code"], 4);
    assert!(g["failure"].as_str().unwrap().contains("18456"), "{g}");
    assert!(g["fix"].as_str().unwrap().contains("SQL Server"), "{g}");
    let teams = hooks.to("/teams/");
    assert_eq!(teams.len(), 1);
    let card = &teams[0]["attachments"][0];
    assert_eq!(teams[0]["type"], "message");
    assert_eq!(
        card["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(card["content"]["type"], "AdaptiveCard");
    assert!(card["content"].to_string().contains("FAILED (exit 4)"));
    let slack = hooks.to("/slack/");
    assert_eq!(
        slack.len(),
        1,
        "slack (on = recovery) is told of failures too"
    );
    assert_eq!(slack[0]["blocks"][0]["type"], "header");
    assert!(slack[0]["text"].as_str().unwrap().contains("FAILED"));
    let mail = smtp.messages();
    assert_eq!(mail.len(), 1);
    assert_eq!(mail[0]["tls"], true, "STARTTLS was used");
    assert_eq!(mail[0]["authenticated"], true, "AUTH was used");
    assert_eq!(mail[0]["rcpt_tos"][0], "ops@example.com");
    assert_eq!(
        mail[0]["subject"],
        "octobackup: backup of OctopusServer FAILED (exit 4)"
    );
    let data = mail[0]["body"].as_str().unwrap();
    assert!(data.contains("18456"), "{data}");
    assert!(data.contains("Fix: Check SQL Server"), "{data}");
    for (_, body) in hooks.calls() {
        assert_no_secret("a webhook body", &body.to_string(), &secrets);
    }
    assert_no_secret("the e-mail", data, &secrets);
    let m = parse_metrics(textfile.to_str().unwrap());
    assert_eq!(
        sample(&m, "octobackup_last_run_success", &instance),
        Some(0.0)
    );
    assert_eq!(
        sample(&m, "octobackup_last_run_exit_code", &instance),
        Some(4.0)
    );
    // The last success stays what it was.
    assert_eq!(
        sample(&m, "octobackup_last_success_timestamp_seconds", &instance),
        Some(first_success)
    );
    assert_eq!(
        sample(&m, "octobackup_runs_total", &[("result", "failure")]),
        Some(1.0)
    );
    let pg = parse_metrics(&format!("http://127.0.0.1:{pg_port}/metrics"));
    let group = [("job", "octobackup"), ("octopus_instance", "OctopusServer")];
    assert_eq!(
        sample(&pg, "octobackup_last_run_success", &group),
        Some(0.0)
    );
    assert_eq!(
        sample(&pg, "octobackup_last_run_exit_code", &group),
        Some(4.0)
    );

    // 3. Fixed: a success after a failure is a recovery; only slack (on = "recovery") hears it.
    std::fs::write(
        secrets_dir.join("sql-password"),
        t.lab.state().unwrap().sql_password,
    )
    .unwrap();
    let out = run(&["backup"]).await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(hooks.to("/generic").len(), 1);
    assert_eq!(hooks.to("/teams/").len(), 1);
    assert_eq!(smtp.messages().len(), 1);
    let slack = hooks.to("/slack/");
    assert_eq!(slack.len(), 2);
    assert!(
        slack[1]["text"].as_str().unwrap().contains("recovered"),
        "{}",
        slack[1]
    );
    let m = parse_metrics(textfile.to_str().unwrap());
    assert_eq!(
        sample(&m, "octobackup_last_run_success", &instance),
        Some(1.0)
    );
    assert!(
        sample(&m, "octobackup_last_success_timestamp_seconds", &instance).unwrap() > first_success
    );
    let pg = parse_metrics(&format!("http://127.0.0.1:{pg_port}/metrics"));
    assert_eq!(
        sample(&pg, "octobackup_last_run_success", &group),
        Some(1.0)
    );
    assert!(sample(&pg, "octobackup_database_bytes", &group).unwrap() > 0.0);

    // 4. A drill's result reaches the metrics.
    let out = run(&["drill"]).await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let m = parse_metrics(textfile.to_str().unwrap());
    assert_eq!(sample(&m, "octobackup_drill_success", &instance), Some(1.0));
    assert!(sample(&m, "octobackup_last_drill_timestamp_seconds", &instance).is_some());
    // No temporary file is left beside the textfile.
    let left: Vec<_> = std::fs::read_dir(textfile.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_target_is_a_warning_and_the_exit_code_is_the_backups() {
    let t = TestLab::start().await;
    t.init().await;
    // Nothing listens on these ports.
    let (dead_http, dead_smtp) = (free_port(), free_port());
    t.edit_config(move |c| {
        let notify: toml::Table = toml::from_str(&format!(
            r#"
on = "always"
timeout_seconds = 5
[[webhook]]
format = "slack"
url = "http://127.0.0.1:{dead_http}/services/{TOKEN}"
[[email]]
server = "127.0.0.1"
port = {dead_smtp}
from = "octobackup@example.com"
to = ["ops@example.com"]
"#
        ))
        .unwrap();
        c.insert("notify".into(), notify.into());
    });
    let out = t.ok(&["backup"]).await;
    let err = stderr(&out);
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("could not be sent"))
        .collect();
    assert_eq!(warnings.len(), 2, "{err}");
    assert!(warnings.iter().any(|w| w.contains("webhook #1")), "{err}");
    assert!(warnings.iter().any(|w| w.contains("e-mail #1")), "{err}");
    assert!(
        !err.contains(TOKEN),
        "the webhook's token is in the log: {err}"
    );
    // A failing backup keeps its own exit code.
    t.edit_config(|c| {
        TestLab::instance_table(c).insert("api_key_file".into(), "/nonexistent/key".into());
    });
    let out = t.run(&["backup"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("could not be sent"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_mode_left_changed_is_sent_at_once_whatever_on_says() {
    let t = TestLab::start().await;
    t.init().await;
    // The run's staging folder (with its .bak) is still there when the call arrives: the alarm
    // went out before the run cleaned up, not at its end.
    let staging = t.lab.info().staging_dir.clone();
    let hooks =
        Receiver::start_probing(Arc::new(move || crate::common::walk_files(&staging).len()));
    let url = hooks.url("/generic");
    t.edit_config(move |c| {
        TestLab::instance_table(c).insert("api_timeout".into(), "2s".into());
        let notify: toml::Table = toml::from_str(&format!(
            "on = \"recovery\"\n[[webhook]]\nurl = \"{url}\"\n"
        ))
        .unwrap();
        c.insert("notify".into(), notify.into());
    });
    let child = t.spawn_slow_backup(Stdio::piped()).await;
    t.lab.octopus().inject(Fault {
        method: Some(Method::PUT),
        path_prefix: "/api/maintenanceconfiguration".into(),
        kind: FaultKind::Status(401),
        times: 1,
    });
    t.lab.sql().set_backup_rate(None);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    t.lab.octopus().clear_faults();
    // Once: the alarm, not a second message at the end of the run.
    let calls = hooks.to("/generic");
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["status"], "maintenance_stuck");
    assert_eq!(calls[0]["exit_code"], 7);
    assert!(
        calls[0]["failure"]
            .as_str()
            .unwrap()
            .contains("MAINTENANCE MODE")
    );
    assert!(
        calls[0]["fix"]
            .as_str()
            .unwrap()
            .contains("octobackup recover")
    );
    assert!(
        hooks.probed.lock().unwrap()[0] > 0,
        "the alarm came after the run had cleaned up"
    );
    assert!(
        crate::common::walk_files(&t.lab.info().staging_dir).is_empty(),
        "the run cleaned up after the alarm"
    );
    t.ok(&["recover"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_all_backs_up_each_instance_with_one_summary_and_the_worst_exit_code() {
    let t = TestLab::start().await;
    t.init().await;
    let hooks = Receiver::start();
    let url = hooks.url("/generic");
    let textfile = t.dir.path().join("textfile").join("octobackup.prom");
    let tf = textfile.clone();
    t.edit_config(move |c| {
        // A second instance: the same server under another name, with an API key that is refused.
        let mut second = TestLab::instance_table(c).clone();
        let bad_key = tf
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("secrets")
            .join("bad-key");
        std::fs::write(&bad_key, "API-NOTAVALIDKEY0000000000000").unwrap();
        second.insert("api_key_file".into(), bad_key.display().to_string().into());
        c["instance"]
            .as_table_mut()
            .unwrap()
            .insert("Second".into(), second.into());
        let notify: toml::Table =
            toml::from_str(&format!("on = \"always\"\n[[webhook]]\nurl = \"{url}\"\n")).unwrap();
        c.insert("notify".into(), notify.into());
        let metrics: toml::Table =
            toml::from_str(&format!("textfile = '{}'", tf.display())).unwrap();
        c.insert("metrics".into(), metrics.into());
    });
    let out = t.run(&["--json", "backup", "--all"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(summary["ok"], false);
    assert_eq!(summary["exit_code"], 3);
    let inst = summary["instances"].as_array().unwrap();
    assert_eq!(inst.len(), 2);
    assert_eq!(inst[0]["instance"], "OctopusServer");
    assert_eq!(inst[0]["ok"], true);
    assert!(inst[0]["backup"]["set_id"].is_string());
    assert_eq!(inst[1]["instance"], "Second");
    assert_eq!(inst[1]["exit_code"], 3);
    assert!(
        inst[1]["error"].as_str().unwrap().contains("401"),
        "{}",
        inst[1]
    );
    // One notification per instance, none extra.
    let calls = hooks.to("/generic");
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0]["instance"], "OctopusServer");
    assert_eq!(calls[0]["status"], "success");
    assert_eq!(calls[1]["instance"], "Second");
    assert_eq!(calls[1]["exit_code"], 3);
    // The metrics file holds both.
    let m = parse_metrics(textfile.to_str().unwrap());
    assert_eq!(
        sample(
            &m,
            "octobackup_last_run_success",
            &[("octopus_instance", "OctopusServer")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            "octobackup_last_run_success",
            &[("octopus_instance", "Second")]
        ),
        Some(0.0)
    );
    // The human summary: a line per instance.
    let out = t.run(&["backup", "--all"]).await;
    assert_eq!(out.status.code(), Some(3));
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|l| l.starts_with("OctopusServer") && l.contains(" ok ")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("Second") && l.contains("FAILED")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_an_ha_cluster_the_notification_names_the_host_the_nodes_and_the_drained_ones() {
    let t = TestLab::start_with(|o| o.instance.nodes = 2).await;
    t.init().await;
    // An administrator drains the second node, through the API as Octopus's portal does.
    let info = t.lab.info();
    let client = reqwest::Client::new();
    let summary: serde_json::Value = client
        .get(format!(
            "{}/api/octopusservernodes/summary",
            info.octopus_url
        ))
        .header("X-Octopus-ApiKey", &info.admin_api_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let nodes = summary["Nodes"].as_array().unwrap().clone();
    assert_eq!(nodes.len(), 2);
    let second = &nodes[1];
    let r = client
        .put(format!(
            "{}/api/octopusservernodes/{}",
            info.octopus_url,
            second["Id"].as_str().unwrap()
        ))
        .header("X-Octopus-ApiKey", &info.admin_api_key)
        .json(&serde_json::json!({
            "Id": second["Id"],
            "Name": second["Name"],
            "IsInMaintenanceMode": true,
            "MaxConcurrentTasks": second["MaxConcurrentTasks"],
        }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let hooks = Receiver::start();
    let url = hooks.url("/generic");
    t.edit_config(move |c| {
        let notify: toml::Table =
            toml::from_str(&format!("on = \"always\"\n[[webhook]]\nurl = \"{url}\"\n")).unwrap();
        c.insert("notify".into(), notify.into());
    });
    t.ok(&["backup"]).await;
    let calls = hooks.to("/generic");
    assert_eq!(calls.len(), 1);
    let names: Vec<&str> = nodes.iter().map(|n| n["Name"].as_str().unwrap()).collect();
    assert_eq!(calls[0]["nodes"], serde_json::json!(names));
    assert_eq!(calls[0]["drained_nodes"], serde_json::json!([names[1]]));
    assert!(!calls[0]["host"].as_str().unwrap().is_empty());
}
