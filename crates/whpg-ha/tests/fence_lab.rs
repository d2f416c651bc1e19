//! Fencing against real PostgreSQL 15 servers run as `postgres` (Unix sockets only, each in its
//! own temp directory, so nothing listens on the network): only the fenced data directory's
//! processes die, its stale files go, its data stays, and a neighbour server is untouched.
//!
//! Needs root, the `postgres` OS user and PostgreSQL 15 (`initdb`, `pg_ctl`, `postgres`). Missing
//! prerequisites fail the test under `CI=true`, else it prints `SKIPPED` and returns.

use std::collections::BTreeMap;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use whpg_ha::config::testing::TestConfig;
use whpg_ha::config::{CommandKind, Database};
use whpg_ha::exec::{run, PreparedCommand};
use whpg_ha::fence::{fence_database, CommandStep, FenceOutcome, ProcessRole};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn prerequisites(test: &str) -> bool {
    whpg_lab::require_for(test, &["initdb", "pg_ctl", "postgres", "user:postgres"])
}

/// Pids of processes whose working directory is `dir`, read independently of the code under test.
fn pids_in_dir(dir: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, r)| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(true);
        if !zombie
            && std::fs::read_link(format!("/proc/{pid}/cwd"))
                .ok()
                .as_deref()
                == Some(dir)
        {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    pids
}

fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// A port whose socket name is free in /tmp (the servers listen only on Unix sockets).
/// A PostgreSQL pair pg1 / pg2 whose database is reached over the socket in `socket_dir`.
fn fence_pair(socket_dir: &Path, port: u16, data_directory: &Path) -> TestConfig {
    TestConfig::pair()
        .interface("eth1")
        .vip("192.168.56.100/24")
        .nodes(&[("pg1", "10.0.0.1", 100), ("pg2", "10.0.0.2", 98)])
        .without("database", "host")
        .without("database", "os_user")
        .without("database", "monitor")
        .database("socket_dir", socket_dir)
        .database("port", port)
        .database("data_directory", data_directory)
}

fn free_port() -> u16 {
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("an ephemeral port");
        let taken = std::fs::read_dir("/tmp")
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .contains(&format!(".s.PGSQL.{port}"))
            });
        if !taken {
            return port;
        }
    }
}

/// A PostgreSQL 15 server in `/tmp/whpg-fence-<pid>-<n>/{data,sock}`; dropping it kills whatever
/// runs in its data directory and deletes the whole test directory.
struct PgServer {
    root: PathBuf,
    data: PathBuf,
    sock: PathBuf,
    port: u16,
}

impl PgServer {
    async fn init(tag: &str) -> PgServer {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let root = PathBuf::from(format!("/tmp/whpg-fence-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("mkdir test root");
        let server = PgServer {
            data: root.join("data"),
            sock: root.join("sock"),
            root,
            port: free_port(),
        };
        let postgres = whpg_ha::exec::lookup_user("postgres").expect("user postgres");
        for dir in [&server.data, &server.sock] {
            std::fs::create_dir_all(dir).expect("mkdir");
            std::os::unix::fs::chown(dir, Some(postgres.uid), Some(postgres.gid)).expect("chown");
        }
        // The server log lives in the root directory, which postgres may not write to.
        let log = server.root.join("server.log");
        std::fs::write(&log, "").expect("create server.log");
        std::os::unix::fs::chown(&log, Some(postgres.uid), Some(postgres.gid)).expect("chown log");
        std::fs::set_permissions(
            &server.data,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .expect("chmod data");
        server
            .as_postgres(&[
                &format!("{PG_BIN}/initdb"),
                "-D",
                server.data.to_str().expect("utf-8"),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ])
            .await;
        let settings = format!(
            "\nport = {}\nlisten_addresses = ''\nunix_socket_directories = '{}'\nfsync = off\n\
             shared_buffers = 16MB\nmax_connections = 10\n",
            server.port,
            server.sock.display()
        );
        let conf = server.data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("read postgresql.conf");
        text.push_str(&settings);
        std::fs::write(&conf, text).expect("write postgresql.conf");
        server
    }

    async fn as_postgres(&self, argv: &[&str]) {
        let command = PreparedCommand::new(
            "test",
            argv.iter().map(|s| s.to_string()).collect(),
            Duration::from_secs(120),
        )
        .run_as("postgres");
        let outcome = run(&command).await.expect("command runs");
        assert!(
            outcome.success(),
            "{outcome}\n{}\n{}",
            outcome.output.stdout,
            outcome.output.stderr
        );
    }

    async fn start(&self) {
        let log = self.root.join("server.log");
        self.as_postgres(&[
            &format!("{PG_BIN}/pg_ctl"),
            "start",
            "-D",
            self.data.to_str().expect("utf-8"),
            "-l",
            log.to_str().expect("utf-8"),
            "-w",
            "-t",
            "60",
        ])
        .await;
    }

    fn postmaster_pid(&self) -> i32 {
        std::fs::read_to_string(self.data.join("postmaster.pid"))
            .expect("postmaster.pid")
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .expect("a pid in postmaster.pid")
    }

    fn socket(&self) -> PathBuf {
        self.sock.join(format!(".s.PGSQL.{}", self.port))
    }

    fn lock(&self) -> PathBuf {
        self.sock.join(format!(".s.PGSQL.{}.lock", self.port))
    }

    fn processes(&self) -> Vec<i32> {
        pids_in_dir(&self.data)
    }

    fn config_text(&self) -> String {
        fence_pair(&self.sock, self.port, &self.data)
            .database("os_user", "postgres")
            .database("bin_dir", PG_BIN)
            .to_toml()
    }

    fn database(&self) -> Database {
        whpg_ha::config::parse(&self.config_text(), Some("pg1"))
            .expect("valid configuration")
            .database
    }

    /// The configured fence command (`pg_ctl stop -m immediate -D <data>`, as postgres).
    fn fence_command(&self) -> PreparedCommand {
        let config = whpg_ha::config::parse(&self.config_text(), Some("pg1")).expect("valid");
        PreparedCommand::from_config(&config, CommandKind::Fence, &BTreeMap::new())
            .expect("fence command")
    }

    /// A snapshot of the data directory's files (names and sizes of the top level and `global/`).
    fn data_listing(&self) -> Vec<String> {
        let mut names = Vec::new();
        for dir in [self.data.clone(), self.data.join("global")] {
            for entry in std::fs::read_dir(&dir).expect("list data dir").flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name != "postmaster.pid" && name != "postmaster.opts" {
                    names.push(format!("{}/{name}", dir.display()));
                }
            }
        }
        names.sort();
        names
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        for pid in self.processes() {
            // SAFETY: kill has no memory preconditions; these are this test's own servers.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.processes().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn assert_dir_gone(server: &PgServer) {
    assert_eq!(server.processes(), Vec::<i32>::new(), "processes survived");
    assert!(!server.socket().exists(), "socket left behind");
    assert!(!server.lock().exists(), "socket lock left behind");
    assert!(
        !server.data.join("postmaster.pid").exists(),
        "postmaster.pid left behind"
    );
    assert!(server.data.join("PG_VERSION").is_file(), "data dir damaged");
    assert!(server.data.join("base").is_dir(), "data dir damaged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_stops_only_that_data_directory_and_keeps_its_data() {
    if !prerequisites("fencing_stops_only_that_data_directory_and_keeps_its_data") {
        return;
    }
    let (a, b) = tokio::join!(PgServer::init("a"), PgServer::init("b"));
    tokio::join!(a.start(), b.start());
    let a_listing = a.data_listing();
    let b_processes = b.processes();
    let b_postmaster = b.postmaster_pid();
    let b_started = start_time(b_postmaster);
    assert!(!a.processes().is_empty() && !b_processes.is_empty());

    let report = fence_database(&a.database(), &a.fence_command()).await;
    eprintln!("{report}");
    assert_eq!(report.outcome, FenceOutcome::Stopped, "{report}");
    assert!(report.errors.is_empty(), "{report}");
    assert!(matches!(
        report.command,
        CommandStep::Finished {
            exit: whpg_ha::exec::Exit::Code(0),
            ..
        }
    ));
    assert!(report
        .found
        .iter()
        .any(|p| p.role == ProcessRole::Postmaster));
    assert_dir_gone(&a);
    assert_eq!(a.data_listing(), a_listing, "data directory changed");

    // The neighbour: same processes, same postmaster, its socket still there.
    assert_eq!(b.processes(), b_processes);
    assert_eq!(start_time(b_postmaster), b_started);
    assert!(b.socket().exists() && b.lock().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_stop_command_is_followed_by_kill_by_pid_and_file_cleanup() {
    if !prerequisites("a_hanging_stop_command_is_followed_by_kill_by_pid_and_file_cleanup") {
        return;
    }
    let (a, b) = tokio::join!(PgServer::init("hang-a"), PgServer::init("hang-b"));
    tokio::join!(a.start(), b.start());
    let a_postmaster = a.postmaster_pid();
    let b_processes = b.processes();

    // WarehousePG's IC proxy sockets: one of a dead postmaster of A's port (stale), one naming a
    // live postgres process (B's postmaster) that must be left alone.
    let stale_ic = PathBuf::from(format!("/tmp/.s.PGSQL.ic_proxy.{}.999999999", a.port));
    let live_ic = PathBuf::from(format!(
        "/tmp/.s.PGSQL.ic_proxy.{}.{}",
        a.port,
        b.postmaster_pid()
    ));
    for path in [&stale_ic, &live_ic] {
        drop(UnixListener::bind(path).expect("bind a fake IC proxy socket"));
    }

    let hanging = PreparedCommand::new(
        "commands.fence",
        vec!["/bin/sleep".into(), "30".into()],
        Duration::from_secs(1),
    )
    .run_as("postgres");
    let started = Instant::now();
    let report = fence_database(&a.database(), &hanging).await;
    let took = started.elapsed();
    eprintln!("{report}");
    let _ = std::fs::remove_file(&live_ic);
    let _ = std::fs::remove_file(&stale_ic);

    assert!(
        matches!(report.command, CommandStep::TimedOut { .. }),
        "{report}"
    );
    assert_eq!(report.outcome, FenceOutcome::Stopped, "{report}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(report
        .killed
        .iter()
        .any(|p| p.pid == a_postmaster && p.role == ProcessRole::Postmaster));
    assert!(report.removed.contains(&a.socket()), "{report}");
    assert!(report.removed.contains(&a.lock()), "{report}");
    assert!(
        report.removed.contains(&a.data.join("postmaster.pid")),
        "{report}"
    );
    assert!(report.removed.contains(&stale_ic), "{report}");
    assert!(report.kept.iter().any(|k| k.path == live_ic), "{report}");
    assert_dir_gone(&a);
    assert_eq!(b.processes(), b_processes, "the neighbour was touched");
}

#[tokio::test]
async fn fencing_a_stopped_server_reports_nothing_to_do() {
    if !prerequisites("fencing_a_stopped_server_reports_nothing_to_do") {
        return;
    }
    let a = PgServer::init("stopped").await;
    let listing = a.data_listing();
    let report = fence_database(&a.database(), &a.fence_command()).await;
    eprintln!("{report}");
    assert_eq!(report.outcome, FenceOutcome::NothingToDo, "{report}");
    assert!(report.found.is_empty() && report.killed.is_empty() && report.removed.is_empty());
    // pg_ctl stop on a stopped server says so and exits non-zero; that is not an error here.
    assert!(
        matches!(report.command, CommandStep::Finished { .. }),
        "{report}"
    );
    assert!(report.errors.is_empty());
    assert_eq!(a.data_listing(), listing);
}

#[tokio::test]
async fn stale_files_of_a_killed_postmaster_are_removed() {
    if !prerequisites("stale_files_of_a_killed_postmaster_are_removed") {
        return;
    }
    let a = PgServer::init("kill9").await;
    a.start().await;
    let postmaster = a.postmaster_pid();
    // SAFETY: kill has no memory preconditions; this is the test's own server.
    unsafe {
        libc::kill(postmaster, libc::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while start_time(postmaster).is_some() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(a.socket().exists() && a.data.join("postmaster.pid").exists());

    let report = fence_database(&a.database(), &a.fence_command()).await;
    eprintln!("{report}");
    assert!(report.is_fenced(), "{report}");
    assert!(
        matches!(
            report.outcome,
            FenceOutcome::Stopped | FenceOutcome::CleanedUp
        ),
        "{report}"
    );
    assert!(report.removed.contains(&a.socket()), "{report}");
    assert!(
        report.removed.contains(&a.data.join("postmaster.pid")),
        "{report}"
    );
    assert_dir_gone(&a);
}

/// Needs no PostgreSQL: a copy of `sleep` named `postgres` working in a data directory stands for
/// a backend orphaned by its postmaster; a plain `sleep` working there stands for an operator's
/// shell. Only the first may be killed.
#[tokio::test]
async fn orphans_are_found_by_name_and_working_directory_and_bystanders_are_spared() {
    let root = PathBuf::from(format!("/tmp/whpg-fence-orphan-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let data = root.join("data");
    let bin = root.join("bin");
    std::fs::create_dir_all(&data).expect("mkdir data");
    std::fs::create_dir_all(&bin).expect("mkdir bin");
    let data = std::fs::canonicalize(&data).expect("canonical data dir");
    std::fs::copy("/bin/sleep", bin.join("postgres")).expect("copy sleep");
    let mut orphan = std::process::Command::new(bin.join("postgres"))
        .arg("100")
        .current_dir(&data)
        .spawn()
        .expect("spawn the fake backend");
    let mut bystander = std::process::Command::new("/bin/sleep")
        .arg("100")
        .current_dir(&data)
        .spawn()
        .expect("spawn the bystander");
    let config = fence_pair(&root, free_port(), &data).to_toml();
    let db = whpg_ha::config::parse(&config, Some("pg1"))
        .expect("valid configuration")
        .database;
    let noop = PreparedCommand::new(
        "commands.fence",
        vec!["/bin/true".into()],
        Duration::from_secs(5),
    );
    let report = fence_database(&db, &noop).await;
    eprintln!("{report}");

    let orphan_pid = orphan.id() as i32;
    let bystander_pid = bystander.id() as i32;
    let orphan_status = orphan.try_wait().expect("try_wait");
    let bystander_alive = bystander.try_wait().expect("try_wait").is_none();
    let _ = bystander.kill();
    let _ = bystander.wait();
    let _ = orphan.kill();
    let _ = orphan.wait();
    let _ = std::fs::remove_dir_all(&root);

    assert!(
        report
            .killed
            .iter()
            .any(|p| p.pid == orphan_pid && p.role == ProcessRole::Root),
        "{report}"
    );
    assert!(
        !report.found.iter().any(|p| p.pid == bystander_pid),
        "{report}"
    );
    assert!(orphan_status.is_some(), "the fake backend survived");
    assert!(bystander_alive, "the bystander was killed");
    assert_eq!(report.outcome, FenceOutcome::Stopped, "{report}");
}
