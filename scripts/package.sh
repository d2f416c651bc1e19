#!/usr/bin/env bash
# Builds the packages into target/packages/: whpg-ha_<version>-1_amd64.deb and
# whpg-ha-<version>-1.x86_64.rpm, around one binary that needs no glibc symbol newer than 2.28
# (RHEL/Rocky 8), with the man pages and shell completions generated from the CLI definition.
# Tools: scripts/install-prereqs.sh installs them (cargo-deb, cargo-generate-rpm, and the
# cargo-zigbuild + ziglang venv in WHPG_ZIG_VENV). Run from anywhere; about 3 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."

zig_venv="${WHPG_ZIG_VENV:-/opt/whpg-ha-build/venv}"
triple=x86_64-unknown-linux-gnu
glibc=2.28
out=target/packages
docs="$out/docs"

fail() {
  echo "package: $*" >&2
  exit 1
}

for tool in cargo-deb cargo-generate-rpm; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool not found; run scripts/install-prereqs.sh (as root)"
done
[[ -x "$zig_venv/bin/cargo-zigbuild" && -x "$zig_venv/bin/python-zig" ]] ||
  fail "no cargo-zigbuild/ziglang in $zig_venv; run scripts/install-prereqs.sh or set WHPG_ZIG_VENV"
export PATH="$zig_venv/bin:$PATH"

# The host target with a glibc version suffix: zig links against 2.28's symbol versions. The
# profile is the workspace's release profile; symbols are stripped for the packages only.
echo "package: building whpg-ha for $triple with glibc $glibc (cargo zigbuild --release)"
CARGO_PROFILE_RELEASE_STRIP=symbols \
  cargo zigbuild --release --locked -p whpg-ha --bin whpg-ha --target "$triple.$glibc"
binary="target/$triple/release/whpg-ha"
[[ -x "$binary" ]] || fail "the build left no $binary"

rm -rf "$docs"
mkdir -p "$docs"
"$binary" generate-docs --out "$docs" >/dev/null
gzip -9n "$docs"/*.1

rm -f "$out"/*.deb "$out"/*.rpm
# (cargo-deb warns that the generated docs are not under target/release: they are not meant to be.)
cargo deb -p whpg-ha --no-build --no-strip --target "$triple" --output "$out/" >/dev/null 2>"$out/cargo-deb.log" ||
  { cat "$out/cargo-deb.log" >&2; fail "cargo deb failed"; }
grep -v "Only source paths starting with exactly 'target/release/'" "$out/cargo-deb.log" >&2 || true
cargo generate-rpm -p crates/whpg-ha --target "$triple" --output "$out/"

echo "package: built (glibc floor: $(objdump -T "$binary" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1))"
for file in "$out"/*.deb "$out"/*.rpm "$binary"; do
  awk -v f="$file" -v b="$(stat -c %s "$file")" 'BEGIN { printf "  %-60s %8.1f KiB\n", f, b / 1024 }'
done
