//! What `Octopus.Server show-configuration` and `show-master-key` print, with whatever log lines
//! and exception text around it: the parsers never panic, and a key they find is a valid key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use octobackup_fuzz::octopus::{discovery, master_key};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(settings) = discovery::parse_settings(text) {
        let _ = format!("{:?}", discovery::interpret("OctopusServer", settings));
    }
    if let Some(key) = master_key::parse_command_output(text) {
        assert!(
            master_key::validate(&key).is_ok(),
            "an invalid key was taken"
        );
    }
});
