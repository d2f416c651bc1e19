#!/usr/bin/env bash
# Installs what the build and the test suite need, idempotently, on Debian (as root):
# the Rust components for formatting and linting, and the programs the namespace lab drives.
set -euo pipefail

packages=(
  iproute2        # ip netns, veth, bridge: the namespace lab
  nftables        # partitions and forged-traffic filters inside the lab
  keepalived      # interoperability tests against the real thing
  tcpdump         # captures inside the lab
  iputils-ping    # reachability checks from the lab's client
  procps          # pgrep/ps used by the lab's cleanup
  postgresql-15   # the coordinator stand-in (WarehousePG cannot be built here)
  postgresql-client-15
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-prereqs: missing Debian packages: ${missing[*]}; run as root to install them" >&2
    exit 1
  fi
  echo "install-prereqs: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Debian starts a PostgreSQL cluster and keepalived on install; the lab runs its own instances.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The packaged services would hold ports and VRRP state outside the lab: keep them stopped.
for service in keepalived postgresql; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$service" 2>/dev/null; then
    systemctl stop "$service" || true
  fi
done

if command -v rustup >/dev/null 2>&1; then
  for component in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
  done
fi

command -v cargo >/dev/null 2>&1 || { echo "install-prereqs: cargo not found; install Rust (rustup) first" >&2; exit 1; }
echo "install-prereqs: ok"
