//! The systemd watchdog, end to end: the real daemon runs in a lab host with `NOTIFY_SOCKET`
//! pointing at a Unix datagram socket this test owns, and `WATCHDOG_USEC` / `WATCHDOG_PID` set as
//! systemd sets them for `WatchdogSec=`. It must send `READY=1`, then `WATCHDOG=1` every half
//! interval from its decision loop; it must not feed a watchdog meant for another process; and
//! (with the `failpoints` feature, which `scripts/test.sh` enables for this test) a stalled loop
//! must stop feeding while the rest of the process, the HTTP API, keeps answering, and after
//! systemd's answer to that (SIGABRT, then a new start) the new daemon removes the VIP the killed
//! master left behind.
//!
//! `WATCHDOG_PID` must name the daemon's own PID before it starts, as systemd sets it between
//! fork and exec. The daemon runs as PID 1 of a PID namespace of its own
//! (`unshare --pid --fork`), so that PID is known in advance.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::daemon::{pair_config, start_daemon_under, PairSettings};
use whpg_lab::{lab_or_skip, wait_until, Host, Lab, Process};

const PREREQUISITES: &[&str] = &["unshare", "env"];

/// `WatchdogSec=2s`: the daemon should feed every second.
const WATCHDOG: Duration = Duration::from_secs(2);

/// The socket systemd would listen on, and every message the daemon sent to it.
struct NotifySocket {
    path: PathBuf,
    messages: Arc<Mutex<Vec<(Instant, String)>>>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl NotifySocket {
    fn bind(lab: &Lab) -> NotifySocket {
        let path = lab.dir().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("binding the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        let messages = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (messages, stop) = (Arc::clone(&messages), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(len) = socket.recv(&mut buf) {
                        let text = String::from_utf8_lossy(&buf[..len]).into_owned();
                        let at = Instant::now();
                        let mut messages = messages.lock().unwrap_or_else(|e| e.into_inner());
                        for line in text.lines().filter(|l| !l.is_empty()) {
                            messages.push((at, line.to_string()));
                        }
                    }
                }
            })
        };
        NotifySocket {
            path,
            messages,
            stop,
            reader: Some(reader),
        }
    }

    fn all(&self) -> Vec<(Instant, String)> {
        self.messages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// When each `WATCHDOG=1` arrived.
    fn feeds(&self) -> Vec<Instant> {
        self.all()
            .into_iter()
            .filter(|(_, m)| m == "WATCHDOG=1")
            .map(|(at, _)| at)
            .collect()
    }

    fn ready(&self) -> bool {
        self.all().iter().any(|(_, m)| m == "READY=1")
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The daemon as systemd would start it with `WatchdogSec=`, alone on its lab host (it becomes
/// MASTER of a pair whose peer never appears), plus `extra` variables. With `watchdog_pid` it runs
/// as PID 1 of a PID namespace of its own, with `WATCHDOG_PID` set to that PID (or another);
/// without, as an ordinary process with `WATCHDOG_PID` unset, which sd_watchdog_enabled(3) also
/// takes as "meant for this process" (and where, unlike for a namespace's PID 1, a signal without
/// a handler has its default action).
fn start(
    lab: &Lab,
    host: &Host,
    notify: &NotifySocket,
    watchdog_pid: Option<u32>,
    extra: &[String],
) -> Process {
    let settings = PairSettings::fast();
    let config = pair_config(
        &settings,
        &[("n1", host.address(), 150), ("n2", "10.77.0.12", 100)],
    );
    let mut wrapper = Vec::new();
    if watchdog_pid.is_some() {
        wrapper.extend(["unshare", "--pid", "--fork", "--kill-child"].map(String::from));
    }
    wrapper.push("env".to_string());
    wrapper.push(format!("NOTIFY_SOCKET={}", notify.path.display()));
    wrapper.push(format!("WATCHDOG_USEC={}", WATCHDOG.as_micros()));
    if let Some(pid) = watchdog_pid {
        wrapper.push(format!("WATCHDOG_PID={pid}"));
    }
    wrapper.extend_from_slice(extra);
    start_daemon_under(lab, host, "n1", &config, &wrapper)
}

fn wait_logged(what: &str, limit: Duration, daemon: &Process, f: impl FnMut() -> bool) {
    wait_until(limit, Duration::from_millis(20), what, f)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.log_contents()));
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// The gaps between consecutive feeds.
fn gaps(feeds: &[Instant]) -> Vec<Duration> {
    feeds.windows(2).map(|w| w[1] - w[0]).collect()
}

fn summary(gaps: &[Duration]) -> String {
    let mut sorted = gaps.to_vec();
    sorted.sort();
    let mean = sorted.iter().sum::<Duration>() / sorted.len().max(1) as u32;
    format!(
        "{} gaps: min {} ms, median {} ms, mean {} ms, max {} ms",
        sorted.len(),
        ms(sorted.first().copied().unwrap_or_default()),
        ms(sorted.get(sorted.len() / 2).copied().unwrap_or_default()),
        ms(mean),
        ms(sorted.last().copied().unwrap_or_default()),
    )
}

#[test]
fn the_loop_feeds_the_watchdog_every_half_interval_after_ready() {
    let lab = lab_or_skip!("watchdog_cadence", PREREQUISITES);
    let host = lab.add_host("n1", "10.77.0.11/24").expect("n1");
    let notify = NotifySocket::bind(&lab);
    let daemon = start(&lab, &host, &notify, Some(1), &[]);
    wait_logged("READY=1", Duration::from_secs(10), &daemon, || {
        notify.ready()
    });
    wait_logged(
        "eight WATCHDOG=1",
        WATCHDOG * 8 + Duration::from_secs(5),
        &daemon,
        || notify.feeds().len() >= 8,
    );
    let messages = notify.all();
    assert_eq!(
        messages.first().map(|(_, m)| m.as_str()),
        Some("READY=1"),
        "systemd arms the watchdog once the start-up is complete: READY=1 comes first; got {:?}",
        messages.iter().map(|(_, m)| m).collect::<Vec<_>>()
    );
    let gaps = gaps(&notify.feeds());
    let half = WATCHDOG / 2;
    println!(
        "WATCHDOG_USEC={} (feeding due every {} ms): {}",
        WATCHDOG.as_micros(),
        ms(half),
        summary(&gaps)
    );
    for gap in &gaps {
        // Never more often than every half interval (allowing for when the datagrams were read),
        // and always within the interval, or systemd would have killed the daemon.
        assert!(
            *gap + Duration::from_millis(100) >= half,
            "fed after {} ms, before the half interval of {} ms: {}",
            ms(*gap),
            ms(half),
            summary(&gaps)
        );
        assert!(
            *gap < WATCHDOG,
            "{} ms between two WATCHDOG=1 is over WATCHDOG_USEC ({} ms): {}\n{}",
            ms(*gap),
            ms(WATCHDOG),
            summary(&gaps),
            daemon.log_contents()
        );
    }
}

#[test]
fn a_watchdog_meant_for_another_process_is_not_fed() {
    let lab = lab_or_skip!("watchdog_other_pid", PREREQUISITES);
    let host = lab.add_host("n1", "10.77.0.11/24").expect("n1");
    let notify = NotifySocket::bind(&lab);
    // PID 2 of the daemon's namespace is not the daemon: the variables were inherited from a
    // parent (as a command the daemon runs inherits them), so the watchdog is not its to feed.
    let daemon = start(&lab, &host, &notify, Some(2), &[]);
    wait_logged("READY=1", Duration::from_secs(10), &daemon, || {
        notify.ready()
    });
    std::thread::sleep(WATCHDOG * 2);
    assert!(daemon.is_running(), "{}", daemon.log_contents());
    assert_eq!(
        notify.feeds().len(),
        0,
        "WATCHDOG=1 sent although WATCHDOG_PID names another process"
    );
}

#[cfg(feature = "failpoints")]
#[test]
fn a_stalled_decision_loop_stops_feeding_while_the_api_answers() {
    use common::daemon::status;
    use whpg_ha::daemon::failpoint::STALL_LOOP_ENV;

    let lab = lab_or_skip!("watchdog_stall", PREREQUISITES);
    let host = lab.add_host("n1", "10.77.0.11/24").expect("n1");
    let notify = NotifySocket::bind(&lab);
    let stall = lab.dir().join("stall-the-loop");
    let env = format!("{STALL_LOOP_ENV}={}", stall.display());
    let daemon = start(&lab, &host, &notify, Some(1), &[env]);
    wait_logged("READY=1", Duration::from_secs(10), &daemon, || {
        notify.ready()
    });
    wait_logged("the API answers", Duration::from_secs(10), &daemon, || {
        status(&host).is_some()
    });
    wait_logged(
        "four WATCHDOG=1",
        WATCHDOG * 4 + Duration::from_secs(5),
        &daemon,
        || notify.feeds().len() >= 4,
    );
    let healthy = gaps(&notify.feeds());

    std::fs::write(&stall, b"").expect("creating the stall file");
    let asked = Instant::now();
    daemon
        .wait_for_log("failpoint: the decision loop stalls", WATCHDOG * 2)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.log_contents()));
    let stalled = Instant::now();
    // A feed of the turn that stalled may still be in flight to the socket.
    std::thread::sleep(Duration::from_millis(100));
    let fed_before = notify.feeds().len();
    let last_feed = *notify.feeds().last().expect("fed before the stall");

    // Three watchdog intervals of stall: systemd would have fired after the first. The API is
    // asked all along: the process is alive, only the loop is wedged.
    let mut answered = 0;
    let mut asked_api = 0;
    while stalled.elapsed() < WATCHDOG * 3 {
        asked_api += 1;
        if status(&host).is_some() {
            answered += 1;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let silent = notify
        .feeds()
        .last()
        .map_or(Duration::ZERO, |at| at.elapsed());
    let fed_during = notify.feeds().len() - fed_before;
    println!(
        "healthy: {}; stall requested, loop stalled after {} ms; last WATCHDOG=1 {} ms before \
         the stall was logged; silent for {} ms ({:.1} x WATCHDOG_USEC); the API answered \
         {answered} of {asked_api} requests meanwhile",
        summary(&healthy),
        ms(stalled - asked),
        ms(stalled.saturating_duration_since(last_feed)),
        ms(silent),
        silent.as_secs_f64() / WATCHDOG.as_secs_f64(),
    );
    assert_eq!(
        fed_during,
        0,
        "the stalled loop went on feeding\n{}",
        daemon.log_contents()
    );
    assert!(
        silent > WATCHDOG,
        "silent for only {} ms",
        silent.as_millis()
    );
    assert!(daemon.is_running(), "{}", daemon.log_contents());
    assert_eq!(
        answered,
        asked_api,
        "the API must answer while only the loop is stalled\n{}",
        daemon.log_contents()
    );

    // Unwedged, the loop feeds again: the stall was the only reason it stopped.
    std::fs::remove_file(&stall).expect("removing the stall file");
    let resumed = Instant::now();
    wait_logged("WATCHDOG=1 after the stall", WATCHDOG * 2, &daemon, || {
        notify.feeds().len() > fed_before
    });
    println!(
        "the loop fed again {} ms after the stall file was removed",
        ms(resumed.elapsed())
    );
    assert!(
        daemon
            .log_contents()
            .contains("failpoint: the decision loop resumes"),
        "{}",
        daemon.log_contents()
    );
}

/// What systemd does about a stalled loop, played by the test: once the loop has been silent for
/// `WATCHDOG_USEC`, SIGABRT to the daemon (`WatchdogSignal=`), then a new start (`Restart=always`).
/// The dead daemon left its VIP on the interface; the new one removes it at start-up, as stale,
/// before it opens its VRRP socket, and then feeds the watchdog again.
#[cfg(feature = "failpoints")]
#[test]
fn after_the_watchdog_kills_a_stalled_master_the_restart_removes_the_stale_vip() {
    use whpg_ha::daemon::failpoint::STALL_LOOP_ENV;

    const STALE: &str = "removed stale virtual address";
    let lab = lab_or_skip!("watchdog_restart", PREREQUISITES);
    let host = lab.add_host("n1", "10.77.0.11/24").expect("n1");
    let vip = PairSettings::fast().vip_address();
    let notify = NotifySocket::bind(&lab);
    let stall = lab.dir().join("stall-the-loop");
    let env = format!("{STALL_LOOP_ENV}={}", stall.display());
    let first = start(&lab, &host, &notify, None, std::slice::from_ref(&env));
    wait_logged("the VIP on n1", Duration::from_secs(15), &first, || {
        host.has_address(vip)
    });
    wait_logged("a WATCHDOG=1", WATCHDOG * 2, &first, || {
        !notify.feeds().is_empty()
    });

    std::fs::write(&stall, b"").expect("creating the stall file");
    first
        .wait_for_log("failpoint: the decision loop stalls", WATCHDOG * 2)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", first.log_contents()));
    // The watchdog's timer: WATCHDOG_USEC after the last WATCHDOG=1.
    let last_feed = || *notify.feeds().last().expect("fed before the stall");
    wait_logged("WATCHDOG_USEC of silence", WATCHDOG * 3, &first, || {
        last_feed().elapsed() > WATCHDOG
    });
    // `ip netns exec` and `env` exec in place: the process started is the daemon.
    let daemon_pid = first.pid();
    let last_fed = last_feed();
    // SAFETY: a plain syscall on the daemon this test started and has not reaped.
    let rc = unsafe { libc::kill(daemon_pid as libc::pid_t, libc::SIGABRT) };
    assert_eq!(
        rc,
        0,
        "SIGABRT to {daemon_pid}: {}",
        std::io::Error::last_os_error()
    );
    let aborted = Instant::now();
    first
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", first.log_contents()));
    assert!(
        host.has_address(vip),
        "a daemon killed by SIGABRT cannot remove its VIP: it should still be there"
    );
    assert!(
        !first.log_contents().contains(STALE),
        "{}",
        first.log_contents()
    );

    // Restart=always (without the stall this time).
    std::fs::remove_file(&stall).expect("removing the stall file");
    let readies = || notify.all().iter().filter(|(_, m)| m == "READY=1").count();
    let fed_before = notify.feeds().len();
    // Both daemons append to the same log file.
    let first_log = first.log_contents().len();
    let second = start(&lab, &host, &notify, None, &[env]);
    wait_logged(
        "READY=1 of the restarted daemon",
        Duration::from_secs(10),
        &second,
        || readies() == 2,
    );
    let ready = aborted.elapsed();
    let log = second.log_contents().split_off(first_log);
    assert!(
        log.contains(STALE),
        "no stale-VIP removal at start-up:\n{log}"
    );
    let removed_at = log.find(STALE).expect("found above");
    let ready_at = log
        .find("running as node n1")
        .unwrap_or_else(|| panic!("no start-up line:\n{log}"));
    assert!(
        removed_at < ready_at,
        "the stale VIP must go before the daemon runs:\n{log}"
    );
    wait_logged(
        "WATCHDOG=1 of the restarted daemon",
        WATCHDOG * 2,
        &second,
        || notify.feeds().len() > fed_before,
    );
    wait_logged(
        "the VIP back on n1",
        Duration::from_secs(15),
        &second,
        || host.has_address(vip),
    );
    println!(
        "SIGABRT {} ms after the last WATCHDOG=1; the restarted daemon removed the stale VIP and \
         was ready {} ms after the SIGABRT; VIP back after {} ms",
        ms(aborted - last_fed),
        ms(ready),
        ms(aborted.elapsed()),
    );
}
