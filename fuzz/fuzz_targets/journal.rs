//! The maintenance journal's record as `read_record` reads it after a crash: never panics; a
//! record it reads is written and read back the same; anything else is an error, never "no
//! record" (that would be read as "maintenance mode was not changed").
#![no_main]

use libfuzzer_sys::fuzz_target;
use octobackup_fuzz::run::journal::StateDir;
use std::sync::OnceLock;

fn state() -> &'static StateDir {
    static DIR: OnceLock<(tempfile::TempDir, StateDir)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temp folder");
        let state = StateDir::new(dir.path());
        (dir, state)
    })
    .1
}

fuzz_target!(|data: &[u8]| {
    let state = state();
    // The record's file, as `write_record` names it for the instance `OctopusServer`.
    let path = state.dir.join("OctopusServer.maintenance.json");
    std::fs::write(&path, data).expect("write the record");
    match state.read_record("OctopusServer") {
        Ok(Some(record)) => {
            state.write_record(&record).expect("write the record");
            let again = state
                .read_record(&record.instance)
                .expect("read the record back")
                .expect("the record is there");
            assert_eq!(again, record);
            let _ = std::fs::remove_file(&path);
        }
        Ok(None) => panic!("a record file that is there was read as no record"),
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
