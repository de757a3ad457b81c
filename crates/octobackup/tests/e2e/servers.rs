//! Real storage servers for the backend suite, on 127.0.0.1 with free ports and temp folders:
//! moto (S3, with IAM so that SigV4 signatures are checked), Ceph RGW (a real S3: versioning,
//! Object Lock, bucket policies; one cluster per test binary, [`ceph`]), Azurite (Azure Blob)
//! and OpenSSH's sshd (SFTP). `scripts/test.sh` installs them; a missing one fails the test with what to install.
//! Each server is stopped by its PID when its handle drops, also when a test panics.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Azurite's well-known development account (public, in Microsoft's Azurite documentation).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// The bucket or container every server starts with.
pub const BUCKET: &str = "octobackup";

/// A running server process, killed by PID on drop.
pub struct Server {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    name: &'static str,
}

impl Drop for Server {
    fn drop(&mut self) {
        // sshd serves each login from a child of its own: stop those first (by PID), so that the
        // clients' ssh processes see the connection close and exit too.
        for pid in children(self.child.id()) {
            let _ = Command::new("kill")
                .arg(pid.to_string())
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The PIDs whose parent is `pid` (Linux `/proc`; none elsewhere).
fn children(pid: u32) -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    // pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'.
                    let after = s.rsplit_once(')')?.1;
                    after.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

impl Server {
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `cmd` and waits (bounded) until it accepts connections on `port`.
fn spawn(name: &'static str, cmd: Command, port: u16, dir: tempfile::TempDir) -> Server {
    spawn_within(name, cmd, port, dir, 30)
}

/// As [`spawn`], waiting at most `secs` seconds.
fn spawn_within(
    name: &'static str,
    mut cmd: Command,
    port: u16,
    dir: tempfile::TempDir,
    secs: u64,
) -> Server {
    let log = std::fs::File::create(dir.path().join(format!("{name}.log"))).unwrap();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name} ({e}): {}", install_hint(name)));
    let mut server = Server {
        child,
        port,
        dir,
        name,
    };
    let addr: SocketAddr = server.addr().parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return server;
        }
        if let Some(status) = server.child.try_wait().unwrap() {
            let log = std::fs::read_to_string(server.dir.path().join(format!("{name}.log")));
            panic!("{} exited at start ({status}): {log:?}", server.name);
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not listen on {addr} within {secs} s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn install_hint(name: &str) -> &'static str {
    match name {
        "moto" => "install it with `python3 -m pip install 'moto[server]'` (scripts/test.sh does)",
        "azurite" => {
            "install it with `npm install --prefix target/test-tools azurite` (scripts/test.sh does)"
        }
        "sshd" => "install it with `apt-get install openssh-server` (scripts/test.sh does)",
        "ceph" => {
            "install Ceph RGW with `apt-get install --no-install-recommends ceph radosgw` (scripts/test.sh does)"
        }
        _ => "see scripts/test.sh",
    }
}

fn find(name: &'static str, candidates: &[PathBuf]) -> PathBuf {
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .or_else(|| which(candidates[0].file_name()?.to_str()?))
        .unwrap_or_else(|| panic!("{name} is not installed: {}", install_hint(name)))
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// `target/test-tools`, where scripts/test.sh puts what npm installs.
fn test_tools() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-tools")
}

// ---- S3: moto ----

/// Two S3 servers: `server` for the backups, and `strict`, which checks signatures, for the
/// wrong-credentials case. moto's SigV4 check rejects listings whose `prefix` holds a `/` as
/// OpenDAL sends it (SignatureDoesNotMatch for a correct key), so the backups run on a moto that
/// does not check, and the refusal of a wrong key is proven on the strict one. The strict one is
/// started on first use: only the wrong-credentials cases need it.
pub struct S3 {
    pub server: Server,
    strict: std::sync::OnceLock<StrictS3>,
}

/// The moto that checks signatures, and its user's key.
pub struct StrictS3 {
    pub server: Server,
    pub access_key: String,
    pub secret_key: String,
}

impl S3 {
    /// The strict server (started now if it was not yet).
    pub fn strict(&self) -> &StrictS3 {
        self.strict.get_or_init(start_strict_s3)
    }

    /// The strict server's request log.
    pub fn strict_log(&self) -> String {
        std::fs::read_to_string(self.strict().server.dir.path().join("moto.log"))
            .unwrap_or_default()
    }
}

fn moto(auth: bool) -> Server {
    let moto = find("moto", &[PathBuf::from("moto_server")]);
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(moto);
    cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .env_remove("INITIAL_NO_AUTH_ACTION_COUNT");
    if auth {
        cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", "4");
    }
    spawn("moto", cmd, port, dir)
}

fn unsigned(service: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=setup/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"
    )
}

fn create_bucket(server: &Server) {
    let (status, body) = http(
        "PUT",
        &format!("http://{}/{BUCKET}", server.addr()),
        &[("Authorization", &unsigned("s3"))],
        b"",
    );
    assert!(status < 300, "moto create bucket: {status} {body}");
}

/// An S3 server (moto) with the bucket [`BUCKET`]; its strict twin comes with [`S3::strict`].
pub fn start_s3() -> S3 {
    let server = moto(false);
    create_bucket(&server);
    S3 {
        server,
        strict: std::sync::OnceLock::new(),
    }
}

/// moto checks SigV4 signatures (and the key's IAM policy) once `INITIAL_NO_AUTH_ACTION_COUNT`
/// unauthenticated calls are used up: those create the user, its key, its policy and the bucket.
fn start_strict_s3() -> StrictS3 {
    let strict = moto(true);
    let base = format!("http://{}", strict.addr());
    let iam = |form: &str| -> String {
        let out = http(
            "POST",
            &format!("{base}/"),
            &[
                ("Authorization", &unsigned("iam")),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            form.as_bytes(),
        );
        assert!(out.0 < 300, "moto IAM {form}: {} {}", out.0, out.1);
        out.1
    };
    iam("Action=CreateUser&UserName=octobackup&Version=2010-05-08");
    let key = iam("Action=CreateAccessKey&UserName=octobackup&Version=2010-05-08");
    let tag = |t: &str| {
        key.split(&format!("<{t}>"))
            .nth(1)
            .and_then(|r| r.split(&format!("</{t}>")).next())
            .unwrap_or_else(|| panic!("no {t} in {key}"))
            .to_string()
    };
    let (access_key, secret_key) = (tag("AccessKeyId"), tag("SecretAccessKey"));
    let policy =
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
    iam(&format!(
        "Action=PutUserPolicy&UserName=octobackup&PolicyName=all&PolicyDocument={}&Version=2010-05-08",
        urlencode(policy)
    ));
    create_bucket(&strict);
    StrictS3 {
        server: strict,
        access_key,
        secret_key,
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A setup request (status, body), on a thread of its own so it may be called from any context.
fn http(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let mut req = reqwest::Client::new().request(method.parse().unwrap(), url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(body.to_vec());
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let resp = req.send().await.unwrap();
                let status = resp.status().as_u16();
                (status, resp.text().await.unwrap_or_default())
            })
    })
    .join()
    .unwrap()
}

// ---- S3: Ceph RGW ----

/// Ceph's RADOS Gateway, a real S3 (signatures, versioning, Object Lock, bucket policies): one
/// monitor, one OSD keeping its data in memory (memstore) and radosgw, all in one temp folder,
/// stopped by PID (radosgw first) when this drops. About 15 s to start: once per test binary.
pub struct Ceph {
    /// radosgw; its temp folder holds the whole cluster.
    rgw: Option<Server>,
    /// ceph-osd, then ceph-mon.
    daemons: Vec<Child>,
    conf: PathBuf,
    /// The cluster's folder, removed once every daemon is stopped.
    _dir: Option<tempfile::TempDir>,
    /// The S3 user with every right on its buckets.
    pub access_key: String,
    pub secret_key: String,
}

impl Drop for Ceph {
    fn drop(&mut self) {
        drop(self.rgw.take());
        for d in &mut self.daemons {
            let _ = d.kill();
            let _ = d.wait();
        }
        drop(self._dir.take());
    }
}

impl Ceph {
    pub fn server(&self) -> &Server {
        self.rgw.as_ref().unwrap()
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.server().addr())
    }

    /// An S3 user of its own (`radosgw-admin user create`), as (access key, secret key).
    pub fn add_user(&self, uid: &str) -> (String, String) {
        let (key, secret) = (format!("{uid}-key"), format!("{uid}-secret-0123456789"));
        self.admin(&[
            "user",
            "create",
            &format!("--uid={uid}"),
            &format!("--display-name={uid}"),
            &format!("--access-key={key}"),
            &format!("--secret-key={secret}"),
        ]);
        (key, secret)
    }

    /// A signed request as the main user (`uid` none) or another, for the tests' own setup and
    /// probes (CreateBucket with Object Lock, PutBucketPolicy, DeleteObject of a version).
    pub fn s3(&self, key: &str, secret: &str, bucket: &str) -> octobackup_repo::S3Client {
        octobackup_repo::S3Client::new(&self.endpoint(), bucket, "us-east-1", key, secret).unwrap()
    }

    /// The main user's client on `bucket`.
    pub fn owner(&self, bucket: &str) -> octobackup_repo::S3Client {
        self.s3(&self.access_key, &self.secret_key, bucket)
    }

    fn admin(&self, args: &[&str]) -> String {
        let out = Command::new("radosgw-admin")
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("radosgw-admin ({e}): {}", install_hint("ceph")));
        assert!(out.status.success(), "radosgw-admin {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).to_string()
    }
}

/// A free port below the kernel's ephemeral range. radosgw binds its port some 15 s after the
/// port is chosen; a port from the ephemeral range may meanwhile be taken as the local end of
/// one of the tests' own connections, and radosgw then runs without listening.
fn steady_port() -> u16 {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let span = low.saturating_sub(10000).max(1);
    loop {
        let port = 10000 + rand_u16() % span;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn rand_u16() -> u16 {
    let b = uuid::Uuid::new_v4();
    u16::from_le_bytes([b.as_bytes()[0], b.as_bytes()[1]])
}

/// Runs a Ceph tool to its end (mkfs, `ceph osd create`), with a bound.
fn ceph_tool(program: &str, conf: &Path, args: &[&str]) -> std::process::Output {
    let mut child = Command::new(program)
        .arg("-c")
        .arg(conf)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} ({e}): {}", install_hint("ceph")));
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{program} {args:?} did not end within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn ceph_daemon(program: &str, conf: &Path, args: &[&str], log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    Command::new(program)
        .arg("-c")
        .arg(conf)
        .args(args)
        .arg("-f")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program} ({e}): {}", install_hint("ceph")))
}

/// The test binary's Ceph cluster, started on first use (about 15 s) and shared by every test
/// that asks (each in a bucket or prefix of its own). It is stopped by PID when the test
/// binary exits.
pub fn ceph() -> std::sync::Arc<Ceph> {
    static CEPH: std::sync::Mutex<Option<std::sync::Arc<Ceph>>> = std::sync::Mutex::new(None);
    #[cfg(unix)]
    extern "C" fn stop_ceph() {
        // A start that panicked poisoned the lock: what it holds is still to be stopped.
        drop(CEPH.lock().unwrap_or_else(|p| p.into_inner()).take());
    }
    let mut held = CEPH.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = held.as_ref() {
        return c.clone();
    }
    // About one start in five on a loaded 2-core machine leaves radosgw never listening (its
    // log ends at "not setting numa affinity"); a fresh cluster then starts. A start that fails
    // stops its own daemons as it unwinds, so a few tries cost only time.
    let mut failed = None;
    let mut started = None;
    for _ in 0..3 {
        match std::panic::catch_unwind(start_ceph) {
            Ok(c) => {
                started = Some(c);
                break;
            }
            Err(e) => failed = Some(e),
        }
    }
    let Some(started) = started else {
        std::panic::resume_unwind(failed.expect("three tries, each failed"))
    };
    let c = std::sync::Arc::new(started);
    // Statics are never dropped: the daemons are stopped when the process exits.
    #[cfg(unix)]
    // SAFETY: registers a plain function with no arguments, as atexit requires.
    unsafe {
        libc::atexit(stop_ceph);
    }
    *held = Some(c.clone());
    c
}

/// A one-node Ceph cluster with radosgw on free ports, and the bucket [`BUCKET`].
pub fn start_ceph() -> Ceph {
    for program in [
        "ceph-mon",
        "ceph-osd",
        "radosgw",
        "radosgw-admin",
        "monmaptool",
    ] {
        find(
            "ceph",
            &[PathBuf::from(program), Path::new("/usr/bin").join(program)],
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let (mon_port, rgw_port) = (steady_port(), steady_port());
    let fsid = uuid::Uuid::new_v4().to_string();
    for sub in ["run", "log", "mon/ceph-a", "osd/ceph-0", "rgw"] {
        std::fs::create_dir_all(d.join(sub)).unwrap();
    }
    // No cephx (a test cluster on 127.0.0.1); one OSD, so pools of one copy and few PGs.
    // radosgw waits 300 s for the monitor unless its client mode allows crc.
    let conf_text = format!(
        "[global]\nfsid = {fsid}\nmon host = v1:127.0.0.1:{mon_port}\nmon initial members = a\n\
         auth cluster required = none\nauth service required = none\nauth client required = none\n\
         ms bind msgr2 = false\nrun dir = {d}/run\nadmin socket = {d}/run/$name.asok\n\
         log file = {d}/log/$name.log\npid file = {d}/run/$name.pid\nkeyring = {d}/keyring\n\
         osd pool default size = 1\nosd pool default min size = 1\nosd pool default pg num = 8\n\
         osd pool default pgp num = 8\nosd pool default pg autoscale mode = off\n\
         mon allow pool size one = true\nmon warn on pool no redundancy = false\n\
         osd crush chooseleaf type = 0\nosd objectstore = memstore\n\
         memstore device bytes = 4294967296\nmon data avail crit = 0\n\
         [mon]\nmon data = {d}/mon/$cluster-$id\n[osd]\nosd data = {d}/osd/$cluster-$id\n\
         [client]\nms mon client mode = crc secure\nrgw data = {d}/rgw\n\
         [client.rgw.a]\nrgw frontends = beast endpoint=127.0.0.1:{rgw_port}\n",
        d = d.display()
    );
    let conf = d.join("ceph.conf");
    std::fs::write(&conf, conf_text).unwrap();
    let must = |out: std::process::Output, what: &str| {
        assert!(out.status.success(), "{what}: {out:?}");
    };
    must(
        Command::new("ceph-authtool")
            .arg("--create-keyring")
            .arg(d.join("keyring"))
            .args(["--gen-key", "-n", "mon.", "--cap", "mon", "allow *"])
            .output()
            .unwrap(),
        "ceph-authtool",
    );
    must(
        Command::new("monmaptool")
            .args(["--create", "--addv", "a"])
            .arg(format!("[v1:127.0.0.1:{mon_port}]"))
            .args(["--fsid", &fsid])
            .arg(d.join("monmap"))
            .output()
            .unwrap(),
        "monmaptool",
    );
    let monmap = d.join("monmap").display().to_string();
    let keyring = d.join("keyring").display().to_string();
    must(
        ceph_tool(
            "ceph-mon",
            &conf,
            &[
                "--mkfs",
                "-i",
                "a",
                "--monmap",
                &monmap,
                "--keyring",
                &keyring,
            ],
        ),
        "ceph-mon --mkfs",
    );
    // From here on the handle stops what was started, also when a step below panics.
    let mut ceph = Ceph {
        rgw: None,
        daemons: vec![ceph_daemon(
            "ceph-mon",
            &conf,
            &["-i", "a"],
            &d.join("log/mon.out"),
        )],
        conf: conf.clone(),
        _dir: None,
        access_key: String::new(),
        secret_key: String::new(),
    };
    must(
        ceph_tool("ceph", &conf, &["osd", "create"]),
        "ceph osd create",
    );
    must(
        ceph_tool("ceph-osd", &conf, &["-i", "0", "--mkfs"]),
        "ceph-osd --mkfs",
    );
    ceph.daemons.insert(
        0,
        ceph_daemon("ceph-osd", &conf, &["-i", "0"], &d.join("log/osd.out")),
    );
    ceph._dir = Some(dir);
    let mut cmd = Command::new("radosgw");
    cmd.arg("-c").arg(&conf).args(["-n", "client.rgw.a", "-f"]);
    // radosgw creates its pools before it listens: slow on a loaded machine. A start that
    // fails says what the daemons logged.
    ceph.rgw = Some(Server {
        child: ceph_daemon(
            "radosgw",
            &conf,
            &["-n", "client.rgw.a"],
            &d.join("log/rgw.out"),
        ),
        port: rgw_port,
        dir: tempfile::tempdir().unwrap(),
        name: "radosgw",
    });
    let addr: SocketAddr = format!("127.0.0.1:{rgw_port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        let exited = ceph.rgw.as_mut().unwrap().child.try_wait().unwrap();
        if exited.is_some() || Instant::now() > deadline {
            let tail = |f: &str| {
                let text = std::fs::read_to_string(d.join("log").join(f)).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(15)..].join("\n")
            };
            panic!(
                "radosgw did not listen on {addr} within 120 s ({exited:?}):\n{}\n--- osd:\n{}\n--- mon:\n{}",
                tail("client.rgw.a.log"),
                tail("osd.0.log"),
                tail("mon.a.log")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let (key, secret) = ceph.add_user("octobackup");
    ceph.access_key = key;
    ceph.secret_key = secret;
    // radosgw listens before it serves: the first bucket is created once it answers.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match ceph.owner(BUCKET).create_bucket(None) {
            Ok(()) => break,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "Ceph RGW did not serve within 60 s: {e}"
                );
                std::thread::sleep(Duration::from_millis(250));
            }
        }
    }
    ceph
}

// ---- Azure Blob: Azurite ----

pub fn start_azurite() -> Server {
    let bin = find(
        "azurite",
        &[
            PathBuf::from("azurite-blob"),
            test_tools().join("node_modules/.bin/azurite-blob"),
        ],
    );
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(bin);
    cmd.args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
        .arg("--location")
        .arg(dir.path().join("data"))
        .args(["--silent", "--skipApiVersionCheck", "--disableTelemetry"]);
    let server = spawn("azurite", cmd, port, dir);
    create_container(&server, BUCKET);
    server
}

/// Azurite's endpoint for the development account (path style).
pub fn azurite_endpoint(server: &Server) -> String {
    format!("http://{}/{AZURITE_ACCOUNT}", server.addr())
}

/// Creates a container with a Shared Key signed `PUT ?restype=container` (Create Container),
/// as `az storage container create` would. Signature format: Microsoft Learn, "Authorize with
/// Shared Key".
fn create_container(server: &Server, name: &str) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let date = chrono::Utc::now()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let version = "2021-08-06";
    let to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{name}\nrestype:container"
    );
    let key = b64.decode(AZURITE_KEY).unwrap();
    let signature = b64.encode(hmac_sha256(&key, to_sign.as_bytes()));
    let (status, body) = http(
        "PUT",
        &format!("{}/{name}?restype=container", azurite_endpoint(server)),
        &[
            ("x-ms-date", &date),
            ("x-ms-version", version),
            (
                "Authorization",
                &format!("SharedKey {AZURITE_ACCOUNT}:{signature}"),
            ),
        ],
        b"",
    );
    assert!(status < 300, "Azurite create container: {status} {body}");
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    use hmac::{KeyInit, Mac};
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

// ---- SFTP: OpenSSH ----

pub struct Sftp {
    pub server: Server,
    pub user: String,
    /// The key sshd accepts, and one it does not.
    pub key: PathBuf,
    pub wrong_key: PathBuf,
}

impl Sftp {
    /// A folder on the server (the server shares this machine's files).
    pub fn root(&self) -> PathBuf {
        self.server.dir.path().join("files")
    }

    /// The client's XDG_STATE_HOME (OpenDAL's default place for ssh control sockets).
    pub fn client_state(&self) -> PathBuf {
        self.server.dir.path().join("client-state")
    }

    /// The client's TMPDIR (octobackup's place for ssh control sockets).
    pub fn client_tmp(&self) -> PathBuf {
        let dir = self.server.dir.path().join("client-tmp");
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// What runs left behind: `.ssh-connection*` folders anywhere under the client's folders,
    /// and `ssh` processes that name this server's or `gate_port`'s port or those folders.
    pub fn leftovers(&self, gate_port: Option<u16>) -> Vec<String> {
        let mut found = Vec::new();
        for top in [self.client_state(), self.client_tmp()] {
            let mut stack = vec![top];
            while let Some(dir) = stack.pop() {
                for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                    let name = e.file_name().to_string_lossy().to_string();
                    if name.starts_with(".ssh-connection") {
                        found.push(e.path().display().to_string());
                    } else if e.path().is_dir() {
                        stack.push(e.path());
                    }
                }
            }
        }
        let mut needles = vec![
            self.server.dir.path().display().to_string(),
            format!("-p {}", self.server.port),
        ];
        if let Some(p) = gate_port {
            needles.push(format!("-p {p}"));
        }
        for needle in needles {
            found.extend(
                processes_mentioning(&needle)
                    .into_iter()
                    .filter(|p| p.contains("ssh ") && !p.contains("sshd")),
            );
        }
        found
    }
}

fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "octobackup-test",
            "-f",
        ])
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("ssh-keygen is needed ({e}): apt-get install openssh-client"));
    assert!(out.status.success(), "{out:?}");
}

/// sshd with its own config: this user, one ed25519 key, `internal-sftp`, nothing else.
pub fn start_sftp() -> Sftp {
    let sshd = find(
        "sshd",
        &[PathBuf::from("sshd"), PathBuf::from("/usr/sbin/sshd")],
    );
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("files")).unwrap();
    keygen(&d.join("host_ed25519"));
    keygen(&d.join("id_ed25519"));
    keygen(&d.join("wrong_ed25519"));
    std::fs::copy(d.join("id_ed25519.pub"), d.join("authorized_keys")).unwrap();
    let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string();
    let config = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nAuthorizedKeysFile {auth}\nPidFile {pid}\n\
         UsePAM no\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
         PermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n",
        host = d.join("host_ed25519").display(),
        auth = d.join("authorized_keys").display(),
        pid = d.join("sshd.pid").display(),
    );
    std::fs::write(d.join("sshd_config"), config).unwrap();
    // sshd started as root wants its privilege separation folder.
    if is_root() {
        let _ = std::fs::create_dir_all("/run/sshd");
    }
    let mut cmd = Command::new(sshd);
    cmd.args(["-D", "-e", "-f"]).arg(d.join("sshd_config"));
    let server = spawn("sshd", cmd, port, dir);
    let d = server.dir.path().to_path_buf();
    Sftp {
        server,
        user,
        key: d.join("id_ed25519"),
        wrong_key: d.join("wrong_ed25519"),
    }
}

fn is_root() -> bool {
    String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout)
        .map(|s| s.trim() == "0")
        .unwrap_or(false)
}

// ---- A gate in front of a server: "the storage server stopped" without losing its data ----

/// A TCP forwarder on a port of its own in front of a server. [`Gate::close`] stops it the way a
/// stopped server looks to a client: new connections are refused (nothing listens on the port)
/// and open ones are cut. The server behind keeps running with its data, so what a failed run
/// left can be checked once the gate is open again.
pub struct Gate {
    pub port: u16,
    upstream: SocketAddr,
    listener: std::sync::Arc<std::sync::Mutex<Option<TcpListener>>>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<TcpStream>>>,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// How new connections are served: [`FORWARD`], [`HANG`] or [`STALL_BODY`].
    mode: std::sync::Arc<std::sync::atomic::AtomicU8>,
    /// Called for each connection the gate accepts (whatever it then does with it).
    watch: std::sync::Arc<std::sync::Mutex<Option<ConnectionHook>>>,
}

pub type ConnectionHook = std::sync::Arc<dyn Fn() + Send + Sync>;

const FORWARD: u8 = 0;
/// Accepted, and never answered (a server whose process hangs, a proxy with a dead upstream).
const HANG: u8 = 1;
/// The response's headers pass, then nothing more (a server that stalls mid-body).
const STALL_BODY: u8 = 2;

impl Gate {
    pub fn new(upstream: &str) -> Gate {
        let port = free_port();
        let gate = Gate {
            port,
            upstream: upstream.parse().unwrap(),
            listener: Default::default(),
            conns: Default::default(),
            done: Default::default(),
            mode: Default::default(),
            watch: Default::default(),
        };
        gate.open();
        let (listener, conns, done, upstream, mode, watch) = (
            gate.listener.clone(),
            gate.conns.clone(),
            gate.done.clone(),
            gate.upstream,
            gate.mode.clone(),
            gate.watch.clone(),
        );
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let accepted = listener
                    .lock()
                    .unwrap()
                    .as_ref()
                    .and_then(|l| l.accept().ok());
                let Some((client, _)) = accepted else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let _ = client.set_nonblocking(false);
                let hook = watch.lock().unwrap().clone();
                if let Some(hook) = hook {
                    hook();
                }
                let how = mode.load(std::sync::atomic::Ordering::SeqCst);
                if how == HANG {
                    conns.lock().unwrap().push(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let mut all = conns.lock().unwrap();
                all.push(client.try_clone().unwrap());
                all.push(server.try_clone().unwrap());
                let (mut up_from, mut up_to) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut up_from, &mut up_to);
                    let _ = up_to.shutdown(std::net::Shutdown::Both);
                });
                let (mut from, mut to) = (server, client);
                std::thread::spawn(move || {
                    if how == STALL_BODY {
                        pass_headers_only(&mut from, &mut to);
                    } else {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    }
                });
            }
        });
        gate
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Listens again on the same port.
    pub fn open(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let l = loop {
            match TcpListener::bind(("127.0.0.1", self.port)) {
                Ok(l) => break l,
                Err(e) => {
                    assert!(Instant::now() < deadline, "cannot listen again: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        l.set_nonblocking(true).unwrap();
        *self.listener.lock().unwrap() = Some(l);
    }

    /// Calls `hook` for each connection the gate accepts from now on.
    pub fn on_connection(&self, hook: ConnectionHook) {
        *self.watch.lock().unwrap() = Some(hook);
    }

    /// A switch that makes the gate hang (as [`Gate::hang`]), usable from another thread or a
    /// lab hook.
    pub fn hang_switch(&self) -> impl Fn() + Send + Sync + 'static {
        let (mode, conns) = (self.mode.clone(), self.conns.clone());
        move || {
            mode.store(HANG, std::sync::atomic::Ordering::SeqCst);
            for c in conns.lock().unwrap().drain(..) {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
        }
    }

    /// A switch that closes the gate (as [`Gate::close`]), usable from another thread.
    pub fn close_switch(&self) -> impl Fn() + Send + Sync + 'static {
        let (listener, conns) = (self.listener.clone(), self.conns.clone());
        move || {
            *listener.lock().unwrap() = None;
            for c in conns.lock().unwrap().drain(..) {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
        }
    }

    /// Listens, but never answers new connections (the open ones are cut, so the clients'
    /// next requests meet it).
    pub fn hang(&self) {
        self.cut(HANG);
    }

    /// Passes the response headers of new connections, then stalls them (the open ones are cut).
    pub fn stall_bodies(&self) {
        self.cut(STALL_BODY);
    }

    fn cut(&self, mode: u8) {
        self.mode.store(mode, std::sync::atomic::Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Refuses new connections and cuts the open ones.
    pub fn close(&self) {
        self.mode
            .store(FORWARD, std::sync::atomic::Ordering::SeqCst);
        *self.listener.lock().unwrap() = None;
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Copies the first response's head (up to its blank line), then reads and drops the rest:
/// the client has its headers and waits for ever for the body.
fn pass_headers_only(from: &mut TcpStream, to: &mut TcpStream) {
    use std::io::{Read, Write};
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 {
            return;
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let _ = to.write_all(&head[..end + 4]);
            break;
        }
    }
    while matches!(from.read(&mut buf), Ok(n) if n > 0) {}
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.close();
        self.done.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Processes whose command line mentions `needle` (Linux `/proc`; none elsewhere), as
/// `pid: command line`.
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<u32>().ok()?;
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            (cmd.contains(needle) && pid != std::process::id()).then(|| format!("{pid}: {cmd}"))
        })
        .collect()
}
