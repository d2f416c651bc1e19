#!/usr/bin/env bash
# The first quick-start command: on Debian, as root, installs what the demo needs (idempotently),
# builds whpg-ha in release mode and runs `whpg-ha demo` (a PostgreSQL 15 pair, a client and a
# failover with a millisecond timeline, all inside network namespaces that are removed at the end).
#
#   sudo scripts/demo.sh
#
# Under sudo, the build runs as the invoking user when that user has a Rust toolchain, so the
# repository's target/ directory does not end up owned by root; only the demo itself runs as root.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
  echo "demo.sh: run it as root (it installs packages and builds network namespaces): sudo $0" >&2
  exit 2
fi

# Who builds, and with which cargo.
build_user=root
cargo_bin=""
if [[ -n "${SUDO_USER:-}" && "${SUDO_USER}" != root ]]; then
  user_home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
  if [[ -x "$user_home/.cargo/bin/cargo" ]]; then
    build_user=$SUDO_USER
    cargo_bin="$user_home/.cargo/bin"
  fi
fi
if [[ -z "$cargo_bin" ]]; then
  if command -v cargo >/dev/null 2>&1; then
    cargo_bin=$(dirname "$(command -v cargo)")
  elif [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    cargo_bin="$HOME/.cargo/bin"
  fi
fi
if [[ -z "$cargo_bin" ]]; then
  echo "demo.sh: no Rust toolchain found; installing one with rustup (minimal profile) for root"
  if ! command -v curl >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends curl ca-certificates >/dev/null
  fi
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  cargo_bin="$HOME/.cargo/bin"
fi
export PATH="$cargo_bin:$PATH"

as_builder() {
  if [[ "$build_user" == root ]]; then
    "$@"
  else
    runuser -u "$build_user" -- env PATH="$PATH" "$@"
  fi
}

if [[ "$build_user" != root ]]; then
  # install-prereqs.sh adds the lint components when missing; add them as their owner first so
  # it finds them and writes nothing into that user's toolchain as root.
  for component in rustfmt clippy; do
    as_builder rustup component list --installed 2>/dev/null | grep -q "^$component" ||
      as_builder rustup component add "$component"
  done
  export RUSTUP_HOME="$user_home/.rustup" CARGO_HOME="$user_home/.cargo"
fi

scripts/install-prereqs.sh

echo "demo.sh: building whpg-ha in release mode (the first build takes a few minutes on 2 cores)..."
as_builder cargo build --release -p whpg-ha --bin whpg-ha

echo
exec target/release/whpg-ha demo
