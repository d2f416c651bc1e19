//! A PostgreSQL 15 primary/standby pair in lab hosts, watched by two whpg-ha daemons.

use std::time::Duration;

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
    let mut text = String::from(
        "[vrrp]\ninterface = \"eth0\"\nvrid = 51\nversion = 3\nadvert_interval = \"100ms\"\n\
         transport = \"multicast\"\n\n[vrrp.garp]\nrepeat = 2\nmaster_delay = \"0s\"\n",
    );
    text += &format!("\n[[vip]]\naddress = \"{VIP}/24\"\nlabel = \"eth0:vip\"\n");
    for (name, address, priority) in nodes {
        text += &format!("\n[nodes.{name}]\naddress = \"{address}\"\npriority = {priority}\n");
    }
    text += &format!(
        "\n[database]\nflavor = \"{}\"\nhost = \"127.0.0.1\"\nport = {PG_PORT}\nuser = \"{PG_SUPERUSER}\"\n\
         dbname = \"postgres\"\ndata_directory = \"{}\"\nos_user = \"{PG_OS_USER}\"\n",
        settings.flavor,
        node_db.data_dir().display()
    );
    if let Some(dir) = bin_dir {
        text += &format!("bin_dir = \"{dir}\"\n");
    }
    if let Some(path) = &settings.greenplum_path {
        text += &format!("greenplum_path = \"{path}\"\n");
    }
    text += "\n[health]\ninterval = \"100ms\"\ntimeout = \"500ms\"\nfall = 3\nrise = 2\n";
    text += &format!(
        "\n[failover]\ntriggers = {}\nconfirmation = \"{}\"\nwal_freshness = \"{}\"\n",
        settings.triggers, settings.confirmation, settings.wal_freshness
    );
    if let Some((argv, timeout)) = &settings.promote {
        text += &format!("\n[commands.promote]\nargv = {argv}\ntimeout = \"{timeout}\"\n");
    }
    if let Some(witness) = settings.witness {
        text += &format!("\n[witness]\nhosts = [\"{witness}\"]\nquorum = 1\ninterval = \"200ms\"\ntimeout = \"300ms\"\n");
    }
    text += &format!(
        "\n[api]\nlisten = [\"127.0.0.1:{}\"]\n",
        super::daemon::API_PORT
    );
    text
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
