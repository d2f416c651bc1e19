//! Real PostgreSQL 15 servers inside lab hosts: a primary made by `initdb`, standbys made by
//! `pg_basebackup`, started, stopped, crashed and promoted with Debian's `postgresql-15` binaries,
//! always as the `postgres` OS user inside the host's namespace.
//!
//! Everything a node owns lives in the lab directory (data directory `<host>.pg<port>`, socket
//! directory `<host>.s<port>`, server log `<host>.pg<port>.log`), so the machine's own clusters,
//! running or not, are never touched, and the lab's teardown (which kills every process in its
//! namespaces and deletes its directory) removes it all. The socket directory sits outside the
//! data directory: `pg_basebackup` would otherwise copy the socket lock file into the standby.
//!
//! Every command is bounded by a timeout.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::host::Host;
use crate::lab::{user_ids, Lab};

/// Where Debian's `postgresql-15` installs the server binaries.
pub const PG_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
/// The OS user that runs the servers.
pub const PG_OS_USER: &str = "postgres";
/// The database superuser created by `initdb`.
pub const PG_SUPERUSER: &str = "postgres";

/// `initdb` and `pg_basebackup` of an empty cluster take a few seconds; this is generous.
const CREATE_TIMEOUT: Duration = Duration::from_secs(90);
/// Server-side wait of `pg_ctl -w` (seconds), and the command bound around it.
const PG_CTL_WAIT_SECS: u32 = 30;
const PG_CTL_TIMEOUT: Duration = Duration::from_secs(40);
const PSQL_TIMEOUT: Duration = Duration::from_secs(20);
/// `sun_path` holds 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

/// One PostgreSQL server in a lab host. Cheap to clone; the files belong to the lab.
#[derive(Debug, Clone)]
pub struct PgNode {
    host: Host,
    port: u16,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log: PathBuf,
}

/// The network of `cidr` (`10.77.0.11/24` → `10.77.0.0/24`), as pg_hba.conf wants it.
fn network_of(cidr: &str) -> Result<String> {
    let (addr, prefix) = cidr
        .split_once('/')
        .with_context(|| format!("{cidr:?} is not address/prefix"))?;
    let prefix: u32 = prefix.parse().context("prefix length")?;
    let net = match addr.parse::<IpAddr>()? {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - prefix.min(32)).unwrap_or(0);
            IpAddr::from((u32::from(a) & mask).to_be_bytes())
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - prefix.min(128)).unwrap_or(0);
            IpAddr::from((u128::from(a) & mask).to_be_bytes())
        }
    };
    Ok(format!("{net}/{prefix}"))
}

fn pg_bin(name: &str) -> String {
    format!("{PG_BIN_DIR}/{name}")
}

impl PgNode {
    /// Creates the node's directories and log file (owned by `postgres`), without a cluster.
    fn layout(lab: &Lab, host: &Host, port: u16) -> Result<PgNode> {
        if !Arc::ptr_eq(&host.lab, &lab.shared) {
            bail!("host {} does not belong to lab {}", host.name(), lab.name());
        }
        let data_dir = lab.user_dir(PG_OS_USER, &format!("{}.pg{port}", host.name()))?;
        let socket_dir = lab.user_dir(PG_OS_USER, &format!("{}.s{port}", host.name()))?;
        std::fs::set_permissions(&socket_dir, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod {}", socket_dir.display()))?;
        let socket = socket_dir.join(format!(".s.PGSQL.{port}"));
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            bail!(
                "socket path {} is longer than {MAX_SOCKET_PATH} bytes; use a shorter test or host \
                 name",
                socket.display()
            );
        }
        let log = lab.dir().join(format!("{}.pg{port}.log", host.name()));
        std::fs::write(&log, b"").with_context(|| format!("creating {}", log.display()))?;
        let (uid, gid) = user_ids(PG_OS_USER)?;
        std::os::unix::fs::chown(&log, Some(uid), Some(gid))
            .with_context(|| format!("chown {}", log.display()))?;
        Ok(PgNode {
            host: host.clone(),
            port,
            data_dir,
            socket_dir,
            log,
        })
    }

    /// Settings that make this node itself: its port, socket directory and name (the name is
    /// also the `application_name` its WAL receiver shows on the primary).
    fn own_settings(&self) -> String {
        format!(
            "\n# whpg-lab: this node\nport = {}\nunix_socket_directories = '{}'\ncluster_name = '{}'\n",
            self.port,
            self.socket_dir.display(),
            self.host.name()
        )
    }

    /// `initdb` a new cluster in `host` for a primary on `port` (not started): listens on all
    /// addresses, streams WAL to up to five standbys, hot standby on, `wal_log_hints` on (so
    /// `pg_rewind` works), trust authentication for the lab subnet including replication.
    pub fn init_primary(lab: &Lab, host: &Host, port: u16) -> Result<PgNode> {
        let node = PgNode::layout(lab, host, port)?;
        let data = node.data_dir.to_string_lossy().into_owned();
        host.exec_as_timeout(
            PG_OS_USER,
            &[
                pg_bin("initdb").as_str(),
                "-D",
                &data,
                "-U",
                PG_SUPERUSER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
                "--no-instructions",
            ],
            CREATE_TIMEOUT,
        )?
        .ok()?;
        let settings = "\n# whpg-lab: a streaming primary\n\
             listen_addresses = '*'\n\
             wal_level = replica\n\
             max_wal_senders = 5\n\
             hot_standby = on\n\
             wal_log_hints = on\n\
             max_connections = 30\n\
             shared_buffers = 16MB\n\
             # A test machine is never power-cut; a killed server loses nothing without fsync.\n\
             fsync = off\n\
             log_line_prefix = '%m [%p] %q%a '\n";
        node.append_conf(&format!("{settings}{}", node.own_settings()))?;
        let net = network_of(host.cidr())?;
        node.append_file(
            "pg_hba.conf",
            &format!(
                "\n# whpg-lab: the lab subnet\nhost all all {net} trust\n\
                 host replication all {net} trust\n"
            ),
        )?;
        Ok(node)
    }

    /// Clones running `primary` into a standby in `host` on `port` (not started):
    /// `pg_basebackup -R -X stream` over the lab network, then this node's own port, socket
    /// directory and name.
    pub fn init_standby_from(
        lab: &Lab,
        host: &Host,
        primary: &PgNode,
        port: u16,
    ) -> Result<PgNode> {
        let node = PgNode::layout(lab, host, port)?;
        let data = node.data_dir.to_string_lossy().into_owned();
        let primary_port = primary.port.to_string();
        host.exec_as_timeout(
            PG_OS_USER,
            &[
                pg_bin("pg_basebackup").as_str(),
                "-h",
                primary.host.address(),
                "-p",
                &primary_port,
                "-U",
                PG_SUPERUSER,
                "-D",
                &data,
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
            ],
            CREATE_TIMEOUT,
        )?
        .ok()?;
        node.append_conf(&node.own_settings())?;
        Ok(node)
    }

    fn append_file(&self, name: &str, text: &str) -> Result<()> {
        use std::io::Write as _;
        let path = self.data_dir.join(name);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        file.write_all(text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Appends lines to `postgresql.conf` (later lines win; takes effect at the next start or
    /// reload).
    pub fn append_conf(&self, lines: &str) -> Result<()> {
        self.append_file("postgresql.conf", &format!("{lines}\n"))
    }

    /// Sets one parameter in `postgresql.conf`, e.g. `set("hot_standby", "off")`.
    pub fn set(&self, name: &str, value: &str) -> Result<()> {
        self.append_conf(&format!("{name} = '{}'", value.replace('\'', "''")))
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<()> {
        let data = self.data_dir.to_string_lossy().into_owned();
        let wait = PG_CTL_WAIT_SECS.to_string();
        let mut argv = vec![
            pg_bin("pg_ctl"),
            "-D".into(),
            data,
            "-w".into(),
            "-t".into(),
            wait,
        ];
        argv.extend(args.iter().map(|a| a.to_string()));
        self.host
            .exec_as_timeout(PG_OS_USER, &argv, PG_CTL_TIMEOUT)?
            .ok()
            .with_context(|| format!("server log {}", self.log.display()))?;
        Ok(())
    }

    /// Starts the server and waits until it accepts connections (or, with `hot_standby = off`,
    /// until it runs as a standby).
    pub fn start(&self) -> Result<()> {
        self.wait_crashed_postmaster_reaped()?;
        let log = self.log.to_string_lossy().into_owned();
        self.pg_ctl(&["-l", &log, "start"])
    }

    /// After [`PgNode::kill9`] the dead postmaster stays a zombie until init reaps it (which
    /// can take seconds in some sandboxes); a new postmaster would take the zombie's pid in the
    /// stale `postmaster.pid` for a running server and refuse to start. Waits for the reaping.
    fn wait_crashed_postmaster_reaped(&self) -> Result<()> {
        let Ok(pid) = self.postmaster_pid() else {
            return Ok(());
        };
        let is_zombie = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let after = &stat[stat.rfind(')')? + 1..];
                    after.split_whitespace().next().map(|state| state == "Z")
                })
                .unwrap_or(false)
        };
        crate::wait_until(
            Duration::from_secs(15),
            Duration::from_millis(10),
            &format!("crashed postmaster {pid} to be reaped"),
            || !is_zombie(),
        )?;
        Ok(())
    }

    /// Stops the server with the fast mode (active sessions rolled back, clean shutdown).
    pub fn stop_fast(&self) -> Result<()> {
        self.pg_ctl(&["-m", "fast", "stop"])
    }

    /// Crashes the server: SIGKILL to the postmaster named by `postmaster.pid` (its children
    /// exit on their own once they notice). Returns the killed pid; does not wait.
    pub fn kill9(&self) -> Result<u32> {
        let pid = self.postmaster_pid()?;
        // SAFETY: plain syscall with integer arguments.
        let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        if rc != 0 {
            bail!("kill -9 {pid}: {}", std::io::Error::last_os_error());
        }
        Ok(pid)
    }

    /// Promotes a standby and waits until it has left recovery.
    pub fn promote(&self) -> Result<()> {
        self.pg_ctl(&["promote"])
    }

    /// Runs `sql` with `psql -XAtq` over the Unix socket as the superuser and returns its output
    /// without the final newline. Fails on any SQL error.
    pub fn psql(&self, sql: &str) -> Result<String> {
        let socket_dir = self.socket_dir.to_string_lossy().into_owned();
        let port = self.port.to_string();
        let out = self
            .host
            .exec_as_timeout(
                PG_OS_USER,
                &[
                    pg_bin("psql").as_str(),
                    "-X",
                    "-A",
                    "-t",
                    "-q",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-h",
                    &socket_dir,
                    "-p",
                    &port,
                    "-U",
                    PG_SUPERUSER,
                    "-d",
                    "postgres",
                    "-c",
                    sql,
                ],
                PSQL_TIMEOUT,
            )?
            .ok()?;
        Ok(out.stdout.trim_end_matches('\n').to_string())
    }

    /// `pg_is_in_recovery()`.
    pub fn is_in_recovery(&self) -> Result<bool> {
        match self.psql("SELECT pg_is_in_recovery()")?.as_str() {
            "t" => Ok(true),
            "f" => Ok(false),
            other => bail!("pg_is_in_recovery() returned {other:?}"),
        }
    }

    /// Polls `sql` every 50 ms until it returns `expected` (errors count as "not yet").
    pub fn wait_for_sql(&self, sql: &str, expected: &str, timeout: Duration) -> Result<Duration> {
        crate::wait_until(
            timeout,
            Duration::from_millis(50),
            &format!("`{sql}` = {expected:?} on {}", self.host.name()),
            || self.psql(sql).map(|out| out == expected).unwrap_or(false),
        )
    }

    /// The postmaster's pid from `postmaster.pid` (line 1).
    pub fn postmaster_pid(&self) -> Result<u32> {
        let path = self.data_dir.join("postmaster.pid");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let first = text.lines().next().unwrap_or_default().trim();
        first
            .parse()
            .with_context(|| format!("{}: line 1 {first:?} is not a pid", path.display()))
    }

    /// The host the node runs in.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The host's address, where the node listens on `port`.
    pub fn address(&self) -> &str {
        self.host.address()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The directory holding `.s.PGSQL.<port>`.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The server log (`pg_ctl -l`).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The server log so far (empty if unreadable).
    pub fn log_contents(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_hba_networks() {
        assert_eq!(network_of("10.77.0.11/24").unwrap(), "10.77.0.0/24");
        assert_eq!(network_of("10.77.0.11/32").unwrap(), "10.77.0.11/32");
        assert_eq!(network_of("10.77.0.11/0").unwrap(), "0.0.0.0/0");
        assert_eq!(network_of("fd00::5/64").unwrap(), "fd00::/64");
        assert!(network_of("10.77.0.11").is_err());
    }
}
