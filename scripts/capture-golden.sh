#!/usr/bin/env bash
# Capture real keepalived VRRP adverts as golden fixtures for crates/whpg-vrrp/tests/golden.rs.
#
# Builds a private lab of network namespaces (a switch namespace with a bridge, two hosts whose `eth0`
# is a veth end plugged into it), runs Debian's keepalived in both hosts in the foreground, captures
# the adverts with tcpdump inside host n2 and writes one hex fixture per scenario. Nothing is created
# in the root namespace and nothing leaves the lab: the bridge has no uplink.
#
# Usage (as root):  scripts/capture-golden.sh [OUTPUT_DIR]
#   OUTPUT_DIR defaults to crates/whpg-vrrp/tests/golden. Set KEEP_PCAP=DIR to keep the raw pcaps
#   (they are never written into the repository). Needs: keepalived tcpdump iproute2 python3.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out_dir=${1:-$repo/crates/whpg-vrrp/tests/golden}

if [[ $(id -u) -ne 0 ]]; then
    echo "capture-golden.sh must run as root (network namespaces, raw sockets)" >&2
    exit 1
fi
for tool in keepalived tcpdump ip python3; do
    if ! command -v "$tool" >/dev/null; then
        echo "missing $tool: apt-get install -y keepalived tcpdump iproute2 python3" >&2
        exit 1
    fi
done

# Names unique to this run so that a concurrent lab (or a crashed earlier run) never collides.
tag="wgc$$"
ns_sw="$tag-sw"
ns_n1="$tag-n1"
ns_n2="$tag-n2"
addr_n1=10.77.0.11
addr_n2=10.77.0.12
work=$(mktemp -d /tmp/capture-golden.XXXXXX)
pids=()

cleanup() {
    local status=$?
    set +e
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    sleep 0.5
    for pid in "${pids[@]}"; do
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    for ns in "$ns_n1" "$ns_n2" "$ns_sw"; do
        ip netns del "$ns" 2>/dev/null
    done
    if [[ -n ${KEEP_PCAP:-} ]]; then
        mkdir -p "$KEEP_PCAP" && cp "$work"/*.pcap "$work"/*.log "$KEEP_PCAP"/ 2>/dev/null
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'echo "capture-golden.sh: failed at line $LINENO" >&2' ERR
trap 'exit 130' INT TERM

build_lab() {
    ip netns add "$ns_sw"
    ip netns add "$ns_n1"
    ip netns add "$ns_n2"
    ip -n "$ns_sw" link add br0 type bridge
    ip -n "$ns_sw" link set br0 up
    ip -n "$ns_sw" link set lo up
    local ns addr port
    for pair in "$ns_n1:$addr_n1:p1" "$ns_n2:$addr_n2:p2"; do
        IFS=: read -r ns addr port <<<"$pair"
        # Both ends are created directly in their namespaces: nothing appears in the root namespace.
        ip -n "$ns" link add eth0 type veth peer name "$port" netns "$ns_sw"
        ip -n "$ns_sw" link set "$port" master br0
        ip -n "$ns_sw" link set "$port" up
        ip -n "$ns" link set lo up
        ip -n "$ns" addr add "$addr/24" dev eth0
        ip -n "$ns" link set eth0 up
    done
}

# keepalived.conf for one node. Arguments: scenario node.
write_conf() {
    local scenario=$1 node=$2 src peer prio state
    if [[ $node == n1 ]]; then
        src=$addr_n1 peer=$addr_n2 state=MASTER
    else
        src=$addr_n2 peer=$addr_n1 state=BACKUP
    fi
    local global="" auth="" unicast="" vips="        10.77.0.100/24 dev eth0 label eth0:0"
    local vrid advert
    case $scenario in
    v2-pass-unicast | v2-pass-short-unicast)
        local pass=whpg2025
        [[ $scenario == v2-pass-short-unicast ]] && pass=secret
        vrid=51 advert=1 prio=$([[ $node == n1 ]] && echo 100 || echo 98)
        auth=$'    authentication {\n        auth_type PASS\n        auth_pass '"$pass"$'\n    }\n'
        unicast=$'    unicast_src_ip '"$src"$'\n    unicast_peer {\n        '"$peer"$'\n    }\n'
        ;;
    v3-multicast-100ms)
        global=$'    vrrp_version 3\n'
        vrid=52 advert=0.1 prio=$([[ $node == n1 ]] && echo 150 || echo 100)
        vips+=$'\n        10.77.0.101/24 dev eth0 label eth0:1'
        ;;
    v3-unicast-100ms)
        global=$'    vrrp_version 3\n'
        vrid=53 advert=0.1 prio=$([[ $node == n1 ]] && echo 150 || echo 100)
        unicast=$'    unicast_src_ip '"$src"$'\n    unicast_peer {\n        '"$peer"$'\n    }\n'
        ;;
    v2-multicast-noauth)
        vrid=54 advert=1 prio=$([[ $node == n1 ]] && echo 100 || echo 98)
        ;;
    *)
        echo "unknown scenario $scenario" >&2
        return 1
        ;;
    esac
    cat <<EOF
global_defs {
    router_id $node
$global}
vrrp_instance VI_1 {
    state $state
    interface eth0
    virtual_router_id $vrid
    priority $prio
    advert_int $advert
$auth$unicast    virtual_ipaddress {
$vips
    }
}
EOF
}

start_keepalived() {
    local ns=$1 node=$2 scenario=$3
    local dir="$work/$scenario-$node"
    ip netns exec "$ns" keepalived -P -n -l -D -f "$dir/keepalived.conf" \
        -p "$dir/keepalived.pid" -r "$dir/vrrp.pid" >"$work/$scenario-$node.log" 2>&1 &
    started=$!
    pids+=("$started")
}

# Run one scenario: n1 (higher priority) becomes master, n2 joins as backup; then n1 is stopped with
# SIGTERM (it resigns with priority 0), n2 takes over, and n2 is stopped the same way.
capture() {
    local scenario=$1 steady=$2
    echo "== $scenario" >&2
    write_conf "$scenario" n1 >"$work/$scenario-n1.conf"
    write_conf "$scenario" n2 >"$work/$scenario-n2.conf"
    mkdir -p "$work/$scenario-n1" "$work/$scenario-n2"
    cp "$work/$scenario-n1.conf" "$work/$scenario-n1/keepalived.conf"
    cp "$work/$scenario-n2.conf" "$work/$scenario-n2/keepalived.conf"

    local pcap="$work/$scenario.pcap"
    ip netns exec "$ns_n2" tcpdump -i eth0 -nn -U -w "$pcap" 'ip proto 112' \
        2>"$work/$scenario-tcpdump.log" &
    local dump=$!
    pids+=("$dump")
    sleep 1

    local started k1 k2
    start_keepalived "$ns_n1" n1 "$scenario"
    k1=$started
    sleep 0.5
    start_keepalived "$ns_n2" n2 "$scenario"
    k2=$started
    sleep "$steady"
    kill -TERM "$k1"
    wait "$k1" || true
    sleep "$steady"
    kill -TERM "$k2"
    wait "$k2" || true
    sleep 1
    kill -INT "$dump"
    wait "$dump" || true
}

build_lab
# Long enough for v2 (1 s adverts, ~3.6 s master-down) to settle into a few steady adverts.
capture v2-pass-unicast 7
capture v2-pass-short-unicast 7
capture v2-multicast-noauth 7
capture v3-multicast-100ms 3
capture v3-unicast-100ms 3

version=$(keepalived --version 2>&1 | sed -n 1p)
mkdir -p "$out_dir"
python3 - "$work" "$out_dir" "$version" "scripts/capture-golden.sh" <<'PY'
"""Turn each scenario's pcap into fixtures: a handful of adverts per sender, priority-0 ones apart."""
import datetime
import ipaddress
import struct
import sys

work, out_dir, version, script = sys.argv[1:5]
N1, N2 = "10.77.0.11", "10.77.0.12"
MCAST = "224.0.0.18"

# What each scenario was configured with: (version, vrid, interval_cs, auth, {node: priority}, vips, unicast)
SCENARIOS = {
    "v2-pass-unicast": (2, 51, 100, "pass:whpg2025", {N1: 100, N2: 98}, ["10.77.0.100"], True),
    "v2-pass-short-unicast": (2, 51, 100, "pass:secret", {N1: 100, N2: 98}, ["10.77.0.100"], True),
    "v2-multicast-noauth": (2, 54, 100, "none", {N1: 100, N2: 98}, ["10.77.0.100"], False),
    "v3-multicast-100ms": (3, 52, 10, "none", {N1: 150, N2: 100}, ["10.77.0.100", "10.77.0.101"], False),
    "v3-unicast-100ms": (3, 53, 10, "none", {N1: 150, N2: 100}, ["10.77.0.100"], True),
}
PER_SENDER = 3  # steady adverts kept per sender
PRIORITY0_SCENARIOS = set(SCENARIOS)


def datagrams(path):
    """IPv4 datagrams (without link header or Ethernet padding) from a classic pcap file."""
    with open(path, "rb") as f:
        data = f.read()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        end = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        end = ">"
    else:
        raise SystemExit(f"{path}: not a pcap file")
    linktype = struct.unpack(end + "I", data[20:24])[0]
    if linktype != 1:
        raise SystemExit(f"{path}: link type {linktype}, expected Ethernet")
    pos = 24
    first_ts = None
    while pos + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack(end + "IIII", data[pos:pos + 16])
        frame = data[pos + 16:pos + 16 + incl]
        pos += 16 + incl
        ts = sec + frac / (1e9 if magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d") else 1e6)
        first_ts = ts if first_ts is None else first_ts
        if frame[12:14] != b"\x08\x00":
            continue
        ip = frame[14:]
        total = struct.unpack(">H", ip[2:4])[0]
        yield ts - first_ts, ip[:total]


def expect_line(cfg, ip, priority0):
    ver, vrid, interval, auth, prios, vips, unicast = cfg
    src = str(ipaddress.IPv4Address(ip[12:16]))
    dst = str(ipaddress.IPv4Address(ip[16:20]))
    want_dst = (N2 if src == N1 else N1) if unicast else MCAST
    if src not in prios or dst != want_dst:
        raise SystemExit(f"unexpected advert {src} > {dst}")
    priority = 0 if priority0 else prios[src]
    return (f"expect src={src} dst={dst} version={ver} vrid={vrid} priority={priority} "
            f"interval_cs={interval} auth={auth} addresses={','.join(vips)}")


def write(name, scenario, packets, note):
    n1_conf = open(f"{work}/{scenario}-n1.conf").read().rstrip("\n").split("\n")
    n2_conf = open(f"{work}/{scenario}-n2.conf").read().rstrip("\n").split("\n")
    lines = [
        f"# Golden VRRP adverts: {name}",
        f"# {note}",
        f"# Captured {datetime.date.today().isoformat()} from {version}",
        "# Lab: network namespaces n1 (10.77.0.11) and n2 (10.77.0.12) on one bridge; each node ran",
        "#   ip netns exec NS keepalived -P -n -l -D -f CONF -p PIDFILE -r VRRP_PIDFILE",
        "# and n2 captured with",
        "#   ip netns exec n2 tcpdump -i eth0 -nn -U -w FILE 'ip proto 112'",
        "# n1 started first, n2 0.5 s later; then n1 and later n2 were stopped with SIGTERM.",
        f"# Recapture: sudo {script}",
        "#",
        "# n1 keepalived.conf:",
        *("#   " + l for l in n1_conf),
        "# n2 keepalived.conf:",
        *("#   " + l for l in n2_conf),
        "#",
        "# One packet per line: the whole IPv4 datagram (IP header + VRRP) in hex, followed by the",
        "# fields it must decode to (the configured values, not read back from the packet).",
    ]
    for ts, ip in packets:
        lines.append("")
        lines.append(f"# t={ts:.3f}s")
        lines.append(ip.hex())
        lines.append(expect_line(SCENARIOS[scenario], ip, name.endswith("priority0")))
    with open(f"{out_dir}/{name}.txt", "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"{out_dir}/{name}.txt: {len(packets)} packets", file=sys.stderr)


for scenario in SCENARIOS:
    steady, resign, seen = [], [], {}
    for ts, ip in datagrams(f"{work}/{scenario}.pcap"):
        if ip[9] != 112:
            continue
        header = (ip[0] & 0x0F) * 4
        src = bytes(ip[12:16])
        if ip[header + 2] == 0:
            if len([p for p in resign if p[1][12:16] == src]) < 1:
                resign.append((ts, ip))
        elif seen.get(src, 0) < PER_SENDER:
            seen[src] = seen.get(src, 0) + 1
            steady.append((ts, ip))
    if len(seen) != 2:
        raise SystemExit(f"{scenario}: expected adverts from both nodes, got {len(seen)} senders")
    write(scenario, scenario, steady, "steady adverts: the first few from each node while it was master")
    if scenario in PRIORITY0_SCENARIOS:
        if not resign:
            raise SystemExit(f"{scenario}: no priority-0 advert captured")
        write(f"{scenario}-priority0", scenario, resign,
              "priority 0: the advert each master sent on SIGTERM (resigning)")
PY
echo "fixtures written to $out_dir" >&2
