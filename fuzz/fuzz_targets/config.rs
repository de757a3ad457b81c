//! The config loader: never panics on any file, and a config it accepts prints (`to_toml`) to
//! one it accepts again, unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use octobackup_fuzz::config::Config;
use std::sync::OnceLock;

fn scratch() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temp folder"))
        .path()
}

fuzz_target!(|data: &[u8]| {
    let path = scratch().join("octobackup.toml");
    std::fs::write(&path, data).expect("write the config");
    let Ok(config) = Config::load(&path) else {
        return;
    };
    let printed = config.to_toml();
    std::fs::write(&path, &printed).expect("write the config");
    let again = Config::load(&path)
        .unwrap_or_else(|e| panic!("the printed config does not load: {e}\n{printed}"));
    assert_eq!(
        again.to_toml(),
        printed,
        "the config changed when printed and read back"
    );
});
