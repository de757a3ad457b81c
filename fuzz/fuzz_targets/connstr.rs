//! The ADO.NET connection-string parser: never panics, and a password never shows in an error
//! message or in the parsed string's Debug form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use octobackup_fuzz::sqlserver::connstr::{ConnectionString, questionable_keys};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Any text at all.
    if let Err(e) = ConnectionString::parse(text) {
        let _ = e.to_string();
    }
    let _ = questionable_keys(text);

    // The same text with a password added: whatever is wrong with the rest, the password is
    // never echoed. The first line is the password (letters and digits, marked so that no fixed
    // message text can contain it), the remainder the rest of the string.
    let (word, rest) = text.split_once('\n').unwrap_or((text, ""));
    if word.is_empty() || !word.chars().all(|c| c.is_ascii_alphanumeric()) {
        return;
    }
    let secret = format!("Zq7{word}7qZ");
    if rest.contains(&secret) {
        return;
    }
    for joined in [
        format!("{rest};Password={secret}"),
        format!("Password={secret};{rest}"),
        format!("{rest};Pwd='{secret}'"),
    ] {
        match ConnectionString::parse(&joined) {
            Err(e) => assert!(
                !e.to_string().contains(&secret),
                "the password is in the error: {e}"
            ),
            Ok(cs) => assert!(
                !format!("{cs:?}").contains(&secret),
                "the password is in the Debug form"
            ),
        }
    }
});
