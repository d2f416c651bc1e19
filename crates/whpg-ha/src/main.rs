use std::process::ExitCode;

use clap::Parser;
use whpg_ha::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let client = match &cli.command {
        Command::Status(args) => Some(&args.client),
        Command::Switchover(args) => Some(&args.client),
        Command::Rejoin(args) => Some(args),
        Command::Check(args) => Some(&args.client),
        Command::Maintenance(args) => Some(&args.client),
        Command::Promote(args) => Some(&args.client),
        _ => None,
    };
    if let Some(client) = client {
        whpg_ha::client::allow_clear_token(client.insecure_token_over_http);
    }
    match cli.command {
        Command::CheckConfig(args) => {
            whpg_ha::config::check_config_command(&args.file, args.node.as_deref())
        }
        Command::Run(args) => {
            whpg_ha::daemon::run_command(&args.config.config, args.config.node.as_deref())
        }
        Command::Status(args) => whpg_ha::ops::status::status_command(&args),
        Command::Switchover(args) => whpg_ha::ops::switchover::switchover_command(&args),
        Command::Rejoin(args) => whpg_ha::ops::rejoin::rejoin_command(&args),
        Command::Check(args) => whpg_ha::ops::check::check_command(&args),
        Command::Maintenance(args) => whpg_ha::ops::maintenance::maintenance_command(&args),
        Command::Promote(args) => whpg_ha::ops::promote::promote_command(&args),
        Command::History(args) => whpg_ha::journal::history_command(
            &args.config.config,
            args.config.node.as_deref(),
            args.limit,
            args.json,
        ),
        Command::Demo => whpg_ha::demo::demo_command(),
        Command::ImportKeepalived(args) => whpg_ha::import::import_keepalived_command(&args),
        Command::GenerateDocs(args) => whpg_ha::gendocs::generate_docs_command(&args.out),
    }
}
