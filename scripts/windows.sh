#!/usr/bin/env bash
# Windows in CI, from this Linux machine: Debian's rustc-web (with its std sources, -Zbuild-std)
# builds the whole workspace for x86_64-pc-windows-gnu with clippy as the workspace's compiler
# (so the one build also lints every target, -D warnings), mingw links it, and wine runs
# octobackup.exe (--version, --help) and octobackup-lab.exe demo. rustup cannot add the Windows
# target here, so this uses Debian's binaries explicitly and its own target dir (target/win),
# apart from the Linux build.
#
#   scripts/windows.sh                 everything (install, build and lint, run under wine)
#   WINDOWS_PROFILE=release scripts/windows.sh    build the .exe with the release profile
#                                      (default: dev with unoptimised dependencies, see below)
#   WINDOWS_SKIP_RUN=1 scripts/windows.sh         stop after the build
#   WINDOWS_TARGET_DIR=/tmp/w scripts/windows.sh  another target dir (default target/win)
#
# Output: target/win/x86_64-pc-windows-gnu/<profile>/octobackup.exe and octobackup-lab.exe
# Time, cold (empty target dir, packages installed, this 2-core machine alone): before, a clippy
# pass (cargo check plus lints: std and every dependency type-checked) and then a build (all of
# it compiled again) took 518 s + 476 s. Now one build lints as it compiles (clippy-driver as
# RUSTC_WORKSPACE_WRAPPER: the workspace's crates go through clippy, the dependencies through plain
# rustc, as under cargo clippy), with only the dependencies that do the heavy work optimised:
# 434 s, then the shipped .exe 91 s, wine 9 s. scripts/test.sh starts it in the background at
# the lowest priority while the Linux build and tests run (the tests mostly wait).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi

# The packages, one line (scripts/test.sh installs them with its own in one apt run).
read -ra pkgs < scripts/windows/apt-packages
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]} (apt)"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# rust-web-src has no versioned Depends: the std sources must match the compiler.
rv=$(dpkg-query -W -f='${Version}' rustc-web); sv=$(dpkg-query -W -f='${Version}' rust-web-src)
if [ "$rv" != "$sv" ]; then
  echo "rustc-web $rv and rust-web-src $sv differ: run apt-get install rustc-web rust-web-src (same version)" >&2
  exit 1
fi

# Debian's toolchain, not rustup's (which is first on PATH); build-std needs RUSTC_BOOTSTRAP.
export PATH=/usr/bin:$PATH RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
export CARGO_TARGET_DIR="${WINDOWS_TARGET_DIR:-$root/target/win}"
# No debug info in the test .exe: less to build and link, and wine needs none.
export CARGO_PROFILE_DEV_DEBUG="${CARGO_PROFILE_DEV_DEBUG:-0}"
target=x86_64-pc-windows-gnu
# `test` in -Zbuild-std for every build, tests or not: std is then built once with the same
# features, and the shipped .exe's build below shares it and every dependency with the
# workspace's (without it: 441 crates compiled again, 210 s; with it: 69 crates, 91 s).
BS=(-Zbuild-std=std,panic_abort,test --target "$target" --locked)
profile=${WINDOWS_PROFILE:-dev}
t0=$SECONDS
step() { echo "== [windows $((SECONDS - t0))s] $*"; }

# clippy-driver is rustc with clippy's lints: as the workspace's wrapper in a build it lints every
# target it compiles (what cargo clippy does in a check, which would type-check std and every
# dependency a second time). CLIPPY_ARGS is how cargo clippy hands it `-D warnings`.
export RUSTC_WORKSPACE_WRAPPER=/usr/bin/clippy-driver
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
# Every target of every crate with the lab (the tests' platform code compiles on Windows too),
# then octobackup.exe again as an administrator installs it: without the lab feature, linted in
# that form too (its cfg(feature = "lab") hooks compiled out). The lab's demo under wine runs that
# octobackup.exe. The dev profile optimises only the dependencies that hash, encrypt and compress
# (the workspace's Cargo.toml).
step "$(/usr/bin/rustc --version): cargo build --workspace --all-targets --features octobackup/lab --profile $profile (clippy -D warnings)"
/usr/bin/cargo build "${BS[@]}" --workspace --all-targets --features octobackup/lab --profile "$profile"
step "cargo build -p octobackup --bin octobackup --profile $profile (the shipped .exe: no lab; clippy -D warnings)"
/usr/bin/cargo build "${BS[@]}" -p octobackup --bin octobackup --profile "$profile"
case $profile in dev) dir=debug ;; *) dir=$profile ;; esac
exe="$CARGO_TARGET_DIR/$target/$dir/octobackup.exe"
lab_exe="$CARGO_TARGET_DIR/$target/$dir/octobackup-lab.exe"
ls -l "$exe" "$lab_exe"
[ -n "${WINDOWS_SKIP_RUN:-}" ] && { step done; exit 0; }

# Wine 8 (Debian 12) lacks bcryptprimitives.dll, which Rust std >= 1.78 imports (ProcessPrng):
# a test-only shim forwards it to RtlGenRandom. Real Windows (10 and later) has the DLL.
wine=/usr/lib/wine/wine64
work=$(mktemp -d "${TMPDIR:-/tmp}/octobackup-wine.XXXXXX")
cleanup() { WINEPREFIX="$work/prefix" /usr/lib/wine/wineserver -k >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
export WINEPREFIX="$work/prefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
step "wineboot (prefix $WINEPREFIX)"
"$wine" wineboot --init >/dev/null 2>&1
x86_64-w64-mingw32-gcc -shared -O2 -o "$work/bcryptprimitives.dll" \
  scripts/windows/bcryptprimitives.c -ladvapi32
cp "$work/bcryptprimitives.dll" "$WINEPREFIX/drive_c/windows/system32/"

failed=()
run() { # run NAME EXE ARGS...: runs a .exe under wine, keeps going on failure
  local name=$1 exe=$2; shift 2
  step "wine $(basename "$exe") $*"
  local rc=0
  "$wine" "$exe" "$@" >"$work/$name.out" 2>"$work/$name.err" || rc=$?
  if [ "$rc" != 0 ]; then
    echo "!! $(basename "$exe") $* failed under wine (exit $rc); stdout then stderr:" >&2
    tail -n 40 "$work/$name.out" "$work/$name.err" >&2
    failed+=("$name")
    return 0
  fi
  tail -n 40 "$work/$name.out"
}
run version "$exe" --version
run help "$exe" --help
run demo "$lab_exe" demo

step "done"
if [ ${#failed[@]} -gt 0 ]; then
  echo "under wine, these failed: ${failed[*]}" >&2
  exit 1
fi
