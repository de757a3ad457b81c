//! Windows reserves 1 MiB of stack for a program's main thread (Linux 8 MiB). The commands run
//! on the main thread (`runtime.block_on`), and a backup's state machine, with every step it may
//! await, overflowed 1 MiB under wine: reserve 8 MiB for both binaries, as on Linux. Microsoft
//! Learn, "/STACK (Stack allocations)"; GNU ld's `--stack` for the MinGW target.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("windows") {
        const STACK: u32 = 8 * 1024 * 1024;
        if std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("msvc") {
            println!("cargo:rustc-link-arg-bins=/STACK:{STACK}");
        } else {
            println!("cargo:rustc-link-arg-bins=-Wl,--stack,{STACK}");
        }
    }
}
