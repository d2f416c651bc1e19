//! Descriptor exhaustion is our failure, not the database's: with RLIMIT_NOFILE used up, the
//! startup-packet probe, a new held session and the monitor's round all report "unknown", which
//! the observers turn into `LocalSample::Unknown` / `PeerSample::Unknown`, never "down".
//!
//! The server is a loopback listener that answers a startup packet the way PostgreSQL does when
//! it wants a password (no lab, no root needed). This binary holds only this test: lowering the
//! descriptor limit affects the whole process.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::os::fd::OwnedFd;
use std::time::Duration;

use whpg_ha::config::{DbEndpoint, Health};
use whpg_ha::daemon::observers::{local_sample, peer_sample, Monitor, Seen};
use whpg_ha::db::{probe, ConnParams, HeldSession, ProbeOutcome, ProbeTarget};
use whpg_policy::{LocalSample, PeerSample};

/// Answers every connection's startup packet with AuthenticationCleartextPassword, then hangs up.
fn password_asking_server() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a loopback listener");
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || loop {
        let Ok((mut stream, _)) = listener.accept() else {
            // EMFILE while the test holds every descriptor: try again later.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let mut len = [0u8; 4];
        if stream.read_exact(&mut len).is_err() {
            continue;
        }
        let mut rest = vec![0u8; (u32::from_be_bytes(len) as usize).saturating_sub(4)];
        if stream.read_exact(&mut rest).is_err() {
            continue;
        }
        let _ = stream.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]);
    });
    port
}

fn limit() -> libc::rlimit {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit struct we own.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) }, 0);
    rl
}

fn set_limit(rl: &libc::rlimit) {
    // SAFETY: setrlimit reads one rlimit struct we own.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, rl) }, 0);
}

/// Opens `/dev/null` until the process has no descriptor left; returns them (closing = freeing).
fn exhaust_descriptors() -> Vec<OwnedFd> {
    let mut held = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(file) => held.push(OwnedFd::from(file)),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e}");
                return held;
            }
        }
        assert!(held.len() < 100_000, "the descriptor limit did not bite");
    }
}

#[test]
fn exhausted_descriptors_make_every_probe_unknown_not_down() {
    let port = password_asking_server();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let target = ProbeTarget::tcp(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    let params = ConnParams::new(
        DbEndpoint::Host("127.0.0.1".into()),
        port,
        "postgres",
        "postgres",
    );
    let health = Health {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(500),
        fall: 3,
        rise: 2,
        held_session: true,
        connect_interval: Duration::from_secs(1),
    };
    let timeout = Duration::from_secs(2);

    runtime.block_on(async {
        // With descriptors to spare, the server is seen accepting.
        assert_eq!(probe(&target, timeout).await, ProbeOutcome::Accepting);

        let original = limit();
        // A low limit keeps the exhaustion small and quick.
        set_limit(&libc::rlimit {
            rlim_cur: 256.min(original.rlim_max),
            rlim_max: original.rlim_max,
        });
        let held = exhaust_descriptors();
        println!("holding {} descriptors: the limit is reached", held.len());

        let outcome = probe(&target, timeout).await;
        println!("probe without descriptors: {outcome}");
        assert_eq!(
            outcome,
            ProbeOutcome::LocalFailure {
                errno: libc::EMFILE
            }
        );
        let seen = Seen::Probe(outcome);
        assert_eq!(local_sample(&seen), LocalSample::Unknown);
        assert_eq!(peer_sample(&seen), PeerSample::Unknown);

        let err = HeldSession::open(&params, timeout)
            .await
            .expect_err("a session cannot be opened without a descriptor");
        println!("held session without descriptors: {err}");
        assert_eq!(err.local_errno(), Some(libc::EMFILE), "{err}");

        let mut monitor = Monitor::new(target.clone(), params.clone(), &health, None);
        let seen = monitor.round().await;
        println!("monitor round without descriptors: {seen:?}");
        assert_eq!(local_sample(&seen), LocalSample::Unknown);
        assert_eq!(peer_sample(&seen), PeerSample::Unknown);

        drop(held);
        set_limit(&original);
        // The same probe works again: the unknown was ours.
        assert_eq!(probe(&target, timeout).await, ProbeOutcome::Accepting);
        let seen = Monitor::new(target.clone(), params.clone(), &health, None)
            .round()
            .await;
        // The listener asks for a password we do not have: accepting, role unknown.
        assert_eq!(peer_sample(&seen), PeerSample::AcceptingUnknownRole);
        assert_eq!(local_sample(&seen), LocalSample::Down);
    });
}
