//! `octobackup doctor` against a healthy lab, then against each broken setting: every failure is
//! named, with its fix, and the exit code is 8.

use crate::common::*;

fn report(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(out), stderr(out)))
}

fn status<'a>(r: &'a serde_json::Value, name: &str) -> &'a str {
    r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {r:#}"))["status"]
        .as_str()
        .unwrap()
}

fn failed(r: &serde_json::Value) -> Vec<String> {
    r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_a_healthy_lab_and_names_each_broken_setting() {
    let t = TestLab::start().await;

    // Repository missing (not initialised yet): only that fails.
    let out = t.run(&["--json", "doctor"]).await;
    assert_eq!(out.status.code(), Some(8), "{}", stderr(&out));
    let r = report(&out);
    assert_eq!(failed(&r), ["repository"], "{r:#}");
    assert!(r["checks"].to_string().contains("octobackup init"), "{r:#}");

    // Healthy, with a set to size free space against.
    t.init().await;
    t.ok(&["backup"]).await;
    let out = t.run(&["--json", "doctor"]).await;
    let r = report(&out);
    assert_eq!(out.status.code(), Some(0), "{r:#}");
    assert_eq!(r["ok"], true);
    for name in [
        "octopus-api",
        "clock",
        "octopus-api-key",
        "administer-system",
        "master-key",
        "sql-login",
        "sql-permission",
        "staging",
        "folders",
        "repository",
        "free-space",
    ] {
        assert_eq!(status(&r, name), "pass", "{name}: {r:#}");
    }
    // doctor changes nothing: maintenance mode is off and was never turned on by it.
    let changes = maintenance_changes(&t.events()).len();
    assert!(!t.lab.octopus().maintenance());
    // The human form says ok per line.
    let human = t.ok(&["doctor"]).await;
    assert!(
        stdout(&human).contains("ok   master-key"),
        "{}",
        stdout(&human)
    );
    let info = t.lab.info().clone();
    for o in [&out, &human] {
        for secret in [&info.admin_api_key, &info.sql_password] {
            assert!(!stdout(o).contains(secret.as_str()) && !stderr(o).contains(secret.as_str()));
        }
    }

    let original = std::fs::read_to_string(&t.config).unwrap();
    let secrets = t.dir.path().join("secrets");
    let write = |name: &str, value: &str| {
        let p = t.dir.path().join(name);
        std::fs::write(&p, value).unwrap();
        p.display().to_string()
    };
    let wrong_key = write("wrong-key", "API-WRONGWRONGWRONGWRONGWRONG1");
    let reader_key = write("reader-key", &info.reader_api_key);
    let wrong_sql = write("wrong-sql", "not-the-password");
    let reader_sql = write("reader-sql", &info.reader_sql_password);
    let _ = secrets;

    type Edit = Box<dyn Fn(&mut toml::Table)>;
    let set = |path: &'static [&'static str], value: String| -> Edit {
        Box::new(move |c: &mut toml::Table| {
            let mut t = TestLab::instance_table(c);
            for p in &path[..path.len() - 1] {
                t = t
                    .entry(p.to_string())
                    .or_insert_with(|| toml::Value::Table(Default::default()))
                    .as_table_mut()
                    .unwrap();
            }
            t.insert(
                path[path.len() - 1].to_string(),
                toml::Value::String(value.clone()),
            );
        })
    };
    let cs = |login: &str| {
        let (host, port) = info.sql_address.rsplit_once(':').unwrap();
        format!(
            "Server={host},{port};Database={};User ID={login};Encrypt=True;TrustServerCertificate=True",
            info.database
        )
    };
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "wrong API key",
            set(&["api_key_file"], wrong_key),
            "octopus-api-key",
        ),
        (
            "key without Administer System",
            set(&["api_key_file"], reader_key),
            "administer-system",
        ),
        (
            "wrong SQL password",
            set(&["sql", "password_file"], wrong_sql),
            "sql-login",
        ),
        (
            "SQL login without BACKUP permission",
            Box::new({
                let a = set(&["sql", "password_file"], reader_sql);
                let b = set(&["sql", "connection_string"], cs(&info.reader_sql_login));
                move |c: &mut toml::Table| {
                    a(c);
                    b(c);
                }
            }),
            "sql-permission",
        ),
        (
            "staging path missing",
            set(
                &["staging", "sql_path"],
                t.dir.path().join("no-such-staging").display().to_string(),
            ),
            "staging",
        ),
        (
            "folder missing",
            set(
                &["folders", "Packages"],
                t.dir.path().join("no-such-packages").display().to_string(),
            ),
            "folders",
        ),
        (
            "master key command failing",
            Box::new({
                let dir = t.dir.path().display().to_string();
                move |c: &mut toml::Table| {
                    let cmd = [
                        lab_exe().display().to_string(),
                        "octopus-server".into(),
                        "--dir".into(),
                        dir.clone(),
                        "--not-admin".into(),
                        "show-master-key".into(),
                        "--format=json".into(),
                    ];
                    let mk = TestLab::instance_table(c)["master_key"]
                        .as_table_mut()
                        .unwrap();
                    mk.insert(
                        "command".into(),
                        toml::Value::Array(cmd.into_iter().map(toml::Value::String).collect()),
                    );
                }
            }),
            "master-key",
        ),
    ];
    for (what, edit, check) in cases {
        std::fs::write(&t.config, &original).unwrap();
        t.edit_config(|c| edit(c));
        let out = t.run(&["--json", "doctor"]).await;
        assert_eq!(out.status.code(), Some(8), "{what}: {}", stderr(&out));
        let r = report(&out);
        assert_eq!(r["ok"], false, "{what}");
        // A login with public only also lacks what VERIFYONLY/drill/restore and msdb need.
        let expected: &[&str] = if check == "sql-permission" {
            &["sql-permission", "sql-create-database", "sql-msdb-history"]
        } else {
            &[check]
        };
        assert_eq!(failed(&r), expected, "{what}: {r:#}");
        let c = r["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == check)
            .unwrap();
        assert!(
            !c["fix"].as_str().unwrap_or("").is_empty(),
            "{what}: no fix: {c:#}"
        );
        let human = t.run(&["doctor"]).await;
        assert_eq!(human.status.code(), Some(8), "{what}");
        assert!(
            stdout(&human).contains(&format!("FAIL {check}")),
            "{what}: {}",
            stdout(&human)
        );
        assert!(stderr(&human).contains(check), "{what}: {}", stderr(&human));
    }
    std::fs::write(&t.config, &original).unwrap();
    assert_eq!(
        maintenance_changes(&t.events()).len(),
        changes,
        "doctor changed maintenance mode"
    );
    assert!(!t.lab.octopus().maintenance());
}

/// The permission check reads the key's user and its system permissions from the API: the admin
/// key passes, a key without AdministerSystem is named as such, and maintenance mode is never
/// touched to find out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reads_the_administer_system_permission_from_the_users_api() {
    let t = TestLab::start().await;
    let check = |r: &serde_json::Value, name: &str| {
        r["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no check {name}: {r:#}"))
            .clone()
    };
    let out = t.run(&["--json", "doctor"]).await;
    let r = report(&out);
    let admin = check(&r, "administer-system");
    assert_eq!(admin["status"], "pass", "{r:#}");
    assert!(
        admin["detail"]
            .as_str()
            .unwrap()
            .contains("octobackup-service"),
        "{admin:#}"
    );

    let reader_key = t.dir.path().join("reader-key");
    std::fs::write(&reader_key, &t.lab.info().reader_api_key).unwrap();
    t.edit_config(|c| {
        TestLab::instance_table(c).insert(
            "api_key_file".into(),
            toml::Value::String(reader_key.display().to_string()),
        );
    });
    let out = t.run(&["--json", "doctor"]).await;
    assert_eq!(out.status.code(), Some(8), "{}", stderr(&out));
    let r = report(&out);
    assert_eq!(status(&r, "octopus-api-key"), "pass", "{r:#}");
    let reader = check(&r, "administer-system");
    assert_eq!(reader["status"], "fail", "{r:#}");
    let detail = reader["detail"].as_str().unwrap();
    assert!(
        detail.contains("release-manager") && detail.contains("AdministerSystem"),
        "{detail}"
    );
    assert!(
        reader["fix"]
            .as_str()
            .unwrap()
            .contains("Administer System"),
        "{reader:#}"
    );
    // Nothing was changed to find out.
    assert!(maintenance_changes(&t.events()).is_empty());
    assert!(!t.lab.octopus().maintenance());
    for secret in [&t.lab.info().reader_api_key, &t.lab.info().admin_api_key] {
        assert!(!stdout(&out).contains(secret.as_str()) && !stderr(&out).contains(secret.as_str()));
    }
}
