//! The SQL Server stand-in's reader of client TDS messages (packets, PRELOGIN, LOGIN7): never
//! panics on any bytes a client could send.
#![no_main]

use libfuzzer_sys::fuzz_target;
use octobackup_fuzz::tds::packet::{self, PacketHeader, PacketType};
use octobackup_fuzz::tds::{login7, prelogin};
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    // Header encoding round-trips (the reserved last byte aside).
    if let Some(head) = data.first_chunk::<8>() {
        let header = PacketHeader::decode(head);
        assert_eq!(PacketHeader::decode(&header.encode()), header);
    }
    // Reading from a byte slice never waits: a current-thread runtime is enough.
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    });
    let mut reader = data;
    let Ok(Some(message)) = runtime.block_on(packet::read_message(&mut reader)) else {
        return;
    };
    let payload = &message.payload;
    match message.packet_type {
        PacketType::PreLogin => {
            let _ = prelogin::parse_client(payload);
        }
        PacketType::Login7 => {
            if let Ok(login) = login7::parse(payload) {
                let _ = format!("{login:?}");
            }
        }
        _ => {}
    }
    // The password obfuscation of LOGIN7 is its own inverse's inverse.
    assert_eq!(
        login7::obfuscate_password(&login7::deobfuscate_password(payload)),
        *payload
    );
});
