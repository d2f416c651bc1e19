#!/usr/bin/env bash
# Tests the packages of scripts/package.sh (which it runs first):
# - the packaged binary needs no glibc symbol version above 2.28 and no library but glibc's;
# - the .rpm's files, modes, %config(noreplace), scripts and requirements (rpm -qp);
# - the .deb's control data, then on this machine: dpkg -i, every file in place, the installed
#   binary runs, systemd-analyze verify accepts the installed unit, the service is not enabled,
#   an upgrade keeps a changed configuration, dpkg -r keeps the configuration, dpkg --purge
#   leaves nothing. The test purges its installation even when it fails.
# Run as root on Debian. A missing tool fails under CI=true; otherwise the test is skipped.
# WHPG_PACKAGES_PREBUILT=1 tests what target/packages/ already holds instead of building.
set -euo pipefail
cd "$(dirname "$0")/.."

floor=2.28
out=target/packages
passed=0
failed=0

skip_or_fail() {
  if [[ "${CI:-}" == "true" ]]; then
    echo "test-packages: FAIL: $* (CI=true: a missing prerequisite is a failure)" >&2
    echo "packages: 0 passed, 1 failed"
    exit 1
  fi
  echo "test-packages: skipped: $*" >&2
  exit 0
}

# check DESCRIPTION COMMAND...: runs the command, counts and reports the result.
check() {
  local what=$1
  shift
  local output
  if output=$("$@" 2>&1); then
    passed=$((passed + 1))
    echo "  ok    $what"
  else
    failed=$((failed + 1))
    echo "  FAIL  $what"
    [[ -z "$output" ]] || sed 's/^/        /' <<<"$output"
  fi
}

[[ $(id -u) -eq 0 ]] || skip_or_fail "dpkg -i needs root"
for tool in dpkg dpkg-deb dpkg-query rpm objdump systemd-analyze cargo-deb cargo-generate-rpm; do
  command -v "$tool" >/dev/null 2>&1 || skip_or_fail "$tool not found; run scripts/install-prereqs.sh"
done

if [[ "${WHPG_PACKAGES_PREBUILT:-}" != "1" ]]; then
  scripts/package.sh
fi
shopt -s nullglob
debs=("$out"/whpg-ha_*.deb)
rpms=("$out"/whpg-ha-*.rpm)
shopt -u nullglob
((${#debs[@]} == 1 && ${#rpms[@]} == 1)) ||
  { echo "test-packages: expected one .deb and one .rpm in $out, found ${#debs[@]} and ${#rpms[@]}" >&2; exit 1; }
deb=${debs[0]}
rpm=${rpms[0]}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

work=$(mktemp -d /tmp/whpg-ha-test-packages.XXXXXX)
cleanup() {
  if dpkg-query -W -f='${db:Status-Abbrev}' whpg-ha 2>/dev/null | grep -q '^[ri]'; then
    DEBIAN_FRONTEND=noninteractive dpkg --purge whpg-ha >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# --- the binary's glibc floor --------------------------------------------------------------------

# glibc_floor_ok BINARY: every GLIBC_ version it needs is <= $floor, and it needs only glibc's
# libraries (and libgcc_s, part of every base system).
glibc_floor_ok() {
  local binary=$1 highest lib
  highest=$(objdump -T "$binary" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/^GLIBC_//' | sort -uV | tail -1)
  if [[ -z "$highest" ]]; then
    echo "$binary: no GLIBC_ symbol versions at all (not a glibc binary?)"
    return 1
  fi
  if [[ $(printf '%s\n%s\n' "$highest" "$floor" | sort -V | tail -1) != "$floor" ]]; then
    echo "$binary needs GLIBC_$highest (> $floor) for:"
    objdump -T "$binary" | grep -F "GLIBC_$highest" | awk '{print "  " $NF}' | head -20
    return 1
  fi
  for lib in $(objdump -p "$binary" | awk '$1 == "NEEDED" {print $2}'); do
    case "$lib" in
      libc.so.6 | libm.so.6 | libpthread.so.0 | libdl.so.2 | librt.so.1 | libutil.so.1 | \
        ld-linux-x86-64.so.2 | libgcc_s.so.1) ;;
      *)
        echo "$binary needs $lib, which is not part of glibc: it would be a package dependency"
        return 1
        ;;
    esac
  done
  echo "$binary: highest GLIBC_$highest"
}

not() { ! "$@"; }

echo "test-packages: $deb, $rpm"
dpkg-deb -x "$deb" "$work/deb-root"
check "the packaged binary needs no glibc symbol above $floor ($(glibc_floor_ok "$work/deb-root/usr/bin/whpg-ha" 2>&1 | tail -1))" \
  glibc_floor_ok "$work/deb-root/usr/bin/whpg-ha"
# The check itself must be able to fail: this machine's own programs need glibc 2.34 or later.
check "the glibc check rejects a binary built against this machine's glibc (/bin/ls)" not glibc_floor_ok /bin/ls

# --- the rpm -------------------------------------------------------------------------------------

rpm_q() { rpm -qp --nosignature "$@" "$rpm" 2>/dev/null; }
rpm_files=$(rpm_q -l)
rpm_has_files() {
  local f missing=0
  for f in /usr/bin/whpg-ha /usr/lib/systemd/system/whpg-ha.service /etc/whpg-ha/whpg-ha.toml \
    /usr/share/man/man1/whpg-ha.1.gz /usr/share/man/man1/whpg-ha-run.1.gz \
    /usr/share/bash-completion/completions/whpg-ha /usr/share/zsh/site-functions/_whpg-ha \
    /usr/share/fish/vendor_completions.d/whpg-ha.fish /usr/share/doc/whpg-ha/examples/whpg-ha.toml; do
    grep -qx -- "$f" <<<"$rpm_files" || { echo "missing $f"; missing=1; }
  done
  return $missing
}
check "rpm: name, version, arch are whpg-ha-$version-1.x86_64" \
  test "$(rpm_q --qf '%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}')" = "whpg-ha-$version-1.x86_64"
check "rpm: every file is in the list (rpm -qlp)" rpm_has_files
check "rpm: the configuration is %config(noreplace), mode 0600" \
  grep -qx -- '-rw------- cn /etc/whpg-ha/whpg-ha.toml' \
  <<<"$(rpm_q --qf '[%{FILEMODES:perms} %{FILEFLAGS:fflags} %{FILENAMES}\n]')"
check "rpm: the binary is mode 0755" \
  grep -qx -- '-rwxr-xr-x /usr/bin/whpg-ha' <<<"$(rpm_q --qf '[%{FILEMODES:perms} %{FILENAMES}\n]')"
rpm_requires_ok() {
  local requires line highest
  requires=$(rpm_q --requires)
  echo "$requires"
  grep -qx 'util-linux' <<<"$requires" || { echo "no util-linux (/usr/bin/kill for ExecReload)"; return 1; }
  grep -q '^libc\.so\.6(GLIBC_' <<<"$requires" || { echo "no libc.so.6(GLIBC_*) requirement"; return 1; }
  highest=$(grep -o 'GLIBC_[0-9][0-9.]*' <<<"$requires" | sed 's/^GLIBC_//' | sort -uV | tail -1)
  [[ $(printf '%s\n%s\n' "$highest" "$floor" | sort -V | tail -1) == "$floor" ]] ||
    { echo "requires GLIBC_$highest > $floor"; return 1; }
  while read -r line; do
    case "$line" in
      /bin/sh | util-linux | "config(whpg-ha) = $version-1" | libc.so.6* | libm.so.6* | libgcc_s.so.1* | libpthread.so.0* | libdl.so.2* | \
        librt.so.1* | libutil.so.1* | ld-linux-x86-64.so.2* | rtld\(GNU_HASH\) | rpmlib\(*) ;;
      *) echo "unexpected requirement: $line"; return 1 ;;
    esac
  done <<<"$requires"
}
check "rpm: requires only glibc (<= $floor), util-linux and /bin/sh (rpm -qp --requires)" rpm_requires_ok
rpm_scripts_ok() {
  local scripts
  scripts=$(rpm_q --scripts)
  grep -q 'install -d -m 0700 -o root -g root /var/lib/whpg-ha' <<<"$scripts" || { echo "$scripts"; return 1; }
  grep -q 'disable --now whpg-ha.service' <<<"$scripts" || { echo "no stop on erase: $scripts"; return 1; }
  if grep -Eq 'systemctl (--[a-z-]+ )*(enable|start|restart|try-restart|preset)' <<<"$scripts"; then
    echo "a script enables, starts or restarts the service:"
    echo "$scripts"
    return 1
  fi
  for kind in postinstall preuninstall postuninstall; do
    awk -v k="$kind" '$0 ~ "^" k " scriptlet" {on = 1; next} /scriptlet/ {on = 0} on' <<<"$scripts" |
      sh -n || { echo "$kind: syntax error"; return 1; }
  done
}
check "rpm: scripts make the state dir, stop only on erase, never enable/start/restart" rpm_scripts_ok

# --- the deb: control data -----------------------------------------------------------------------

dpkg-deb -e "$deb" "$work/deb-control"
deb_depends=$(dpkg-deb -f "$deb" Depends)
check "deb: Depends is libc6 (>= $floor) and procps only ($deb_depends)" \
  test "$deb_depends" = "libc6 (>= $floor), procps"
check "deb: /etc/whpg-ha/whpg-ha.toml is a conffile" grep -qx /etc/whpg-ha/whpg-ha.toml "$work/deb-control/conffiles"
deb_scripts_ok() {
  local f
  for f in "$work"/deb-control/{preinst,postinst,prerm,postrm}; do
    [[ -f "$f" ]] || continue
    sh -n "$f" || { echo "$f: syntax error"; return 1; }
    if grep -Eq 'deb-systemd-invoke +(start|restart|try-restart)|systemctl .*(enable|start|restart|preset)' "$f"; then
      echo "$f starts or enables the service:"
      cat "$f"
      return 1
    fi
    # Re-enabling on upgrade what the operator had enabled is fine; enabling on install is not.
    if grep -q 'deb-systemd-helper enable' "$f" && ! grep -q 'was-enabled' "$f"; then
      echo "$f enables the service unconditionally:"
      cat "$f"
      return 1
    fi
  done
}
check "deb: maintainer scripts parse and never start the service" deb_scripts_ok

# --- the deb: install, upgrade, remove, purge on this machine ------------------------------------

if dpkg-query -W -f='${db:Status-Abbrev}' whpg-ha 2>/dev/null | grep -q '^[ri]'; then
  echo "test-packages: whpg-ha is already installed here; this test installs and purges its own: remove it first" >&2
  trap - EXIT
  rm -rf "$work"
  exit 1
fi
if [[ -e /etc/whpg-ha || -e /var/lib/whpg-ha ]]; then
  echo "test-packages: /etc/whpg-ha or /var/lib/whpg-ha exists without the package; not touching it" >&2
  trap - EXIT
  rm -rf "$work"
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
check "deb: dpkg -i installs it (no systemd running here)" dpkg -i "$deb"
mode_is() { [[ "$(stat -c '%a %U' "$2" 2>&1)" == "$1 root" ]] || { stat -c '%n: %a %U' "$2" 2>&1; return 1; }; }
unit_path=$(dpkg -L whpg-ha | grep '/systemd/system/whpg-ha.service$' || true)
check "deb: /usr/bin/whpg-ha 755" mode_is 755 /usr/bin/whpg-ha
check "deb: /etc/whpg-ha/whpg-ha.toml 600" mode_is 600 /etc/whpg-ha/whpg-ha.toml
check "deb: /var/lib/whpg-ha 700" mode_is 700 /var/lib/whpg-ha
check "deb: the unit is installed (${unit_path:-nowhere})" test -f "$unit_path"
check "deb: the man page and completions are installed" \
  test -f /usr/share/man/man1/whpg-ha.1.gz -a -f /usr/share/bash-completion/completions/whpg-ha \
  -a -f /usr/share/zsh/vendor-completions/_whpg-ha -a -f /usr/share/fish/vendor_completions.d/whpg-ha.fish
check "deb: the installed whpg-ha --version says $version" test "$(/usr/bin/whpg-ha --version 2>&1)" = "whpg-ha $version"
check "deb: the installed man page renders" sh -c 'man -l /usr/share/man/man1/whpg-ha.1.gz | grep -q switchover'
check "deb: systemd-analyze verify accepts the installed unit" systemd-analyze verify "$unit_path"
check "deb: the service is not enabled" \
  test ! -e /etc/systemd/system/multi-user.target.wants/whpg-ha.service

# An upgrade (same content, next revision) must keep a changed configuration.
echo "# changed by the operator $$" >>/etc/whpg-ha/whpg-ha.toml
cp -a "$deb" "$work/"
upgrade_deb() {
  cargo deb -p whpg-ha --no-build --no-strip --target x86_64-unknown-linux-gnu --deb-revision 2 \
    --output "$work/upgrade.deb" >/dev/null &&
    dpkg -i "$work/upgrade.deb" &&
    test "$(dpkg-query -W -f='${Version}' whpg-ha)" = "$version-2"
}
check "deb: upgrade to $version-2 with dpkg -i" upgrade_deb
check "deb: the upgrade kept the changed configuration" grep -q "changed by the operator $$" /etc/whpg-ha/whpg-ha.toml

check "deb: dpkg -r removes it" dpkg -r whpg-ha
check "deb: dpkg -r left the configuration (status rc)" \
  sh -c 'test -f /etc/whpg-ha/whpg-ha.toml && test "$(dpkg-query -W -f="\${db:Status-Abbrev}" whpg-ha)" = "rc "'
check "deb: dpkg -r removed the binary and the unit" test ! -e /usr/bin/whpg-ha -a ! -e "$unit_path"
check "deb: dpkg --purge purges it" dpkg --purge whpg-ha
check "deb: nothing is left after the purge" \
  sh -c 'test ! -e /etc/whpg-ha && test ! -e /var/lib/whpg-ha && ! dpkg-query -W whpg-ha 2>/dev/null | grep -q .'

echo "packages: $passed passed, $failed failed"
((failed == 0))
