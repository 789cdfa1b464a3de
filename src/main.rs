//! dnsensor's entry point: parses the command line, sets up logging, and runs the chosen mode.
//! Each mode wires one source to the shared pipeline and prints a one-line summary on exit.

mod cli;
mod config;
mod logging;
mod mode_dnstap;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
                || matches!(
                    e.kind(),
                    ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                )
            {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // clap's message spans several lines; operators and scripts get the first one.
            let text = e.render().to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ");
            eprintln!("dnsensor: error: {first} (see dnsensor --help)");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Dnstap(args) => mode_dnstap::main(args),
        Command::CheckConfig(args) => {
            match config::load(&args.config).and_then(|f| config::check(&f)) {
                Ok(()) => {
                    println!("{}: ok", args.config.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("dnsensor: error: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
