//! The HTTP API against hostile and careless clients, in the namespace lab: thousands of idle and
//! slow connections to the master's API, a flood of large unauthenticated bodies, TLS end to end
//! with the CLI, and rejoin requests from a host that is not the peer.
//!
//! Each daemon runs with an open-file limit of 1024 (as a unit without LimitNOFILE would), so a
//! server that accepted every connection would run out of descriptors.

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::daemon::{api_get, dump_logs, pair_builder, status, PairSettings, API_PORT};
use common::{block_on_in_netns, in_netns};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use whpg_ha::client::{send_with, ClientError, Request, Settings};
use whpg_lab::{lab_or_skip, wait_until, Host, Lab, Process};

const TOKEN: &str = "hostile-lab-token-0123456789abcdef0123456789";
const N1: &str = "10.77.0.11";
const N2: &str = "10.77.0.12";
const MAX_CONNECTIONS: usize = 64;
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
const IDLE_TIMEOUT: Duration = Duration::from_secs(3);
/// What the daemons' open-file limit is set to.
const NOFILE: u32 = 1024;

fn nodes() -> Vec<(&'static str, &'static str, u8)> {
    vec![("n1", N1, 100), ("n2", N2, 98)]
}

/// Raise this test process's own open-file limit (it opens thousands of sockets).
fn raise_own_nofile(wanted: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < wanted {
            assert!(
                limit.rlim_max >= wanted,
                "this test needs an open-file limit of {wanted}; the hard limit is {}",
                limit.rlim_max
            );
            limit.rlim_cur = wanted;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
}

fn token_file(lab: &Lab) -> PathBuf {
    let path = lab
        .write_file("token", &format!("{TOKEN}\n"))
        .expect("token file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path
}

/// The lab pair's configuration with the API at its defaults for `listen` (the node's address
/// and loopback) and the given extra `[api]` keys.
fn config(lab: &Lab, api_extra: &str) -> String {
    let mut config = pair_builder(&PairSettings::fast(), &nodes())
        .without("api", "listen")
        .set("api", "token_file", token_file(lab))
        .set("api", "max_connections", MAX_CONNECTIONS)
        .set(
            "api",
            "header_timeout",
            format!("{}ms", HEADER_TIMEOUT.as_millis()),
        )
        .set(
            "api",
            "idle_timeout",
            format!("{}ms", IDLE_TIMEOUT.as_millis()),
        );
    if !api_extra.is_empty() {
        config = config.section("[api]", api_extra);
    }
    config.to_toml()
}

/// `whpg-ha run` on `host` under an open-file limit of [`NOFILE`].
fn start(lab: &Lab, host: &Host, node: &str, config: &str) -> Process {
    let journal = lab.dir().join(format!("{node}.journal"));
    let config = format!("{config}\n[journal]\npath = \"{}\"\n", journal.display());
    let path = lab
        .write_file(&format!("{node}.toml"), &config)
        .expect("config");
    let nofile = format!("--nofile={NOFILE}:{NOFILE}");
    host.spawn(
        &[
            "prlimit",
            nofile.as_str(),
            env!("CARGO_BIN_EXE_whpg-ha"),
            "run",
            "--config",
            path.to_str().expect("utf-8 path"),
            "--node",
            node,
        ],
        &format!("whpg-ha-{node}"),
    )
    .expect("starting whpg-ha")
}

fn state(host: &Host) -> Option<String> {
    status(host)?["vrrp"]["state"].as_str().map(str::to_owned)
}

fn settle(lab_hosts: (&Host, &Host), logs: &[&Process]) {
    let (n1, n2) = lab_hosts;
    wait_until(
        Duration::from_secs(20),
        Duration::from_millis(50),
        "n1 MASTER with the VIP, n2 BACKUP",
        || {
            n1.has_address("10.77.0.100")
                && state(n1).as_deref() == Some("MASTER")
                && state(n2).as_deref() == Some("BACKUP")
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}\n{}", dump_logs(logs)));
}

/// Open descriptors of process `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// A field of /proc/PID/status in KiB (VmRSS, VmHWM).
fn status_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// One sample of who serves during an attack.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    n1_state: Option<String>,
    n2_state: Option<String>,
    n1_vip: bool,
    n2_vip: bool,
}

fn sample(n1: &Host, n2: &Host) -> Sample {
    Sample {
        n1_state: state(n1),
        n2_state: state(n2),
        n1_vip: n1.has_address("10.77.0.100"),
        n2_vip: n2.has_address("10.77.0.100"),
    }
}

fn expected_sample() -> Sample {
    Sample {
        n1_state: Some("MASTER".into()),
        n2_state: Some("BACKUP".into()),
        n1_vip: true,
        n2_vip: false,
    }
}

#[derive(Debug, Clone, Copy)]
enum Slow {
    /// Connects and sends nothing.
    Idle,
    /// Sends half a request header, then nothing.
    HalfHeader,
    /// Sends a header one byte every 500 ms.
    Trickle,
}

/// How one held connection ended.
#[derive(Debug, Clone, Copy)]
enum Ended {
    /// The server closed it this long after the connection was made.
    Closed(Duration),
    /// Still open when the test gave up on it.
    StillOpen,
    /// The connection could not be made.
    NoConnection,
}

async fn hold(target: SocketAddr, mode: Slow, give_up: Duration) -> Ended {
    let Ok(Ok(mut stream)) =
        tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(target)).await
    else {
        return Ended::NoConnection;
    };
    let connected = Instant::now();
    let header =
        b"GET /status HTTP/1.1\r\nHost: n1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut sent = 0;
    if let Slow::HalfHeader = mode {
        if stream.write_all(&header[..20]).await.is_err() {
            return Ended::Closed(connected.elapsed());
        }
    }
    let mut buf = [0u8; 512];
    let deadline = tokio::time::Instant::now() + give_up;
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                // 0: the server's FIN; an error: its RST. Either way the server closed it.
                Ok(0) | Err(_) => return Ended::Closed(connected.elapsed()),
                Ok(_) => {}
            },
            () = tokio::time::sleep(Duration::from_millis(500)), if matches!(mode, Slow::Trickle) => {
                if sent < header.len() - 2 {
                    if stream.write_all(&header[sent..sent + 1]).await.is_err() {
                        return Ended::Closed(connected.elapsed());
                    }
                    sent += 1;
                }
            }
            () = tokio::time::sleep_until(deadline) => return Ended::StillOpen,
        }
    }
}

#[test]
fn thousands_of_idle_and_slow_connections_leave_the_vip_and_the_state_alone() {
    let lab = lab_or_skip!("api_hostile_connections", &["prlimit"]);
    raise_own_nofile(8192);
    let n1 = lab.add_host("n1", &format!("{N1}/24")).expect("n1");
    let n2 = lab.add_host("n2", &format!("{N2}/24")).expect("n2");
    let attacker = lab.add_host("cl", "10.77.0.99/24").expect("cl");
    let text = config(&lab, "");
    let d1 = start(&lab, &n1, "n1", &text);
    let d2 = start(&lab, &n2, "n2", &text);
    let logs = [&d1, &d2];
    settle((&n1, &n2), &logs);
    let pid = d1.pid();
    let fds_before = open_fds(pid);

    const CONNECTIONS: usize = 2000;
    const ATTACK: Duration = Duration::from_secs(12);
    let target: SocketAddr = format!("{N1}:{API_PORT}").parse().unwrap();
    let give_up = HEADER_TIMEOUT + IDLE_TIMEOUT + Duration::from_secs(5);
    let (results, samples, max_fds) = std::thread::scope(|scope| {
        let attack = scope.spawn(|| {
            block_on_in_netns(attacker.netns(), ATTACK + give_up * 2, move || async move {
                let started = Instant::now();
                let mut tasks = Vec::new();
                for i in 0..CONNECTIONS {
                    let mode = [Slow::Idle, Slow::HalfHeader, Slow::Trickle][i % 3];
                    tasks.push(tokio::spawn(async move {
                        // Each client comes back as soon as it is thrown out, a second later.
                        let mut ends = Vec::new();
                        while started.elapsed() < ATTACK {
                            ends.push(hold(target, mode, give_up).await);
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                        ends
                    }));
                }
                let mut all = Vec::new();
                for task in tasks {
                    all.extend(task.await.expect("client task"));
                }
                all
            })
        });
        let mut samples = Vec::new();
        let mut max_fds = 0;
        let begun = Instant::now();
        while !attack.is_finished() {
            max_fds = max_fds.max(open_fds(pid));
            samples.push((begun.elapsed(), sample(&n1, &n2)));
            std::thread::sleep(Duration::from_millis(200));
        }
        (attack.join().expect("attack thread"), samples, max_fds)
    });

    let closed: Vec<Duration> = results
        .iter()
        .filter_map(|e| match e {
            Ended::Closed(d) => Some(*d),
            _ => None,
        })
        .collect();
    let still_open = results
        .iter()
        .filter(|e| matches!(e, Ended::StillOpen))
        .count();
    let no_connection = results
        .iter()
        .filter(|e| matches!(e, Ended::NoConnection))
        .count();
    let held: Vec<Duration> = closed
        .iter()
        .copied()
        .filter(|d| *d >= Duration::from_millis(500))
        .collect();
    let longest = closed.iter().max().copied().unwrap_or_default();
    let bad: Vec<_> = samples
        .iter()
        .filter(|(_, s)| *s != expected_sample())
        .collect();
    println!(
        "{CONNECTIONS} clients for {ATTACK:?}: {} connections made, {} closed at once (over \
         max_connections = {MAX_CONNECTIONS}), {} held by the server and closed after at most \
         {longest:?} (header_timeout {HEADER_TIMEOUT:?}), {still_open} still open after \
         {give_up:?}, {no_connection} not connected; daemon descriptors {fds_before} before, at \
         most {max_fds} during; {} samples of state and VIP, {} wrong",
        results.len(),
        closed.len() - held.len(),
        held.len(),
        samples.len(),
        bad.len()
    );
    assert_eq!(
        still_open,
        0,
        "connections the server never closed\n{}",
        dump_logs(&logs)
    );
    assert!(
        !held.is_empty(),
        "no connection was served at all: {results:?}"
    );
    assert!(
        longest <= HEADER_TIMEOUT + Duration::from_secs(2),
        "a slow connection stayed open {longest:?}, header_timeout is {HEADER_TIMEOUT:?}"
    );
    assert!(
        max_fds <= fds_before + MAX_CONNECTIONS + 8,
        "the daemon held {max_fds} descriptors ({fds_before} before, cap {MAX_CONNECTIONS})"
    );
    assert!(samples.len() >= 40, "too few samples: {}", samples.len());
    assert!(
        bad.is_empty(),
        "state or VIP moved during the attack: {:?}\n{}",
        &bad[..bad.len().min(5)],
        dump_logs(&logs)
    );
    // Thousands of closed connections, a handful of log lines.
    let log = d1.log_contents();
    let lines = log.matches("closed a connection from").count();
    assert!(
        (1..=4).contains(&lines),
        "{lines} lines about closed connections in {ATTACK:?} (at most one per 10 s):\n{log}"
    );
}

/// `count` `POST path` requests at once, each declaring and sending `size` bytes; the HTTP status
/// each read back (`None`: the connection was cut before an answer could be read).
async fn flood(
    target: SocketAddr,
    count: usize,
    size: usize,
    bearer: Option<&'static str>,
    path: &'static str,
) -> Vec<Option<u16>> {
    let mut tasks = Vec::new();
    for _ in 0..count {
        tasks.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(target).await.ok()?;
            let mut head = format!(
                "POST {path} HTTP/1.1\r\nHost: n1\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n"
            );
            if let Some(token) = bearer {
                head += &format!("Authorization: Bearer {token}\r\n");
            }
            head += "\r\n";
            stream.write_all(head.as_bytes()).await.ok()?;
            let body = vec![b'x'; size];
            let (mut reader, mut writer) = stream.into_split();
            let write = tokio::spawn(async move {
                let _ = writer.write_all(&body).await;
                writer
            });
            let mut answer = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(10), reader.read_to_end(&mut answer)).await;
            write.abort();
            let text = String::from_utf8_lossy(&answer);
            text.split(' ').nth(1).and_then(|c| c.parse().ok())
        }));
    }
    let mut codes = Vec::new();
    for task in tasks {
        codes.push(task.await.ok().flatten());
    }
    codes
}

#[test]
fn large_bodies_are_refused_before_they_are_read() {
    let lab = lab_or_skip!("api_hostile_bodies", &["prlimit"]);
    let n1 = lab.add_host("n1", &format!("{N1}/24")).expect("n1");
    let n2 = lab.add_host("n2", &format!("{N2}/24")).expect("n2");
    let attacker = lab.add_host("cl", "10.77.0.99/24").expect("cl");
    let text = config(&lab, "");
    let d1 = start(&lab, &n1, "n1", &text);
    let d2 = start(&lab, &n2, "n2", &text);
    let logs = [&d1, &d2];
    settle((&n1, &n2), &logs);
    let pid = d1.pid();
    let rss_before = status_kib(pid, "VmRSS");
    let hwm_before = status_kib(pid, "VmHWM");
    let target: SocketAddr = format!("{N1}:{API_PORT}").parse().unwrap();

    // 150 unauthenticated 2 MB requests, 50 at a time.
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.extend(block_on_in_netns(
            attacker.netns(),
            Duration::from_secs(60),
            || flood(target, 50, 2_000_000, None, "/maintenance"),
        ));
    }
    // Authenticated, but far over the limit: refused from its Content-Length.
    let authenticated = block_on_in_netns(attacker.netns(), Duration::from_secs(60), || {
        flood(target, 10, 2_000_000, Some(TOKEN), "/maintenance")
    });
    let rss_after = status_kib(pid, "VmRSS");
    let hwm_after = status_kib(pid, "VmHWM");
    let unauthorized = codes.iter().filter(|c| **c == Some(401)).count();
    let too_large = authenticated.iter().filter(|c| **c == Some(413)).count();
    println!(
        "150 unauthenticated 2 MB POSTs: {unauthorized} read their 401 before the connection was \
         cut; 10 authenticated 2 MB POSTs: {too_large} read their 413; daemon RSS {rss_before} \
         KiB before, {rss_after} KiB after, peak {hwm_before} KiB before, {hwm_after} KiB after"
    );
    // No request got anything but its refusal (or a cut connection once refused).
    assert!(
        codes.iter().all(|c| c.is_none() || *c == Some(401)),
        "{codes:?}"
    );
    assert!(
        authenticated.iter().all(|c| c.is_none() || *c == Some(413)),
        "{authenticated:?}"
    );
    assert!(unauthorized + too_large > 0, "{codes:?} {authenticated:?}");
    // The refusal comes from the header alone: a client that declares 2 MB and sends none of
    // it gets its 401 (and, with the token, its 413) at once.
    for (bearer, expected) in [(None, 401), (Some(TOKEN), 413)] {
        let code = block_on_in_netns(attacker.netns(), Duration::from_secs(10), || async move {
            let mut stream = TcpStream::connect(target).await.expect("connect");
            let mut head =
                "POST /maintenance HTTP/1.1\r\nHost: n1\r\nContent-Length: 2000000\r\n".to_string();
            if let Some(token) = bearer {
                head += &format!("Authorization: bearer {token}\r\n");
            }
            head += "\r\n";
            stream
                .write_all(head.as_bytes())
                .await
                .expect("send the header");
            let mut answer = vec![0u8; 1024];
            let n = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut answer))
                .await
                .map_or(0, |r| r.unwrap_or(0));
            let text = String::from_utf8_lossy(&answer[..n]).into_owned();
            text.split(' ').nth(1).and_then(|c| c.parse::<u16>().ok())
        });
        assert_eq!(code, Some(expected), "bearer {:?}", bearer.is_some());
    }
    // 150 bodies of 2 MB read into memory would be 300 MB; a few MiB of buffers are allowed.
    let grown = hwm_after.saturating_sub(rss_before.max(hwm_before));
    assert!(
        grown < 16 * 1024,
        "the daemon's peak RSS grew by {grown} KiB during the flood"
    );
    assert!(d1.is_running(), "{}", dump_logs(&logs));
    assert_eq!(sample(&n1, &n2), expected_sample());
}

/// A throwaway CA and a certificate for each node, usable as server and as client.
struct Pki {
    ca: PathBuf,
    certs: Vec<(PathBuf, PathBuf)>,
    other_ca: PathBuf,
}

fn pki(lab: &Lab) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(params, ca_key);
    let mut certs = Vec::new();
    for (name, address) in [("n1", N1), ("n2", N2)] {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec![address.to_string(), "127.0.0.1".to_string()]).unwrap();
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &issuer).unwrap();
        let cert_path = lab.write_file(&format!("{name}.pem"), &cert.pem()).unwrap();
        let key_path = lab
            .write_file(&format!("{name}.key"), &key.serialize_pem())
            .unwrap();
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
        certs.push((cert_path, key_path));
    }
    let other_key = KeyPair::generate().unwrap();
    let mut other = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    other.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let other = other.self_signed(&other_key).unwrap();
    Pki {
        ca: lab.write_file("ca.pem", &ca.pem()).unwrap(),
        certs,
        other_ca: lab.write_file("other-ca.pem", &other.pem()).unwrap(),
    }
}

fn tls_keys(pki: &Pki, node: usize, ca: &std::path::Path) -> String {
    let (cert, key) = &pki.certs[node];
    format!(
        "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\ntls_ca_file = \"{}\"\ntls_client_ca_file = \"{}\"\n",
        cert.display(),
        key.display(),
        ca.display(),
        pki.ca.display()
    )
}

fn cli(host: &Host, lab: &Lab, node: &str, args: &[&str]) -> (bool, String) {
    let config = lab.dir().join(format!("{node}.toml"));
    let config = config.to_string_lossy().into_owned();
    let mut argv = vec![env!("CARGO_BIN_EXE_whpg-ha")];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&["--config", config.as_str(), "--node", node]);
    let output = host
        .exec_timeout(&argv, Duration::from_secs(15))
        .expect("running the CLI");
    (
        output.success(),
        format!("{}{}", output.stdout, output.stderr),
    )
}

#[test]
fn the_cli_speaks_tls_with_client_certificates_and_plain_http_is_refused() {
    let lab = lab_or_skip!("api_hostile_tls", &["prlimit"]);
    let n1 = lab.add_host("n1", &format!("{N1}/24")).expect("n1");
    let n2 = lab.add_host("n2", &format!("{N2}/24")).expect("n2");
    let pki = pki(&lab);
    let d1 = start(&lab, &n1, "n1", &config(&lab, &tls_keys(&pki, 0, &pki.ca)));
    let d2 = start(&lab, &n2, "n2", &config(&lab, &tls_keys(&pki, 1, &pki.ca)));
    let logs = [&d1, &d2];
    // The test's own plain-HTTP helpers cannot read a TLS API: wait on the CLI instead.
    wait_until(
        Duration::from_secs(20),
        Duration::from_millis(200),
        "both nodes over TLS",
        || {
            let (ok, out) = cli(&n1, &lab, "n1", &["status", "--json"]);
            ok && out.contains("\"MASTER\"") && out.contains("\"BACKUP\"")
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}\n{}", dump_logs(&logs)));

    // The token goes to the peer over TLS: the CLI does not refuse, the daemons answer
    // (and refuse maintenance themselves: this pair runs without a database).
    let (ok, out) = cli(&n1, &lab, "n1", &["maintenance", "on"]);
    println!("maintenance on over TLS:\n{out}");
    assert!(!ok, "{out}");
    assert!(
        !out.contains("refusing to send the token in clear"),
        "{out}"
    );
    assert!(
        out.matches("database.monitor = false").count() >= 2,
        "both daemons must have answered: {out}"
    );

    // Plain HTTP to the TLS port gets no HTTP answer.
    assert_eq!(api_get(&n1, "/health"), None);

    // A client without a certificate, or trusting another CA, is refused in the handshake.
    let tls_config = |ca: &PathBuf, with_cert: bool| {
        let files = whpg_ha::config::ApiTls {
            cert_file: pki.certs[0].0.clone(),
            key_file: pki.certs[0].1.clone(),
            ca_file: ca.clone(),
            client_ca_file: with_cert.then(|| pki.ca.clone()),
        };
        Settings {
            tls: Some(whpg_ha::api::tls::client_config(&files).expect("client TLS config")),
            allow_clear_token: false,
        }
    };
    let ask = |settings: Settings| {
        in_netns(n1.netns(), move || {
            send_with(
                &settings,
                format!("{N2}:{API_PORT}").parse().unwrap(),
                &Request::get("/health"),
                Duration::from_secs(3),
            )
        })
    };
    let good = ask(tls_config(&pki.ca, true)).expect("a verified client is served");
    assert_eq!((good.status, good.body.as_str()), (200, "ok\n"));
    let no_cert = ask(tls_config(&pki.ca, false));
    assert!(
        !matches!(no_cert, Ok(ref r) if r.status == 200),
        "served without a client certificate: {no_cert:?}"
    );
    let wrong_ca = ask(tls_config(&pki.other_ca, true));
    assert!(
        matches!(wrong_ca, Err(ClientError::Tls(_, ref why)) if why.contains("certificate")),
        "{wrong_ca:?}"
    );

    // A planned promotion asked of n2: n2's daemon asks n1's daemon for the shutdown checkpoint
    // over TLS, with its node certificate and the token. n1's daemon answers (its refusal is
    // its own: this pair has no database, so pg_controldata finds nothing); no step is taken.
    let settings = tls_config(&pki.ca, true);
    let promoted = in_netns(n1.netns(), move || {
        send_with(
            &settings,
            format!("{N2}:{API_PORT}").parse().unwrap(),
            &Request::post_json("/switchover/promote", r#"{"min_lsn":"0/0"}"#, Some(TOKEN)),
            Duration::from_secs(30),
        )
    })
    .expect("n2 answers over TLS");
    println!("promote over TLS: {} {}", promoted.status, promoted.body);
    assert_eq!(promoted.status, 409, "{}", promoted.body);
    assert!(
        promoted
            .body
            .contains(&format!("asked n1's daemon at {N1}:{API_PORT}"))
            && promoted.body.contains("it refused (HTTP 500)")
            && promoted.body.contains("pg_controldata"),
        "{}\n{}",
        promoted.body,
        dump_logs(&logs)
    );
}

#[test]
fn rejoin_from_a_host_that_is_not_the_peer_is_refused() {
    let lab = lab_or_skip!("api_hostile_rejoin", &["prlimit"]);
    let n1 = lab.add_host("n1", &format!("{N1}/24")).expect("n1");
    let n2 = lab.add_host("n2", &format!("{N2}/24")).expect("n2");
    let stranger = lab.add_host("cl", "10.77.0.99/24").expect("cl");
    let text = config(&lab, "");
    let d1 = start(&lab, &n1, "n1", &text);
    let d2 = start(&lab, &n2, "n2", &text);
    let logs = [&d1, &d2];
    settle((&n1, &n2), &logs);
    let allowed = Settings {
        tls: None,
        allow_clear_token: true,
    };
    let post = |from: &Host, to: &str, path: &'static str, body: String| {
        let settings = allowed.clone();
        in_netns(from.netns(), move || {
            send_with(
                &settings,
                format!("{to}:{API_PORT}").parse().unwrap(),
                &Request::post_json(path, &body, Some(TOKEN)),
                Duration::from_secs(3),
            )
        })
        .expect("the API answers")
    };
    // The right token from a stranger: refused for where it comes from, nothing done.
    let body = format!("{{\"primary_host\": \"{N1}\"}}");
    let r = post(&stranger, N2, "/rejoin/local", body.clone());
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.body.contains("only from the peer 10.77.0.11")
            && r.body.contains("10.77.0.99 is neither"),
        "{}",
        r.body
    );
    let r = post(
        &stranger,
        N1,
        "/rejoin",
        format!("{{\"standby_host\": \"{N2}\"}}"),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    // From the peer it passes that check and meets the next one: n1 serves, it is not rebuilt.
    let r = post(
        &n2,
        N1,
        "/rejoin/local",
        format!("{{\"primary_host\": \"{N2}\"}}"),
    );
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("active primary"), "{}", r.body);
    // Naming a host other than the peer is refused too.
    let r = post(
        &n1,
        N2,
        "/rejoin/local",
        "{\"primary_host\": \"10.77.0.99\"}".into(),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("is not the configured peer 10.77.0.11"),
        "{}",
        r.body
    );
    assert_eq!(sample(&n1, &n2), expected_sample(), "{}", dump_logs(&logs));
}
