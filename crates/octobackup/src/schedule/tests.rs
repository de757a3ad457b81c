use super::*;

fn windows_plan() -> Plan {
    Plan {
        instance: "OctopusServer".into(),
        exe: PathBuf::from(r"C:\Program Files\octobackup\octobackup.exe"),
        config: PathBuf::from(r"C:\ProgramData\octobackup\octobackup.toml"),
        at: "02:30".parse().unwrap(),
        user: WINDOWS_DEFAULT_USER.into(),
        environment_file: None,
        report: None,
        forget: false,
        writable: vec![],
    }
}

fn linux_plan() -> Plan {
    Plan {
        instance: "OctopusServer".into(),
        exe: PathBuf::from("/usr/local/bin/octobackup"),
        config: PathBuf::from("/etc/octobackup/octobackup.toml"),
        at: "02:30".parse().unwrap(),
        user: "octobackup".into(),
        environment_file: Some(PathBuf::from("/etc/octobackup/env")),
        report: Some(PathBuf::from("/srv/share/octobackup report.html")),
        forget: true,
        writable: vec![
            PathBuf::from("/var/opt/octobackup/staging"),
            PathBuf::from("/etc/octobackup/state"),
            PathBuf::from("relative/ignored"),
        ],
    }
}

#[test]
fn the_schtasks_command_line_is_exactly_the_readmes_settings() {
    let args = schtasks_create(&windows_plan()).unwrap();
    let tr = r#""C:\Program Files\octobackup\octobackup.exe" --config C:\ProgramData\octobackup\octobackup.toml schedule run --instance OctopusServer"#;
    assert_eq!(
        args,
        [
            "/Create",
            "/F",
            "/TN",
            "octobackup-OctopusServer",
            "/SC",
            "DAILY",
            "/ST",
            "02:30",
            "/RU",
            "SYSTEM",
            "/RL",
            "HIGHEST",
            "/TR",
            tr
        ]
    );
    assert_eq!(
        windows_command_line("schtasks.exe", &args),
        r#"schtasks.exe /Create /F /TN octobackup-OctopusServer /SC DAILY /ST 02:30 /RU SYSTEM /RL HIGHEST /TR "\"C:\Program Files\octobackup\octobackup.exe\" --config C:\ProgramData\octobackup\octobackup.toml schedule run --instance OctopusServer""#
    );
    // No password anywhere: not for SYSTEM, and schtasks asks for another account's.
    assert!(!args.iter().any(|a| a == "/RP"));
}

#[test]
fn the_task_runs_as_the_chosen_account_with_the_report_and_quoted_names() {
    let mut plan = windows_plan();
    plan.exe = PathBuf::from(r"C:\ob\octobackup.exe");
    plan.config = PathBuf::from(r"C:\ob\ob.toml");
    plan.instance = "Octopus Main".into();
    plan.user = r"CORP\svc-octobackup".into();
    plan.report = Some(PathBuf::from(r"\\files\ops\octobackup.html"));
    plan.forget = true;
    let args = schtasks_create(&plan).unwrap();
    assert_eq!(args[3], "octobackup-Octopus_Main");
    assert_eq!(args[9], r"CORP\svc-octobackup");
    assert_eq!(
        args[13],
        r#""C:\ob\octobackup.exe" --config C:\ob\ob.toml schedule run --instance "Octopus Main" --forget --report \\files\ops\octobackup.html"#
    );
}

#[test]
fn a_task_command_schtasks_cannot_carry_is_refused_with_the_fix() {
    let mut plan = windows_plan();
    plan.report = Some(PathBuf::from(format!(
        r"\\fileserver.example.corp\operations\{}\octobackup.html",
        "octopus-deploy-reports\\".repeat(6)
    )));
    let e = schtasks_create(&plan).unwrap_err();
    assert!(e.contains("more than the 261 schtasks accepts"), "{e}");
    assert!(e.contains("shorter paths"), "{e}");
    let mut plan = windows_plan();
    plan.instance = "say \"hi\"".into();
    let e = schtasks_create(&plan).unwrap_err();
    assert!(e.contains("rename it"), "{e}");
}

#[test]
fn query_and_delete_name_the_same_task() {
    assert_eq!(
        schtasks_query("OctopusServer"),
        [
            "/Query",
            "/TN",
            "octobackup-OctopusServer",
            "/V",
            "/FO",
            "LIST"
        ]
    );
    assert_eq!(
        schtasks_delete("OctopusServer"),
        ["/Delete", "/TN", "octobackup-OctopusServer", "/F"]
    );
}

#[test]
fn the_windows_command_line_quotes_as_the_c_runtime_parses() {
    let args: Vec<String> = [
        "plain",
        "two words",
        "",
        r#"say "hi""#,
        r"C:\dir\",
        r"C:\a b\",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(
        windows_command_line("p", &args),
        r#"p plain "two words" "" "say \"hi\"" C:\dir\ "C:\a b\\""#
    );
}

#[test]
fn the_service_runs_backup_then_drill_as_the_user_with_the_staging_folder_writable() {
    let (service, timer) = systemd_units(&linux_plan());
    let lines: Vec<&str> = service.lines().collect();
    for want in [
        "Type=oneshot",
        "User=octobackup",
        "EnvironmentFile=/etc/octobackup/env",
        r#"ExecStart="/usr/local/bin/octobackup" "--config" "/etc/octobackup/octobackup.toml" "backup" "--forget" "--instance" "OctopusServer""#,
        r#"ExecStart="/usr/local/bin/octobackup" "--config" "/etc/octobackup/octobackup.toml" "drill" "--instance" "OctopusServer""#,
        r#"ExecStopPost=-"/usr/local/bin/octobackup" "--config" "/etc/octobackup/octobackup.toml" "report" "--out" "/srv/share/octobackup report.html""#,
        "ProtectSystem=full",
        "ReadWritePaths=-/var/opt/octobackup/staging -/etc/octobackup/state",
        "PrivateTmp=yes",
        "TimeoutStopSec=180",
        "KillMode=mixed",
    ] {
        assert!(lines.contains(&want), "{want} missing from\n{service}");
    }
    // backup before drill.
    let backup = service.find("\"backup\"").unwrap();
    assert!(backup < service.find("\"drill\"").unwrap());
    for want in [
        "OnCalendar=*-*-* 02:30:00",
        "Persistent=true",
        "Unit=octobackup-OctopusServer.service",
        "WantedBy=timers.target",
    ] {
        assert!(
            timer.lines().any(|l| l == want),
            "{want} missing from\n{timer}"
        );
    }
}

#[test]
fn a_staging_folder_under_tmp_keeps_the_real_tmp() {
    let mut plan = linux_plan();
    plan.writable = vec![PathBuf::from("/tmp/octobackup-staging")];
    let (service, _) = systemd_units(&plan);
    assert!(!service.contains("PrivateTmp"), "{service}");
}

#[test]
fn paths_are_taken_literally_by_systemd() {
    assert_eq!(
        systemd_word(r#"/a b/%h/$X/"q"\"#),
        r#""/a b/%%h/$$X/\"q\"\\""#
    );
}

#[test]
fn at_is_a_time_of_day() {
    assert_eq!("02:30".parse::<At>().unwrap().to_string(), "02:30");
    assert_eq!("7:05".parse::<At>().unwrap().to_string(), "07:05");
    for bad in ["24:00", "02:60", "2", "02:5", "noon", ""] {
        let e = bad.parse::<At>().unwrap_err();
        assert!(e.contains("HH:MM"), "{bad}: {e}");
    }
}
