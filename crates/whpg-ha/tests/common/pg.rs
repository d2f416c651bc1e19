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
         dbname = \"postgres\"\ndata_directory = \"{}\"\nos_user = \"{PG_OS_USER}\"\nbin_dir = \"{PG_BIN_DIR}\"\n",
        settings.flavor,
        node_db.data_dir().display()
    );
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
