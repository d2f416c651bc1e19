//! A PostgreSQL 15 primary/standby pair in lab hosts, watched by two whpg-ha daemons.

use std::time::Duration;

use whpg_ha::config::testing::TestConfig;
use whpg_lab::postgres::{PG_BIN_DIR, PG_OS_USER, PG_SUPERUSER};
use whpg_lab::{Host, Lab, PgNode};

pub const PG_PORT: u16 = 5432;
pub const VIP: &str = "10.77.0.100";

/// Failover settings of a database-aware lab pair.
#[derive(Debug, Clone)]
pub struct DbPairSettings {
    pub confirmation: &'static str,
    pub wal_freshness: &'static str,
    pub triggers: &'static str,
    pub witness: Option<&'static str>,
    /// `[commands.promote]` override (argv as TOML array text, timeout).
    pub promote: Option<(String, &'static str)>,
    pub flavor: &'static str,
    pub greenplum_path: Option<String>,
}

impl Default for DbPairSettings {
    fn default() -> Self {
        DbPairSettings {
            confirmation: "3s",
            wal_freshness: "1s",
            triggers: r#"["node-loss", "network-loss", "database-failure"]"#,
            witness: None,
            promote: None,
            flavor: "postgres",
            greenplum_path: None,
        }
    }
}

/// A primary on `primary_host` and a streaming standby of it on `standby_host`.
pub fn pg_pair(lab: &Lab, primary_host: &Host, standby_host: &Host) -> (PgNode, PgNode) {
    let primary = PgNode::init_primary(lab, primary_host, PG_PORT).expect("initdb");
    primary.start().expect("start the primary");
    primary
        .psql("CREATE TABLE writes (id bigint PRIMARY KEY, at timestamptz DEFAULT now())")
        .expect("create the test table");
    let standby =
        PgNode::init_standby_from(lab, standby_host, &primary, PG_PORT).expect("basebackup");
    standby.start().expect("start the standby");
    standby
        .wait_for_sql(
            "SELECT status FROM pg_stat_wal_receiver",
            "streaming",
            Duration::from_secs(20),
        )
        .expect("the standby streams");
    (primary, standby)
}

/// The configuration of `node` (one of n1 / n2) for a database-aware pair.
pub fn db_pair_config(
    settings: &DbPairSettings,
    node_db: &PgNode,
    nodes: &[(&str, &str, u8)],
) -> String {
    db_pair_config_with_bin_dir(settings, node_db, nodes, Some(PG_BIN_DIR))
}

/// [`db_pair_config`] with `database.bin_dir` set to `bin_dir`, or left out (`None`: for
/// WarehousePG it then defaults to `bin` next to `greenplum_path.sh`).
pub fn db_pair_config_with_bin_dir(
    settings: &DbPairSettings,
    node_db: &PgNode,
    nodes: &[(&str, &str, u8)],
    bin_dir: Option<&str>,
) -> String {
    db_pair_builder(settings, node_db, nodes, bin_dir).to_toml()
}

/// The configuration of a database-aware pair (see [`db_pair_config_with_bin_dir`]), to change
/// further before writing it.
pub fn db_pair_builder(
    settings: &DbPairSettings,
    node_db: &PgNode,
    nodes: &[(&str, &str, u8)],
    bin_dir: Option<&str>,
) -> TestConfig {
    let mut config = TestConfig::pair()
        .version(3)
        .advert_interval("100ms")
        .multicast()
        .garp(2, "0s")
        .vip(&format!("{VIP}/24"))
        .vip_label("eth0:vip")
        .nodes(nodes)
        .without("database", "monitor")
        .database("flavor", settings.flavor)
        .database("port", PG_PORT)
        .database("user", PG_SUPERUSER)
        .database("dbname", "postgres")
        .database("data_directory", node_db.data_dir())
        .database("os_user", PG_OS_USER);
    if let Some(dir) = bin_dir {
        config = config.database("bin_dir", dir);
    }
    if let Some(path) = &settings.greenplum_path {
        config = config.database("greenplum_path", path);
    }
    config = config
        .health("100ms", "500ms", 3, 2)
        .set_raw("failover", "triggers", settings.triggers)
        .set("failover", "confirmation", settings.confirmation)
        .set("failover", "wal_freshness", settings.wal_freshness);
    if let Some((argv, timeout)) = &settings.promote {
        config = config.set_raw("commands.promote", "argv", argv).set(
            "commands.promote",
            "timeout",
            *timeout,
        );
    }
    if let Some(witness) = settings.witness {
        config = config.witness(&[witness], 1, "200ms", "300ms");
    }
    config.api(&[&super::daemon::loopback_api()], None)
}

/// One INSERT through the VIP from `client`, as the database superuser; true when committed.
pub fn write_through_vip(client: &Host, id: u64) -> bool {
    let sql = format!("INSERT INTO writes (id) VALUES ({id})");
    let port = PG_PORT.to_string();
    client
        .exec_as_timeout(
            PG_OS_USER,
            &[
                &format!("{PG_BIN_DIR}/psql"),
                "-h",
                VIP,
                "-p",
                &port,
                "-U",
                PG_SUPERUSER,
                "-d",
                "postgres",
                "-Atc",
                &sql,
            ],
            Duration::from_secs(5),
        )
        .map(|o| o.success())
        .unwrap_or(false)
}

/// Whether the node's server runs: a query over its Unix socket succeeds.
pub fn db_running(node: &PgNode) -> bool {
    node.psql("SELECT 1").is_ok()
}

/// A fake WarehousePG installation in the lab directory, for the `warehousepg` flavor on
/// PostgreSQL 15: `<gphome>/greenplum_path.sh` (only its location matters),
/// `<gphome>/bin/gpactivatestandby` (the test stand-in, which checks its command line and
/// environment like the real tool, then runs `pg_ctl promote`) and `<gphome>/bin/pg_ctl` (a
/// symlink to PostgreSQL's). Returns the path of `greenplum_path.sh`.
pub fn fake_gphome(lab: &Lab) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let gphome = lab.dir().join("gphome");
    let bin = gphome.join("bin");
    std::fs::create_dir_all(&bin).expect("creating the fake GPHOME");
    for dir in [&gphome, &bin] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let script = gphome.join("greenplum_path.sh");
    std::fs::write(
        &script,
        "# whpg-ha lab: a stand-in for WarehousePG's greenplum_path.sh\n",
    )
    .expect("writing greenplum_path.sh");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let standin = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/standins/gpactivatestandby"
    );
    let activate = bin.join("gpactivatestandby");
    std::fs::copy(standin, &activate).expect("copying the gpactivatestandby stand-in");
    std::fs::set_permissions(&activate, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::os::unix::fs::symlink(format!("{PG_BIN_DIR}/pg_ctl"), bin.join("pg_ctl"))
        .expect("linking pg_ctl into the fake GPHOME");
    script
}

/// A lab with the two coordinator hosts, a client, and a PostgreSQL pair on them.
pub struct Pair {
    pub n1: Host,
    pub n2: Host,
    pub client: Host,
    pub primary: PgNode,
    pub standby: PgNode,
}

/// n1 (10.77.0.11) with the primary, n2 (10.77.0.12) with its streaming standby, and a client
/// (10.77.0.99).
pub fn pair(lab: &Lab) -> Pair {
    let n1 = lab.add_host("n1", "10.77.0.11/24").expect("n1");
    let n2 = lab.add_host("n2", "10.77.0.12/24").expect("n2");
    let client = lab.add_host("cl", "10.77.0.99/24").expect("client");
    let (primary, standby) = pg_pair(lab, &n1, &n2);
    Pair {
        n1,
        n2,
        client,
        primary,
        standby,
    }
}

/// The `[nodes]` of the lab pair: (name, address, priority).
pub fn nodes() -> Vec<(&'static str, &'static str, u8)> {
    vec![("n1", "10.77.0.11", 100), ("n2", "10.77.0.12", 98)]
}
