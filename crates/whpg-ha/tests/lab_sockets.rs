//! Lab tests of the packet sockets (`net::vrrp_socket`, `net::garp`) between two host namespaces.
//!
//! Sockets are only ever opened on a thread that has first moved itself into a lab host's network
//! namespace (`in_netns`); the machine's own interfaces are never touched. Each test needs root and
//! `ip` (plus `tcpdump` for the ARP capture); without them it prints SKIPPED, and fails under CI=true.
//! Every wait is bounded, and the lab guard tears the namespaces down even when a test fails.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use whpg_ha::net::garp::{gratuitous_arp_frame, GarpSender, GARP_FRAME_LEN};
use whpg_ha::net::vrrp_socket::{
    VrrpMode, VrrpSocket, VrrpSocketOptions, VRRP_MULTICAST_V4, VRRP_TOS, VRRP_TTL,
};
use whpg_lab::{lab_or_skip, wait_until, Host, KeepalivedConf, Signal};
use whpg_vrrp::interval::Interval;
use whpg_vrrp::ip::parse_ipv4;
use whpg_vrrp::packet::{self, Advert, Auth, DecodeOptions, V3Checksum, Version};

/// Upper bound for anything that should happen at once on a bridge.
const WAIT: Duration = Duration::from_secs(5);
/// How long we listen to conclude that nothing arrives.
const SILENCE: Duration = Duration::from_millis(500);
const A_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 11);
const B_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 12);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);

/// Runs `f` on a new thread that first joins the network namespace `netns` (only that thread
/// moves); nothing is ever opened in the root namespace. Join with [`join`].
fn in_netns<T, F>(netns: &str, f: F) -> JoinHandle<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    whpg_lab::netns::spawn_in(netns, f)
}

/// Joins a thread, re-raising its panic in the test thread.
fn join<T>(handle: JoinHandle<T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Runs `fut` on a current-thread tokio runtime of the calling (namespaced) thread.
fn block_on<F: Future>(fut: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building a tokio runtime")
        .block_on(fut)
}

/// Index and MAC address of the host's `eth0`, from `ip -o link show eth0`.
fn link_info(host: &Host) -> (u32, [u8; 6]) {
    let out = host
        .exec_ok(&["ip", "-o", "link", "show", "eth0"])
        .expect("ip link show eth0");
    let line = out.stdout.trim();
    let index = line
        .split(':')
        .next()
        .and_then(|i| i.trim().parse().ok())
        .unwrap_or_else(|| panic!("no interface index in {line:?}"));
    let mac_text = line
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no MAC address in {line:?}"));
    let mut mac = [0u8; 6];
    let parts: Vec<u8> = mac_text
        .split(':')
        .map(|p| u8::from_str_radix(p, 16).expect("hex MAC byte"))
        .collect();
    mac.copy_from_slice(&parts);
    (index, mac)
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

fn options(host: &Host, local: Ipv4Addr, mode: VrrpMode) -> VrrpSocketOptions {
    VrrpSocketOptions {
        interface: host.interface().to_string(),
        ifindex: link_info(host).0,
        local,
        mode,
    }
}

fn advert(priority: u8) -> Advert {
    Advert {
        version: Version::V3,
        vrid: 51,
        priority,
        interval: Interval::from_centis(10),
        auth: Auth::None,
        addresses: vec![IpAddr::V4(VIP)],
    }
}

fn encode(advert: &Advert, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    packet::encode(
        advert,
        IpAddr::V4(src),
        IpAddr::V4(dst),
        V3Checksum::PseudoHeader,
    )
    .expect("encoding the test advert")
}

/// Receives datagrams until one comes from `from` (bounded by [`WAIT`]) and returns it.
async fn recv_from(socket: &VrrpSocket, from: Ipv4Addr) -> Vec<u8> {
    let mut buf = vec![0u8; 2048];
    let wait = async {
        loop {
            let n = socket.recv(&mut buf).await.expect("recv");
            if parse_ipv4(&buf[..n]).map(|d| d.src) == Ok(from) {
                return buf[..n].to_vec();
            }
        }
    };
    tokio::time::timeout(WAIT, wait)
        .await
        .unwrap_or_else(|_| panic!("no VRRP datagram from {from} within {WAIT:?}"))
}

/// The datagram carries the IP header fields keepalived sends and exactly `expected`.
fn check_datagram(datagram: &[u8], src: Ipv4Addr, dst: Ipv4Addr, expected: &Advert) {
    let ip = parse_ipv4(datagram).expect("an IPv4 datagram");
    assert_eq!(ip.src, src, "source address");
    assert_eq!(ip.dst, dst, "destination address");
    assert_eq!(ip.ttl, VRRP_TTL, "TTL");
    assert_eq!(ip.tos, VRRP_TOS, "TOS");
    assert_eq!(ip.protocol, 112, "IP protocol");
    let decoded = packet::decode(
        ip.payload,
        IpAddr::V4(src),
        IpAddr::V4(dst),
        &DecodeOptions::default(),
    )
    .expect("the payload decodes (checksum with keepalived's pseudo-header)");
    assert_eq!(&decoded, expected);
}

#[test]
fn multicast_advert_reaches_the_peer_and_is_not_looped_back() {
    let lab = lab_or_skip!("multicast_advert_reaches_the_peer_and_is_not_looped_back");
    let a = lab.add_host("a", "10.77.0.11/24").expect("host a");
    let b = lab.add_host("b", "10.77.0.12/24").expect("host b");
    let a_opts = options(&a, A_ADDR, VrrpMode::Multicast);
    let b_opts = options(&b, B_ADDR, VrrpMode::Multicast);
    let (b_ready, b_is_ready) = mpsc::channel::<()>();
    let (a_done, a_is_done) = mpsc::channel::<()>();

    let from_a = advert(100);
    let from_b = advert(90);
    let b_advert = from_b.clone();
    let b_thread = in_netns(b.netns(), move || {
        block_on(async move {
            let socket = VrrpSocket::open(&b_opts).expect("opening B's VRRP socket");
            b_ready.send(()).expect("signalling A");
            let got = recv_from(&socket, A_ADDR).await;
            // Answer only once A has finished listening for its own echo, so that this reply
            // cannot be mistaken for one.
            a_is_done.recv_timeout(WAIT).expect("A's silence check");
            let reply = encode(&b_advert, B_ADDR, VRRP_MULTICAST_V4);
            tokio::time::timeout(WAIT, socket.send(VRRP_MULTICAST_V4, &reply))
                .await
                .expect("send within the deadline")
                .expect("B sends its advert");
            got
        })
    });
    let a_advert = from_a.clone();
    let a_thread = in_netns(a.netns(), move || {
        block_on(async move {
            let socket = VrrpSocket::open(&a_opts).expect("opening A's VRRP socket");
            b_is_ready.recv_timeout(WAIT).expect("B's socket opened");
            let payload = encode(&a_advert, A_ADDR, VRRP_MULTICAST_V4);
            tokio::time::timeout(WAIT, socket.send(VRRP_MULTICAST_V4, &payload))
                .await
                .expect("send within the deadline")
                .expect("A sends its advert");
            let mut buf = vec![0u8; 2048];
            let echo = tokio::time::timeout(SILENCE, socket.recv(&mut buf)).await;
            if let Ok(received) = echo {
                let n = received.expect("recv");
                panic!(
                    "A received a datagram right after sending: {:?}",
                    parse_ipv4(&buf[..n])
                );
            }
            a_done.send(()).expect("signalling B");
            // Positive control: the same receive socket does get B's advert.
            recv_from(&socket, B_ADDR).await
        })
    });
    let at_a = join(a_thread);
    let at_b = join(b_thread);
    check_datagram(&at_b, A_ADDR, VRRP_MULTICAST_V4, &from_a);
    check_datagram(&at_a, B_ADDR, VRRP_MULTICAST_V4, &from_b);
}

#[test]
fn unicast_advert_reaches_the_peer() {
    let lab = lab_or_skip!("unicast_advert_reaches_the_peer");
    let a = lab.add_host("a", "10.77.0.11/24").expect("host a");
    let b = lab.add_host("b", "10.77.0.12/24").expect("host b");
    let a_opts = options(&a, A_ADDR, VrrpMode::Unicast);
    let b_opts = options(&b, B_ADDR, VrrpMode::Unicast);
    let (b_ready, b_is_ready) = mpsc::channel::<()>();

    let b_thread = in_netns(b.netns(), move || {
        block_on(async move {
            let socket = VrrpSocket::open(&b_opts).expect("opening B's VRRP socket");
            b_ready.send(()).expect("signalling A");
            recv_from(&socket, A_ADDR).await
        })
    });
    let sent = advert(100);
    let a_advert = sent.clone();
    let a_thread = in_netns(a.netns(), move || {
        block_on(async move {
            let socket = VrrpSocket::open(&a_opts).expect("opening A's VRRP socket");
            b_is_ready.recv_timeout(WAIT).expect("B's socket opened");
            let payload = encode(&a_advert, A_ADDR, B_ADDR);
            tokio::time::timeout(WAIT, socket.send(B_ADDR, &payload))
                .await
                .expect("send within the deadline")
                .expect("A sends its advert");
        })
    });
    join(a_thread);
    let at_b = join(b_thread);
    check_datagram(&at_b, A_ADDR, B_ADDR, &sent);
}

/// Wire compatibility both ways with Debian's keepalived: its advert arrives through our receive
/// socket with the header fields we send ourselves and decodes with our default options, and our
/// higher-priority advert makes its master step down (so it passed all of keepalived's checks: TTL,
/// length, version, checksum with the pseudo-header). Its gratuitous ARP, captured in B, is byte for
/// byte the frame we build.
#[test]
fn keepalived_reads_our_adverts_and_we_read_its() {
    let lab = lab_or_skip!(
        "keepalived_reads_our_adverts_and_we_read_its",
        &["keepalived", "tcpdump"]
    );
    let a = lab.add_host("a", "10.77.0.11/24").expect("host a");
    let b = lab.add_host("b", "10.77.0.12/24").expect("host b");
    let capture = b
        .capture("arp", "keepalived-garp.pcap")
        .expect("tcpdump in B");
    let conf = KeepalivedConf::new(51, 150, "10.77.0.100/24")
        .state("MASTER")
        .version(3)
        .advert_int(Duration::from_millis(100))
        .render();
    let keepalived = a.spawn_keepalived(&conf).expect("keepalived in A");
    let log_after_master = |needle: &str| {
        let log = keepalived.log_contents();
        log.find("Entering MASTER STATE")
            .is_some_and(|at| log[at..].contains(needle))
    };
    wait_until(
        WAIT,
        Duration::from_millis(20),
        "keepalived to become master",
        || log_after_master(""),
    )
    .unwrap_or_else(|e| panic!("{e:#}\n{}", keepalived.log_contents()));

    let b_opts = options(&b, B_ADDR, VrrpMode::Multicast);
    let (stop, stopped) = mpsc::channel::<()>();
    let ours = advert(200);
    let b_thread = in_netns(b.netns(), move || {
        block_on(async move {
            let socket = VrrpSocket::open(&b_opts).expect("opening B's VRRP socket");
            let theirs = recv_from(&socket, A_ADDR).await;
            let payload = encode(&ours, B_ADDR, VRRP_MULTICAST_V4);
            // Advertise like a master would until the test has seen keepalived step down.
            let deadline = tokio::time::Instant::now() + WAIT;
            while stopped.try_recv().is_err() && tokio::time::Instant::now() < deadline {
                tokio::time::timeout(WAIT, socket.send(VRRP_MULTICAST_V4, &payload))
                    .await
                    .expect("send within the deadline")
                    .expect("B sends its advert");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            theirs
        })
    });
    let stepped_down = wait_until(
        WAIT,
        Duration::from_millis(20),
        "keepalived to step down",
        || log_after_master("Entering BACKUP STATE"),
    );
    // Stop B's sender before any assertion can unwind past it; it may already have ended.
    let _ = stop.send(());
    let theirs = join(b_thread);
    stepped_down.unwrap_or_else(|e| panic!("{e:#}\n{}", keepalived.log_contents()));
    check_datagram(
        &theirs,
        A_ADDR,
        VRRP_MULTICAST_V4,
        &Advert {
            version: Version::V3,
            vrid: 51,
            priority: 150,
            interval: Interval::from_centis(10),
            auth: Auth::None,
            addresses: vec![IpAddr::V4(VIP)],
        },
    );

    let a_mac = link_info(&a).1;
    let seen = wait_for_frame(
        &lab.dir().join("keepalived-garp.pcap"),
        gratuitous_arp_frame(a_mac, VIP),
    );
    capture.kill(Signal::Int).expect("stopping tcpdump");
    capture.wait_exit(WAIT).expect("tcpdump exits");
    seen.unwrap_or_else(|captured| {
        panic!("keepalived's gratuitous ARP differs from ours; B captured {captured:02x?}")
    });
}

/// The frames of a classic pcap file (either byte order, micro- or nanosecond timestamps).
fn pcap_frames(data: &[u8]) -> Vec<Vec<u8>> {
    if data.len() < 24 {
        return Vec::new();
    }
    let magic = [data[0], data[1], data[2], data[3]];
    let little = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        other => panic!("not a pcap file (magic {other:02x?})"),
    };
    let u32_at = |at: usize| {
        let bytes = [data[at], data[at + 1], data[at + 2], data[at + 3]];
        if little {
            u32::from_le_bytes(bytes)
        } else {
            u32::from_be_bytes(bytes)
        }
    };
    let mut frames = Vec::new();
    let mut at = 24;
    while at + 16 <= data.len() {
        let len = u32_at(at + 8) as usize;
        let start = at + 16;
        if start + len > data.len() {
            break;
        }
        frames.push(data[start..start + len].to_vec());
        at = start + len;
    }
    frames
}

/// Waits (bounded) until the pcap file at `path` holds `expected` (plus zero padding at most);
/// otherwise returns the frames it does hold. tcpdump without `--immediate-mode` hands packets over
/// in blocks, up to a second late, so a capture must not be stopped before the frame is in.
fn wait_for_frame(path: &Path, expected: [u8; GARP_FRAME_LEN]) -> Result<(), Vec<Vec<u8>>> {
    let is_expected = |f: &Vec<u8>| {
        f.len() >= GARP_FRAME_LEN
            && f[..GARP_FRAME_LEN] == expected
            && f[GARP_FRAME_LEN..].iter().all(|&b| b == 0)
    };
    let captured = || pcap_frames(&std::fs::read(path).unwrap_or_default());
    wait_until(
        WAIT,
        Duration::from_millis(50),
        "the frame in the capture",
        || captured().iter().any(is_expected),
    )
    .map(|_| ())
    .map_err(|_| captured())
}

#[test]
fn gratuitous_arp_updates_the_peer_neighbour_table() {
    let lab = lab_or_skip!(
        "gratuitous_arp_updates_the_peer_neighbour_table",
        &["tcpdump"]
    );
    let a = lab.add_host("a", "10.77.0.11/24").expect("host a");
    let b = lab.add_host("b", "10.77.0.12/24").expect("host b");
    let (a_index, a_mac) = link_info(&a);
    let vip = VIP.to_string();
    // B holds a stale entry for the VIP pointing elsewhere, as a client does after a failover.
    // Linux only updates existing entries from gratuitous ARP (arp_accept=0), and locktime 0 rules
    // out the "updated too recently" exception.
    b.exec_ok(&["sysctl", "-q", "-w", "net.ipv4.neigh.eth0.locktime=0"])
        .expect("sysctl locktime");
    b.exec_ok(&[
        "ip",
        "neigh",
        "replace",
        &vip,
        "lladdr",
        "02:00:00:00:00:99",
        "dev",
        "eth0",
        "nud",
        "stale",
    ])
    .expect("seeding B's neighbour entry");
    let capture = b.capture("arp", "garp.pcap").expect("tcpdump in B");

    join(in_netns(a.netns(), move || {
        let sender = GarpSender::open(a_index, a_mac).expect("opening A's ARP socket");
        sender.announce(VIP).expect("announcing the VIP");
    }));

    let a_mac_text = mac_text(a_mac);
    let neigh = || {
        b.exec(&["ip", "neigh", "show", &vip, "dev", "eth0"])
            .map(|o| o.stdout)
            .unwrap_or_default()
    };
    wait_until(
        WAIT,
        Duration::from_millis(20),
        "B's ARP entry for the VIP",
        || neigh().contains(&a_mac_text),
    )
    .unwrap_or_else(|e| panic!("{e:#}; B has: {}", neigh().trim()));

    let seen = wait_for_frame(
        &lab.dir().join("garp.pcap"),
        gratuitous_arp_frame(a_mac, VIP),
    );
    capture.kill(Signal::Int).expect("stopping tcpdump");
    capture.wait_exit(WAIT).expect("tcpdump exits");
    seen.unwrap_or_else(|captured| {
        panic!("B did not capture our gratuitous ARP; it captured {captured:02x?}")
    });
}

#[test]
fn open_errors_name_the_interface() {
    let lab = lab_or_skip!("open_errors_name_the_interface");
    let a = lab.add_host("a", "10.77.0.11/24").expect("host a");
    let (index, mac) = link_info(&a);
    join(in_netns(a.netns(), move || {
        block_on(async move {
            let err = VrrpSocket::open(&VrrpSocketOptions {
                interface: "nosuch0".into(),
                ifindex: 999,
                local: A_ADDR,
                mode: VrrpMode::Multicast,
            })
            .expect_err("no such interface");
            let text = err.to_string();
            assert!(text.contains("nosuch0"), "{text}");
            assert!(text.contains("SO_BINDTODEVICE"), "{text}");

            // The right interface with an address this host does not have.
            let err = VrrpSocket::open(&VrrpSocketOptions {
                interface: "eth0".into(),
                ifindex: index,
                local: Ipv4Addr::new(10, 77, 0, 250),
                mode: VrrpMode::Unicast,
            })
            .expect_err("address not on this host");
            let text = err.to_string();
            assert!(
                text.contains("eth0") && text.contains("10.77.0.250"),
                "{text}"
            );

            let sender = GarpSender::open(999, mac).expect("packet socket without interface");
            let err = sender.announce(VIP).expect_err("no interface 999");
            assert!(err.to_string().contains("ifindex 999"), "{err}");
        })
    }));
}
