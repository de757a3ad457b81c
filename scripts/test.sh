#!/usr/bin/env bash
# Runs every test of octobackup, after installing what the tests need: stock restic (the
# repository must stay readable by it), independent TDS clients for the lab's SQL Server stand-in
# (python-tds, pymssql/FreeTDS, mssql-python, tedious), and the real storage servers of the
# backend suite (tests/e2e/backends.rs): moto (S3), Ceph RGW (a real S3 with Object Lock and
# bucket policies: Debian's ceph and radosgw, about 45 s to install; the suite starts one
# cluster per test binary, about 15 s), Azurite (Azure Blob, into target/test-tools) and
# OpenSSH's sshd (SFTP); Chromium (the report rendered headless, tests/e2e/report.rs; about
# 110 MB to download) and systemd's systemd-analyze (the schedule's unit files verified,
# tests/e2e/schedule.rs); and for the notification and metrics tests (tests/e2e/notify.rs)
# aiosmtpd (an SMTP server with STARTTLS and AUTH), prometheus_client (Prometheus's text parser)
# and Debian's prometheus-pushgateway. The tests
# start and stop the servers themselves. Safe to run again: installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
# Each stage's line carries the seconds since the start, so that a log shows where CI's time goes.
stage() { echo "== [${SECONDS}s] $*"; }
logs=target/test-logs
mkdir -p "$logs"
windows=1
[ -n "${OCTOBACKUP_SKIP_WINDOWS:-}" ] && windows=

# The installs run in the background while the Linux build compiles (downloads and unpacking
# against a compiler: they barely compete); the tests wait for them. Their output goes to
# target/test-logs/install.log, printed if they fail.
install_tools() {
  local need_apt=()
  command -v restic >/dev/null 2>&1 || need_apt+=(restic)
  [ -x /usr/sbin/sshd ] || command -v sshd >/dev/null 2>&1 || need_apt+=(openssh-server)
  command -v ssh-keygen >/dev/null 2>&1 || need_apt+=(openssh-client)
  command -v radosgw >/dev/null 2>&1 || need_apt+=(ceph radosgw)
  command -v npm >/dev/null 2>&1 || need_apt+=(npm)
  command -v chromium >/dev/null 2>&1 || [ -n "${CHROMIUM:-}" ] || need_apt+=(chromium)
  command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
  command -v prometheus-pushgateway >/dev/null 2>&1 || need_apt+=(prometheus-pushgateway)
  if [ -n "$windows" ]; then # scripts/windows.sh's packages, in the same apt run
    local p
    for p in $(cat scripts/windows/apt-packages); do
      dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need_apt+=("$p")
    done
  fi
  if [ ${#need_apt[@]} -gt 0 ]; then
    stage "installing ${need_apt[*]} (apt)"
    if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  fi
  touch "$logs/apt.done"
  if ! python3 -c 'import pytds' >/dev/null 2>&1; then
    stage "installing python-tds (pip)"
    python3 -m pip install --quiet --disable-pip-version-check python-tds
  fi
  if ! python3 -c 'import aiosmtpd, prometheus_client' >/dev/null 2>&1; then
    stage "installing aiosmtpd and prometheus_client (pip)"
    python3 -m pip install --quiet --disable-pip-version-check aiosmtpd prometheus_client
  fi
  # Independent clients of the SQL Server stand-in (lab/sqlserver-sim/tests/sql/clients.rs): FreeTDS
  # through pymssql (its wheel bundles FreeTDS) and Microsoft's mssql-python (its wheel bundles ODBC
  # Driver 18); Microsoft's Node.js driver tedious goes into target/test-tools below.
  if ! python3 -c 'import pymssql' >/dev/null 2>&1; then
    stage "installing pymssql (pip)"
    python3 -m pip install --quiet --disable-pip-version-check pymssql
  fi
  if ! python3 -c 'import mssql_python' >/dev/null 2>&1; then
    stage "installing mssql-python (pip)"
    python3 -m pip install --quiet --disable-pip-version-check mssql-python
  fi
  if ! command -v moto_server >/dev/null 2>&1; then
    stage "installing moto[server] (pip)"
    python3 -m pip install --quiet --disable-pip-version-check 'moto[server]'
  fi
  if [ ! -x target/test-tools/node_modules/.bin/azurite-blob ] && ! command -v azurite-blob >/dev/null 2>&1; then
    stage "installing azurite (npm, into target/test-tools)"
    mkdir -p target/test-tools
    npm install --silent --no-audit --no-fund --prefix target/test-tools azurite >/dev/null
  fi
  if [ ! -f target/test-tools/node_modules/tedious/package.json ]; then
    stage "installing tedious (npm, into target/test-tools)"
    mkdir -p target/test-tools
    npm install --silent --no-audit --no-fund --prefix target/test-tools tedious >/dev/null
  fi
}
# Each background job runs in a process group of its own (set -m while it starts), so that the
# script's exit, early or not, ends all of it (cargo and its compilers included).
end_background_jobs() {
  local pid
  for pid in ${install_pid:-} ${windows_pid:-}; do kill -- -"$pid" 2>/dev/null || true; done
}
trap end_background_jobs EXIT
rm -f "$logs/apt.done"
stage "installing what the tests need, in the background (target/test-logs/install.log)"
set -m
install_tools >"$logs/install.log" 2>&1 &
install_pid=$!
set +m

# Windows (scripts/windows.sh): built and linted in the background as soon as its packages are in,
# at the lowest CPU and I/O priority, so it takes the cores the Linux build and tests leave idle
# (the tests mostly wait on servers and child processes); run under wine at the end.
# OCTOBACKUP_SKIP_WINDOWS=1 leaves it out (e.g. a quick local run).
if [ -n "$windows" ]; then
  set -m
  (
    until [ -e "$logs/apt.done" ]; do
      kill -0 "$install_pid" 2>/dev/null || { echo "the installs failed (target/test-logs/install.log): no Windows build"; exit 1; }
      sleep 2
    done
    low=(nice -n 19)
    command -v ionice >/dev/null 2>&1 && low+=(ionice -c 3)
    WINDOWS_SKIP_RUN=1 "${low[@]}" ./scripts/windows.sh
  ) >"$logs/windows-build.log" 2>&1 &
  windows_pid=$!
  set +m
fi

stage "cargo fmt --check"
cargo fmt --all -- --check
# clippy-driver is rustc with clippy's lints: as the workspace's compiler it lints every target
# the test build compiles (what `cargo clippy --workspace --all-targets` checks), so the
# dependencies are compiled once, not type-checked for clippy and then compiled for the tests.
# CLIPPY_ARGS is how cargo clippy hands it `-D warnings`. (A plain `cargo test` afterwards
# compiles the workspace's own crates again, without the wrapper.)
clippy_driver=$(rustup which clippy-driver 2>/dev/null || command -v clippy-driver || true)
if [ -z "$clippy_driver" ]; then
  echo "clippy-driver not found: rustup component add clippy" >&2
  exit 1
fi
export RUSTC_WORKSPACE_WRAPPER="$clippy_driver"
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
stage "cargo test --no-run: the workspace built and linted (clippy -D warnings) in one pass"
cargo test --workspace --locked --no-run
stage "the shipped octobackup depends on none of the lab's crates (it is built without the lab, as Windows, in scripts/windows.sh)"
if cargo tree -p octobackup -e normal --locked --prefix none | grep -E '^(octobackup-lab|octopus-sim|sqlserver-sim|sqlserver-files|axum|rcgen) '; then
  echo "the product binary depends on the lab (above): keep the lab behind the lab feature" >&2
  exit 1
fi
stage "waiting for the installs"
if ! wait "$install_pid"; then
  cat "$logs/install.log" >&2
  echo "installing what the tests need failed (above)" >&2
  exit 1
fi
cat "$logs/install.log"
stage "restic $(restic version | head -n1 | cut -d' ' -f2), python-tds $(python3 -c 'import pytds; print(pytds.__version__ if hasattr(pytds, "__version__") else "installed")')"
stage "cargo test"
# A failing test's message comes before its backtrace, which can push it out of a log's tail:
# on failure, each panic's first lines are printed again at the end.
test_log=$(mktemp)
if ! cargo test --workspace --locked "$@" 2>&1 | tee "$test_log"; then
  stage "the failed tests' panics (again, without backtraces)"
  grep -A6 "panicked at" "$test_log" | grep -v "^stack backtrace:\|^ *[0-9]*: \|^ *at " || true
  rm -f "$test_log"
  exit 101
fi
rm -f "$test_log"
# What follows builds other workspaces (upstream's code, the fuzz targets): plain rustc.
unset RUSTC_WORKSPACE_WRAPPER CLIPPY_ARGS
stage "cargo test: the patched dependencies (patches/*/PATCHED.md)"
# A patch that keeps its crate's own tests carries a Cargo.lock (committed) for them; rustic_core's and
# rustic_backend's copies ship without tests (their PATCHED.md says so), and what they change is
# tested through the workspace (crates/repo: the overlay, the retry budget, the storage suite).
for p in patches/*/; do
  [ -f "$p/Cargo.lock" ] || continue
  CARGO_TARGET_DIR=target/patches cargo test --locked --quiet --manifest-path "$p/Cargo.toml"
done
# Fuzzing: each libFuzzer target of fuzz/ (fuzz/README.md) runs from its committed seed corpus for
# OCTOBACKUP_FUZZ_SECONDS (default 20; 0 leaves fuzzing out); a crash, a failed assertion or a hang
# fails the run, and the input is kept under fuzz/artifacts/TARGET/.
fuzz_seconds="${OCTOBACKUP_FUZZ_SECONDS:-20}"
if [ "$fuzz_seconds" != 0 ]; then
  stage "fuzzing: ${fuzz_seconds}s per target (fuzz/)"
  (
    cd fuzz
    cargo fmt --check
    # What `cargo fuzz build -s none` does, without installing cargo-fuzz (7 minutes on a fresh
    # machine): libFuzzer's coverage instrumentation (stable codegen flags), for the target only
    # (--target keeps it off build scripts and proc macros), with debug assertions.
    host=$(rustc -vV | sed -n 's/^host: //p')
    RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks" \
      cargo build --release --locked --quiet --target "$host" --bins
    for src in fuzz_targets/*.rs; do
      target=$(basename "$src" .rs)
      scratch="$(mktemp -d)"
      mkdir -p "artifacts/$target"
      ok=1
      "target/$host/release/$target" "$scratch" "corpus/$target" \
        -max_total_time="$fuzz_seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
        -artifact_prefix="artifacts/$target/" >"$scratch.log" 2>&1 || ok=0
      runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$scratch.log")
      echo "-- fuzz $target: ${runs:-?} inputs in ${fuzz_seconds}s"
      if [ "$ok" = 0 ]; then
        tail -n 40 "$scratch.log" >&2
        echo "fuzz target $target failed: the input is under fuzz/artifacts/$target/; reproduce with fuzz/target/$host/release/$target fuzz/artifacts/$target/FILE" >&2
        exit 1
      fi
      rm -rf "$scratch" "$scratch.log"
    done
  )
fi
if [ -n "$windows" ]; then
  stage "Windows: waiting for its build (started in the background; target/test-logs/windows-build.log)"
  if ! wait "$windows_pid"; then
    tail -n 60 "$logs/windows-build.log" >&2
    echo "the Windows build failed (above; all of it in target/test-logs/windows-build.log)" >&2
    exit 1
  fi
  grep '^== \[windows' "$logs/windows-build.log" || true
  stage "Windows: the .exe under wine (scripts/windows.sh; the build is done)"
  ./scripts/windows.sh
fi
stage "done"
