//! Default values, in one place: what an absent key means, including the per-flavor commands.
//!
//! `validate` applies them, `render` writes them out, `docs/configuration.md` documents them.

use std::time::Duration;

use super::model::{CommandSpec, Flavor, Transport, V3Checksum, VrrpVersion};

pub const VRRP_VERSION: VrrpVersion = VrrpVersion::V2;
pub const ADVERT_INTERVAL: Duration = Duration::from_secs(1);
pub const TRANSPORT: Transport = Transport::Unicast;
pub const PREEMPT: bool = false;
pub const PREEMPT_DELAY: Duration = Duration::ZERO;
pub const V3_CHECKSUM: V3Checksum = V3Checksum::PseudoHeader;
pub const ACCEPT_EITHER_CHECKSUM: bool = false;

pub const GARP_REPEAT: u32 = 5;
pub const GARP_INTERVAL: Duration = Duration::ZERO;
pub const GARP_MASTER_DELAY: Duration = Duration::from_secs(5);
pub const GARP_REFRESH: Duration = Duration::ZERO;
pub const GARP_ON_LOWER_PRIORITY: bool = true;

pub const PRIORITY: u8 = 100;

pub const DB_PORT: u16 = 5432;
pub const DB_NAME: &str = "postgres";
pub const GREENPLUM_PATH: &str = "/usr/local/greenplum-db/greenplum_path.sh";

/// Default database user and OS user of a flavor.
pub fn db_user(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::WarehousePg => "gpadmin",
        Flavor::Postgres => "postgres",
    }
}

pub const HEALTH_INTERVAL: Duration = Duration::from_millis(100);
pub const HEALTH_TIMEOUT: Duration = Duration::from_millis(500);
pub const HEALTH_FALL: u32 = 3;
pub const HEALTH_RISE: u32 = 2;
pub const HEALTH_HELD_SESSION: bool = true;
pub const HEALTH_CONNECT_INTERVAL: Duration = Duration::from_secs(2);

pub const CONFIRMATION: Duration = Duration::from_secs(3);
pub const WAL_FRESHNESS: Duration = Duration::from_secs(1);
pub const FENCE_WHEN_ISOLATED: bool = true;
pub const MAXIMUM_LAG_TIME: Duration = Duration::from_secs(1);

/// `replication.sync_timeout`: how long a `sync` primary waits for a standby whose host does not
/// answer before it commits alone. It must outlast the standby's promotion in a partition (the
/// confirmation time, 3 s, plus a witness round and the promotion itself), so that a partition
/// in which the standby is promoted loses nothing until then: the old primary's commits wait
/// instead of being acknowledged. 10 s is three times that, and is still short enough that a
/// lost standby host stalls writes for seconds, not minutes.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(10);

/// `failover.maximum_lag` of a flavor. A PostgreSQL primary writes all of its data's WAL, and a
/// busy one keeps hundreds of kB in flight to a healthy streaming standby: 1 MiB (Patroni's
/// `maximum_lag_on_failover`) tolerates that and nothing more. A WarehousePG coordinator writes
/// only catalog changes and distributed-commit records (the data is on the segments), so it has
/// far less in flight and every kB is many commits: 64 KiB.
pub fn maximum_lag(flavor: Flavor) -> u64 {
    match flavor {
        Flavor::Postgres => 1 << 20,
        Flavor::WarehousePg => 64 << 10,
    }
}

pub const WITNESS_INTERVAL: Duration = Duration::from_millis(200);
pub const WITNESS_TIMEOUT: Duration = Duration::from_millis(500);

/// The API port; without `api.listen` the API listens on this node's address and on loopback.
pub const API_PORT: u16 = 8008;
pub const API_LISTEN: &str = "127.0.0.1:8008";
pub const API_MAX_CONNECTIONS: u32 = 128;
pub const API_HEADER_TIMEOUT: Duration = Duration::from_secs(5);
pub const API_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
pub const JOURNAL_PATH: &str = "/var/lib/whpg-ha/journal";

/// Which command a default is wanted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind {
    Promote,
    Fence,
    Stop,
    Rejoin,
    Start,
}

impl CommandKind {
    pub const ALL: [CommandKind; 5] = [
        CommandKind::Promote,
        CommandKind::Fence,
        CommandKind::Stop,
        CommandKind::Rejoin,
        CommandKind::Start,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CommandKind::Promote => "promote",
            CommandKind::Fence => "fence",
            CommandKind::Stop => "stop",
            CommandKind::Rejoin => "rejoin",
            CommandKind::Start => "start",
        }
    }
}

/// The default command of a flavor. Programs are prefixed with `{bin_dir}/` when a bin_dir is known,
/// else looked up in `PATH`.
pub fn command(kind: CommandKind, flavor: Flavor, has_bin_dir: bool) -> CommandSpec {
    let prog = |name: &str| {
        if has_bin_dir {
            format!("{{bin_dir}}/{name}")
        } else {
            name.to_string()
        }
    };
    let (argv, seconds): (Vec<String>, u64) = match (kind, flavor) {
        (CommandKind::Promote, Flavor::WarehousePg) => (
            vec![
                prog("gpactivatestandby"),
                "-a".into(),
                "-d".into(),
                "{data_directory}".into(),
            ],
            120,
        ),
        (CommandKind::Promote, Flavor::Postgres) => (
            vec![
                prog("pg_ctl"),
                "promote".into(),
                "-D".into(),
                "{data_directory}".into(),
            ],
            60,
        ),
        (CommandKind::Fence, _) => (
            vec![
                prog("pg_ctl"),
                "stop".into(),
                "-m".into(),
                "immediate".into(),
                "-D".into(),
                "{data_directory}".into(),
            ],
            30,
        ),
        (CommandKind::Stop, _) => (
            vec![
                prog("pg_ctl"),
                "stop".into(),
                "-m".into(),
                "fast".into(),
                "-w".into(),
                "-t".into(),
                "60".into(),
                "-D".into(),
                "{data_directory}".into(),
            ],
            90,
        ),
        (CommandKind::Rejoin, Flavor::WarehousePg) => (
            vec![
                prog("gpinitstandby"),
                "-s".into(),
                "{standby_host}".into(),
                "-a".into(),
            ],
            1800,
        ),
        (CommandKind::Rejoin, Flavor::Postgres) => (
            vec![
                prog("pg_basebackup"),
                "-h".into(),
                "{primary_host}".into(),
                "-p".into(),
                "{port}".into(),
                "-U".into(),
                "{user}".into(),
                "-D".into(),
                "{data_directory}".into(),
                "-R".into(),
                "-X".into(),
                "stream".into(),
            ],
            3600,
        ),
        (CommandKind::Start, _) => (
            vec![
                prog("pg_ctl"),
                "start".into(),
                "-w".into(),
                "-t".into(),
                "60".into(),
                "-D".into(),
                "{data_directory}".into(),
                "-l".into(),
                "{data_directory}/whpg-ha-start.log".into(),
            ],
            90,
        ),
    };
    CommandSpec {
        argv,
        timeout: Duration::from_secs(seconds),
    }
}

pub const ARBITER_LEASE_TTL: Duration = Duration::from_secs(5);
pub const ARBITER_TIMEOUT: Duration = Duration::from_secs(1);
pub const ARBITER_FAILSAFE: bool = true;
