#!/usr/bin/env bash
# Windows in CI, from this Linux machine: Debian's rustc-web (with its std sources, -Zbuild-std)
# lints (clippy, which checks) and builds the workspace for x86_64-pc-windows-gnu, mingw links it,
# and wine runs octobackup.exe (--version, --help) and octobackup-lab.exe demo. rustup cannot add the Windows target here, so this
# uses Debian's binaries explicitly and its own target dir (target/win), apart from the Linux build.
#
#   scripts/windows.sh                 everything (install, clippy, build, run under wine)
#   WINDOWS_PROFILE=release scripts/windows.sh    build the .exe with the release profile
#                                      (default: dev, which is much faster to build; see README)
#   WINDOWS_SKIP_RUN=1 scripts/windows.sh         stop after the build
#   WINDOWS_SKIP_LINT=1 scripts/windows.sh        only build and run the .exe (no clippy)
#   WINDOWS_TARGET_DIR=/tmp/w scripts/windows.sh  another target dir (default target/win)
#
# Output: target/win/x86_64-pc-windows-gnu/<profile>/octobackup.exe and octobackup-lab.exe
# Time, cold (empty target dir, packages installed), measured on a shared 2-core machine while
# other builds ran: 24 min (check 13 min, clippy 22 s, dev build 10 min, wine 11 s); warm: under 1 min.
# The separate check is gone since: clippy alone now checks the dependencies and std (most of those
# 13 min), and the workspace's own crates are type-checked once instead of twice.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi

pkgs=(rustc-web cargo-web rust-web-src rust-web-clippy gcc-mingw-w64-x86-64 wine64)
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
BS=(-Zbuild-std=std,panic_abort --target "$target" --locked)
profile=${WINDOWS_PROFILE:-dev}
t0=$SECONDS
step() { echo "== [windows $((SECONDS - t0))s] $*"; }

if [ -z "${WINDOWS_SKIP_LINT:-}" ]; then
  # clippy is cargo check plus lints (the dependencies and std are checked by plain rustc, as
  # cargo check does): a separate cargo check would type-check the workspace's crates twice.
  step "$(/usr/bin/rustc --version): cargo clippy --workspace --all-targets -D warnings"
  /usr/bin/cargo clippy "${BS[@]}" --workspace --all-targets -- -D warnings
fi
# Both binaries in one build (the lab's demo runs octobackup.exe beside it). The octobackup.exe an
# administrator installs is built without --features lab; the code it runs is the same.
step "cargo build -p octobackup --features lab --bins --profile $profile"
/usr/bin/cargo build "${BS[@]}" -p octobackup --features lab --bins --profile "$profile"
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
