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
  e2fsprogs       # chattr: the check lab makes a journal file immutable
  postgresql-15   # the coordinator stand-in (WarehousePG cannot be built here)
  postgresql-client-15
  rpm             # rpm -qp: the package test reads the .rpm's files, scripts and requirements
  binutils        # objdump: the package test reads the binary's glibc symbol versions
  python3-venv    # the venv holding ziglang and cargo-zigbuild (the glibc 2.28 build)
  man-db          # the package test renders the installed man page
  dpkg-dev        # dpkg-shlibdeps: cargo-deb computes the libc6 dependency with it
  protobuf-compiler # protoc: the etcd-client crate (the arbiter) compiles etcd's .proto files
  libprotobuf-dev   # google/protobuf/*.proto, which etcd's .proto files import
  etcd-server     # the arbiter lab: a 3-member etcd cluster in the namespaces
  etcd-client     # etcdctl, to read the leader key in the arbiter lab
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

# Packaging (scripts/package.sh, scripts/test-packages.sh): cargo-deb and cargo-generate-rpm from
# crates.io, built once; zig and cargo-zigbuild from PyPI into a venv (prebuilt, seconds).
cargo_tools=(cargo-deb@3.8.0 cargo-generate-rpm@0.21.1)
for tool in "${cargo_tools[@]}"; do
  command -v "${tool%@*}" >/dev/null 2>&1 || cargo install --locked --quiet "$tool"
done
zig_venv="${WHPG_ZIG_VENV:-/opt/whpg-ha-build/venv}"
if ! "$zig_venv/bin/python" -c 'import ziglang' >/dev/null 2>&1 || [[ ! -x "$zig_venv/bin/cargo-zigbuild" ]]; then
  echo "install-prereqs: creating $zig_venv with ziglang and cargo-zigbuild"
  /usr/bin/python3 -m venv "$zig_venv"
  "$zig_venv/bin/pip" install --quiet --disable-pip-version-check ziglang==0.17.1 cargo-zigbuild==0.24.1
fi
echo "install-prereqs: ok"
