//! Command-line interface: argument definitions only. Each subcommand's work lives in its own module.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Default location of the configuration file.
pub const DEFAULT_CONFIG: &str = "/etc/whpg-ha/whpg-ha.toml";

#[derive(Debug, Parser)]
#[command(
    name = "whpg-ha",
    version,
    about = "High availability for the WarehousePG coordinator: VRRP virtual IP, health checks, guarded promotion",
    long_about = "whpg-ha keeps a virtual IP on the node whose WarehousePG coordinator (or PostgreSQL primary) \
is writable. It speaks VRRP v2/v3 itself (wire-compatible with keepalived), checks the local database \
over the PostgreSQL wire protocol, promotes the standby when the primary is lost, and fences a node \
that must not serve."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground (as started by systemd).
    Run(RunArgs),
    /// Validate a configuration file and print the effective configuration (secrets masked).
    ///
    /// Exits 0 when the file is valid, 1 with one line per problem (key, bad value, fix) otherwise.
    CheckConfig(CheckConfigArgs),
    /// Show both nodes: role, VRRP state, priority, database state, lag, since when.
    Status(StatusArgs),
    /// Planned switchover: hand the coordinator role to the standby with zero lost commits.
    Switchover(SwitchoverArgs),
    /// Rebuild this (failed) node as the standby of the active coordinator.
    Rejoin(ClientArgs),
    /// Prove, without failing over, that a failover would work; name what would stop it.
    ///
    /// Asks both daemons: reachable, same configuration, adverts heard, standby streaming and
    /// promotable, token accepted, promote / fence / rejoin executable by the database OS user,
    /// witnesses answering, journal writable. Exits 0 only when every check passes.
    Check(CheckArgs),
    /// Turn maintenance mode on or off: no automatic failover while it is on.
    Maintenance(MaintenanceArgs),
    /// Promote a standby that may miss acknowledged commits: availability over data.
    ///
    /// Only for a standby the daemon refuses to promote ("not promotable": it fell behind, or its
    /// stream broke, while the primary was alive). Prints what is known to be lost and asks
    /// (type the node's name) unless --yes. Never beside a live primary.
    Promote(PromoteArgs),
    /// Print this node's journal: every transition, decision and action, oldest first.
    ///
    /// Reads the journal directory (`[journal] path`) directly; the daemon need not run.
    History(HistoryArgs),
    /// Build a namespace lab with a PostgreSQL pair and show a failover with a millisecond timeline (root).
    Demo,
    /// Write a whpg-ha configuration reproducing a keepalived setup (one node's keepalived.conf or both).
    ///
    /// Reads the files (and their includes) and the check / notify scripts they name, never running
    /// them. The configuration goes to stdout (or --out); every keepalived option that could not be
    /// mapped is listed as a comment in it and on stderr.
    ImportKeepalived(ImportKeepalivedArgs),
    /// Write the manual pages and shell completions into a directory (used to build the packages).
    #[command(hide = true)]
    GenerateDocs(GenerateDocsArgs),
}

#[derive(Debug, Args)]
pub struct GenerateDocsArgs {
    /// Directory to write `whpg-ha.1`, the subcommands' pages and the bash/zsh/fish completions into.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// Configuration file.
    #[arg(short, long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Which `[nodes.NAME]` entry this host is (default: the `node` key, else the host name).
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArg,
}

#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// Configuration file to check.
    #[arg(value_name = "FILE", default_value = DEFAULT_CONFIG)]
    pub file: PathBuf,
    /// Which `[nodes.NAME]` entry to check the file for (default: the `node` key, else the host name).
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
}

#[derive(Debug, Args)]
pub struct ClientArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Print machine-readable JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Send the API token over plain HTTP to the other node when [api] has no TLS (anyone on the
    /// network path can read it); without this the CLI refuses. With `switchover` the promoting
    /// daemon may then also send it to the old primary's daemon (to read the shutdown checkpoint).
    #[arg(long)]
    pub insecure_token_over_http: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// A configuration key that may differ between the nodes (e.g. `database.data_directory`
    /// when each node has its own file); repeatable. Every other key must be identical.
    #[arg(long, value_name = "KEY")]
    pub allow_differing: Vec<String>,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// How many of the newest entries to print (0: all).
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub limit: usize,
    /// Print one JSON object per line, as stored, instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Refresh the table every second until interrupted.
    #[arg(long)]
    pub watch: bool,
}

#[derive(Debug, Args)]
pub struct SwitchoverArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Node to hand the coordinator role to (default: the current standby).
    #[arg(long, value_name = "NODE")]
    pub to: Option<String>,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// Afterwards rebuild the old primary as the new standby.
    #[arg(long)]
    pub rejoin: bool,
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Required: say that the commits the standby misses may be lost.
    #[arg(long, required = true)]
    pub accept_data_loss: bool,
    /// The node to promote (default: the one whose database is a standby).
    #[arg(long, value_name = "NODE")]
    pub on: Option<String>,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct MaintenanceArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// `on` stops automatic failover until `off`.
    #[arg(value_enum)]
    pub mode: OnOff,
}

#[derive(Debug, Args)]
pub struct ImportKeepalivedArgs {
    /// keepalived.conf of one node, or of both (e.g. keepalived.conf.master keepalived.conf.backup).
    #[arg(value_name = "KEEPALIVED.CONF", required = true, num_args = 1..=2)]
    pub files: Vec<PathBuf>,
    /// Directory with the check and notify scripts (found by file name). Once for all files, or once
    /// per file in the same order. Default: each file's own directory, then the path as written.
    #[arg(long, value_name = "DIR")]
    pub scripts: Vec<PathBuf>,
    /// Names for the [nodes.*] entries: the first file's node, then the other (default: router_id,
    /// else the address).
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    pub node_names: Option<Vec<String>>,
    /// Addresses of the nodes, same order (for multicast setups without mcast_src_ip).
    #[arg(long, value_name = "IP,IP", value_delimiter = ',')]
    pub node_addresses: Option<Vec<std::net::Ipv4Addr>>,
    /// The vrrp_instance to import when a file has several.
    #[arg(long, value_name = "NAME")]
    pub instance: Option<String>,
    /// The coordinator's data directory, when no script sets it.
    #[arg(long, value_name = "PATH")]
    pub data_directory: Option<String>,
    /// Write the configuration to FILE (mode 0600) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Overwrite an existing --out file.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    On,
    Off,
}
