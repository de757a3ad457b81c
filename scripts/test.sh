#!/usr/bin/env bash
# Runs every test of octobackup, after installing what the tests need: stock restic (the
# repository must stay readable by it), python-tds (an independent TDS client for the lab's SQL
# Server stand-in), and the real storage servers of the backend suite (tests/e2e/backends.rs):
# moto (S3), Azurite (Azure Blob, into target/test-tools) and OpenSSH's sshd (SFTP). The tests
# start and stop the servers themselves. Safe to run again: installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v restic >/dev/null 2>&1 || need_apt+=(restic)
[ -x /usr/sbin/sshd ] || command -v sshd >/dev/null 2>&1 || need_apt+=(openssh-server)
command -v ssh-keygen >/dev/null 2>&1 || need_apt+=(openssh-client)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing ${need_apt[*]} (apt)"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
if ! python3 -c 'import pytds' >/dev/null 2>&1; then
  echo "== installing python-tds (pip)"
  python3 -m pip install --quiet --disable-pip-version-check python-tds
fi
if ! command -v moto_server >/dev/null 2>&1; then
  echo "== installing moto[server] (pip)"
  python3 -m pip install --quiet --disable-pip-version-check 'moto[server]'
fi
if [ ! -x target/test-tools/node_modules/.bin/azurite-blob ] && ! command -v azurite-blob >/dev/null 2>&1; then
  echo "== installing azurite (npm, into target/test-tools)"
  mkdir -p target/test-tools
  npm install --silent --no-audit --no-fund --prefix target/test-tools azurite >/dev/null
fi

echo "== restic $(restic version | head -n1 | cut -d' ' -f2), python-tds $(python3 -c 'import pytds; print(pytds.__version__ if hasattr(pytds, "__version__") else "installed")')"
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== the shipped octobackup: built without the lab, depends on none of its crates"
cargo check -p octobackup --bin octobackup --locked
if cargo tree -p octobackup -e normal --locked --prefix none | grep -E '^(octobackup-lab|octopus-sim|sqlserver-sim|sqlserver-files|axum|rcgen) '; then
  echo "the product binary depends on the lab (above): keep the lab behind the lab feature" >&2
  exit 1
fi
echo "== cargo test"
cargo test --workspace --locked "$@"
echo "== cargo test: the patched dependencies (patches/*/PATCHED.md)"
for p in patches/*/; do
  CARGO_TARGET_DIR=target/patches cargo test --offline --quiet --manifest-path "$p/Cargo.toml"
done
# Windows: check, clippy and build as x86_64-pc-windows-gnu, then run the .exe under wine.
# OCTOBACKUP_SKIP_WINDOWS=1 leaves it out (e.g. a quick local run).
if [ -z "${OCTOBACKUP_SKIP_WINDOWS:-}" ]; then
  echo "== Windows (scripts/windows.sh)"
  ./scripts/windows.sh
fi
