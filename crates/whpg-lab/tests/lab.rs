//! Lab self-tests: real namespaces, links, faults, teardown and keepalived. They need root, `ip`,
//! `nft`, `ping`, `keepalived` and `tcpdump`; without them each test prints SKIPPED (and fails
//! under CI=true).

use std::time::{Duration, Instant};

use whpg_lab::{lab_or_skip, netns_list, run, wait_until, KeepalivedConf, Lab};

const SHORT: Duration = Duration::from_secs(2);
const VIP: &str = "10.77.0.100";

fn root_links() -> Vec<String> {
    let out = run(&["ip", "-o", "link", "show"], SHORT)
        .unwrap()
        .ok()
        .unwrap();
    let mut names: Vec<String> = out
        .stdout
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().to_string())
        .collect();
    names.sort();
    names
}

fn with_prefix(prefix: &str) -> Vec<String> {
    let prefix = format!("{prefix}-");
    netns_list()
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

/// Gone or a zombie waiting for its parent.
fn pid_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
    }
}

#[test]
fn hosts_reach_each_other_and_root_namespace_is_untouched() {
    let links_before = root_links();
    let lab = lab_or_skip!(
        "hosts_reach_each_other_and_root_namespace_is_untouched",
        &["ping"]
    );
    let name = lab.name().to_string();
    let n1 = lab.add_host("n1", "10.77.0.11/24").unwrap();
    let n2 = lab.add_host("n2", "10.77.0.12/24").unwrap();
    let cl = lab.add_host("cl", "10.77.0.99/24").unwrap();
    assert_eq!(
        root_links(),
        links_before,
        "root namespace gained an interface"
    );

    for (h, own) in [
        (&n1, "10.77.0.11/24"),
        (&n2, "10.77.0.12/24"),
        (&cl, "10.77.0.99/24"),
    ] {
        assert!(h.has_address(own), "{} lacks {own}", h.name());
        assert!(h.has_address(h.address()));
        assert!(!h.has_address(VIP));
        for other in [&n1, &n2, &cl] {
            if other.name() != h.name() {
                assert!(
                    h.ping(other.address(), Duration::from_secs(5)),
                    "{} cannot ping {}",
                    h.name(),
                    other.address()
                );
            }
        }
    }
    let out = n1.exec_ok(&["ip", "-o", "link", "show", "eth0"]).unwrap();
    assert!(out.stdout.contains("eth0"));
    let failed = n1.exec(&["false"]).unwrap();
    assert!(!failed.success());
    assert!(n1.exec_ok(&["false"]).is_err());
    let slow = n1
        .exec_timeout(&["sleep", "10"], Duration::from_millis(200))
        .unwrap();
    assert!(slow.timed_out && !slow.success());
    let who = n1.exec_as_ok("nobody", &["id", "-un"]).unwrap();
    assert_eq!(who.stdout.trim(), "nobody");

    let conf = lab.write_file("note.txt", "hello\n").unwrap();
    let read = n1
        .exec_as_ok("nobody", &["cat", conf.to_str().unwrap()])
        .unwrap();
    assert_eq!(read.stdout, "hello\n");
    let owned = lab.user_dir("nobody", "nobody-data").unwrap();
    n1.exec_as_ok("nobody", &["touch", owned.join("f").to_str().unwrap()])
        .unwrap();

    assert_eq!(with_prefix(&name).len(), 4);
    let dir = lab.dir().to_path_buf();
    assert!(dir.is_dir());
    drop(lab);
    assert!(with_prefix(&name).is_empty(), "namespaces left after drop");
    assert!(!dir.exists(), "lab directory left after drop");
    assert_eq!(root_links(), links_before, "root namespace changed");
}

#[test]
fn link_down_and_partition_break_reachability_until_restored() {
    let lab = lab_or_skip!(
        "link_down_and_partition_break_reachability_until_restored",
        &["ping", "nft"]
    );
    let a = lab.add_host("a", "10.77.0.11/24").unwrap();
    let b = lab.add_host("b", "10.77.0.12/24").unwrap();
    let c = lab.add_host("c", "10.77.0.13/24").unwrap();
    assert!(a.ping(b.address(), Duration::from_secs(5)));

    lab.link_down(&a).unwrap();
    assert!(!a.ping(b.address(), Duration::from_millis(600)));
    assert!(!b.ping(a.address(), Duration::from_millis(600)));
    lab.link_up(&a).unwrap();
    assert!(a.ping(b.address(), Duration::from_secs(5)));
    assert!(b.ping(a.address(), Duration::from_secs(5)));

    lab.partition(&a, &b).unwrap();
    lab.partition(&a, &b).unwrap(); // idempotent
    assert!(!a.ping(b.address(), Duration::from_millis(600)));
    assert!(!b.ping(a.address(), Duration::from_millis(600)));
    assert!(
        a.ping(c.address(), SHORT),
        "partition must not cut a from c"
    );
    assert!(
        c.ping(b.address(), SHORT),
        "partition must not cut c from b"
    );
    lab.heal(&a, &b).unwrap();
    lab.heal(&a, &b).unwrap(); // idempotent
    assert!(a.ping(b.address(), Duration::from_secs(5)));
    assert!(b.ping(a.address(), Duration::from_secs(5)));

    // One-way block at b: a's packets are dropped at b, so neither direction gets an answer.
    lab.block_traffic_from(&b, a.address()).unwrap();
    assert!(!a.ping(b.address(), Duration::from_millis(600)));
    assert!(!b.ping(a.address(), Duration::from_millis(600)));
    lab.unblock_traffic_from(&b, a.address()).unwrap();
    assert!(a.ping(b.address(), Duration::from_secs(5)));

    let other = Lab::new("foreign_host").unwrap();
    let stranger = other.add_host("a", "10.77.0.11/24").unwrap();
    assert!(
        lab.link_down(&stranger).is_err(),
        "host of another lab accepted"
    );
}

#[test]
fn panicking_test_body_leaves_no_namespace() {
    if !whpg_lab::require_for("panicking_test_body_leaves_no_namespace", &["ip"]) {
        return;
    }
    let name = std::sync::Mutex::new(String::new());
    let dir = std::sync::Mutex::new(std::path::PathBuf::new());
    let result = std::panic::catch_unwind(|| {
        let lab = Lab::new("panicking_body").unwrap();
        *name.lock().unwrap() = lab.name().to_string();
        *dir.lock().unwrap() = lab.dir().to_path_buf();
        lab.add_host("n1", "10.77.0.11/24").unwrap();
        let _sleeper = lab.hosts()[0].spawn(&["sleep", "60"], "sleep").unwrap();
        panic!("deliberate panic inside a lab test body");
    });
    assert!(result.is_err());
    let name = name.into_inner().unwrap();
    assert!(!name.is_empty());
    assert!(with_prefix(&name).is_empty(), "namespaces of {name} left");
    // The logs of a panicking lab are kept for inspection; this panic was deliberate, so tidy up.
    let dir = dir.into_inner().unwrap();
    assert!(
        dir.join("n1.sleep.log").exists(),
        "logs of the panicking lab not kept"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cleanup_stale_removes_namespaces_of_dead_processes() {
    if !whpg_lab::require_for(
        "cleanup_stale_removes_namespaces_of_dead_processes",
        &["ip"],
    ) {
        return;
    }
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = format!("wl{dead}x0-sw");
    let mine = format!("wl{}x999999-sw", std::process::id());
    for ns in [&stale, &mine] {
        run(&["ip", "netns", "add", ns], SHORT)
            .unwrap()
            .ok()
            .unwrap();
    }
    let removed = Lab::cleanup_stale().unwrap();
    let left = netns_list().unwrap();
    run(&["ip", "netns", "del", &mine], SHORT)
        .unwrap()
        .ok()
        .unwrap();
    assert!(removed >= 1);
    assert!(!left.contains(&stale), "stale namespace {stale} kept");
    assert!(left.contains(&mine), "namespace of a live process removed");
}

#[test]
fn dropping_the_lab_kills_its_processes() {
    let lab = lab_or_skip!("dropping_the_lab_kills_its_processes");
    let n1 = lab.add_host("n1", "10.77.0.11/24").unwrap();
    let sleeper = n1.spawn(&["sleep", "60"], "sleep").unwrap();
    // A daemon-like grandchild that is not ours: only the namespace sweep can find it.
    let out = n1
        .exec_ok(&[
            "sh",
            "-c",
            "setsid sleep 60 >/dev/null 2>&1 < /dev/null & echo $!",
        ])
        .unwrap();
    let orphan: u32 = out.stdout.trim().parse().unwrap();
    let as_user = n1
        .spawn_as("nobody", &["sleep", "60"], "sleep-nobody")
        .unwrap();
    assert!(sleeper.is_running() && as_user.is_running() && !pid_gone(orphan));
    let pid = sleeper.pid();

    drop(lab);
    assert!(!sleeper.is_running(), "sleep {pid} survived lab drop");
    assert!(!as_user.is_running());
    wait_until(
        SHORT,
        Duration::from_millis(10),
        "orphan sleep to die",
        || pid_gone(orphan),
    )
    .unwrap();
}

#[test]
fn process_handles_signal_wait_and_log() {
    let lab = lab_or_skip!();
    let n1 = lab.add_host("n1", "10.77.0.11/24").unwrap();
    let p = n1
        .spawn(&["sh", "-c", "echo started; exec sleep 60"], "sh")
        .unwrap();
    p.wait_for_log("started", SHORT).unwrap();
    assert!(p.log_path().starts_with(lab.dir()));
    assert!(p.wait_exit(Duration::from_millis(100)).is_err());
    p.sigterm().unwrap();
    let status = p.wait_exit(SHORT).unwrap();
    assert!(!status.success());
    assert!(!p.is_running());
    p.sigterm().unwrap(); // no-op once exited

    let q = n1.spawn(&["sleep", "60"], "sleep").unwrap();
    lab.kill9(&q);
    q.wait_exit(SHORT).unwrap();

    let elapsed = wait_until(SHORT, Duration::from_millis(5), "nothing", || true).unwrap();
    assert!(elapsed < SHORT);
    let err = wait_until(
        Duration::from_millis(50),
        Duration::from_millis(10),
        "the impossible",
        || false,
    )
    .unwrap_err();
    assert!(err.to_string().contains("the impossible") && err.to_string().contains("50ms"));
}

fn keepalived_pair(lab: &Lab) -> (whpg_lab::Host, whpg_lab::Host, String, String) {
    let n1 = lab.add_host("n1", "10.77.0.11/24").unwrap();
    let n2 = lab.add_host("n2", "10.77.0.12/24").unwrap();
    let c1 = KeepalivedConf::new(51, 100, "10.77.0.100/24")
        .state("MASTER")
        .unicast(n1.address(), &[n2.address()])
        .auth_pass("whpglab")
        .render();
    let c2 = KeepalivedConf::new(51, 98, "10.77.0.100/24")
        .unicast(n2.address(), &[n1.address()])
        .auth_pass("whpglab")
        .render();
    (n1, n2, c1, c2)
}

#[test]
fn keepalived_vip_follows_the_highest_priority_and_moves_on_stop() {
    let lab = lab_or_skip!(
        "keepalived_vip_follows_the_highest_priority_and_moves_on_stop",
        &["keepalived", "ping"]
    );
    let cl = lab.add_host("cl", "10.77.0.99/24").unwrap();
    let (n1, n2, c1, c2) = keepalived_pair(&lab);
    let k1 = n1.spawn_keepalived(&c1).unwrap();
    let k2 = n2.spawn_keepalived(&c2).unwrap();

    let poll = Duration::from_millis(50);
    wait_until(Duration::from_secs(10), poll, "VIP on n1", || {
        n1.has_address(VIP)
    })
    .unwrap();
    wait_until(Duration::from_secs(10), poll, "n2 in BACKUP", || {
        k2.log_contents().contains("Entering BACKUP STATE")
    })
    .unwrap();
    assert!(!n2.has_address(VIP), "VIP on both nodes");
    assert!(cl.ping(VIP, Duration::from_secs(5)));

    let t = Instant::now();
    k1.sigterm().unwrap();
    k1.wait_exit(Duration::from_secs(10)).unwrap();
    let moved = wait_until(Duration::from_secs(10), poll, "VIP on n2", || {
        n2.has_address(VIP)
    })
    .unwrap();
    assert!(!n1.has_address(VIP), "stopped keepalived kept the VIP");
    assert!(cl.ping(VIP, Duration::from_secs(5)));
    eprintln!(
        "VIP moved {:?} after SIGTERM ({:?} total)",
        moved,
        t.elapsed()
    );
    assert!(
        k1.log_contents().contains("Stopped"),
        "{}",
        k1.log_contents()
    );
}

#[test]
fn blocking_vrrp_makes_split_brain_and_capture_sees_adverts() {
    let lab = lab_or_skip!(
        "blocking_vrrp_makes_split_brain_and_capture_sees_adverts",
        &["keepalived", "nft", "tcpdump"]
    );
    let (n1, n2, c1, c2) = keepalived_pair(&lab);
    let cap = n2.capture("ip proto 112", "n2-vrrp.pcap").unwrap();
    let _k1 = n1.spawn_keepalived(&c1).unwrap();
    let k2 = n2.spawn_keepalived(&c2).unwrap();
    let poll = Duration::from_millis(50);
    wait_until(Duration::from_secs(10), poll, "VIP on n1", || {
        n1.has_address(VIP)
    })
    .unwrap();

    lab.block_vrrp_from(&n2, n1.address()).unwrap();
    wait_until(Duration::from_secs(10), poll, "VIP on n2 too", || {
        n2.has_address(VIP)
    })
    .unwrap();
    assert!(n1.has_address(VIP), "split brain expected: VIP on both");

    lab.unblock_vrrp_from(&n2, n1.address()).unwrap();
    wait_until(Duration::from_secs(10), poll, "VIP gone from n2", || {
        !n2.has_address(VIP)
    })
    .unwrap();
    assert!(n1.has_address(VIP));
    assert!(k2.is_running());

    cap.kill(whpg_lab::Signal::Int).unwrap();
    cap.wait_exit(SHORT).unwrap();
    let pcap = lab.dir().join("n2-vrrp.pcap");
    let size = std::fs::metadata(&pcap).unwrap().len();
    assert!(size > 24 + 3 * 60, "capture has no adverts ({size} bytes)");
}
