//! A set's manifest, as read back from a set: never panics, and one that parses prints to JSON
//! that parses to the same manifest.
#![no_main]

use libfuzzer_sys::fuzz_target;
use octobackup_fuzz::backupset::Manifest;

fuzz_target!(|data: &[u8]| {
    let Ok(manifest) = serde_json::from_slice::<Manifest>(data) else {
        return;
    };
    let printed = serde_json::to_string(&manifest).expect("a manifest prints");
    let again: Manifest = serde_json::from_str(&printed)
        .unwrap_or_else(|e| panic!("the printed manifest does not parse: {e}\n{printed}"));
    assert_eq!(
        serde_json::to_string(&again).expect("a manifest prints"),
        printed
    );
});
